"""Cross-validated importance of each bone region, descriptor family and source.

The same folds as ``boneage-features evaluate``: each fold's booster explains the rows it did not see
(TreeSHAP contributions, :func:`boneage_features.explain.contributions`), and the importance of a
group is the mean over all 12,611 out-of-fold rows of the absolute sum of its features'
contributions, in months. Two models: handcrafted features only (whole hand + regions + sex) and the
shipped configuration (the same plus the CNN's out-of-fold age, boosting started from it).

Writes ``artifacts/cv/importance.json`` and prints Markdown tables for the README.

    python scripts/importance_cv.py ../shared/data/rsna-bone-age/train.csv [--limit N] [--no-cnn]
"""

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

import _cv_setup
import boneage_features as bf
from boneage_features.evaluate import make_folds
from boneage_features.explain import contributions
from boneage_features.model import SEX_FEATURE


def out_of_fold_contributions(pipeline, table: pd.DataFrame, y: np.ndarray, folds: np.ndarray) -> pd.DataFrame:
    """Contributions of every row by the booster of the folds that did not see it."""
    parts = []
    for fold in np.unique(folds):
        test = folds == fold
        regressor = pipeline._new_regressor().fit(table[~test], y[~test])
        parts.append(contributions(regressor, table[test]))
        logging.info("fold %d explained", fold)
    return pd.concat(parts).loc[table.index]


def markdown(series: pd.Series, title: str) -> str:
    lines = [f"| {title} | mean \\|contribution\\| (months) |", "|---|---|"]
    lines += [f"| {name} | {value:.2f} |" for name, value in series.items()]
    return "\n".join(lines)


def main():
    parser = _cv_setup.parser(__doc__)
    parser.add_argument("--no-cnn", action="store_true", help="handcrafted features only")
    parser.add_argument("-o", "--output", default="artifacts/cv/importance.json")
    args = parser.parse_args()
    X, y, extractor = _cv_setup.load(args)
    models = {"handcrafted": bf.Pipeline(extractor=extractor, n_jobs=args.n_jobs)}
    if not args.no_cnn:
        from boneage_features.embed import CNNEmbedder

        models["handcrafted + CNN age"] = bf.Pipeline(extractor=extractor, cnn=CNNEmbedder(), n_jobs=args.n_jobs)
    result = {}
    for name, pipeline in models.items():
        table, _ = pipeline.make_table(X, oof=True)
        folds = make_folds(y.to_numpy(), table[SEX_FEATURE].to_numpy() >= 0.5)
        contrib = out_of_fold_contributions(pipeline, table, y.to_numpy(), folds)
        result[name] = {by: bf.global_importance(contrib, by=by).round(3).to_dict() for by in ("region", "family", "source")}
        result[name]["n"] = int(len(contrib))
        for by in ("region", "family", "source"):
            print(f"== {name}, by {by}\n" + markdown(pd.Series(result[name][by]), by) + "\n", flush=True)
    if not args.limit:
        Path(args.output).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

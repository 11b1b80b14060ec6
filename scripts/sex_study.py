"""The value of the child's sex: same folds, same features, sex as a feature, one model per sex, sex left out.

One feature table (whole-hand and region features, cached), LightGBM, the folds of
``boneage-features evaluate``. Also how much of the sex signal the image alone carries: a LightGBM
classifier of sex on the image features, cross-validated on the same folds (ROC AUC, overall and by
age band). No CNN here: the shipped network was given sex in its head, so "sex left out" would not
hold with its age estimate.

Writes ``artifacts/cv/sex_study.json`` and prints a Markdown table for the README.

    python scripts/sex_study.py ../shared/data/rsna-bone-age/train.csv [--limit N]
"""

import json
from pathlib import Path

import numpy as np

import _cv_setup
import boneage_features as bf
from boneage_features.evaluate import AGE_BANDS, age_band, cross_validate, make_folds
from boneage_features.model import SEX_FEATURE

VARIANTS = {
    "sex as a feature": dict(sex_mode="feature", drop_sex=False),
    "one model per sex": dict(sex_mode="separate", drop_sex=False),
    "sex left out": dict(sex_mode="feature", drop_sex=True),
}


def sex_from_image(table, y, male, folds, n_jobs) -> dict:
    """Out-of-fold ROC AUC of a LightGBM classifier of sex on the image features alone."""
    import lightgbm
    from sklearn.metrics import roc_auc_score

    features = table.drop(columns=[SEX_FEATURE]).to_numpy(np.float32)
    score = np.empty(len(table))
    for k in np.unique(folds):
        test = folds == k
        model = lightgbm.LGBMClassifier(n_estimators=500, learning_rate=0.05, colsample_bytree=0.2,
                                        subsample=0.8, subsample_freq=1, n_jobs=n_jobs, random_state=0, verbose=-1)
        model.fit(features[~test], male[~test])
        score[test] = model.predict_proba(features[test])[:, 1]
    bands = age_band(y)
    by_band = {}
    for i, (label, _, _) in enumerate(AGE_BANDS):
        rows = bands == i
        if len(np.unique(male[rows])) == 2:
            by_band[label] = float(roc_auc_score(male[rows], score[rows]))
    return {"auc": float(roc_auc_score(male, score)), "auc_by_band": by_band,
            "accuracy": float(np.mean((score >= 0.5) == male))}


def main():
    parser = _cv_setup.parser(__doc__)
    parser.add_argument("-o", "--output", default="artifacts/cv/sex_study.json")
    args = parser.parse_args()
    X, y, extractor = _cv_setup.load(args)
    table, _ = bf.Pipeline(extractor=extractor, n_jobs=args.n_jobs).make_table(X)
    male = table[SEX_FEATURE].to_numpy() >= 0.5
    results = {}
    for name, variant in VARIANTS.items():
        pipeline = bf.Pipeline(extractor=extractor, sex_mode=variant["sex_mode"], n_jobs=args.n_jobs)
        columns = [c for c in table.columns if not (variant["drop_sex"] and c == SEX_FEATURE)]
        result = cross_validate(pipeline, X, y, table=table[columns], male=male)
        result.pop("predictions")
        results[name] = result
        print(f"{name}: MAE {result['overall']['mae']:.2f}", flush=True)
    folds = make_folds(y.to_numpy(), male)
    image = sex_from_image(table, y.to_numpy(), male, folds, args.n_jobs)
    bands = [label for label, _, _ in AGE_BANDS]
    lines = ["| sex | MAE | " + " | ".join(bands) + " | boys | girls |", "|---|---|" + "---|" * (len(bands) + 2)]
    for name, result in results.items():
        per_band = result["overall"]["mae_by_band"]
        cells = [f"{per_band[b]['mae']:.2f}" if b in per_band else "" for b in bands]
        by_sex = result["overall"]["mae_by_sex"]
        cells += [f"{by_sex['M']['mae']:.2f}", f"{by_sex['F']['mae']:.2f}"]
        lines.append(f"| {name} | {result['overall']['mae']:.2f} | " + " | ".join(cells) + " |")
    print("\n".join(lines))
    print(f"sex from the image features: ROC AUC {image['auc']:.3f}, accuracy {image['accuracy']:.3f}; by band "
          + ", ".join(f"{b} {v:.3f}" for b, v in image["auc_by_band"].items()))
    if not args.limit:
        out = {"variants": results, "sex_from_image": image, "table_markdown": "\n".join(lines)}
        Path(args.output).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()

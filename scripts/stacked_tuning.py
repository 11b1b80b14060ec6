"""Candidate settings of the booster stacked on the CNN's age, on folds 0-1 of the nested cross-validation.

The feature table is built once (from the cache) with the shipped CNN's out-of-fold ages; each fold's
training rows then carry their nested ages, as in :func:`boneage_features.evaluate.cross_validate`.
Prints each candidate's MAE on the chosen folds (default 0 and 1, so that folds 2-4 stay unused for
the choice)::

    python scripts/stacked_tuning.py ../shared/data/rsna-bone-age/train.csv [--folds 0 1]
"""

import argparse

import numpy as np

import boneage_features as bf
from boneage_features.embed import CNNEmbedder
from boneage_features.evaluate import _cnn_cross_fitting, _fold_tables
from boneage_features.model import BoneAgeRegressor
from boneage_features.pipeline import STACKED_DEFAULTS

CANDIDATES = {
    "shipped": {},
    "600 rounds": {"n_estimators": 600},
    "31 leaves": {"num_leaves": 31},
    "600 rounds at 0.02": {"learning_rate": 0.02, "n_estimators": 600},
    "Huber loss": {"objective": "huber"},
    "L1 loss": {"objective": "l1"},
    "10% of columns": {"colsample_bytree": 0.1},
    "50 rows per leaf": {"min_child_samples": 50},
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest")
    parser.add_argument("--folds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--n-jobs", type=int, default=2)
    args = parser.parse_args()
    X, y = bf.read_manifest(args.manifest)
    pipeline = bf.Pipeline(cnn=CNNEmbedder(), n_jobs=args.n_jobs)
    table, _ = pipeline.make_table(X, oof=True)
    stacking, folds, cnn_ages = _cnn_cross_fitting(pipeline.cnn, X, 5)
    if stacking != "nested":
        raise SystemExit(f"the CNN's ages are {stacking}, not nested")
    y = y.to_numpy()
    for name, extra in CANDIDATES.items():
        params = {**STACKED_DEFAULTS, **extra, "n_jobs": args.n_jobs}
        maes = []
        for k in args.folds:
            test = folds == k
            train, held_out = _fold_tables(table, test, k, cnn_ages)
            regressor = BoneAgeRegressor(**params).fit(train, y[~test])
            maes.append(float(np.mean(np.abs(regressor.predict(held_out) - y[test]))))
        print(f"{name:<22} " + " ".join(f"{m:.3f}" for m in maes) + f"   mean {np.mean(maes):.3f}", flush=True)


if __name__ == "__main__":
    main()

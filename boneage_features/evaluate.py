"""Metrics of bone-age estimates and honest cross-validation.

The field reports the mean absolute error (MAE) in months first, then RMSE, and MAE by sex and by age
band, because errors are larger in the middle of the range and a model that regresses to the mean
looks good on average and bad at the extremes. Folds are stratified by age band and sex and seeded,
so every configuration is compared on the same folds.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import StratifiedKFold

from .model import SEX_FEATURE

logger = logging.getLogger(__name__)

#: Age bands in years, as (label, lower months inclusive, upper months exclusive).
AGE_BANDS = (
    ("0-2y", 0, 24),
    ("2-6y", 24, 72),
    ("6-10y", 72, 120),
    ("10-14y", 120, 168),
    ("14-19y", 168, np.inf),
)


def age_band(months) -> np.ndarray:
    """Index into :data:`AGE_BANDS` of each age in months."""
    edges = [upper for _, _, upper in AGE_BANDS[:-1]]
    return np.searchsorted(edges, np.asarray(months, dtype=float), side="right")


def make_folds(y, male, *, n_splits=5, random_state=0) -> np.ndarray:
    """Fold number (0..n_splits-1) of each row, stratified by age band and sex.

    ``StratifiedKFold(n_splits, shuffle=True, random_state)`` over the strata ``band * 2 + male``, in
    row order: the same rows give the same folds in every run and every configuration.
    """
    strata = age_band(y) * 2 + np.asarray(male, dtype=int)
    folds = np.empty(len(strata), dtype=int)
    splitter = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=random_state)
    for fold, (_, test) in enumerate(splitter.split(np.zeros(len(strata)), strata)):
        folds[test] = fold
    return folds


def regression_metrics(y_true, y_pred, male=None) -> dict:
    """MAE, RMSE, R² and bias in months; MAE by age band and, when ``male`` is given, by sex.

    Parameters
    ----------
    y_true, y_pred : (n,) array-like of months
    male : (n,) array-like of bool or 0/1, optional
    """
    y_true = np.asarray(y_true, dtype=float)
    y_pred = np.asarray(y_pred, dtype=float)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError(f"y_true and y_pred must be 1-D of one length; got {y_true.shape} and {y_pred.shape}")
    error = y_pred - y_true
    total = np.sum((y_true - y_true.mean()) ** 2)
    result = {
        "n": int(len(y_true)),
        "mae": float(np.mean(np.abs(error))),
        "rmse": float(np.sqrt(np.mean(error**2))),
        "r2": float(1 - np.sum(error**2) / total) if total > 0 else float("nan"),
        "bias": float(np.mean(error)),
    }
    bands = age_band(y_true)
    result["mae_by_band"] = {
        label: {"n": int(np.sum(bands == i)), "mae": float(np.mean(np.abs(error[bands == i])))}
        for i, (label, _, _) in enumerate(AGE_BANDS)
        if np.any(bands == i)
    }
    if male is not None:
        male = np.asarray(male).astype(bool)
        result["mae_by_sex"] = {
            sex: {"n": int(np.sum(rows)), "mae": float(np.mean(np.abs(error[rows])))}
            for sex, rows in (("M", male), ("F", ~male))
            if np.any(rows)
        }
    return result


def cross_validate(pipeline, X, y, *, n_splits=5, random_state=0, table=None, male=None) -> dict:
    """K-fold cross-validation of a :class:`~boneage_features.Pipeline`.

    Features are extracted once (and cached); each fold fits a fresh regressor on the other folds'
    rows and predicts its own, so no fold's prediction saw its own labels.

    With a stacked CNN, no feature may come from a network that saw the evaluated fold either
    (nested cross-fitting). Images the CNN never saw get the network's age, which is honest in any
    fold. For the CNN's own training images the folds are the CNN's cross-fitting folds (those of
    :func:`make_folds` on its whole training manifest; ``random_state`` then plays no part): the
    evaluated fold k gets its out-of-fold ages (from the network trained without fold k) and the
    training rows of fold j the age from the network trained without folds j and k (``cnn_age_<k>``
    in the out-of-fold table), whatever the CNN column of a given ``table`` holds. A table without
    those ages is used as before, with a warning that the estimate is slightly optimistic. Refused: a
    mix of seen and unseen images, images given as arrays beside seen ones, a subset that leaves one
    of the CNN's folds empty, another number of folds.

    Parameters
    ----------
    pipeline : Pipeline
        Configuration to evaluate (unfitted; it is cloned).
    X : DataFrame with ``image`` and ``sex``
    y : (n,) array-like of months
    n_splits, random_state : int
        Folds of :func:`make_folds`.
    table : DataFrame, optional
        Precomputed regressor input (from ``pipeline.make_table(X, oof=True)``), e.g. to compare
        boosters on the same features.
    male : (n,) array-like of bool, optional
        Sex of each row, for the folds and the metrics by sex; by default the table's
        ``clin_sex_male`` column (give it when the table leaves sex out).

    Returns
    -------
    dict
        ``overall`` and ``folds`` metrics, ``predictions`` (DataFrame: id, fold, boneage, predicted,
        male), ``config`` (``cnn_stacking``: "nested", "not nested", "unseen images", "unchecked
        arrays", "network ages", or None without a CNN; ``folds_from``: "cnn" or "make_folds") and
        timings.
    """
    y = pd.Series(np.asarray(y, dtype=float), index=X.index)
    start = time.perf_counter()
    if table is None:
        # Training-time features: a CNN contributes its out-of-fold ages, each from a network that never
        # saw the row, so the test fold's features are as honest as those of unseen images.
        table, _ = clone(pipeline).make_table(X, oof=True)
    extract_s = time.perf_counter() - start
    male = table[SEX_FEATURE].to_numpy() >= 0.5 if male is None else np.asarray(male, dtype=bool)
    stacking, folds, cnn_ages = None, None, None
    if pipeline.cnn is not None:
        stacking, folds, cnn_ages = _cnn_cross_fitting(pipeline.cnn, X, n_splits)
    folds_from = "cnn" if folds is not None else "make_folds"
    if folds is None:
        folds = make_folds(y.to_numpy(), male, n_splits=n_splits, random_state=random_state)
    predicted = np.empty(len(y))
    per_fold = []
    fit_start = time.perf_counter()
    for fold in range(n_splits):
        test = folds == fold
        regressor = clone(pipeline)._new_regressor()
        train, held_out = _fold_tables(table, test, fold, cnn_ages)
        regressor.fit(train, y.to_numpy()[~test])
        predicted[test] = regressor.predict(held_out)
        metrics = regression_metrics(y.to_numpy()[test], predicted[test], male[test])
        per_fold.append({"fold": fold, "n": metrics["n"], "mae": metrics["mae"], "rmse": metrics["rmse"]})
        logger.info("fold %d: MAE %.2f months", fold, metrics["mae"])
    predictions = pd.DataFrame(
        {"fold": folds, "boneage": y.to_numpy(), "predicted": predicted, "male": male.astype(int)},
        index=X.index,
    )
    return {
        "config": {
            "booster": pipeline.booster,
            "sex_mode": pipeline.sex_mode,
            "cnn": pipeline.cnn is not None,
            "cnn_stacking": stacking,
            "folds_from": folds_from,
            "features": _feature_layout(pipeline),
            "n_splits": n_splits,
            "random_state": random_state,
            "n_features": int(table.shape[1]),
        },
        "overall": regression_metrics(y.to_numpy(), predicted, male),
        "folds": per_fold,
        "timing_s": {"features": round(extract_s, 1), "fit_predict": round(time.perf_counter() - fit_start, 1)},
        "predictions": predictions,
    }


def _fold_tables(table, test, fold, cnn_ages=None):
    """Training and held-out rows of ``table`` for evaluating ``fold`` (``test`` marks its rows).

    With ``cnn_ages`` (the ``(column, ages)`` of :func:`_cnn_cross_fitting`) every row carries its CNN
    age as it stands when this fold is evaluated.
    """
    train, held_out = table[~test], table[test]
    if cnn_ages is not None:
        column, ages = cnn_ages
        train = train.assign(**{column: ages[~test, fold]})
        held_out = held_out.assign(**{column: ages[test, fold]})
    return train, held_out


def _cnn_cross_fitting(cnn, X, n_splits):
    """``(stacking, folds, ages)`` for cross-validating a booster stacked on ``cnn`` (see
    :func:`cross_validate`): ``folds`` None means :func:`make_folds`; ``ages`` None means the table's
    own CNN column, else ``(column, ages)`` with ``ages[i, k]`` the CNN age row i carries when fold k
    is evaluated (its out-of-fold age in its own fold; in another fold k its nested age, or its
    out-of-fold age where the table has no nested ages)."""
    from .embed.embedder import AGE_FEATURE

    cnn = clone(cnn)
    if cnn._oof_path() is None:
        logger.warning("the CNN has no out-of-fold table: every CNN age comes from the network, which is "
                       "honest only for images it was not trained on")
        return "network ages", None, None
    cross_fit = cnn.cross_fit_ages(X)
    if cross_fit is None:
        logger.warning("the CNN's out-of-fold table gives no folds: if it holds any of these images, "
                       "the booster's training rows carry CNN ages from networks that saw the evaluated "
                       "fold (slightly optimistic)")
        return "not nested", None, None
    seen = cross_fit["fold"].notna().to_numpy()
    arrays = int((~cross_fit["checked"]).sum())
    if arrays and seen.any():
        raise ValueError(f"{arrays} of {len(seen)} images are arrays, which cannot be looked up in the CNN's "
                         "out-of-fold table, and others are the CNN's training images: pass files")
    if arrays:
        logger.warning("%d images are arrays: whether the CNN was trained on them cannot be checked; their "
                       "CNN ages come from the network", arrays)
        return "unchecked arrays", None, None
    if not seen.any():
        return "unseen images", None, None
    if not seen.all():
        raise ValueError(
            f"{int(seen.sum())} of {len(seen)} images were the CNN's training images and the others were "
            "not: their CNN ages are not comparable in one cross-validation; evaluate the two sets apart"
        )
    folds = cross_fit["fold"].to_numpy().astype(int)
    n_cnn = cross_fit.attrs["n_folds"]
    if n_cnn != n_splits:
        raise ValueError(f"the CNN was cross-fitted on {n_cnn} folds: evaluate with {n_cnn} folds "
                         f"(got {n_splits}), so that its folds are the evaluation's")
    empty = sorted(set(range(n_splits)) - set(folds.tolist()))
    if empty:
        raise ValueError(f"none of these images is in the CNN's fold(s) {empty}: evaluate the CNN's "
                         "whole training set, whose folds are the evaluation's")
    own = cross_fit["cnn_age"].to_numpy(dtype=float)
    columns = [f"cnn_age_{k}" for k in range(n_splits)]
    if not set(columns) <= set(cross_fit.columns):
        logger.warning("the CNN's out-of-fold table lacks nested ages (%s ... %s): the booster's training "
                       "rows carry CNN ages from networks that saw the evaluated fold (slightly optimistic)",
                       columns[0], columns[-1])
        return "not nested", folds, (AGE_FEATURE, np.repeat(own[:, None], n_splits, axis=1))
    ages = cross_fit[columns].to_numpy(dtype=float)
    other = folds[:, None] != np.arange(n_splits)[None, :]
    missing = other & ~np.isfinite(ages)
    if missing.any():
        row = int(np.flatnonzero(missing.any(axis=1))[0])
        raise ValueError(f"the CNN's out-of-fold table lacks {int(missing.sum())} nested ages "
                         f"(first: row {X.index[row]!r}, fold {folds[row]})")
    ages[~other] = own  # in its own fold, a row carries its out-of-fold age
    return "nested", folds, (AGE_FEATURE, ages)


def _feature_layout(pipeline) -> str:
    """"whole", "regions" or "both": which handcrafted descriptors the pipeline's extractor computes."""
    from .features import FeatureExtractor

    config = (pipeline.extractor if pipeline.extractor is not None else FeatureExtractor())._config()
    if config["families"] and config.get("regions"):
        return "both"
    return "regions" if config.get("regions") else "whole"


def format_report(result: dict) -> str:
    """Plain-text table of a :func:`cross_validate` result."""
    overall = result["overall"]
    config = result["config"]
    lines = [
        f"{config['n_splits']}-fold CV, booster={config['booster']}, sex_mode={config['sex_mode']}, "
        f"cnn={(config.get('cnn_stacking') or 'yes') if config.get('cnn') else 'no'}, "
        f"features={config.get('features', '?')}, "
        f"{config['n_features']} features, n={overall['n']}",
        f"{'':<12}{'n':>7}{'MAE':>9}",
        f"{'all':<12}{overall['n']:>7}{overall['mae']:>9.2f}",
    ]
    for label, entry in overall.get("mae_by_sex", {}).items():
        lines.append(f"{'sex ' + label:<12}{entry['n']:>7}{entry['mae']:>9.2f}")
    for label, entry in overall["mae_by_band"].items():
        lines.append(f"{label:<12}{entry['n']:>7}{entry['mae']:>9.2f}")
    lines.append(f"RMSE {overall['rmse']:.2f}  R2 {overall['r2']:.3f}  bias {overall['bias']:+.2f} months")
    lines.append("per fold MAE: " + ", ".join(f"{f['mae']:.2f}" for f in result["folds"]))
    return "\n".join(lines)


def mae_by_band_and_sex(y_true, y_pred, male) -> pd.DataFrame:
    """Number of images and MAE in months by age band (of the reference age) and sex.

    Parameters
    ----------
    y_true, y_pred : (n,) array-like of months
    male : (n,) array-like of bool or 0/1

    Returns
    -------
    DataFrame
        One row per band of :data:`AGE_BANDS` and a last row ``all``; columns ``(sex, "n")`` and
        ``(sex, "mae")`` for sex ``F``, ``M`` and ``all``. The MAE is NaN where there are no images.
    """
    y_true = np.asarray(y_true, dtype=float)
    y_pred = np.asarray(y_pred, dtype=float)
    male = np.asarray(male).astype(bool)
    if not (y_true.shape == y_pred.shape == male.shape) or y_true.ndim != 1:
        raise ValueError(
            f"y_true, y_pred and male must be 1-D of one length; got {y_true.shape}, {y_pred.shape}, {male.shape}"
        )
    error = np.abs(y_pred - y_true)
    bands = age_band(y_true)
    rows = [(label, bands == i) for i, (label, _, _) in enumerate(AGE_BANDS)] + [("all", np.ones(len(y_true), bool))]
    sexes = (("F", ~male), ("M", male), ("all", np.ones(len(y_true), bool)))
    table = {}
    for label, in_band in rows:
        entry = {}
        for sex, of_sex in sexes:
            chosen = in_band & of_sex
            entry[(sex, "n")] = int(chosen.sum())
            entry[(sex, "mae")] = float(error[chosen].mean()) if chosen.any() else np.nan
        table[label] = entry
    return pd.DataFrame.from_dict(table, orient="index")

"""Per-image feature contributions and grouped importance of a fitted bone-age model.

Each prediction is split into one contribution per feature, in months, plus a ``base_value`` (the
model's expected output), with the boosters' own TreeSHAP (LightGBM ``pred_contrib``, XGBoost
``pred_contribs``; exact, no ``shap`` package needed): a row's contributions and ``base_value`` sum to
its predicted age. Feature names follow ``<region>_<family>_<component>``, so contributions sum cleanly
by bone region, by descriptor family, or by source (handcrafted, CNN, clinical).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.utils.validation import check_is_fitted, validate_data

from .model import BoneAgeRegressor

#: Column of :func:`contributions` holding the part of each prediction not owed to any feature.
BASE_VALUE = "base_value"

GROUPINGS = ("region", "family", "source")

#: Source of each feature family for ``by="source"``; the ``clin`` region is "clinical" whatever its family.
FAMILY_SOURCES = {"hog": "handcrafted", "lbp": "handcrafted", "intensity": "handcrafted", "cnn": "cnn"}
_CLINICAL_REGION = "clin"
#: Region of the CNN's features when grouping by region.
CNN_REGION = "cnn"
_DIAGNOSTICS = "diagnostics"


def _booster_contributions(regressor: BoneAgeRegressor, model, X: np.ndarray) -> np.ndarray:
    """TreeSHAP values of one fitted booster: (n_rows, n_columns + 1), the last column its expected value."""
    if regressor.booster == "lightgbm":
        return np.asarray(model.predict(X, pred_contrib=True), dtype=np.float64)
    import xgboost

    # A zero margin, as BoneAgeRegressor.predict passes: the prior is added back by the caller.
    margin = np.zeros(len(X)) if regressor.base_column is not None else None
    matrix = xgboost.DMatrix(X, base_margin=margin, nthread=regressor.n_jobs)
    return np.asarray(model.get_booster().predict(matrix, pred_contribs=True), dtype=np.float64)


def _base_means(regressor: BoneAgeRegressor) -> dict:
    """The fitted mean of the base column per model, or a clear error for models fitted before it existed."""
    means = getattr(regressor, "base_mean_", None)
    if means is None:
        raise ValueError(
            f"this regressor stacks on base_column={regressor.base_column!r} but has no base_mean_ "
            "(it was fitted by an older version of boneage_features); refit it to explain its predictions"
        )
    return means


def contributions(regressor: BoneAgeRegressor, table: pd.DataFrame) -> pd.DataFrame:
    """Contribution of every feature to every prediction of a fitted regressor, in months.

    Parameters
    ----------
    regressor : BoneAgeRegressor
        Fitted on a DataFrame (its ``feature_names_in_`` name the output columns).
    table : (n_samples, n_features) DataFrame
        Feature table with the regressor's ``feature_names_in_`` columns, as for ``predict``.

    Returns
    -------
    DataFrame
        Indexed like ``table``: one column per feature, in ``feature_names_in_`` order, then
        ``base_value``. Each row sums to ``regressor.predict(table)``.

    Notes
    -----
    With ``sex_mode="separate"`` the rows of each sex are explained by that sex's model and the sex
    column's contribution is 0. With ``base_column`` (boosting from a prior age such as the CNN's),
    the prior's deviation from its training mean (``base_mean_``) is added to the base column's
    contribution and the mean to ``base_value``, so the prior shows as a feature like the others.
    """
    check_is_fitted(regressor, "models_")
    names = getattr(regressor, "feature_names_in_", None)
    if names is None:
        raise ValueError("contributions need a regressor fitted on a DataFrame, whose columns name the features")
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"table must be a DataFrame with the regressor's feature columns; got {type(table).__name__}")
    X = validate_data(regressor, table, reset=False, ensure_all_finite="allow-nan", dtype=np.float32)
    groups, columns = regressor._groups(X)
    values = np.zeros(X.shape, dtype=np.float64)
    base_value = np.zeros(len(X), dtype=np.float64)
    means = _base_means(regressor) if regressor.base_column is not None else None
    for key, rows in groups.items():
        if not rows.any():
            continue
        shap = _booster_contributions(regressor, regressor.models_[key], X[np.ix_(rows, columns)])
        values[np.ix_(rows, columns)] = shap[:, :-1]
        base_value[rows] = shap[:, -1]
        if means is not None:
            position = regressor._position(X, regressor.base_column, "base_column")
            values[rows, position] += regressor._base(X, rows) - means[key]
            base_value[rows] += means[key]
    out = pd.DataFrame(values, index=table.index, columns=list(names))
    out[BASE_VALUE] = base_value
    return out


def _group_of(name: str, by: str) -> str:
    parts = name.split("_", 2)
    if len(parts) != 3 or not all(parts) or parts[0] == _DIAGNOSTICS:
        raise ValueError(f"feature name {name!r} does not follow <region>_<family>_<component>")
    region, family, _ = parts
    if by == "region":
        # The CNN sees the whole hand, but it is another source than the whole-hand descriptors:
        # a reader asking "which bones?" wants the two apart.
        return CNN_REGION if family == "cnn" else region
    if by == "family":
        return family
    if region == _CLINICAL_REGION:
        return "clinical"
    if family not in FAMILY_SOURCES:
        raise ValueError(f"feature name {name!r}: family {family!r} has no known source (known: {sorted(FAMILY_SOURCES)})")
    return FAMILY_SOURCES[family]


def feature_groups(names, by: str) -> dict:
    """Group of each feature name.

    Parameters
    ----------
    names : iterable of str
        Feature names ``<region>_<family>_<component>`` (``base_value`` is not a feature).
    by : {"region", "family", "source"}
        "region": the first part (``whole``, ``pp3``, ``carpal``, ``clin``, ...), except that the CNN's
        features (family ``cnn``, e.g. ``whole_cnn_age``) form a region ``cnn`` of their own; "family": the second
        (``hog``, ``lbp``, ``intensity``, ``cnn``, ``sex``); "source": "handcrafted" (HOG, LBP,
        intensity), "cnn" or "clinical" (``clin_*``).

    Returns
    -------
    dict
        ``{name: group}`` with every name once, in the order given.

    Raises
    ------
    ValueError
        For an unknown ``by``, or naming the first feature whose name does not parse.
    """
    if by not in GROUPINGS:
        raise ValueError(f"by must be one of {GROUPINGS}; got {by!r}")
    return {name: _group_of(name, by) for name in names}


def group_contributions(contrib: pd.DataFrame, by: str = "region") -> pd.DataFrame:
    """Contributions summed over the features of each group.

    Parameters
    ----------
    contrib : DataFrame
        Output of :func:`contributions` or :meth:`Pipeline.explain`.
    by : {"region", "family", "source"}, default="region"
        How features are grouped (see :func:`feature_groups`).

    Returns
    -------
    DataFrame
        Indexed like ``contrib``: one column per group, in order of first appearance, then
        ``base_value`` unchanged, so each row still sums to the prediction.
    """
    features = contrib.drop(columns=BASE_VALUE, errors="ignore")
    groups = feature_groups(features.columns, by)
    order = list(dict.fromkeys(groups.values()))
    grouped = features.T.groupby(pd.Series(groups), sort=False).sum().T.reindex(columns=order)
    grouped.columns.name = None
    if BASE_VALUE in contrib.columns:
        grouped[BASE_VALUE] = contrib[BASE_VALUE]
    return grouped


def global_importance(contrib: pd.DataFrame, by: str | None = None) -> pd.Series:
    """Mean absolute contribution, in months, of each feature or group over the rows of ``contrib``.

    Parameters
    ----------
    contrib : DataFrame
        Output of :func:`contributions` or :meth:`Pipeline.explain`.
    by : {None, "region", "family", "source"}, default=None
        None: per feature; otherwise per group, as the mean over rows of the absolute group sum.

    Returns
    -------
    Series
        Sorted from most to least important; ``base_value`` is left out.
    """
    table = contrib if by is None else group_contributions(contrib, by)
    importance = table.drop(columns=BASE_VALUE, errors="ignore").abs().mean()
    return importance.sort_values(ascending=False, kind="stable").rename("mean_abs_contribution")

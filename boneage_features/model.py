"""BoneAgeRegressor: a feature table in, bone age in months out.

A gradient-boosted tree regressor (LightGBM by default, or XGBoost) with the child's sex fused in one of
two ways: as one more feature (``sex_mode="feature"``: the trees split on it where it matters, which
lets the sexes share what they have in common), or as one model per sex (``sex_mode="separate"``: girls
mature 1.5-2 years earlier, so each model learns its own mapping, on half the data).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

#: Name of the sex feature that :class:`~boneage_features.Pipeline` appends to the image features.
SEX_FEATURE = "clin_sex_male"

BOOSTERS = ("lightgbm", "xgboost")
SEX_MODES = ("feature", "separate")


class BoneAgeRegressor(RegressorMixin, BaseEstimator):
    """Gradient-boosted regressor of bone age with sex fused as a feature or by separate models.

    Parameters
    ----------
    booster : {"lightgbm", "xgboost"}, default="lightgbm"
        Library that grows the trees.
    sex_mode : {"feature", "separate"}, default="feature"
        "feature": sex is a column like any other. "separate": one model per sex, each trained on the
        rows of that sex without the sex column.
    sex_column : str or int, default="clin_sex_male"
        Column holding sex as 1 (male) / 0 (female): a name for DataFrames, a position for arrays.
        Used only when ``sex_mode="separate"``.
    base_column : str or int, optional
        Column holding a prior estimate of the age in months (e.g. the CNN's ``whole_cnn_age``). The
        trees then learn the correction to it (boosting starts from it: LightGBM ``init_score``,
        XGBoost ``base_margin``) instead of the age from scratch; it stays a feature as well. Without
        it, a dominant estimate would be missing from most trees under column subsampling.
    n_estimators : int, default=1000
        Boosting rounds.
    learning_rate : float, default=0.05
        Shrinkage per round.
    num_leaves : int, default=31
        Leaves per tree (LightGBM); XGBoost uses ``max_depth``.
    max_depth : int, default=6
        Tree depth for XGBoost; LightGBM leaves it unlimited (``num_leaves`` bounds it).
    min_child_samples : int, default=20
        Minimum rows in a leaf.
    subsample : float, default=0.8
        Fraction of rows drawn for each tree.
    colsample_bytree : float, default=0.2
        Fraction of columns drawn for each tree; low values suit wide, redundant descriptor tables.
    reg_lambda : float, default=1.0
        L2 penalty on leaf values.
    objective : {"l2", "l1", "huber"}, default="l2"
        Training loss.
    device : {"cpu", "cuda"}, default="cpu"
        Where XGBoost trains; LightGBM's CPU build ignores it.
    n_jobs : int, default=1
        Threads for the booster.
    random_state : int, default=0
        Seed of row and column sampling.
    booster_params : dict, optional
        Further parameters passed to the booster as they are.

    Attributes
    ----------
    models_ : dict
        Fitted boosters: ``{"all": model}`` or ``{"M": model, "F": model}``.
    base_mean_ : dict or None
        Mean of ``base_column`` over each model's training rows, keyed like ``models_`` (None without
        ``base_column``). Explanations attribute a prior's deviation from it to the base column.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when fitted on a DataFrame.
    """

    def __init__(
        self,
        *,
        booster="lightgbm",
        sex_mode="feature",
        sex_column=SEX_FEATURE,
        base_column=None,
        n_estimators=1000,
        learning_rate=0.05,
        num_leaves=31,
        max_depth=6,
        min_child_samples=20,
        subsample=0.8,
        colsample_bytree=0.2,
        reg_lambda=1.0,
        objective="l2",
        device="cpu",
        n_jobs=1,
        random_state=0,
        booster_params=None,
    ):
        self.booster = booster
        self.sex_mode = sex_mode
        self.sex_column = sex_column
        self.base_column = base_column
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.max_depth = max_depth
        self.min_child_samples = min_child_samples
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.reg_lambda = reg_lambda
        self.objective = objective
        self.device = device
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.booster_params = booster_params

    def _check_params(self):
        if self.booster not in BOOSTERS:
            raise ValueError(f"booster must be one of {BOOSTERS}; got {self.booster!r}")
        if self.sex_mode not in SEX_MODES:
            raise ValueError(f"sex_mode must be one of {SEX_MODES}; got {self.sex_mode!r}")
        if self.objective not in ("l2", "l1", "huber"):
            raise ValueError(f"objective must be 'l2', 'l1' or 'huber'; got {self.objective!r}")

    def _new_booster(self, n_rows):
        extra = dict(self.booster_params or {})
        # Tiny tables (tests, a sex with few rows) would otherwise grow no tree at all.
        min_child = int(max(1, min(self.min_child_samples, n_rows // 4)))
        if self.booster == "lightgbm":
            import lightgbm

            objective = {"l2": "regression", "l1": "regression_l1", "huber": "huber"}[self.objective]
            params = dict(
                objective=objective,
                n_estimators=self.n_estimators,
                learning_rate=self.learning_rate,
                num_leaves=self.num_leaves,
                min_child_samples=min_child,
                subsample=self.subsample,
                subsample_freq=1 if self.subsample < 1 else 0,
                colsample_bytree=self.colsample_bytree,
                reg_lambda=self.reg_lambda,
                n_jobs=self.n_jobs,
                random_state=self.random_state,
                verbose=-1,
            )
            params.update(extra)
            return lightgbm.LGBMRegressor(**params)
        import xgboost

        objective = {"l2": "reg:squarederror", "l1": "reg:absoluteerror", "huber": "reg:pseudohubererror"}[
            self.objective
        ]
        params = dict(
            objective=objective,
            n_estimators=self.n_estimators,
            learning_rate=self.learning_rate,
            max_depth=self.max_depth,
            min_child_weight=min_child,
            subsample=self.subsample,
            colsample_bytree=self.colsample_bytree,
            reg_lambda=self.reg_lambda,
            tree_method="hist",
            device=self.device,
            n_jobs=self.n_jobs,
            random_state=self.random_state,
        )
        params.update(extra)
        return xgboost.XGBRegressor(**params)

    def _position(self, X, column, role):
        """Position in ``X`` of ``column`` (a name or a position), for the parameter ``role``."""
        if isinstance(column, str):
            names = getattr(self, "feature_names_in_", None)
            if names is None or column not in names:
                raise ValueError(
                    f"{role}={column!r} is not a column of X; pass a DataFrame that has it, "
                    "or give the column's position"
                )
            return int(np.flatnonzero(names == column)[0])
        position = int(column)
        if not 0 <= position < X.shape[1]:
            raise ValueError(f"{role}={column!r} is outside the {X.shape[1]} columns of X")
        return position

    def _base(self, X, rows):
        """Prior estimate of each row (zeros without ``base_column``)."""
        if self.base_column is None:
            return np.zeros(int(rows.sum()))
        base = X[rows, self._position(X, self.base_column, "base_column")].astype(np.float64)
        if not np.all(np.isfinite(base)):
            raise ValueError(f"base_column={self.base_column!r} has missing values; it must be complete")
        return base

    def _groups(self, X):
        """Row masks per model and the columns each model sees."""
        if self.sex_mode == "feature":
            return {"all": np.ones(len(X), bool)}, np.arange(X.shape[1])
        position = self._position(X, self.sex_column, "sex_column")
        male = X[:, position] >= 0.5
        columns = np.delete(np.arange(X.shape[1]), position)
        return {"M": male, "F": ~male}, columns

    def fit(self, X, y):
        """Fit the booster(s).

        Parameters
        ----------
        X : (n_samples, n_features) array-like or DataFrame; NaN allowed
        y : (n_samples,) array-like of months
        """
        self._check_params()
        X, y = validate_data(self, X, y, ensure_all_finite="allow-nan", dtype=np.float32, y_numeric=True)
        groups, columns = self._groups(X)
        self.models_ = {}
        self.base_mean_ = None if self.base_column is None else {}
        for key, rows in groups.items():
            if not rows.any():
                raise ValueError(f"sex_mode='separate' needs both sexes in the training data; no row has sex {key}")
            model = self._new_booster(int(rows.sum()))
            if self.base_column is None:
                model.fit(X[np.ix_(rows, columns)], y[rows])
            else:
                margin = "init_score" if self.booster == "lightgbm" else "base_margin"
                base = self._base(X, rows)
                model.fit(X[np.ix_(rows, columns)], y[rows], **{margin: base})
                self.base_mean_[key] = float(np.mean(base))
            self.models_[key] = model
        return self

    def predict(self, X):
        """Bone age in months, (n_samples,) ndarray of float."""
        check_is_fitted(self, "models_")
        X = validate_data(self, X, reset=False, ensure_all_finite="allow-nan", dtype=np.float32)
        groups, columns = self._groups(X)
        months = np.empty(len(X), dtype=np.float64)
        for key, rows in groups.items():
            if rows.any():
                # LightGBM's predict leaves the init_score out; XGBoost's takes base_margin. Add it alike.
                extra = {}
                if self.base_column is not None and self.booster == "xgboost":
                    extra["base_margin"] = np.zeros(int(rows.sum()))
                months[rows] = self.models_[key].predict(X[np.ix_(rows, columns)], **extra) + self._base(X, rows)
        return months

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags


def as_table(features: pd.DataFrame, male) -> pd.DataFrame:
    """Image features with the sex column appended (1.0 male, 0.0 female)."""
    table = features.copy()
    table[SEX_FEATURE] = np.asarray(male, dtype=np.float32)
    return table

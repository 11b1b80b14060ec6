"""Pipeline: radiographs and sex in, bone age in months out.

The estimator users import. ``X`` is a DataFrame with an ``image`` column (a path or an (M, N)
array per row) and a ``sex`` column (M/F, male/female, True/False, 1/0); ``y`` is bone age in months.
It chains a :class:`~boneage_features.FeatureExtractor` and a
:class:`~boneage_features.BoneAgeRegressor`, and saves to one file that records the package version.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.utils.validation import check_is_fitted

from .explain import contributions
from .features import FEATURES_VERSION, FeatureExtractor
from .regions import DETECTOR_VERSION
from .io import parse_sex, write_atomic
from .model import BoneAgeRegressor, as_table

logger = logging.getLogger(__name__)

_SAVE_FORMAT = 1

#: Regressor defaults when a CNN is stacked: boosting starts from the CNN's age and a small, shallow
#: ensemble learns the correction. Chosen by CV on folds 0-1: 7.88 months against 7.99 for the CNN
#: alone and 8.09 for the general defaults (1000 rounds at 0.05), which over-fit the residual. Looked at
#: again with the nested CNN ages (scripts/stacked_tuning.py): no candidate gained more than the spread
#: between folds (7.70-7.75 against 7.72 on folds 0-1).
STACKED_DEFAULTS = {"base_column": "whole_cnn_age", "n_estimators": 300, "learning_rate": 0.03, "num_leaves": 15}
_MODEL_FILE = "model.joblib"


class ModelVersionError(ValueError):
    """A saved model was made by a version whose features differ from this one's."""


def _package_version():
    from . import __version__

    return __version__


def _male(X: pd.DataFrame) -> np.ndarray:
    """1.0 for male rows, 0.0 for female; raises naming the row of an unknown value."""
    male = np.empty(len(X), np.float32)
    for position, (row, value) in enumerate(X["sex"].items()):
        try:
            male[position] = parse_sex(value) == "M"
        except ValueError as exc:
            raise ValueError(f"column 'sex', row {row!r}: {exc}") from None
    return male


def _as_age(months: np.ndarray) -> np.ndarray:
    """The regressor's output as an age: a newborn's hand can come out a little below 0 months."""
    return np.maximum(months, 0.0)


def _check_X(X):
    if not isinstance(X, pd.DataFrame):
        raise TypeError(f"X must be a pandas DataFrame with 'image' and 'sex' columns; got {type(X).__name__}")
    missing = [c for c in ("image", "sex") if c not in X.columns]
    if missing:
        raise ValueError(f"X lacks column(s) {missing}; it has {list(X.columns)}")


class Pipeline(RegressorMixin, BaseEstimator):
    """Bone age from hand radiographs: features, sex and a gradient-boosted regressor.

    Parameters
    ----------
    booster : {"lightgbm", "xgboost"}, default="lightgbm"
    sex_mode : {"feature", "separate"}, default="feature"
        Sex as one more feature, or one model per sex (see :class:`BoneAgeRegressor`).
    extractor : FeatureExtractor, optional
        Feature extractor; by default ``FeatureExtractor(n_jobs=n_jobs, progress=progress)``.
    cnn : CNNEmbedder, optional
        Adds the fine-tuned CNN's age estimate (``whole_cnn_age``) to the features; the booster is
        trained on its out-of-fold values (see :class:`boneage_features.embed.CNNEmbedder`) and, by
        default, learns a correction to it (:data:`STACKED_DEFAULTS`). Needs torch.
    regressor_params : dict, optional
        Further :class:`BoneAgeRegressor` parameters (``n_estimators``, ``learning_rate``, ...); they
        override the stacked defaults.
    n_jobs : int, default=1
        Parallel images for the default extractor and threads for the booster.
    random_state : int, default=0
    progress : bool, default=False
        Progress bar on stderr while extracting features.

    Attributes
    ----------
    extractor_ : FeatureExtractor
    cnn_ : CNNEmbedder or None
    regressor_ : BoneAgeRegressor
    feature_names_ : list of str
        Columns the regressor was trained on.
    version_ : str
        Package version that fitted the model.
    """

    def __init__(
        self,
        *,
        booster="lightgbm",
        sex_mode="feature",
        extractor=None,
        cnn=None,
        regressor_params=None,
        n_jobs=1,
        random_state=0,
        progress=False,
    ):
        self.booster = booster
        self.sex_mode = sex_mode
        self.extractor = extractor
        self.cnn = cnn
        self.regressor_params = regressor_params
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.progress = progress

    def _new_extractor(self) -> FeatureExtractor:
        if self.extractor is not None:
            return clone(self.extractor)
        return FeatureExtractor(n_jobs=self.n_jobs, progress=self.progress)

    def _new_regressor(self) -> BoneAgeRegressor:
        params = dict(STACKED_DEFAULTS) if self.cnn is not None else {}
        params.update(self.regressor_params or {})
        params.setdefault("n_jobs", max(1, os.cpu_count() or 1) if self.n_jobs == -1 else self.n_jobs)
        return BoneAgeRegressor(booster=self.booster, sex_mode=self.sex_mode, random_state=self.random_state, **params)

    def make_table(self, X, *, errors="raise", oof=False):
        """Regressor input for ``X``: image features (and CNN features) plus ``clin_sex_male``.

        Returns ``(table, failed)``: the table of the rows that succeeded and a Series of the error
        message of each row that did not (empty with ``errors="raise"``, which stops at the first).
        ``oof=True`` (for training) takes the CNN's out-of-fold ages where it has them.
        """
        _check_X(X)
        extractor = getattr(self, "extractor_", None) or self._new_extractor()
        failed = {}
        if errors == "record":
            ok = np.ones(len(X), bool)
            for position, (row, value) in enumerate(X["sex"].items()):
                try:
                    parse_sex(value)
                except ValueError as exc:
                    failed[row] = f"column 'sex': {exc}"
                    ok[position] = False
            X = X[ok]
        male = _male(X)  # in "raise" mode this fails on a bad sex before any image is read
        extraction = extractor.extract(X, errors=errors)
        failed = pd.concat([pd.Series(failed, dtype=str), extraction.errors])
        rows = extraction.features.index
        features = extraction.features
        if self.cnn is not None:
            cnn = getattr(self, "cnn_", None) or clone(self.cnn)
            features = features.join(cnn.transform(X.loc[rows], oof=oof))
        table = as_table(features, male[X.index.get_indexer(rows)])
        return table, failed

    def fit(self, X, y):
        """Extract features of every image and fit the regressor.

        Parameters
        ----------
        X : DataFrame with ``image`` and ``sex`` columns
        y : (n_samples,) array-like of bone age in months
        """
        _check_X(X)
        y = np.asarray(y, dtype=np.float64)
        if y.shape != (len(X),):
            raise ValueError(f"y must have one age per row of X ({len(X)}); got shape {y.shape}")
        if not np.all(np.isfinite(y)):
            raise ValueError(f"y has {int(np.sum(~np.isfinite(y)))} missing or non-finite ages")
        self.extractor_ = self._new_extractor().fit()
        self.cnn_ = clone(self.cnn).fit() if self.cnn is not None else None
        table, _ = self.make_table(X, oof=True)
        self.regressor_ = self._new_regressor().fit(table, y)
        self.feature_names_ = list(table.columns)
        self.version_ = _package_version()
        self.features_version_ = FEATURES_VERSION
        self.detector_version_ = DETECTOR_VERSION if self.extractor_._config().get("regions") else None
        return self

    def predict(self, X) -> np.ndarray:
        """Bone age in months for every row of ``X``; raises on the first unreadable image.

        The regressor's output, floored at 0 months (boosting can land a newborn's hand a little
        below 0; :meth:`explain` splits the unfloored output).
        """
        check_is_fitted(self, "regressor_")
        table, _ = self.make_table(X)
        return _as_age(self.regressor_.predict(table))

    def explain(self, X) -> pd.DataFrame:
        """Contribution of every feature to the predicted age of every row of ``X``, in months.

        Parameters
        ----------
        X : DataFrame with ``image`` and ``sex`` columns
            As for :meth:`predict`; raises on the first unreadable image or unknown sex.

        Returns
        -------
        DataFrame
            Indexed like ``X``: one column per feature of :attr:`feature_names_` (TreeSHAP values of
            the booster), then ``base_value``; each row sums to :meth:`predict` (before its floor at 0
            months, which only a newborn's hand can reach). Sum them by bone region,
            descriptor family or source with :func:`boneage_features.group_contributions`.
        """
        check_is_fitted(self, "regressor_")
        table, _ = self.make_table(X)
        return contributions(self.regressor_, table)

    def predict_batch(self, X) -> pd.DataFrame:
        """Bone age for every row, never stopping at a bad one.

        Returns a DataFrame indexed like ``X`` with ``boneage_months`` (NaN where the row failed),
        ``status`` ("ok" or "error") and ``error`` (the reason, naming the file, or "").
        """
        table, errors = self.scorable_table(X)
        months = pd.Series(_as_age(self.regressor_.predict(table)) if len(table) else [], index=table.index)
        return batch_outcome(X.index, months, errors)

    def scorable_table(self, X) -> tuple[pd.DataFrame, dict]:
        """Regressor input of the rows of ``X`` that can be scored, and the error of each row that cannot.

        Rows a manifest reader already marked bad (a non-empty ``error`` column) are not read again.
        Behind :meth:`predict_batch` and :func:`boneage_features.report.explain_batch`.
        """
        check_is_fitted(self, "regressor_")
        _check_X(X)
        upstream = {}
        if "error" in X.columns:  # rows a manifest reader already found bad
            upstream = {row: str(msg) for row, msg in X["error"].items() if isinstance(msg, str) and msg}
        table, failed = self.make_table(X.drop(index=list(upstream)), errors="record")
        return table, {**upstream, **failed.to_dict()}

    def save(self, path) -> Path:
        """Write the fitted model to ``path`` (joblib), atomically; returns the path."""
        check_is_fitted(self, "regressor_")
        payload = {
            "format": _SAVE_FORMAT,
            "version": self.version_,
            "features_version": self.features_version_,
            "detector_version": getattr(self, "detector_version_", None),
            "model": self,
        }
        return write_atomic(path, lambda tmp: joblib.dump(payload, tmp, compress=3))


def batch_outcome(index, months: pd.Series, errors: dict) -> pd.DataFrame:
    """Per-row outcome of a batch: ``boneage_months`` (NaN where the row failed), ``status`` ("ok" or
    "error") and ``error`` (the reason, or ""), indexed by ``index``."""
    out = pd.DataFrame({"boneage_months": np.nan, "status": "error", "error": ""}, index=index)
    out.loc[months.index, "boneage_months"] = months.to_numpy(dtype=float)
    out.loc[months.index, "status"] = "ok"
    for row, message in errors.items():
        out.loc[row, "error"] = message
    return out


def artifacts_dir() -> Path:
    """Folder of the shipped artifacts: inside the package in a wheel, ``artifacts/`` in a checkout."""
    package = Path(__file__).resolve().parent
    for candidate in (package / "_artifacts", package.parent / "artifacts"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"no shipped artifacts found (looked in {package / '_artifacts'} and {package.parent / 'artifacts'})")


def shipped_model_path() -> Path:
    """Path of the model that ships with the package (``artifacts/model.joblib``)."""
    path = artifacts_dir() / _MODEL_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path}: no shipped model; train one with `boneage-features fit`")
    return path


def load_model(path=None) -> Pipeline:
    """Load a model saved by :meth:`Pipeline.save`; the shipped model when ``path`` is None.

    Raises :class:`ModelVersionError` when the model's features were computed differently from this
    version's (its predictions would be wrong); warns when only the package version differs.
    """
    path = shipped_model_path() if path is None else Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: model file not found")
    try:
        payload = joblib.load(path)
    except Exception as exc:
        raise ValueError(f"{path}: not a boneage_features model ({type(exc).__name__}: {exc})") from exc
    if not isinstance(payload, dict) or payload.get("format") != _SAVE_FORMAT or not isinstance(
        payload.get("model"), Pipeline
    ):
        raise ValueError(f"{path}: not a boneage_features model file (format {_SAVE_FORMAT})")
    if payload["features_version"] != FEATURES_VERSION:
        raise ModelVersionError(
            f"{path}: model computed features of version {payload['features_version']} "
            f"(package {payload['version']}); this package computes version {FEATURES_VERSION}: retrain it"
        )
    detector = payload.get("detector_version")
    if detector is not None and detector != DETECTOR_VERSION:
        raise ModelVersionError(
            f"{path}: model's region features came from landmark detector version {detector}; this package "
            f"places regions with version {DETECTOR_VERSION}: retrain it"
        )
    if payload["version"] != _package_version():
        warnings.warn(
            f"{path}: model saved by boneage_features {payload['version']}, loaded by {_package_version()}",
            stacklevel=2,
        )
    return payload["model"]

import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.estimator_checks import parametrize_with_checks

from boneage_features import BoneAgeRegressor
from boneage_features.model import SEX_FEATURE, as_table

FAST = {"n_estimators": 60, "learning_rate": 0.15}


@parametrize_with_checks(
    [BoneAgeRegressor(**FAST), BoneAgeRegressor(booster="xgboost", **FAST)],
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


def _table(n=400, seed=0):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, 5)), columns=[f"whole_test_{i}" for i in range(5)])
    male = rng.integers(0, 2, n)
    # Girls mature earlier: the same image means a younger age for a girl.
    y = 100 + 20 * X["whole_test_0"] - 18 * (1 - male) + rng.normal(0, 2, n)
    return as_table(X, male), y.to_numpy()


@pytest.mark.parametrize("booster", ["lightgbm", "xgboost"])
@pytest.mark.parametrize("sex_mode", ["feature", "separate"])
def test_learns_the_sex_offset(booster, sex_mode):
    X, y = _table()
    model = BoneAgeRegressor(booster=booster, sex_mode=sex_mode, n_estimators=200, learning_rate=0.1, colsample_bytree=1.0)
    model.fit(X[:300], y[:300])
    mae = np.mean(np.abs(model.predict(X[300:]) - y[300:]))
    assert mae < 6.0
    assert set(model.models_) == ({"all"} if sex_mode == "feature" else {"M", "F"})
    probe = X[300:].copy()
    probe[SEX_FEATURE] = 1.0
    boys = model.predict(probe)
    probe[SEX_FEATURE] = 0.0
    assert np.mean(boys - model.predict(probe)) > 10


def test_separate_mode_needs_the_sex_column_and_both_sexes():
    X, y = _table(60)
    with pytest.raises(ValueError, match="sex_column"):
        BoneAgeRegressor(sex_mode="separate", **FAST).fit(X.drop(columns=SEX_FEATURE), y)
    only_boys = X.assign(**{SEX_FEATURE: 1.0})
    with pytest.raises(ValueError, match="both sexes"):
        BoneAgeRegressor(sex_mode="separate", **FAST).fit(only_boys, y)
    model = BoneAgeRegressor(sex_mode="separate", sex_column=5, **FAST).fit(X.to_numpy(), y)
    assert model.predict(X.to_numpy()).shape == (60,)


def test_bad_parameters_and_unfitted():
    X, y = _table(40)
    with pytest.raises(ValueError, match="booster"):
        BoneAgeRegressor(booster="catboost").fit(X, y)
    with pytest.raises(ValueError, match="sex_mode"):
        BoneAgeRegressor(sex_mode="both").fit(X, y)
    with pytest.raises(NotFittedError):
        BoneAgeRegressor().predict(X)


def test_nan_features_are_accepted_and_pickle_round_trip():
    X, y = _table(200)
    X.iloc[::7, 1] = np.nan
    model = BoneAgeRegressor(**FAST).fit(X, y)
    again = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(model.predict(X), again.predict(X))
    assert clone(model).get_params() == model.get_params()


@pytest.mark.parametrize("booster", ["lightgbm", "xgboost"])
def test_base_column_is_a_starting_point_the_trees_correct(booster):
    X, y = _table(600)
    # A prior estimate that is good but biased at the top of the range, like a CNN regressing to the mean.
    X["whole_cnn_age"] = y + np.where(y > 110, -8.0, 0.0) + np.random.default_rng(1).normal(0, 1, len(y))
    params = dict(booster=booster, n_estimators=150, learning_rate=0.1, colsample_bytree=0.2)
    with_base = BoneAgeRegressor(base_column="whole_cnn_age", **params).fit(X[:450], y[:450])
    without = BoneAgeRegressor(**params).fit(X[:450], y[:450])
    prior_mae = np.mean(np.abs(X["whole_cnn_age"][450:] - y[450:]))
    mae_base = np.mean(np.abs(with_base.predict(X[450:]) - y[450:]))
    assert mae_base < 0.8 * prior_mae  # the bias at the top was learned and taken off
    assert mae_base < np.mean(np.abs(without.predict(X[450:]) - y[450:]))
    X.iloc[0, -1] = np.nan
    with pytest.raises(ValueError, match="missing"):
        BoneAgeRegressor(base_column="whole_cnn_age", **params).fit(X, y)
    with pytest.raises(ValueError, match="base_column"):
        BoneAgeRegressor(base_column="nope", **params).fit(X, y)

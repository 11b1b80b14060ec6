import pickle

import numpy as np
import pandas as pd
import pytest

import boneage_features as bf
from boneage_features import BoneAgeRegressor
from boneage_features.explain import BASE_VALUE, contributions, feature_groups
from boneage_features.model import SEX_FEATURE, as_table

FAST = {"n_estimators": 30, "learning_rate": 0.2, "colsample_bytree": 1.0}
BASE = "whole_cnn_age"
NAMES = [
    "whole_hog_0042",
    "whole_lbp_g03r2u07",
    "whole_intensity_p50",
    "pp3_hog_0042",
    "carpal_lbp_r2u07",
    "radius_intensity_g01mean",
    "whole_cnn_0000",
    BASE,
]


def _table(n=160, seed=0):
    """Features named like the extractor's, a CNN age close to the truth, sex last; and the ages."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, len(NAMES))), columns=NAMES, index=[f"img{i}" for i in range(n)])
    male = rng.integers(0, 2, n)
    y = 100 + 20 * X["whole_hog_0042"] - 15 * X["carpal_lbp_r2u07"] - 18 * (1 - male) + rng.normal(0, 2, n)
    X[BASE] = y + rng.normal(0, 6, n)
    X.iloc[::7, 1] = np.nan  # a descriptor that could not be computed
    return as_table(X, male), y.to_numpy()


def _assert_sums_to(contrib, predicted):
    np.testing.assert_allclose(contrib.sum(axis=1).to_numpy(), predicted, rtol=1e-6)


@pytest.mark.parametrize("booster", ["lightgbm", "xgboost"])
@pytest.mark.parametrize("sex_mode", ["feature", "separate"])
@pytest.mark.parametrize("base_column", [None, BASE])
def test_contributions_sum_to_the_prediction(booster, sex_mode, base_column):
    X, y = _table()
    model = BoneAgeRegressor(booster=booster, sex_mode=sex_mode, base_column=base_column, **FAST).fit(X, y)
    contrib = contributions(model, X)
    assert list(contrib.columns) == [*X.columns, BASE_VALUE]
    assert contrib.index.equals(X.index)
    _assert_sums_to(contrib, model.predict(X))
    if sex_mode == "separate":
        assert (contrib[SEX_FEATURE] == 0).all()
        boys = X[SEX_FEATURE].to_numpy() == 1
        # Each sex is explained by its own model, whose expected value differs.
        assert contrib.loc[boys, BASE_VALUE].nunique() == 1 and contrib.loc[~boys, BASE_VALUE].nunique() == 1
        assert contrib.loc[boys, BASE_VALUE].iloc[0] != contrib.loc[~boys, BASE_VALUE].iloc[0]
    else:
        assert contrib[BASE_VALUE].nunique() == 1
        if base_column is None:  # the CNN's age already holds the 18-month sex offset
            assert contrib[SEX_FEATURE].abs().mean() > 1
    # The features that drive the age carry the largest contributions.
    assert set(bf.global_importance(contrib).index[:2]) & {"whole_hog_0042", "carpal_lbp_r2u07", BASE}


@pytest.mark.parametrize("booster", ["lightgbm", "xgboost"])
@pytest.mark.parametrize("sex_mode", ["feature", "separate"])
def test_prior_shows_as_a_deviation_from_its_mean(booster, sex_mode):
    X, y = _table()
    model = BoneAgeRegressor(booster=booster, sex_mode=sex_mode, base_column=BASE, **FAST).fit(X, y)
    assert set(model.base_mean_) == set(model.models_)
    if sex_mode == "feature":
        assert model.base_mean_["all"] == pytest.approx(X[BASE].mean(), rel=1e-6)
    else:
        assert model.base_mean_["M"] == pytest.approx(X.loc[X[SEX_FEATURE] == 1, BASE].mean(), rel=1e-6)
    contrib = contributions(model, X)
    # The CNN's age is the dominant feature, and a row with an older CNN age gets a larger contribution.
    assert bf.global_importance(contrib).index[0] == BASE
    assert np.corrcoef(contrib[BASE], X[BASE])[0, 1] > 0.9
    # Its contributions centre on zero over the training rows of each model (TreeSHAP's part is small).
    assert abs(contrib[BASE].mean()) < 0.1 * contrib[BASE].abs().mean()
    base_value = contrib[BASE_VALUE].to_numpy()
    assert np.all((base_value > 60) & (base_value < 140))  # the average age, not zero


def test_base_column_given_by_position():
    X, y = _table(80)
    position = list(X.columns).index(BASE)
    model = BoneAgeRegressor(base_column=position, **FAST).fit(X, y)
    _assert_sums_to(contributions(model, X), model.predict(X))


def test_old_stacked_model_without_base_mean_asks_to_refit():
    X, y = _table(80)
    model = BoneAgeRegressor(base_column=BASE, **FAST).fit(X, y)
    del model.base_mean_
    old = pickle.loads(pickle.dumps(model))
    with pytest.raises(ValueError, match="refit"):
        contributions(old, X)
    unstacked = BoneAgeRegressor(**FAST).fit(X, y)
    assert unstacked.base_mean_ is None
    del unstacked.base_mean_  # an old pickle without a prior needs no mean
    _assert_sums_to(contributions(unstacked, X), unstacked.predict(X))


def test_contributions_input_checks():
    X, y = _table(80)
    model = BoneAgeRegressor(**FAST)
    with pytest.raises(Exception, match="not fitted"):
        contributions(model, X)
    model.fit(X, y)
    with pytest.raises(TypeError, match="DataFrame"):
        contributions(model, X.to_numpy())
    with pytest.raises(ValueError, match="feature names"):
        contributions(model, X[list(reversed(X.columns))])
    on_array = BoneAgeRegressor(**FAST).fit(X.to_numpy(), y)
    with pytest.raises(ValueError, match="fitted on a DataFrame"):
        contributions(on_array, X)


def test_feature_groups_parse_every_kind_of_name():
    names = [*NAMES, SEX_FEATURE, "mc5_hog_0001", "ulna_intensity_p90"]
    assert feature_groups(names, "region") == {
        **dict.fromkeys(["whole_hog_0042", "whole_lbp_g03r2u07", "whole_intensity_p50"], "whole"),
        **dict.fromkeys(["whole_cnn_0000", BASE], "cnn"),
        "pp3_hog_0042": "pp3",
        "carpal_lbp_r2u07": "carpal",
        "radius_intensity_g01mean": "radius",
        SEX_FEATURE: "clin",
        "mc5_hog_0001": "mc5",
        "ulna_intensity_p90": "ulna",
    }
    families = feature_groups(names, "family")
    assert families["whole_lbp_g03r2u07"] == "lbp" and families[BASE] == "cnn" and families[SEX_FEATURE] == "sex"
    sources = feature_groups(names, "source")
    assert sources["whole_cnn_0000"] == sources[BASE] == "cnn"
    assert sources[SEX_FEATURE] == "clinical"
    assert {sources[n] for n in ("pp3_hog_0042", "carpal_lbp_r2u07", "radius_intensity_g01mean")} == {"handcrafted"}


@pytest.mark.parametrize(
    "name", ["wholehog", "whole_hog", "whole__p50", "diagnostics_hand_area_frac", "_hog_0001"]
)
def test_a_name_that_does_not_parse_is_named(name):
    with pytest.raises(ValueError, match=name):
        feature_groups(["whole_hog_0001", name], "region")


def test_unknown_family_has_no_source_and_unknown_grouping():
    assert feature_groups(["whole_glcm_contrast"], "family") == {"whole_glcm_contrast": "glcm"}
    with pytest.raises(ValueError, match="whole_glcm_contrast"):
        feature_groups(["whole_glcm_contrast"], "source")
    with pytest.raises(ValueError, match="by must be one of"):
        feature_groups(NAMES, "bone")


@pytest.mark.parametrize("by", ["region", "family", "source"])
def test_grouping_covers_every_feature_once(by):
    X, y = _table(80)
    model = BoneAgeRegressor(booster="xgboost", base_column=BASE, **FAST).fit(X, y)
    contrib = contributions(model, X)
    grouped = bf.group_contributions(contrib, by=by)
    groups = feature_groups(contrib.columns.drop(BASE_VALUE), by)
    assert list(groups) == list(X.columns)
    assert list(grouped.columns) == [*dict.fromkeys(groups.values()), BASE_VALUE]
    pd.testing.assert_series_equal(grouped[BASE_VALUE], contrib[BASE_VALUE])
    np.testing.assert_allclose(grouped.sum(axis=1), contrib.sum(axis=1), rtol=1e-12)
    for group in set(groups.values()):
        members = [name for name, g in groups.items() if g == group]
        np.testing.assert_allclose(grouped[group], contrib[members].sum(axis=1), rtol=1e-12)
    importance = bf.global_importance(contrib, by=by)
    assert set(importance.index) == set(groups.values())
    assert importance.is_monotonic_decreasing
    np.testing.assert_allclose(importance[list(grouped.columns[:-1])], grouped.drop(columns=BASE_VALUE).abs().mean())


def test_global_importance_per_feature():
    contrib = pd.DataFrame(
        {"whole_hog_0001": [1.0, -3.0], "pp3_lbp_u07": [0.5, 0.5], "clin_sex_male": [-4.0, 0.0], BASE_VALUE: [90, 90]}
    )
    importance = bf.global_importance(contrib)
    assert importance.to_dict() == {"whole_hog_0001": 2.0, "clin_sex_male": 2.0, "pp3_lbp_u07": 0.5}
    # By source, opposite signs within a row cancel before the absolute value is taken.
    contrib.loc[0, "pp3_lbp_u07"] = -1.0
    assert bf.global_importance(contrib, by="source").to_dict() == {"clinical": 2.0, "handcrafted": 1.25}


def test_pipeline_explain_on_synthetic_hands(tmp_path, synthetic_manifest):
    X, y = bf.read_manifest(synthetic_manifest)
    X.index = [f"hand{i}" for i in range(len(X))]
    model = bf.Pipeline(
        booster="xgboost",
        sex_mode="separate",
        extractor=bf.FeatureExtractor(cache_dir=tmp_path / "cache"),
        regressor_params=FAST,
    ).fit(X, y)
    probe = X.iloc[::3]
    contrib = model.explain(probe)
    assert list(contrib.columns) == [*model.feature_names_, BASE_VALUE]
    assert contrib.index.equals(probe.index)
    _assert_sums_to(contrib, model.predict(probe))
    assert (contrib[SEX_FEATURE] == 0).all()
    # Every real feature name parses, and grouped rows still sum to the prediction.
    for by in ("region", "family", "source"):
        assert len(feature_groups(model.feature_names_, by)) == len(model.feature_names_)
        _assert_sums_to(bf.group_contributions(contrib, by=by), model.predict(probe))
    bad = probe.copy()
    bad.loc[bad.index[1], "image"] = str(tmp_path / "missing.png")
    with pytest.raises(bf.ImageReadError, match="missing.png"):
        model.explain(bad)
    bad = probe.copy()
    bad.loc[bad.index[0], "sex"] = "unknown"
    with pytest.raises(ValueError, match="column 'sex'"):
        model.explain(bad)
    with pytest.raises(Exception, match="not fitted"):
        bf.Pipeline().explain(probe)


def test_pipeline_explain_on_real_radiographs(tmp_path, train_manifest):
    X, y = train_manifest
    rows = X.sample(n=16, random_state=3).index
    X, y = X.loc[rows], y.loc[rows]
    model = bf.Pipeline(
        extractor=bf.FeatureExtractor(regions=(), cache_dir=tmp_path / "cache"), regressor_params=FAST
    ).fit(X.iloc[:12], y.iloc[:12])
    contrib = model.explain(X.iloc[12:])
    assert contrib.index.equals(X.index[12:])
    _assert_sums_to(contrib, model.predict(X.iloc[12:]))
    assert set(bf.group_contributions(contrib, by="region").columns) == {"whole", "clin", BASE_VALUE}

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

import boneage_features as bf
from boneage_features.pipeline import ModelVersionError

FAST = {"n_estimators": 80, "learning_rate": 0.1}


@pytest.fixture
def synthetic(synthetic_manifest):
    return bf.read_manifest(synthetic_manifest)


def _pipeline(tmp_path, **kwargs):
    return bf.Pipeline(extractor=bf.FeatureExtractor(cache_dir=tmp_path / "cache"), regressor_params=FAST, **kwargs)


def test_import_does_not_pull_torch():
    import subprocess
    import sys

    code = "import sys, boneage_features; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_estimator_api_by_hand(tmp_path, synthetic):
    X, y = synthetic
    model = _pipeline(tmp_path, booster="xgboost")
    with pytest.raises(NotFittedError):
        model.predict(X)
    assert clone(model).get_params()["booster"] == "xgboost"
    model.set_params(extractor__hog_cell=32, sex_mode="separate")
    assert model.get_params()["extractor__hog_cell"] == 32
    assert model.fit(X, y) is model
    assert model.regressor_.sex_mode == "separate"
    again = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(model.predict(X), again.predict(X))
    assert model.version_ == bf.__version__
    assert isinstance(model.score(X, y), float)


def test_input_checks(tmp_path, synthetic):
    X, y = synthetic
    model = _pipeline(tmp_path)
    with pytest.raises(ValueError, match="lacks column"):
        model.fit(X.drop(columns="sex"), y)
    with pytest.raises(TypeError, match="DataFrame"):
        model.fit(X["image"].to_numpy(), y)
    with pytest.raises(ValueError, match="one age per row"):
        model.fit(X, y[:3])
    bad = X.copy()
    bad.loc[bad.index[2], "sex"] = "unknown"
    with pytest.raises(ValueError, match=r"column 'sex', row .*unknown"):
        model.fit(bad, y)


def test_save_load_identical_and_version_checked(tmp_path, synthetic):
    X, y = synthetic
    model = _pipeline(tmp_path).fit(X, y)
    path = model.save(tmp_path / "m" / "model.joblib")
    loaded = bf.load_model(path)
    np.testing.assert_array_equal(model.predict(X), loaded.predict(X))

    import joblib

    payload = joblib.load(path)
    payload["version"] = "0.0.1"
    joblib.dump(payload, tmp_path / "old.joblib")
    with pytest.warns(UserWarning, match="0.0.1"):
        bf.load_model(tmp_path / "old.joblib")
    assert payload["detector_version"] is not None  # the default extractor describes regions
    payload["detector_version"] = -1
    joblib.dump(payload, tmp_path / "moved.joblib")
    with pytest.raises(ModelVersionError, match="landmark detector"):
        bf.load_model(tmp_path / "moved.joblib")
    payload["features_version"] = -1
    joblib.dump(payload, tmp_path / "incompatible.joblib")
    with pytest.raises(ModelVersionError, match="retrain"):
        bf.load_model(tmp_path / "incompatible.joblib")
    (tmp_path / "junk.joblib").write_text("junk")
    with pytest.raises(ValueError, match="junk.joblib"):
        bf.load_model(tmp_path / "junk.joblib")


def test_predict_batch_keeps_every_row(tmp_path, synthetic):
    X, y = synthetic
    model = _pipeline(tmp_path).fit(X, y)
    batch = X.iloc[:4].copy()
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    batch.loc[batch.index[1], "image"] = str(tmp_path / "corrupt.png")
    batch.loc[batch.index[2], "sex"] = "x"
    result = model.predict_batch(batch)
    assert list(result.index) == list(batch.index)
    assert list(result["status"]) == ["ok", "error", "error", "ok"]
    assert "corrupt.png" in result["error"].iloc[1]
    assert "sex" in result["error"].iloc[2]
    assert result["boneage_months"].iloc[[0, 3]].notna().all() and result["boneage_months"].iloc[[1, 2]].isna().all()
    np.testing.assert_allclose(result["boneage_months"].iloc[[0, 3]], model.predict(X.iloc[[0, 3]]))


def test_shipped_model_exists_and_loads():
    path = bf.shipped_model_path()
    assert path.stat().st_size < 25 * 2**20
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a stale shipped model would warn about its version
        model = bf.load_model()
    assert model.version_ == bf.__version__


@pytest.mark.slow
def test_real_radiographs_end_to_end(tmp_path, real_subset):
    X, y = real_subset
    train, test = X.index[:240], X.index[240:]
    model = bf.Pipeline(n_jobs=2, regressor_params={"n_estimators": 300, "learning_rate": 0.05})
    model.fit(X.loc[train], y.loc[train])
    predicted = model.predict(X.loc[test])
    mae = np.mean(np.abs(predicted - y.loc[test]))
    baseline = np.mean(np.abs(y.loc[train].mean() - y.loc[test]))
    assert mae < 0.8 * baseline, (mae, baseline)
    model.save(tmp_path / "real.joblib")
    np.testing.assert_array_equal(bf.load_model(tmp_path / "real.joblib").predict(X.loc[test]), predicted)


def test_an_age_below_zero_is_floored_and_explain_splits_the_raw_output(tmp_path, synthetic):
    X, y = synthetic
    # ages near 0 months: the booster's output for the youngest hands can fall below 0
    model = _pipeline(tmp_path).fit(X, np.asarray(y) - float(np.max(y)) / 2)
    raw = model.regressor_.predict(model.make_table(X)[0])
    assert (raw < 0).any() and (raw > 0).any()
    np.testing.assert_allclose(model.predict(X), np.maximum(raw, 0.0))
    np.testing.assert_allclose(model.predict_batch(X)["boneage_months"], np.maximum(raw, 0.0))
    np.testing.assert_allclose(model.explain(X).sum(axis=1), raw, rtol=1e-6, atol=1e-6)

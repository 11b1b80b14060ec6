import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from boneage_features import FeatureExtractor, ImageReadError
from boneage_features.features import default_cache_dir

from .conftest import draw_hand


def _images(n=3):
    return [draw_hand(finger_length=0.25 + 0.05 * i, seed=i) for i in range(n)]


def test_names_and_values_line_up(tmp_path):
    extractor = FeatureExtractor(cache_dir=tmp_path).fit()
    table = extractor.transform(_images())
    assert list(table.columns) == list(extractor.feature_names_out_)
    assert table.shape == (3, extractor.n_features_out_)
    assert {name.split("_")[1] for name in table.columns} == {"hog", "lbp", "intensity"}
    assert np.isfinite(table.filter(like="_hog_").to_numpy()).all()


def test_families_and_parameters_change_the_columns(tmp_path):
    small = FeatureExtractor(families=("hog",), hog_cell=32, cache_dir=tmp_path)
    assert all("_hog_" in name for name in small.get_feature_names_out())
    assert len(small.get_feature_names_out()) < len(FeatureExtractor().get_feature_names_out())
    with pytest.raises(ValueError, match="families"):
        FeatureExtractor(families=("sift",)).get_feature_names_out()
    assert clone(small).get_params() == small.get_params()


def test_cache_is_reused_and_keyed_by_parameters(tmp_path, monkeypatch):
    images = _images(2)
    first = FeatureExtractor(cache_dir=tmp_path).transform(images)
    files = sorted(tmp_path.rglob("*.npz"))
    assert len(files) == 2
    import boneage_features.features as features

    def fail(*args, **kwargs):
        raise AssertionError("recomputed although cached")

    monkeypatch.setattr(features, "preprocess_hand", fail)
    second = FeatureExtractor(cache_dir=tmp_path).transform(images)
    pd.testing.assert_frame_equal(first, second)
    monkeypatch.undo()
    FeatureExtractor(cache_dir=tmp_path, hog_cell=32).transform(images)
    assert len(sorted(tmp_path.rglob("*.npz"))) == 4  # other parameters, other cache entries


def test_parallel_equals_serial(tmp_path):
    images = _images(4)
    serial = FeatureExtractor(cache_dir=False).transform(images)
    parallel = FeatureExtractor(cache_dir=False, n_jobs=2).transform(images)
    pd.testing.assert_frame_equal(serial, parallel)


def test_bad_rows_are_recorded_or_raised(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_text("not an image")
    X = pd.DataFrame({"image": [draw_hand(), str(bad), str(tmp_path / "missing.png")]}, index=["a", "b", "c"])
    result = FeatureExtractor(cache_dir=False).extract(X, errors="record")
    assert list(result.features.index) == ["a"]
    assert set(result.errors.index) == {"b", "c"}
    assert "broken.png" in result.errors["b"] and "missing.png" in result.errors["c"]
    assert all(col.startswith("diagnostics_") for col in result.diagnostics.columns)
    with pytest.raises(ImageReadError, match="broken.png"):
        FeatureExtractor(cache_dir=False).transform(X)


def test_default_cache_dir_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("BONEAGE_FEATURES_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path


def test_same_image_from_file_and_array_gives_same_features(tmp_path):
    import cv2

    image = (draw_hand() * 255).astype(np.uint8)
    path = tmp_path / "hand.png"
    cv2.imwrite(str(path), image)
    table = FeatureExtractor(cache_dir=False).transform([str(path), image])
    np.testing.assert_allclose(table.iloc[0], table.iloc[1], rtol=1e-5, atol=1e-6)

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from boneage_features import FeatureExtractor, ImageReadError
from boneage_features.features import default_cache_dir
from boneage_features.regions import REGION_NAMES

from .conftest import draw_hand


def _images(n=3):
    return [draw_hand(finger_length=0.25 + 0.05 * i, seed=i) for i in range(n)]


def test_names_and_values_line_up(tmp_path):
    extractor = FeatureExtractor(cache_dir=tmp_path).fit()  # whole hand and the 14 regions by default
    table = extractor.transform(_images())
    assert list(table.columns) == list(extractor.feature_names_out_)
    assert table.shape == (3, extractor.n_features_out_)
    assert {name.split("_")[1] for name in table.columns} == {"hog", "lbp", "intensity"}
    assert {name.split("_")[0] for name in table.columns} == {"whole", *REGION_NAMES}
    assert np.isfinite(table.filter(like="whole_hog_").to_numpy()).all()


def test_families_and_parameters_change_the_columns(tmp_path):
    small = FeatureExtractor(families=("hog",), hog_cell=32, regions=(), cache_dir=tmp_path)
    assert all("_hog_" in name for name in small.get_feature_names_out())
    assert len(small.get_feature_names_out()) < len(FeatureExtractor(regions=()).get_feature_names_out())
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


# Per-region descriptors -------------------------------------------------------------------------

REGIONS = ("pp3", "carpal", "radius")


def _hand_regions(found=("pp3", "radius")):
    """HandRegions with ``found`` placed in the middle of the canonical view, the others not found."""
    from boneage_features.regions import REGION_NAMES, HandRegions, Region

    regions = {
        name: Region(name, center=(160.0, 200.0 + 10 * k), size=(40.0, 32.0), angle=5.0, found=True)
        if name in found else Region(name)
        for k, name in enumerate(REGION_NAMES)
    }
    diagnostics = {f"diagnostics_{name}_found": float(name in found) for name in REGION_NAMES}
    diagnostics.update(diagnostics_regions_found=float(len(found)), diagnostics_regions_ok=0.0)
    return HandRegions(regions=regions, landmarks={"palm": (160.0, 250.0)}, diagnostics=diagnostics)


def test_region_feature_names_follow_the_parameters():
    names = list(FeatureExtractor(regions=REGIONS).get_feature_names_out())
    whole = list(FeatureExtractor(regions=()).get_feature_names_out())
    assert names[: len(whole)] == whole  # whole-hand features first, unchanged
    assert "whole_lbp_g03r2u07" in names
    assert {"pp3_hog_0000", "carpal_lbp_r2u07", "radius_intensity_p50", "radius_intensity_g01std"} <= set(names)
    per_region = 3 * 3 * 4 * 9 + (10 + 18 + 26) + (11 + 2 * 2)  # HOG 4x4 cells of 12, LBP r1-3, intensity 2x1
    assert len(names) == len(whole) + 3 * per_region == len(set(names))
    sources = [name.split("_", 2)[0] for name in names[len(whole):]]
    assert sources == sorted(sources, key=REGIONS.index)  # regions in the configured order
    carpal_only = FeatureExtractor(families=(), regions=("carpal",), region_families=("lbp", "hog"))
    only = list(carpal_only.get_feature_names_out())
    assert only[0] == "carpal_lbp_r1u00" and only[-1] == "carpal_hog_0323" and len(only) == 54 + 324
    for name in only:
        assert len(name.split("_", 2)) == 3 and "_" not in name.split("_", 2)[2]


def test_region_parameters_are_validated():
    with pytest.raises(ValueError, match=r"'pp4'.*valid names: dp1, pp1"):
        FeatureExtractor(regions=("pp3", "pp4")).get_feature_names_out()
    with pytest.raises(ValueError, match="both empty"):
        FeatureExtractor(families=(), regions=()).get_feature_names_out()
    with pytest.raises(ValueError, match="not a string"):
        FeatureExtractor(regions="carpal").get_feature_names_out()
    with pytest.raises(ValueError, match="more than once"):
        FeatureExtractor(regions=("carpal", "carpal")).get_feature_names_out()
    with pytest.raises(ValueError, match="region_families"):
        FeatureExtractor(regions=("carpal",), region_families=("sift",)).get_feature_names_out()
    with pytest.raises(ValueError, match="multiple of region_hog_cell"):
        FeatureExtractor(regions=("carpal",), region_hog_cell=10).get_feature_names_out()
    with pytest.raises(ValueError, match="region_intensity_grid"):
        FeatureExtractor(regions=("carpal",), region_intensity_grid=(0, 1)).get_feature_names_out()
    # unused region parameters are not checked while there are no regions
    assert len(FeatureExtractor(regions=(), region_hog_cell=10).get_feature_names_out()) > 0


def test_region_parameters_round_trip_and_tune():
    extractor = FeatureExtractor(regions=REGIONS, region_patch=(72, 48), region_lbp_radii=(1,))
    params = extractor.get_params()
    assert params["regions"] == REGIONS and params["region_patch"] == (72, 48)
    assert clone(extractor).get_params() == params
    assert FeatureExtractor().set_params(**params).get_params() == params
    n, folder = len(extractor.get_feature_names_out()), extractor._cache_folder(extractor._config())
    extractor.set_params(region_hog_cell=8)  # what GridSearchCV does
    assert extractor.region_hog_cell == 8
    assert len(extractor.get_feature_names_out()) == n + 3 * (8 * 5 - 5 * 3) * 4 * 9  # 9x6 cells, not 6x4
    assert extractor._cache_folder(extractor._config()) != folder


def test_extractor_pickled_before_region_parameters_computes_what_it_did():
    import pickle

    old = FeatureExtractor(hog_cell=32)
    state = old.__getstate__()
    for name in [key for key in state if key.startswith("region")]:
        del state[name]
    restored = FeatureExtractor.__new__(FeatureExtractor)
    restored.__setstate__(state)
    # no regions (as then), every other new parameter at its default
    assert restored.get_params() == FeatureExtractor(hog_cell=32, regions=()).get_params()
    assert pickle.loads(pickle.dumps(restored)).regions == ()


def test_regions_found_and_not_found(monkeypatch):
    import boneage_features.features as features

    calls = []

    def fake_detect(image, mask):
        calls.append(image.shape)
        return _hand_regions(found=("pp3", "radius"))

    monkeypatch.setattr("boneage_features.regions.detect_regions", fake_detect)
    extractor = FeatureExtractor(regions=REGIONS, cache_dir=False)
    result = extractor.extract([draw_hand(), draw_hand(seed=3)])
    table, diagnostics = result.features, result.diagnostics
    assert len(calls) == 2 and list(table.columns) == list(extractor.get_feature_names_out())
    assert table.filter(regex="^carpal_").isna().all().all()
    for region in ("pp3", "radius"):
        assert np.isfinite(table.filter(regex=f"^{region}_(hog|lbp)_").to_numpy()).all()
        assert table.filter(regex=f"^{region}_lbp_r1").sum(axis=1).round(5).eq(1.0).all()  # a histogram
    assert np.isfinite(table.filter(regex="^whole_hog_").to_numpy()).all()
    assert (diagnostics["diagnostics_carpal_found"] == 0).all()
    assert (diagnostics["diagnostics_pp3_found"] == 1).all()
    assert (diagnostics["diagnostics_regions_found"] == 2).all()
    assert "diagnostics_hand_found" in diagnostics.columns  # preprocessing diagnostics kept


def test_region_features_equal_descriptors_of_the_patch(monkeypatch):
    import boneage_features.features as features
    from boneage_features.descriptors import lbp
    from boneage_features.preprocess import preprocess_hand
    from boneage_features.regions import extract_patch

    hand_regions = _hand_regions(found=("pp3",))
    monkeypatch.setattr("boneage_features.regions.detect_regions", lambda image, mask: hand_regions)
    image = draw_hand()
    row = FeatureExtractor(families=(), regions=("pp3",), region_families=("lbp",), cache_dir=False).transform([image])
    patch = extract_patch(preprocess_hand(image).image, hand_regions.regions["pp3"], shape=(48, 48))
    names, values = lbp.describe(patch, patch > 0, source="pp3", radii=(1, 2, 3), grid=(1, 1), size=(48, 48))
    assert list(row.columns) == names
    np.testing.assert_allclose(row.iloc[0].to_numpy(), values)


def test_every_family_is_described_on_the_view_find_regions_keeps(monkeypatch):
    """When the fingers show the hand mirrored, whole-hand and region features are both taken on the
    mirrored view, and the diagnostics say so."""
    import boneage_features.features as features
    from boneage_features.descriptors import lbp
    from boneage_features.preprocess import mirror_hand, preprocess_hand
    from boneage_features.regions import extract_patch

    hand_regions = _hand_regions(found=("pp3",))
    monkeypatch.setattr(features, "find_regions", lambda hand: (mirror_hand(hand), hand_regions))
    image = draw_hand()
    result = FeatureExtractor(families=("lbp",), regions=("pp3",), region_families=("lbp",), cache_dir=False).extract(
        [image])
    shown = preprocess_hand(image)
    view = mirror_hand(shown)
    _, whole = lbp.describe(view.image, view.mask)
    _, as_shown = lbp.describe(shown.image, shown.mask)
    row = result.features.iloc[0]
    np.testing.assert_allclose(row.filter(regex="^whole_lbp_").to_numpy(), whole)
    assert not np.allclose(whole, as_shown)  # the phantom is not left-right symmetric
    patch = extract_patch(view.image, hand_regions.regions["pp3"], shape=(48, 48))
    _, values = lbp.describe(patch, patch > 0, source="pp3", radii=(1, 2, 3), grid=(1, 1), size=(48, 48))
    np.testing.assert_allclose(row.filter(regex="^pp3_lbp_").to_numpy(), values)
    assert result.diagnostics["diagnostics_flipped"].iloc[0] == 1 - shown.diagnostics["diagnostics_flipped"]


def test_region_features_are_cached(tmp_path, monkeypatch):
    import boneage_features.features as features

    monkeypatch.setattr("boneage_features.regions.detect_regions", lambda image, mask: _hand_regions())
    images = _images(2)
    first = FeatureExtractor(regions=REGIONS, cache_dir=tmp_path).extract(images)

    def fail(*args, **kwargs):
        raise AssertionError("recomputed although cached")

    monkeypatch.setattr("boneage_features.regions.detect_regions", fail)
    second = FeatureExtractor(regions=REGIONS, cache_dir=tmp_path).extract(images)
    pd.testing.assert_frame_equal(first.features, second.features)
    pd.testing.assert_frame_equal(first.diagnostics, second.diagnostics)


def test_real_detection_on_phantoms_never_crashes():
    extractor = FeatureExtractor(families=(), regions=REGIONS, cache_dir=False)
    images = _images(3) + [np.zeros((64, 64), np.float32), np.random.default_rng(0).random((200, 150))]
    result = extractor.extract(images, errors="record")
    assert result.errors.empty and result.features.shape == (5, len(extractor.get_feature_names_out()))
    for region in REGIONS:
        found = result.diagnostics[f"diagnostics_{region}_found"].to_numpy() == 1
        assert np.isnan(result.features.filter(regex=f"^{region}_").to_numpy()[~found]).all()

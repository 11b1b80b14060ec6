import numpy as np
import pytest

from boneage_features.descriptors import DESCRIPTORS, hog, intensity, lbp

from .conftest import draw_hand


@pytest.mark.parametrize("family", sorted(DESCRIPTORS))
def test_names_match_values_and_split_in_three(family):
    image = draw_hand()
    names, values = DESCRIPTORS[family].describe(image, image > 0.3, source="whole")
    assert len(names) == len(values) == len(set(names))
    assert values.dtype == np.float32
    assert names == DESCRIPTORS[family].feature_names(source="whole")
    for name in names:
        source, fam, component = name.split("_", 2)
        assert (source, fam) == ("whole", family)
        assert component and "_" not in component and "__" not in name


def test_hog_length_follows_parameters():
    image = draw_hand()
    names, values = hog.describe(image, size=(128, 96), cell=16, orientations=6)
    assert len(values) == hog.n_features(size=(128, 96), cell=16, orientations=6) == 7 * 5 * 4 * 6
    assert np.all(np.isfinite(values))


def test_hog_sees_edges_and_rejects_bad_sizes():
    flat = np.zeros((192, 160), np.float32)
    assert np.allclose(hog.describe(flat)[1], 0)
    assert hog.describe(draw_hand())[1].max() > 0
    with pytest.raises(ValueError, match="cell"):
        hog.describe(flat, size=(100, 160), cell=16)


def test_lbp_histograms_are_frequencies_and_nan_outside_hand():
    image = draw_hand()
    mask = np.zeros(image.shape, bool)
    mask[:, : image.shape[1] // 2] = True  # right half of the grid holds no hand pixel
    names, values = lbp.describe(image, mask, radii=(1,), grid=(2, 2))
    per_cell = values.reshape(4, 10)
    assert np.allclose(per_cell[[0, 2]].sum(axis=1), 1.0)
    assert np.all(np.isnan(per_cell[[1, 3]]))
    with pytest.raises(ValueError, match="radii"):
        lbp.describe(image, radii=(0,))


def test_intensity_statistics_are_correct():
    image = np.zeros((40, 20), np.float32)
    image[:20] = 1.0
    names, values = intensity.describe(image, grid=(2, 1))
    stats = dict(zip(names, values))
    assert stats["whole_intensity_mean"] == pytest.approx(0.5)
    assert stats["whole_intensity_std"] == pytest.approx(0.5)
    assert stats["whole_intensity_aspect"] == pytest.approx(2.0)
    assert stats["whole_intensity_g00mean"] == pytest.approx(1.0)
    assert stats["whole_intensity_g01mean"] == pytest.approx(0.0)


def test_descriptors_reject_non_2d():
    for module in DESCRIPTORS.values():
        with pytest.raises(ValueError, match="2-D"):
            module.describe(np.zeros((4, 4, 3), np.float32))

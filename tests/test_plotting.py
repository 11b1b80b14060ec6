import subprocess
import sys

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

import boneage_features as bf  # noqa: E402
from boneage_features.preprocess import preprocess_hand  # noqa: E402
from boneage_features.regions import REGION_NAMES, HandRegions, Region  # noqa: E402

from .conftest import draw_hand  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _all_found(shape=(384, 320)):
    """A hand-built HandRegions with every region found, laid out down the middle of the view."""
    height, width = shape
    regions = {
        name: Region(name, center=(0.2 * width + 0.04 * width * k, 0.1 * height + 0.06 * height * k),
                     size=(30.0, 24.0), angle=-10.0 + 2 * k, found=True)
        for k, name in enumerate(REGION_NAMES)
    }
    landmarks = {"palm": (160.0, 250.0), "tip1": (280.0, 150.0), "tip3": (170.0, 20.0), "radius": (190.0, 360.0)}
    axes = {"finger3": np.array([[170.0, 20.0], [168.0, 100.0], [165.0, 180.0]])}
    diagnostics = {f"diagnostics_{name}_found": 1.0 for name in REGION_NAMES}
    diagnostics.update(diagnostics_regions_found=14.0, diagnostics_regions_ok=1.0)
    return HandRegions(regions=regions, landmarks=landmarks, axes=axes, diagnostics=diagnostics)


def test_draw_regions_draws_boxes_where_the_regions_are():
    image = np.zeros((384, 320), np.float32)
    hand_regions = _all_found()
    drawing = bf.draw_regions(image, hand_regions, labels=False)
    assert drawing.shape == (384, 320, 3) and drawing.dtype == np.uint8
    for region in hand_regions.regions.values():
        corner = np.round(region.corners()[0]).astype(int)
        x, y = corner
        assert drawing[y - 1 : y + 2, x - 1 : x + 2].any(), region.name  # the box's corner is painted
    centre = np.round(hand_regions.regions["dp1"].center).astype(int)
    assert not drawing[centre[1], centre[0]].any()  # boxes are outlines, not filled
    assert bf.draw_regions(image, hand_regions).sum() > drawing.sum()  # labels add text
    mid_finger = drawing[100, 166:171]
    assert mid_finger.any()  # the finger axis


def test_draw_regions_colours_by_ray():
    two = {name: Region(name) for name in REGION_NAMES}
    two["dp1"] = Region("dp1", center=(60.0, 60.0), size=(30.0, 20.0), angle=0.0, found=True)
    two["mc5"] = Region("mc5", center=(200.0, 200.0), size=(30.0, 20.0), angle=0.0, found=True)
    drawing = bf.draw_regions(np.zeros((300, 300)), HandRegions(regions=two), labels=False)

    def hue(band):  # anti-aliasing dims a line's pixels but keeps their proportions
        pixels = band.reshape(-1, 3).astype(float)
        pixels = pixels[pixels.max(axis=1) > 100]
        return pixels / pixels.max(axis=1, keepdims=True)

    assert np.allclose(hue(drawing[44:47, 55:66]), np.array([255, 140, 0]) / 255, atol=0.03)
    assert np.allclose(hue(drawing[184:187, 195:206]), np.array([60, 220, 60]) / 220, atol=0.03)


def test_draw_regions_lists_what_was_not_found():
    hand = preprocess_hand(draw_hand())
    nothing = HandRegions(regions={name: Region(name) for name in REGION_NAMES})
    plain = (np.clip(hand.image * 255 + 0.5, 0, 255)).astype(np.uint8)
    drawing = bf.draw_regions(hand.image, nothing)
    assert drawing.shape == (*hand.image.shape, 3)
    changed = (drawing != plain[..., None]).any(axis=2)
    assert changed[:40].any() and not changed[80:].any()  # only the "not found" text, at the top
    assert np.array_equal(bf.draw_regions(hand.image, nothing, labels=False)[..., 0], plain)
    with pytest.raises(ValueError, match="2-D"):
        bf.draw_regions(np.zeros((10, 10, 3)), nothing)


def test_plot_regions_on_a_phantom_detects(tmp_path):
    import cv2

    path = tmp_path / "hand.png"
    cv2.imwrite(str(path), (draw_hand() * 255).astype(np.uint8))
    for image in (draw_hand(), str(path)):
        figure = bf.plot_regions(image)
        assert isinstance(figure, matplotlib.figure.Figure)
        title = figure.axes[0].get_title()
        assert title.startswith("regions found ") and f"/{len(REGION_NAMES)}" in title
        figure.savefig(tmp_path / "figure.png")
    assert (tmp_path / "figure.png").stat().st_size > 0


def test_plot_regions_with_given_regions_and_axes():
    hand = preprocess_hand(draw_hand())
    figure = bf.plot_regions(hand.image, regions=_all_found())
    assert figure.axes[0].get_title() == "regions found 14/14, ok"
    shown = figure.axes[0].get_images()[0].get_array()
    assert shown.shape == (384, 320, 3)
    nothing = HandRegions(regions={name: Region(name) for name in REGION_NAMES})
    fig, (left, right) = plt.subplots(1, 2)
    assert bf.plot_regions(hand.image, regions=nothing, ax=right) is fig
    assert right.get_title() == "regions found 0/14, not ok" and not left.get_images()


def test_import_does_not_load_matplotlib():
    code = "import sys, boneage_features; assert 'matplotlib' not in sys.modules, 'matplotlib imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_draw_regions_zoom_scales_the_view_and_the_boxes():
    from boneage_features.plotting import draw_regions
    from boneage_features.regions import detect_regions

    from .phantoms import draw_canonical_hand

    image, mask, _ = draw_canonical_hand()
    found = detect_regions(image, mask)
    plain = draw_regions(image, found, labels=False)
    big = draw_regions(image, found, labels=False, zoom=2.0)
    assert big.shape == (2 * plain.shape[0], 2 * plain.shape[1], 3)
    # the top edge of the middle finger's box is drawn (in colour, not gray) at twice its place
    x, y = found.regions["mp3"].center
    top = int(round(2 * (y - found.regions["mp3"].size[0] / 2)))
    edge = big[top - 2 : top + 3, int(2 * x) - 4 : int(2 * x) + 5].astype(int)
    assert (edge.max(axis=2) - edge.min(axis=2) > 50).any()
    with pytest.raises(ValueError, match="zoom"):
        draw_regions(image, found, zoom=0)

import io
import subprocess
import sys

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.patches import Polygon, Rectangle

import boneage_features as bf
from boneage_features import figures
from boneage_features.evaluate import AGE_BANDS, mae_by_band_and_sex
from boneage_features.regions import REGION_NAMES, HandRegions, Region

from .conftest import draw_hand

matplotlib.use("Agg")


def _contrib(n=12, seed=0):
    """Synthetic, NaN-free contributions with the pipeline's feature names; rows sum to ~ages."""
    rng = np.random.default_rng(seed)
    names = [f"whole_hog_{k:04d}" for k in range(6)] + ["whole_lbp_g03r2u07", "whole_intensity_p50"]
    names += [f"{region}_{family}_x{k}" for region in REGION_NAMES for family in ("hog", "lbp") for k in range(2)]
    names += ["whole_cnn_age", "clin_sex_male"]
    contrib = pd.DataFrame(rng.normal(0, 1, (n, len(names))), columns=names, index=[f"img{i}" for i in range(n)])
    contrib["whole_cnn_age"] *= 15
    contrib["pp3_hog_x0"] += 4  # pp3 always makes the hand look older
    contrib["base_value"] = 120.0
    return contrib


def _regions(found=REGION_NAMES, shape=(384, 320)):
    """HandRegions with the named regions found, boxes spread over the view, the others not found."""
    height, width = shape
    regions = {}
    for k, name in enumerate(REGION_NAMES):
        if name in found:
            centre = (0.2 * width + 0.04 * width * k, 0.1 * height + 0.06 * height * k)
            regions[name] = Region(name, center=centre, size=(30.0, 24.0), angle=-10.0 + 2 * k, found=True)
        else:
            regions[name] = Region(name)
    return HandRegions(regions=regions)


def _renders(figure) -> bytes:
    assert isinstance(figure, Figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    assert buffer.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"
    return buffer.getvalue()


def _bars(ax):
    return [p for p in ax.patches if isinstance(p, Rectangle)]


def test_region_view_sets_the_cnn_apart_like_group_contributions():
    contrib = pd.DataFrame(
        {"whole_hog_0001": [1.0], "whole_cnn_age": [-5.0], "pp3_lbp_r2u07": [2.0], "clin_sex_male": [0.5],
         "base_value": [100.0]},
        index=["a"],
    )
    view = figures.region_view(contrib)
    assert view.loc["a"].to_dict() == {"whole": 1.0, "cnn": -5.0, "pp3": 2.0, "clin": 0.5, "base_value": 100.0}
    assert view.sum(axis=1).iloc[0] == pytest.approx(contrib.sum(axis=1).iloc[0])
    pd.testing.assert_frame_equal(view, bf.group_contributions(contrib, by="region"))


@pytest.mark.parametrize("by, expected", [("region", 17), ("family", 5), (None, 20)])
def test_importance_bars_are_sorted_and_labelled(by, expected):
    contrib = _contrib()
    figure = bf.plot_importance(contrib, by=by)
    _renders(figure)
    ax = figure.axes[0]
    widths = [bar.get_width() for bar in _bars(ax)]
    assert len(widths) == expected  # 14 regions, whole, cnn, clin; hog lbp intensity cnn sex; top 20 features
    assert widths == sorted(widths, reverse=True)
    labels = [tick.get_text() for tick in ax.get_yticklabels()]
    assert labels[0] == {"region": "CNN age", "family": "CNN age", None: "whole_cnn_age"}[by]
    assert "base_value" not in labels and "base value" not in labels
    if by == "region":  # the CNN apart from the whole hand
        assert "whole hand" in labels
        expected_top = bf.global_importance(figures.region_view(contrib)).iloc[0]
    else:
        expected_top = bf.global_importance(contrib, by=by).iloc[0]
    assert widths[0] == pytest.approx(expected_top)
    assert len(_bars(bf.plot_importance(contrib, by="region", top=3).axes[0])) == 3


def test_importance_of_a_single_image_and_bad_arguments():
    figure = bf.plot_importance(_contrib(n=1), by="region")
    _renders(figure)
    assert "1 image)" in figure.axes[0].get_title()
    with pytest.raises(ValueError, match="by must be"):
        bf.plot_importance(_contrib(), by="bone")
    with pytest.raises(ValueError, match="top"):
        bf.plot_importance(_contrib(), top=0)


def test_waterfall_goes_from_base_value_to_prediction():
    row = _contrib().iloc[0]
    figure = bf.plot_waterfall(row, by="region", top=5)
    _renders(figure)
    ax = figure.axes[0]
    labels = [tick.get_text() for tick in ax.get_yticklabels()]
    assert labels[0] == "base value" and labels[-1] == "prediction" and labels[-2] == "12 others"
    assert len(labels) == 1 + 5 + 1 + 1
    bars = _bars(ax)
    grouped = figures.group_row(row, "region").drop("base_value")
    largest = grouped.abs().sort_values(ascending=False).index[:5]
    for bar, name in zip(bars, largest):  # signed steps, older red, younger blue
        assert bar.get_width() == pytest.approx(grouped[name])
        assert bar.get_facecolor()[:3] == pytest.approx(to_rgb(figures.OLDER if grouped[name] > 0 else figures.YOUNGER))
    last = bars[-1]
    assert last.get_x() + last.get_width() == pytest.approx(row.sum())  # the steps end at the prediction
    assert f"{row.sum():.1f} months" in ax.get_title()
    # a one-row DataFrame and already grouped contributions give the same steps
    for same in (_contrib().iloc[[0]], figures.group_row(row, "region")):
        again = bf.plot_waterfall(same, top=5).axes[0]
        assert [b.get_width() for b in _bars(again)] == pytest.approx([b.get_width() for b in bars])


def test_waterfall_with_one_group_and_no_lumping():
    row = pd.Series({"clin_sex_male": -2.0, "base_value": 100.0})
    figure = bf.plot_waterfall(row, by="family")
    _renders(figure)
    labels = [tick.get_text() for tick in figure.axes[0].get_yticklabels()]
    assert labels == ["base value", "sex", "prediction"]
    with pytest.raises(ValueError, match="base_value"):
        bf.plot_waterfall(row.drop("base_value"))


def _painted(ax):
    return [p for p in ax.patches if isinstance(p, Polygon)]


def test_region_heatmap_paints_found_regions_by_contribution():
    image = draw_hand()
    values = figures.group_row(_contrib().iloc[0], "region")
    figure = bf.plot_region_heatmap(image, _regions(), values)
    _renders(figure)
    ax, colour_bar = figure.axes
    assert len(_painted(ax)) == len(REGION_NAMES)
    assert "older" in colour_bar.get_ylabel() and "younger" in colour_bar.get_ylabel()
    low, high = colour_bar.get_ylim()
    painted = values[list(REGION_NAMES)]
    assert low == pytest.approx(-high) and high == pytest.approx(painted.abs().max())  # symmetric, centred at 0
    by_name = dict(zip(REGION_NAMES, _painted(ax)))
    red, green, blue, alpha = by_name["pp3"].get_facecolor()
    assert values["pp3"] > 0 and red > blue and 0 < alpha < 1  # older is red, translucent
    title = ax.get_title()
    assert "14/14" in title and "whole hand" in title and "sex" in title
    assert ax.get_images()[0].get_array().shape == image.shape
    top, bottom = ax.get_ylim()
    assert top > bottom  # image orientation: row 0 at the top


def test_region_heatmap_leaves_missing_regions_unpainted():
    image = draw_hand()
    values = figures.group_row(_contrib().iloc[0], "region")
    some = [name for name in REGION_NAMES if name != "pp3"]
    figure = bf.plot_region_heatmap(image, _regions(found=some), values)
    assert len(_painted(figure.axes[0])) == 13
    assert "13/14" in figure.axes[0].get_title()

    nothing = bf.plot_region_heatmap(image, _regions(found=()), values)
    _renders(nothing)
    assert not _painted(nothing.axes[0]) and "0/14" in nothing.axes[0].get_title()
    low, high = nothing.axes[1].get_ylim()
    assert (low, high) == pytest.approx((-1.0, 1.0))  # no painted value: a unit scale, not a crash

    # a contribution for a region that was not found (NaN features count too) is not painted either;
    # uint8 images, dicts and regions without a contribution work
    plain = bf.plot_region_heatmap((image * 255).astype(np.uint8), _regions(found=("dp1", "mc5")), {"dp1": 0.5})
    _renders(plain)
    assert len(_painted(plain.axes[0])) == 1
    with pytest.raises(ValueError, match="2-D"):
        bf.plot_region_heatmap(np.zeros((4, 4, 3)), _regions(), values)


def test_region_heatmap_groups_a_per_feature_row_itself():
    image = draw_hand()
    row = _contrib().iloc[0]
    grouped = bf.plot_region_heatmap(image, _regions(), figures.group_row(row, "region"))
    ungrouped = bf.plot_region_heatmap(image, _regions(), row)
    colours = [p.get_facecolor() for p in _painted(grouped.axes[0])]
    assert colours and colours == [p.get_facecolor() for p in _painted(ungrouped.axes[0])]
    assert grouped.axes[0].get_title() == ungrouped.axes[0].get_title()


def test_figures_draw_into_given_axes():
    outer = Figure()
    left, right = outer.subplots(1, 2)
    assert bf.plot_importance(_contrib(), ax=left) is outer
    assert bf.plot_waterfall(_contrib().iloc[1], ax=right) is outer
    assert left.get_title().startswith("Importance by region")


def _ages(n=80, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.uniform(0, 228, n)
    return y, y + rng.normal(2, 9, n), rng.integers(0, 2, n).astype(bool)


def test_predicted_vs_reference():
    y, p, _ = _ages()
    figure = bf.plot_predicted_vs_reference(y, p)
    _renders(figure)
    ax = figure.axes[0]
    assert f"MAE {np.mean(np.abs(p - y)):.2f}" in ax.get_title()
    (identity,) = [line for line in ax.get_lines() if line.get_label() == "identity"]
    xs, ys = identity.get_data()
    assert np.allclose(xs, ys)
    _renders(bf.plot_predicted_vs_reference([100.0], [110.0]))  # a single image
    with pytest.raises(ValueError, match="one length"):
        bf.plot_predicted_vs_reference([1, 2], [1])


def test_bland_altman_lines():
    y, p, _ = _ages()
    figure = bf.plot_bland_altman(y, p)
    _renders(figure)
    levels = sorted(line.get_ydata()[0] for line in figure.axes[0].get_lines())
    bias, sd = np.mean(p - y), np.std(p - y, ddof=1)
    assert levels == pytest.approx(sorted([0.0, bias, bias - 1.96 * sd, bias + 1.96 * sd]))
    single = bf.plot_bland_altman([50.0], [47.0])
    _renders(single)
    assert "SD 0.0" in single.axes[0].get_title()


def test_mae_by_band_bars_match_the_table():
    y, p, male = _ages()
    figure = bf.plot_mae_by_band(y, p, male)
    _renders(figure)
    bars = _bars(figure.axes[0])
    table = mae_by_band_and_sex(y, p, male)
    bands = [label for label, _, _ in AGE_BANDS]
    assert [b.get_height() for b in bars[:5]] == pytest.approx(table.loc[bands, ("F", "mae")].to_numpy())
    assert [b.get_height() for b in bars[5:]] == pytest.approx(table.loc[bands, ("M", "mae")].to_numpy())
    assert [t.get_text() for t in figure.axes[0].get_xticklabels()] == bands
    one = bf.plot_mae_by_band([30.0], [40.0], [True])  # one image: one bar of one sex in one band
    _renders(one)
    assert [b.get_height() for b in _bars(one.axes[0])] == pytest.approx([0, 0, 0, 0, 0, 0, 10, 0, 0, 0])


def test_importing_the_figures_does_not_load_matplotlib():
    code = ("import sys, boneage_features, boneage_features.figures, boneage_features.report; "
            "assert 'matplotlib' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)

"""Figures that explain and evaluate bone-age estimates: importances, waterfalls, heatmaps, accuracy.

Each function draws into a given matplotlib Axes or, by default, into a new
:class:`matplotlib.figure.Figure` (no pyplot, so no global state and no GUI backend), and returns the
figure. Contributions are in months, as :meth:`boneage_features.Pipeline.explain` returns them;
grouping by region, family or source is that of :mod:`boneage_features.explain`. Colours follow one
convention throughout: red for "older" (a positive contribution), blue for "younger". matplotlib is
imported inside the functions, so importing this module (and the package) stays light.
"""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd

from .evaluate import AGE_BANDS, mae_by_band_and_sex
from .explain import BASE_VALUE, feature_groups, global_importance, group_contributions
from .regions import REGION_NAMES

__all__ = [
    "group_row",
    "plot_bland_altman",
    "plot_importance",
    "plot_mae_by_band",
    "plot_predicted_vs_reference",
    "plot_region_heatmap",
    "plot_waterfall",
    "region_view",
    "signed_months",
]

#: Colours of a contribution that makes the hand look older and younger (the ends of ``CMAP``).
OLDER, YOUNGER = "#c0392b", "#2e6fb5"
#: Diverging colormap of the region heatmap, red for older.
CMAP = "RdBu_r"
#: Readable names of the groups that are not bone regions.
GROUP_LABELS = {"whole": "whole hand", "clin": "sex", "cnn": "CNN age", BASE_VALUE: "base value"}
_SEX_COLOURS = {"F": "#d1799c", "M": "#4a8c8c"}
_HEATMAP_WIDTH = 3.6  # inches of radiograph
_LABELLED_LEFT = ("dp5", "mp5", "pp5", "mc5", "ulna")


def _axes(ax, figsize: tuple):
    """``(figure, ax)``: the given Axes and its figure, or a new constrained-layout figure."""
    if ax is not None:
        return ax.figure, ax
    from matplotlib.figure import Figure

    figure = Figure(figsize=figsize, layout="constrained")
    return figure, figure.add_subplot()


def signed_months(value: float) -> str:
    """Months to one decimal with their sign (a true minus), ``0.0`` for what rounds to zero."""
    text = f"{value:+.1f}"
    return "0.0" if float(text) == 0 else text.replace("-", "\N{MINUS SIGN}")


def _label(name: str) -> str:
    return GROUP_LABELS.get(name, name)


def _as_row(contrib_row) -> pd.Series:
    """One image's contributions as a Series, from a Series or a one-row DataFrame."""
    if isinstance(contrib_row, pd.DataFrame):
        if len(contrib_row) != 1:
            raise ValueError(f"contrib_row must be one image's contributions; got {len(contrib_row)} rows")
        contrib_row = contrib_row.iloc[0]
    row = pd.Series(contrib_row, dtype=float)
    if BASE_VALUE not in row.index:
        raise ValueError(f"contrib_row lacks the {BASE_VALUE!r} entry of Pipeline.explain; got {list(row.index)[:5]}")
    return row


def _check_by(by, allowed: tuple) -> None:
    if by not in allowed:
        raise ValueError(f"by must be one of {allowed}; got {by!r}")


def region_view(contrib: pd.DataFrame) -> pd.DataFrame:
    """Contributions by bone region (the CNN's features as their own group ``cnn``), then ``base_value``.

    The same as :func:`~boneage_features.group_contributions` with ``by="region"``; each row sums to
    the prediction.
    """
    return group_contributions(contrib, by="region")


def group_row(contrib_row, by: str = "region") -> pd.Series:
    """One image's contributions summed by ``"region"``, ``"family"`` or ``"source"``, base value kept.

    Parameters
    ----------
    contrib_row : Series or one-row DataFrame
        A row of :meth:`~boneage_features.Pipeline.explain` (feature columns and ``base_value``), or
        one already grouped (its names are then kept as they are).
    by : {"region", "family", "source"}, default="region"
        As :func:`~boneage_features.group_contributions`.

    Returns
    -------
    Series
        Months per group and ``base_value``; they sum to the prediction.
    """
    row = _as_row(contrib_row)
    if all("_" not in name for name in row.index.drop(BASE_VALUE)):  # grouped already
        return row
    table = row.to_frame().T
    grouped = group_contributions(table, by=by)
    return grouped.iloc[0].astype(float)


def plot_importance(contrib: pd.DataFrame, *, by: str | None = "region", top: int = 20, ax=None):
    """Global importance: mean absolute contribution per region, family or feature.

    Parameters
    ----------
    contrib : DataFrame
        :meth:`~boneage_features.Pipeline.explain` of some images (one row each, ``base_value`` last).
    by : {"region", "family", "source"} or None, default="region"
        Group the features before averaging (:func:`~boneage_features.group_contributions`); None
        ranks single features.
    top : int, default=20
        Bars shown, largest first; the others are left out (the title says how many there were).
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    _check_by(by, ("region", "family", "source", None))
    if top < 1:
        raise ValueError(f"top must be at least 1; got {top!r}")
    importance = global_importance(contrib, by=by)
    shown = importance.iloc[:top]
    figure, ax = _axes(ax, (5.2, 1.1 + 0.2 * max(len(shown), 3)))
    positions = np.arange(len(shown))
    ax.barh(positions, shown.to_numpy(), color="#5b6d7f", height=0.7)
    ax.set_yticks(positions, [_label(name) for name in shown.index], fontsize=8 if by is None else 9)
    ax.invert_yaxis()
    ax.set_xlabel("mean |contribution| (months)")
    what = {"region": "region", "family": "descriptor family", "source": "source", None: "feature"}[by]
    more = f", top {len(shown)} of {len(importance)}" if len(importance) > len(shown) else ""
    ax.set_title(f"Importance by {what} ({len(contrib)} image{'s' if len(contrib) != 1 else ''}{more})")
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    return figure


def plot_waterfall(contrib_row, *, by: str = "region", top: int = 8, ax=None):
    """One image's estimate as steps: from the base value, the largest groups, the rest, the prediction.

    Parameters
    ----------
    contrib_row : Series or one-row DataFrame
        One row of :meth:`~boneage_features.Pipeline.explain`.
    by : {"region", "family", "source"}, default="region"
        As for :func:`group_row`.
    top : int, default=8
        Groups shown as their own step, largest |months| first; the others are lumped into one.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.figure.Figure
        Horizontal steps, red where the group makes the hand look older, blue younger, each labelled
        with its signed months.
    """
    _check_by(by, ("region", "family", "source"))
    if top < 1:
        raise ValueError(f"top must be at least 1; got {top!r}")
    grouped = group_row(contrib_row, by)
    base = float(grouped[BASE_VALUE])
    parts = grouped.drop(BASE_VALUE)
    parts = parts.reindex(parts.abs().sort_values(ascending=False, kind="stable").index)
    steps = parts.iloc[:top]
    if len(parts) > top:
        steps = pd.concat([steps, pd.Series({f"{len(parts) - top} others": parts.iloc[top:].sum()})])
    prediction = base + float(parts.sum())
    labels = ["base value", *(_label(name) for name in steps.index), "prediction"]
    figure, ax = _axes(ax, (5.5, 1.3 + 0.3 * len(labels)))

    starts = base + np.concatenate([[0.0], np.cumsum(steps.to_numpy())[:-1]])
    rows = np.arange(1, len(steps) + 1)
    colours = [OLDER if value > 0 else YOUNGER for value in steps]
    ax.barh(rows, steps.to_numpy(), left=starts, color=colours, height=0.6)
    ends = starts + steps.to_numpy()
    reached = np.concatenate([[base, prediction], starts, ends])
    span = max(np.ptp(reached), 1.0)
    for row, end, value in zip(rows, ends, steps.to_numpy()):
        # past the bar's far end; inside it, in white, when the bar is long enough to reach the frame
        inside = abs(value) > 0.3 * span
        pad = 0.015 * span * (1 if value >= 0 else -1) * (-1 if inside else 1)
        ax.text(end + pad, row, signed_months(value), va="center", fontsize=8, color="white" if inside else "black",
                ha="left" if (value >= 0) != inside else "right")
    for row, end in zip(rows[:-1], ends[:-1]):  # connectors from one step to the next
        ax.plot([end, end], [row + 0.3, row + 0.7], color="0.5", lw=0.8)
    last = len(labels) - 1
    for row, value in ((0, base), (last, prediction)):
        ax.plot([value], [row], marker="D", color="0.15", markersize=6)
        ax.annotate(f"{value:.1f}", (value, row), xytext=(7, 0), textcoords="offset points", va="center", fontsize=8)
    if len(steps):
        ax.plot([base, base], [0.15, 0.7], color="0.5", lw=0.8)
        ax.plot([prediction, prediction], [rows[-1] + 0.3, last - 0.15], color="0.5", lw=0.8)
    ax.set_yticks(np.arange(len(labels)), labels, fontsize=9)
    ax.set_ylim(last + 0.6, -0.8)
    ax.set_xlim(reached.min() - 0.15 * span, reached.max() + 0.15 * span)
    ax.set_xlabel("bone age (months)")
    ax.set_title(f"{prediction:.1f} months = base {base:.1f} {signed_months(prediction - base)}")
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    return figure


def _symmetric_limit(values) -> float:
    """Half-range of the colour scale: the largest |value|, 1 month when there is none."""
    values = np.abs(np.asarray(list(values), dtype=float))
    values = values[np.isfinite(values)]
    return float(values.max()) if len(values) and values.max() > 0 else 1.0


def plot_region_heatmap(image: np.ndarray, regions, region_contrib, *, labels: bool = True, ax=None):
    """The canonical radiograph with each found region filled by its contribution in months.

    Parameters
    ----------
    image : (H, W) ndarray
        Canonical view (``preprocess_hand(...).image``, float in [0, 1], or uint8).
    regions : HandRegions
        What :func:`~boneage_features.regions.detect_regions` found in ``image``.
    region_contrib : Series or dict of str to float
        Months per region, as :func:`group_row` by region gives them (one row of
        :meth:`~boneage_features.Pipeline.explain`, per feature, is grouped here). Bone regions
        (:data:`~boneage_features.regions.REGION_NAMES`) are painted where they were found; the
        others (``whole``, ``cnn``, ``clin``, ...) are written below the title; ``base_value`` is left
        out.
    labels : bool, default=True
        Write each painted region's name and months beside its box.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.figure.Figure
        Diverging colours centred at 0 with symmetric limits (red: the region makes the hand look
        older); regions not found are not painted, and the title says how many were.
    """
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.patches import Polygon
    import matplotlib.patheffects as effects

    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"image must be a 2-D canonical view; got shape {image.shape}")
    values = pd.Series(dict(region_contrib), dtype=float)
    if any("_" in name for name in values.index.drop(BASE_VALUE, errors="ignore")):  # per feature: group
        values = group_contributions(values.to_frame().T, by="region").iloc[0]
    values = values.drop(BASE_VALUE, errors="ignore")
    painted = {
        name: float(values[name])
        for name, region in regions.regions.items()
        if name in values.index and region.found and np.isfinite(region.corners()).all() and np.isfinite(values[name])
    }
    limit = _symmetric_limit(painted.values())
    norm, cmap = Normalize(-limit, limit), _colormap()
    height, width = image.shape
    # the figure's shape follows the image's, so that the colour bar is as tall as the radiograph
    figure, ax = _axes(ax, (_HEATMAP_WIDTH + 1.2, _HEATMAP_WIDTH * height / width + 0.65))
    ax.imshow(image, cmap="gray", vmin=0, vmax=255 if image.dtype == np.uint8 else 1, interpolation="bilinear")
    outline = [effects.withStroke(linewidth=2.2, foreground="black")]
    for name, value in painted.items():
        corners = regions.regions[name].corners()
        colour = cmap(norm(value))
        ax.add_patch(Polygon(corners, closed=True, facecolor=(*colour[:3], 0.6), edgecolor=colour, lw=1.2))
        if labels:
            x, y, align = _label_place(name, corners, width)
            ax.text(x, y, f"{name} {signed_months(value)}", fontsize=6, color="white", ha=align, va="center",
                    path_effects=outline)
    ax.set_xlim(-0.5, width - 0.5)
    ax.set_ylim(height - 0.5, -0.5)  # image orientation: fingers up, as the canonical view is
    ax.set_axis_off()
    bar = figure.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, shrink=0.8, pad=0.02)
    bar.set_label("months older (+) / younger (\N{MINUS SIGN})")
    n_regions = sum(1 for name in REGION_NAMES if name in regions.regions)
    others = [f"{_label(name)} {signed_months(value)}" for name, value in values.items()
              if name not in REGION_NAMES and np.isfinite(value)]
    title = f"regions painted {len(painted)}/{n_regions or len(REGION_NAMES)}"
    if others:
        title += "\n" + textwrap.fill(", ".join(others) + " months", width=48)
    ax.set_title(title, fontsize=9)
    return figure


def _label_place(name: str, corners: np.ndarray, width: int) -> tuple:
    """``(x, y, ha)`` of a region's label: beside its box, on the side facing away from the hand's middle.

    In the canonical view the thumb is on the right, so the little finger's bones and the ulna are
    labelled on their left, where their neighbours' labels would otherwise cover them (ulna and radius).
    """
    y = corners[:, 1].mean()
    left, right = corners[:, 0].min() - 2, corners[:, 0].max() + 2
    if name in _LABELLED_LEFT and left > 40 or right > width - 40:
        return max(left, 2), y, "right"
    return right, y, "left"


def _colormap():
    from matplotlib import colormaps

    return colormaps[CMAP]


def _pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true, dtype=float)
    y_pred = np.asarray(y_pred, dtype=float)
    if y_true.shape != y_pred.shape or y_true.ndim != 1 or len(y_true) == 0:
        raise ValueError(
            f"y_true and y_pred must be 1-D, non-empty, of one length; got {y_true.shape} and {y_pred.shape}"
        )
    return y_true, y_pred


def plot_predicted_vs_reference(y_true, y_pred, *, ax=None):
    """Predicted against reference bone age with the identity line; the MAE in the title.

    Parameters
    ----------
    y_true, y_pred : (n,) array-like of months
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    y_true, y_pred = _pair(y_true, y_pred)
    figure, ax = _axes(ax, (4.5, 4.5))
    low = min(y_true.min(), y_pred.min(), 0.0)
    high = max(y_true.max(), y_pred.max()) * 1.05 + 1
    ax.plot([low, high], [low, high], color="0.4", lw=1, ls="--", label="identity")
    ax.scatter(y_true, y_pred, s=14, alpha=0.7, color="#34495e", edgecolor="none")
    ax.set_xlim(low, high)
    ax.set_ylim(low, high)
    ax.set_aspect("equal")
    ax.set_xlabel("reference bone age (months)")
    ax.set_ylabel("predicted bone age (months)")
    ax.set_title(f"MAE {np.mean(np.abs(y_pred - y_true)):.2f} months (n={len(y_true)})")
    ax.legend(loc="upper left", frameon=False)
    ax.grid(alpha=0.3)
    return figure


def plot_bland_altman(y_true, y_pred, *, ax=None):
    """Bland-Altman plot: difference (predicted - reference) against the mean of the two.

    Parameters
    ----------
    y_true, y_pred : (n,) array-like of months
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.figure.Figure
        Lines at the mean bias and at bias +/- 1.96 standard deviations (limits of agreement; the
        standard deviation is 0 for a single image).
    """
    y_true, y_pred = _pair(y_true, y_pred)
    mean, difference = (y_true + y_pred) / 2, y_pred - y_true
    bias = float(difference.mean())
    sd = float(difference.std(ddof=1)) if len(difference) > 1 else 0.0
    figure, ax = _axes(ax, (5.5, 4.0))
    ax.scatter(mean, difference, s=14, alpha=0.7, color="#34495e", edgecolor="none")
    ax.axhline(0, color="0.7", lw=0.8)
    lines = (
        (bias, "-", f"bias {signed_months(bias)}"),
        (bias + 1.96 * sd, "--", f"+1.96 SD {signed_months(bias + 1.96 * sd)}"),
        (bias - 1.96 * sd, "--", f"\N{MINUS SIGN}1.96 SD {signed_months(bias - 1.96 * sd)}"),
    )
    for level, style, text in lines:
        ax.axhline(level, color=OLDER if style == "-" else "0.3", ls=style, lw=1)
        ax.annotate(text, (1.0, level), xycoords=("axes fraction", "data"), xytext=(-3, 2),
                    textcoords="offset points", ha="right", va="bottom", fontsize=8)
    reach = max(np.abs(difference).max(), abs(bias) + 1.96 * sd) * 1.2 + 1
    ax.set_ylim(-reach, reach)
    ax.set_xlabel("mean of reference and predicted (months)")
    ax.set_ylabel("predicted \N{MINUS SIGN} reference (months)")
    ax.set_title(f"Bland\N{EN DASH}Altman (n={len(y_true)}, SD {sd:.1f} months)")
    ax.grid(alpha=0.3)
    return figure


def plot_mae_by_band(y_true, y_pred, male, *, ax=None):
    """MAE by age band, girls and boys side by side, with the number of images on each bar.

    Parameters
    ----------
    y_true, y_pred : (n,) array-like of months
    male : (n,) array-like of bool or 0/1
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.figure.Figure
        Bands are those of :data:`~boneage_features.evaluate.AGE_BANDS` (by the reference age); a
        band without images of a sex has no bar.
    """
    table = mae_by_band_and_sex(y_true, y_pred, male)
    figure, ax = _axes(ax, (6.0, 3.8))
    bands = [label for label, _, _ in AGE_BANDS]
    positions = np.arange(len(bands))
    width = 0.38
    top = 0.0
    for offset, sex, name in ((-width / 2, "F", "girls"), (width / 2, "M", "boys")):
        mae = table.loc[bands, (sex, "mae")].to_numpy(float)
        count = table.loc[bands, (sex, "n")].to_numpy(int)
        ax.bar(positions + offset, np.nan_to_num(mae), width, color=_SEX_COLOURS[sex], label=name)
        for x, value, n in zip(positions + offset, mae, count):
            if n:
                ax.text(x, value, f"n={n}", ha="center", va="bottom", fontsize=7)
        top = max(top, np.nanmax(mae, initial=0.0))
    ax.set_xticks(positions, bands)
    ax.set_ylim(0, top * 1.18 + 0.5)
    ax.set_xlabel("age band (reference)")
    ax.set_ylabel("MAE (months)")
    ax.set_title(f"MAE by age band and sex (overall {table.loc['all', ('all', 'mae')]:.2f} months)")
    ax.legend(frameon=False)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    return figure

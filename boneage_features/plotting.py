"""Figures of what the pipeline sees: the canonical hand with its landmarks and regions of interest.

:func:`draw_regions` paints the landmarks, finger axes and region boxes of
:func:`boneage_features.regions.detect_regions` onto the canonical view with OpenCV (an RGB array, as the
``regions`` command writes for every image); :func:`plot_regions` reads, preprocesses and detects one
radiograph and shows that drawing in a matplotlib figure. matplotlib is imported only inside
:func:`plot_regions`, so importing this module (and the package) stays light; nothing here calls
``pyplot.show``.
"""

from __future__ import annotations

import cv2
import numpy as np

from .io import read_image
from .preprocess import preprocess_hand
from .regions import LANDMARK_NAMES, REGION_NAMES, HandRegions, find_regions

__all__ = ["draw_regions", "plot_regions"]

# One colour per ray (RGB): the thumb, the middle finger, the little finger, the wrist and carpus;
# fingers 2 and 4, the valleys and the palm, which no region belongs to, in gray.
_RAY_COLOURS = {
    "thumb": (255, 140, 0),
    "finger3": (0, 200, 255),
    "finger5": (60, 220, 60),
    "wrist": (255, 60, 200),
}
_OTHER_COLOUR = (170, 170, 170)
_RAY_OF_DIGIT = {"1": "thumb", "3": "finger3", "5": "finger5"}
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _colour(name: str) -> tuple:
    """Colour of a region, landmark or axis name (``pp3``, ``tip1``, ``finger5``, ``radius``)."""
    if name in ("radius", "ulna", "carpal"):
        return _RAY_COLOURS["wrist"]
    if name.startswith("valley") or name == "palm" or not name[-1:].isdigit():
        return _OTHER_COLOUR
    ray = _RAY_OF_DIGIT.get(name[-1])
    return _RAY_COLOURS[ray] if ray else _OTHER_COLOUR


def _text(canvas: np.ndarray, text: str, origin: tuple, colour: tuple, scale: float) -> None:
    """Text with a dark outline, legible on bone and on background alike."""
    cv2.putText(canvas, text, origin, _FONT, scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(canvas, text, origin, _FONT, scale, colour, 1, cv2.LINE_AA)


def _wrap(words: list, width_px: int, scale: float) -> list:
    lines, line = [], ""
    for word in words:
        candidate = f"{line} {word}" if line else word
        if line and cv2.getTextSize(candidate, _FONT, scale, 1)[0][0] > width_px:
            lines.append(line)
            candidate = word
        line = candidate
    return lines + [line] if line else lines


def _to_rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"image must be a 2-D canonical view; got shape {image.shape}")
    if image.dtype == np.uint8:
        gray = image
    else:
        gray = np.clip(np.nan_to_num(image.astype(np.float32)) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB)


def _zoomed(regions: HandRegions, zoom: float) -> HandRegions:
    """The same regions in a view enlarged ``zoom`` times."""
    from dataclasses import replace

    return HandRegions(
        regions={
            name: replace(r, center=(r.center[0] * zoom, r.center[1] * zoom), size=(r.size[0] * zoom, r.size[1] * zoom))
            for name, r in regions.regions.items()
        },
        landmarks={name: (x * zoom, y * zoom) for name, (x, y) in regions.landmarks.items()},
        axes={name: np.asarray(a, float) * zoom for name, a in regions.axes.items()},
        diagnostics=dict(regions.diagnostics),
    )


def draw_regions(image: np.ndarray, regions: HandRegions, *, labels: bool = True, zoom: float = 1.0) -> np.ndarray:
    """Draw landmarks, finger axes and region boxes on the canonical view.

    Parameters
    ----------
    image : (H, W) ndarray
        The canonical view the regions were found in: float in [0, 1] (as
        ``PreprocessedHand.image``) or uint8.
    regions : HandRegions
        What :func:`~boneage_features.regions.detect_regions` returned for ``image``.
    labels : bool, default=True
        Write each found region's name beside its box and, at the top left, the regions not found.
    zoom : float, default=1.0
        Enlarge the view (bicubic) before drawing, so that joints can be judged by eye.

    Returns
    -------
    (H * zoom, W * zoom, 3) ndarray of uint8
        RGB. Colours by ray: thumb orange, middle finger cyan, little finger green, radius, ulna and
        carpus magenta, everything else gray. Landmarks are dots, finger axes thin lines, regions
        their rotated boxes.
    """
    if not zoom > 0:
        raise ValueError(f"zoom must be positive; got {zoom!r}")
    if zoom != 1.0:
        image = np.asarray(image)
        size = (int(round(image.shape[1] * zoom)), int(round(image.shape[0] * zoom)))
        image = cv2.resize(image.astype(np.float32) / (255.0 if image.dtype == np.uint8 else 1.0), size,
                           interpolation=cv2.INTER_CUBIC)
        regions = _zoomed(regions, zoom)
    canvas = _to_rgb(image)
    height, width = canvas.shape[:2]
    scale = max(0.3, min(height, width) / 900)
    for name, points in regions.axes.items():
        points = np.asarray(points, float).reshape(-1, 2)
        points = points[np.isfinite(points).all(axis=1)]
        if len(points) >= 2:
            cv2.polylines(canvas, [np.round(points).astype(np.int32)], False, _colour(name), 1, cv2.LINE_AA)
    for name, region in regions.regions.items():
        if not region.found:
            continue
        corners = region.corners()
        if not np.isfinite(corners).all():
            continue
        cv2.polylines(canvas, [np.round(corners).astype(np.int32)], True, _colour(name), 1, cv2.LINE_AA)
        if labels:
            x, y = corners[:, 0].max() + 2, corners[:, 1].min() + 8
            _text(canvas, name, (int(min(x, width - 30)), int(max(y, 8))), _colour(name), scale)
    for name, point in regions.landmarks.items():
        x, y = (float(v) for v in point)
        if np.isfinite(x) and np.isfinite(y):
            cv2.circle(canvas, (int(round(x)), int(round(y))), 2, _colour(name), -1, cv2.LINE_AA)
    missing = [name for name in REGION_NAMES if not regions.regions.get(name) or not regions.regions[name].found]
    if labels and missing:
        lines = _wrap(["not found:", *missing], width - 8, scale)
        step = cv2.getTextSize("Ag", _FONT, scale, 1)[0][1] + 5
        for k, line in enumerate(lines):
            _text(canvas, line, (4, 4 + step * (k + 1)), (255, 255, 255), scale)
    return canvas


def plot_regions(image, *, regions: HandRegions | None = None, ax=None, size: tuple = (384, 320)):
    """Show one radiograph's landmarks and regions of interest.

    Parameters
    ----------
    image : str, os.PathLike or (M, N) ndarray
        A radiograph (read with :func:`~boneage_features.io.read_image`, preprocessed with
        :func:`~boneage_features.preprocess.preprocess_hand` and searched with
        :func:`~boneage_features.regions.detect_regions`); with ``regions`` given, the canonical view
        they were found in, shown as it is.
    regions : HandRegions, optional
        Regions to draw instead of detecting them.
    ax : matplotlib Axes, optional
        Where to draw; a new figure when None.
    size : (int, int), default=(384, 320)
        (height, width) of the canonical view (as ``FeatureExtractor(size=...)``).

    Returns
    -------
    matplotlib.figure.Figure
        Titled with the number of regions found and whether the geometry checks passed.
    """
    picture = read_image(image)
    if regions is None:
        hand, regions = find_regions(preprocess_hand(picture, size=tuple(size)))
        picture = hand.image
    drawing = draw_regions(picture, regions)
    if ax is None:
        import matplotlib.pyplot as plt

        figure, ax = plt.subplots(figsize=(4.0, 4.0 * drawing.shape[0] / drawing.shape[1]), layout="constrained")
    else:
        figure = ax.figure
    n_found = sum(region.found for region in regions.regions.values())
    ax.imshow(drawing)
    ax.set_axis_off()
    ax.set_title(f"regions found {n_found}/{len(REGION_NAMES)}, {'ok' if regions.ok else 'not ok'}")
    return figure

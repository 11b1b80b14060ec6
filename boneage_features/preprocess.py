"""Preprocessing of hand radiographs: intensity normalisation, hand segmentation, crop, orientation.

Every function is pure (image first, options keyword-only) and works on a 2-D float image in
[0, 1] as returned by :func:`boneage_features.io.read_image`. :func:`preprocess_hand` chains them
into the canonical view that the region and descriptor modules expect: the hand cropped to its
mask, fingers up, wrist at the bottom, thumb on the image's right (a left hand seen PA), fitted
into a fixed-size canvas with the background set to 0 and local contrast equalised (CLAHE).

All geometric decisions (threshold, components, crop box, orientation) are taken on a copy of the
image downscaled to a fixed working size (long side :data:`WORK_SIDE`), so they cost the same and
come out the same whatever the input resolution; only the final crop is resampled from the
full-resolution input, straight to the output size. Orientation is read from the mask's shape
by two small linear models fitted on RSNA training masks (see :func:`orient_hand`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import cv2
import numpy as np

__all__ = [
    "PreprocessedHand",
    "WORK_SIDE",
    "clahe",
    "crop_to_mask",
    "mirror_hand",
    "normalize_intensity",
    "orient_hand",
    "preprocess_hand",
    "resize_canonical",
    "segment_hand",
]

logger = logging.getLogger(__name__)

#: Long side (pixels) of the copy on which segmentation and orientation are decided. The shared
#: training JPEGs have exactly this long side, so they are analysed at their native resolution.
WORK_SIDE = 384

# A thresholded component this close to its convex hull (solidity) and to its minimum-area
# rectangle is a collimation field or a film plate, not a hand: segmentation is repeated inside it.
_PLATE_SOLIDITY = 0.93
_PLATE_RECT_FILL = 0.90
_PLATE_MIN_FRAC = 0.12
_MAX_PLATE_LEVELS = 3
# Plausible hand area, as a fraction of the image (infants' hands can be small in the frame).
_MIN_HAND_FRAC = 0.01
_MAX_HAND_FRAC = 0.97
# Perimeter / sqrt(area) of the filled mask; a hand with spread fingers is about 8-14, a ragged
# blob thresholded out of noise is far above.
_MAX_ROUGHNESS = 30.0
# Orientation models (see orient_hand): occupancy grid size, decision margins and weights. The
# weights are L2-regularised logistic regressions (no intercept) fitted on the segmentation masks
# of 1,400 random RSNA training images: _UP_WEIGHTS (row 0 = top of the box) separates the masks
# as given (and mirrored) from their 90/180/270-degree turns, with log(height / width) of the box
# as one more feature; _THUMB_WEIGHTS scores the left half of (grid - mirrored grid), so the
# score changes sign under mirroring, and separates the masks from their mirror images.
_GRID = 16
# A quarter turn is applied when it scores this much above the given orientation and at least
# _ROTATE_MIN_SCORE (canonical masks score 5.5 in the median, 2.7 at the 5th percentile); on
# 900 masks these keep 96% of turned hands turned back while leaving plate-shaped
# mis-segmentations alone.
_ROTATE_MARGIN = 4.0
_ROTATE_MIN_SCORE = 2.0
_FLIP_MARGIN = 1.0
_UP_WEIGHTS = np.array(
    [
        [-0.44, -0.17, -0.17, -0.50, -0.50, -0.34, -0.04, 0.14, 0.14, -0.04, -0.34, -0.49, -0.50, -0.17, -0.16, -0.44],
        [-0.23, -0.18, -0.10, -0.10, 0.07, -0.05, -0.04, 0.08, 0.08, -0.04, -0.05, 0.07, -0.10, -0.09, -0.16, -0.22],
        [-0.43, -0.23, 0.05, 0.18, 0.35, 0.24, -0.07, -0.24, -0.25, -0.08, 0.24, 0.35, 0.18, 0.05, -0.22, -0.44],
        [-0.13, -0.12, -0.29, 0.21, -0.00, 0.42, 0.24, -0.16, -0.16, 0.24, 0.42, -0.00, 0.21, -0.28, -0.11, -0.14],
        [0.05, 0.53, -0.14, -0.05, 0.05, -0.08, 0.03, -0.16, -0.16, 0.04, -0.08, 0.05, -0.06, -0.14, 0.53, 0.05],
        [0.09, 0.83, 0.09, -0.26, -0.07, -0.06, -0.02, -0.08, -0.08, -0.02, -0.06, -0.07, -0.28, 0.09, 0.83, 0.09],
        [-0.25, 0.60, 0.23, -0.38, -0.39, -0.23, -0.11, -0.08, -0.09, -0.12, -0.23, -0.39, -0.39, 0.22, 0.59, -0.25],
        [-0.42, 0.24, 0.13, -0.37, -0.30, -0.32, -0.03, -0.12, -0.13, -0.03, -0.32, -0.30, -0.36, 0.13, 0.20, -0.33],
        [-0.43, -0.19, -0.02, -0.01, -0.09, 0.02, -0.05, -0.02, -0.02, -0.06, 0.02, -0.09, -0.01, -0.03, -0.23, -0.34],
        [-0.44, -0.51, -0.35, -0.17, 0.02, 0.03, 0.02, 0.03, 0.04, 0.03, 0.02, -0.01, -0.09, -0.38, -0.52, -0.43],
        [-0.32, -0.89, -0.48, -0.16, 0.26, -0.00, -0.04, 0.17, 0.17, -0.03, 0.00, 0.24, -0.07, -0.52, -0.89, -0.32],
        [-0.10, -0.62, -0.16, 0.07, 0.04, 0.20, 0.29, 0.26, 0.27, 0.29, 0.22, -0.02, 0.11, -0.18, -0.62, -0.09],
        [-0.03, 0.09, 0.17, -0.10, 0.11, 0.13, 0.10, -0.06, -0.05, 0.09, 0.15, 0.01, -0.09, 0.16, 0.10, -0.01],
        [0.08, 0.32, 0.29, 0.21, 0.07, 0.00, -0.02, -0.14, -0.14, -0.02, 0.02, 0.02, 0.24, 0.30, 0.34, 0.07],
        [0.12, 0.28, 0.37, 0.31, 0.02, 0.02, 0.06, 0.22, 0.22, 0.06, 0.02, 0.05, 0.33, 0.38, 0.31, 0.00],
        [0.26, 0.33, 0.48, 0.62, 0.67, 0.69, 0.58, 0.47, 0.47, 0.58, 0.70, 0.69, 0.63, 0.49, 0.35, 0.14],
    ],
    np.float32,
)
_UP_ASPECT_WEIGHT = 1.25
_THUMB_WEIGHTS = np.array(
    [
        [0.15, -0.13, -0.53, 0.32, -0.57, -0.11, 0.07, -0.12],
        [0.44, 0.62, 0.41, -0.10, 0.82, 0.34, 0.61, 0.28],
        [-0.03, 0.31, 0.76, 0.06, 0.00, -0.01, -0.32, 0.15],
        [-0.03, -0.15, 0.40, 0.29, 0.46, -0.03, 0.01, 0.24],
        [0.50, -0.41, 0.07, 0.48, 0.95, -0.20, 0.10, -0.34],
        [-0.48, -0.18, -0.03, 0.25, 0.49, 0.39, -0.15, 0.02],
        [-0.12, -0.09, 0.36, 0.03, -0.56, 0.11, -0.29, -0.16],
        [-0.43, -0.82, 0.17, 0.13, -0.93, -0.04, -0.31, -0.18],
        [-0.63, -0.23, -0.54, -0.59, -0.81, -0.25, -0.11, -0.27],
        [-0.50, -0.49, -0.43, -0.57, -0.40, -0.66, 0.17, 0.02],
        [-0.31, 0.16, 0.35, -0.17, 0.48, -0.20, 0.25, 0.44],
        [0.05, 0.10, 0.37, -0.23, 0.11, -0.07, 0.03, -0.04],
        [0.28, -0.07, 0.35, -0.07, -0.03, -0.16, 0.24, 0.05],
        [0.05, 0.18, -0.29, -0.54, 0.39, 0.47, 0.13, 0.14],
        [0.18, 0.53, -0.14, 0.19, 0.09, 0.56, 0.36, -0.24],
        [0.72, 0.21, 0.16, 0.58, 0.31, 0.56, -0.21, 0.36],
    ],
    np.float32,
)
# A hand's palm has at least this inscribed radius, as a fraction of the image's long side (an
# infant's is about 0.025); lines and film edges are thinner.
_MIN_PALM_RADIUS = 0.015
# When fewer pixels than this fraction of the searched region are above Otsu's threshold, they
# are markers or film edges: they are set aside and the threshold recomputed (at most twice).
_MIN_BRIGHT_CLASS = 0.03
_MAX_MARKER_PASSES = 2
# A plate-like component whose holes exceed this fraction of its area is a bright frame around
# a darker field.
_FRAME_HOLE_FRAC = 0.25
# Mean hand - mean background, in pooled standard deviations of the unsmoothed image: real
# radiographs are above 0.7, a mask thresholded out of noise below 0.25.
_MIN_SEPARATION = 0.4
# Components smaller than this fraction of the image are noise and not counted as removed.
_MIN_COMPONENT_FRAC = 5e-4
# Soft tissue found by a second, lower threshold may grow the bone-level mask at most this much;
# more means the lower threshold cut into the background.
_MAX_SOFT_TISSUE_GROWTH = 2.2
# Soft tissue is searched within this fraction of the palm's inscribed radius around the bones.
_SOFT_TISSUE_BAND = 0.18
# Opening radius, as a fraction of the palm's inscribed radius, that removes lines attached to
# the hand (film edges, rulers) but not fingers.
_THIN_OPEN_FRACTION = 0.12
# Faint soft tissue (thin fingertips, whole fingers darker than the soft-tissue threshold): pixels
# brighter than the local background by _FAINT_SIGMAS of its local spread and by at least
# _FAINT_FLOOR of the hand's contrast over the background, within a reach of the thresholded hand,
# connected to it. The background is sampled between _FAINT_RING[0] and _FAINT_RING[1] palm radii
# from the hand and averaged over windows 2 x _FAINT_WINDOW radii wide; the growth is repeated (the
# background re-sampled around the grown mask) up to _FAINT_PASSES times; background pixels more
# than _FAINT_BACKGROUND_CAP of the hand's contrast above the ring's median (markers, film edges,
# the unmasked rest of a finger) are left out of its local mean. Seams thinner than _FAINT_SEAM palm
# radii are opened away before the added pieces are judged: one that touches the image's edge
# (collimator or film edges beside the forearm) or exceeds a share of the hand's area is a leak and
# is dropped with what it cut off. Two growths are united: a bold one (reach _FAINT_REACH[0] palm
# radii, pieces up to _FAINT_MAX_PIECE[0] of the hand: whole fingers) and a cautious one (the second
# values; its leak removal cuts less around a leak); the bold one is dropped where it fills a plate.
_FAINT_SIGMAS = 3.0
_FAINT_FLOOR = 0.08
_FAINT_REACH = (1.5, 1.0)
_FAINT_RING = (0.15, 1.0)
_FAINT_WINDOW = 0.8
_FAINT_PASSES = 3
_FAINT_MAX_PIECE = (0.5, 0.15)
_FAINT_REACH_EDGE = 0.1
_FAINT_BACKGROUND_CAP = 0.1
_FAINT_SEAM = 0.04
# Steps beyond the bold growth (each reaching _FAINT_STEP_REACH palm radii further), taken while a
# step is still held back at its reach; a step keeps only pieces that survive an opening by a disk of
# _FAINT_STEP_STRIP palm radii (fingertips do; strips along a film's edge or frame do not), and only
# finger-like ones: at most _FAINT_STEP_WIDTH palm radii wide (inscribed radius), and not running
# along a side within _FAINT_STEP_BORDER of the image's long side for over _FAINT_STEP_ALONG radii.
_FAINT_STEPS = 3
_FAINT_STEP_REACH = 1.0
_FAINT_STEP_STRIP = 0.1
_FAINT_STEP_WIDTH = 0.5
_FAINT_STEP_BORDER = 0.04
_FAINT_STEP_ALONG = 1.0
# Film edges and a cassette's frame along the image's sides: runs of mask that start and end within
# _STRIP_BAND of the side (measured across it) and together run along at least _STRIP_SPAN of it.
_STRIP_BAND = 0.10
_STRIP_SPAN = 0.35
# Where the largest thresholded component has such strips, the largest one without them replaces it
# when the two barely overlap (the strips outweighed the hand) and it covers this much of the image
# (not a side marker).
_STRIP_RIVAL_FRAC = 0.04


def _check_image(image: np.ndarray, name: str = "image") -> np.ndarray:
    """Return ``image`` as a float32 2-D array or raise a ValueError saying what was wrong."""
    arr = np.asarray(image)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (H, W) array; got shape {arr.shape!r}")
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty; got shape {arr.shape!r}")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ValueError(f"{name} must be numeric; got dtype {arr.dtype}")
    arr = arr.astype(np.float32, copy=False)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must contain only finite values (no NaN or inf)")
    return arr


def _check_mask(mask: np.ndarray, shape: tuple[int, int], name: str = "mask") -> np.ndarray:
    arr = np.asarray(mask)
    if arr.shape != shape:
        raise ValueError(f"{name} must have the image's shape {shape!r}; got {arr.shape!r}")
    return arr.astype(bool, copy=False)


def _check_size(size: tuple[int, int]) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"size must be a pair (H, W) of positive ints; got {size!r}") from None
    if h < 1 or w < 1:
        raise ValueError(f"size must be a pair (H, W) of positive ints; got {size!r}")
    return h, w


def _check_margin(margin: float) -> float:
    if not np.isfinite(margin) or not 0 <= margin <= 1:
        raise ValueError(f"margin must be in [0, 1]; got {margin!r}")
    return float(margin)


# --------------------------------------------------------------------------------------------
# intensity
# --------------------------------------------------------------------------------------------


def _window(image: np.ndarray, mask: np.ndarray | None, low: float, high: float) -> tuple:
    values = image if mask is None else image[mask]
    if values.size == 0:
        values = image
    lo, hi = np.percentile(values, [low, high])
    return float(lo), float(hi)


def _apply_window(image: np.ndarray, lo: float, hi: float) -> np.ndarray:
    if hi - lo <= 1e-6:
        return np.zeros(image.shape, np.float32)
    out = (image - np.float32(lo)) * np.float32(1.0 / (hi - lo))
    return np.clip(out, 0.0, 1.0, out=out).astype(np.float32, copy=False)


def normalize_intensity(
    image: np.ndarray, *, mask: np.ndarray | None = None, low: float = 0.5, high: float = 99.5
) -> np.ndarray:
    """Stretch a robust percentile window of the intensities to [0, 1].

    Parameters
    ----------
    image : (M, N) ndarray
        Gray-level image, any numeric dtype and range.
    mask : (M, N) ndarray of bool, optional
        Pixels whose intensities define the window (e.g. the hand); all pixels if None or if the
        mask is empty. The window is applied to the whole image.
    low, high : float
        Percentiles (0-100, ``low < high``) mapped to 0 and 1; values outside are clipped.

    Returns
    -------
    (M, N) ndarray of float32
        The stretched image in [0, 1]; all zeros when the window is empty (a constant image).
    """
    img = _check_image(image)
    if not (0 <= low < high <= 100):
        raise ValueError(f"need 0 <= low < high <= 100; got low={low!r}, high={high!r}")
    m = None if mask is None else _check_mask(mask, img.shape)
    return _apply_window(img, *_window(img, m, low, high))


def clahe(
    image: np.ndarray, *, clip_limit: float = 2.0, tile_grid: tuple[int, int] = (8, 8)
) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation (OpenCV) of a [0, 1] image.

    The image is clipped to [0, 1] and equalised as an 8-bit copy: OpenCV's 16-bit CLAHE
    builds 65,536-bin histograms per tile and is about ten times slower, for no visible gain on
    8-bit radiographs.

    Parameters
    ----------
    image : (M, N) ndarray
        Image with values in [0, 1] (values outside are clipped).
    clip_limit : float
        OpenCV's clip limit (> 0): contrast amplification is limited to this multiple of the
        uniform histogram's bin height.
    tile_grid : (int, int)
        Number of tiles (rows, columns).

    Returns
    -------
    (M, N) ndarray of float32
        The equalised image in [0, 1], 256 levels.
    """
    img = _check_image(image)
    if not np.isfinite(clip_limit) or clip_limit <= 0:
        raise ValueError(f"clip_limit must be a positive number; got {clip_limit!r}")
    try:
        ty, tx = (int(v) for v in tile_grid)
    except (TypeError, ValueError):
        raise ValueError(f"tile_grid must be a pair of positive ints; got {tile_grid!r}") from None
    if ty < 1 or tx < 1:
        raise ValueError(f"tile_grid must be a pair of positive ints; got {tile_grid!r}")
    u8 = np.round(np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8)
    op = cv2.createCLAHE(clipLimit=float(clip_limit), tileGridSize=(tx, ty))
    return op.apply(u8).astype(np.float32) * np.float32(1.0 / 255.0)


# --------------------------------------------------------------------------------------------
# segmentation
# --------------------------------------------------------------------------------------------


def _to_work(image: np.ndarray) -> tuple[np.ndarray, float]:
    """Downscale (INTER_AREA) so the long side is at most WORK_SIDE; return it and the factor."""
    h, w = image.shape
    scale = min(1.0, WORK_SIDE / max(h, w))
    if scale < 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return image, scale


def _otsu(values: np.ndarray) -> float:
    """Otsu's threshold of uint8 values (any shape), as a gray level."""
    hist = np.bincount(values.ravel(), minlength=256).astype(np.float64)
    levels = np.arange(256, dtype=np.float64)
    w0 = np.cumsum(hist)
    m0 = np.cumsum(hist * levels)
    total, mean_total = w0[-1], m0[-1]
    w1 = total - w0
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mean_total * w0 - m0 * total) ** 2 / (w0 * w1)
    between[~np.isfinite(between)] = -1
    return float(np.argmax(between))


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill the holes of a bool mask (drawing its outer contours filled; faster than scipy)."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    out = np.zeros(mask.shape, np.uint8)
    cv2.drawContours(out, contours, -1, 1, thickness=cv2.FILLED)
    return out.astype(bool)


def _shape_stats(mask: np.ndarray) -> dict:
    """Solidity, fill of the min-area rectangle and roughness of a one-component mask."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return {"solidity": 0.0, "rect_fill": 0.0, "roughness": np.inf, "contour": None}
    c = max(contours, key=cv2.contourArea)
    area = max(cv2.contourArea(c), 1.0)
    hull = max(cv2.contourArea(cv2.convexHull(c)), 1.0)
    (_, _), (rw, rh), _ = cv2.minAreaRect(c)
    return {
        "solidity": area / hull,
        "rect_fill": area / max(rw * rh, 1.0),
        "roughness": cv2.arcLength(c, True) / np.sqrt(area),
        "contour": c,
    }


def _largest_component(fg: np.ndarray, min_px: int) -> tuple[np.ndarray, int]:
    """Largest 8-connected component of ``fg`` and how many other components reach min_px."""
    n, labels, cc, _ = cv2.connectedComponentsWithStats(fg.astype(np.uint8), connectivity=8)
    if n <= 1:
        return np.zeros(fg.shape, bool), 0
    areas = cc[1:, cv2.CC_STAT_AREA]
    best = 1 + int(np.argmax(areas))
    return labels == best, int(np.sum(areas >= min_px)) - 1


def _is_plate(stats: dict, area: float, image_area: float) -> bool:
    return (
        stats["solidity"] >= _PLATE_SOLIDITY
        and stats["rect_fill"] >= _PLATE_RECT_FILL
        and area >= _PLATE_MIN_FRAC * image_area
    )


def _disk(radius: float) -> np.ndarray:
    """Elliptical structuring element of the given radius (pixels, rounded, at least 1)."""
    r = max(1, int(round(radius)))
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def _threshold_level(
    smooth: np.ndarray, region: np.ndarray, min_px: int, film_edges: bool = True
) -> tuple[np.ndarray, np.ndarray, int, float]:
    """Otsu inside ``region`` on its own percentile window; soft tissue recovered if separable.

    With ``film_edges``, strips along the image's sides that outweigh the hand are passed over
    (:data:`_STRIP_RIVAL_FRAC`).

    Returns the largest component (holes filled), the same before filling its holes and before
    adding soft tissue, the number of other components, and the threshold used (as a fraction
    of the region's window).
    """
    k3 = _disk(1)
    empty = np.zeros(smooth.shape, bool)
    region = region.copy()
    for attempt in range(_MAX_MARKER_PASSES + 1):
        lo, hi = _window(smooth, region, 0.5, 99.5)
        u8 = np.round(_apply_window(smooth, lo, hi) * 255).astype(np.uint8)
        values = u8[region]
        if values.size < min_px or int(values.min()) == int(values.max()):
            return empty, empty, 0, 0.0
        t_high = _otsu(values)
        bright = (u8 > t_high) & region
        if bright.sum() >= _MIN_BRIGHT_CLASS * values.size or attempt == _MAX_MARKER_PASSES:
            break
        # So few pixels are this bright that they are marker letters or a film edge, not the
        # hand: look again without them.
        k5 = _disk(2)
        region &= ~cv2.dilate(bright.astype(np.uint8), k5).astype(bool)
    fg = cv2.morphologyEx(bright.astype(np.uint8), cv2.MORPH_OPEN, k3) > 0
    solid, n_other = _largest_component(fg, min_px)
    if film_edges:
        # A film's edge or a cassette's frame may outweigh the hand: without its strips, the largest
        # component lies elsewhere. (A hand with a strip attached keeps it for now; it is cut at the end.)
        strips = _border_strips(solid)
        if strips.any():
            rest, n_rest = _largest_component(fg & ~strips, min_px)
            if rest.sum() >= _STRIP_RIVAL_FRAC * fg.size and (rest & solid).sum() < 0.5 * rest.sum():
                solid, n_other = rest, n_rest
    hand = _fill_holes(solid)
    # Otsu often splits bone from (soft tissue + background). Split the dark class once more and
    # keep its brighter part where it is soft tissue: connected to the hand, within a band around
    # it as thick as soft tissue can be, and not a leak into a brighter background that grows the
    # hand too much.
    dark = values[values <= t_high]
    if hand.any() and dark.size >= min_px and int(dark.min()) < int(dark.max()):
        t_low = _otsu(dark)
        band = max(2, int(round(_SOFT_TISSUE_BAND * _inscribed_radius(hand))))
        kb = _disk(band)
        near = cv2.dilate(hand.astype(np.uint8), kb).astype(bool)
        grown = cv2.morphologyEx(
            ((u8 > t_low) & region & near).astype(np.uint8), cv2.MORPH_OPEN, k3
        )
        n, labels = cv2.connectedComponents(grown, connectivity=8)
        ids = np.unique(labels[hand & (labels > 0)])
        if ids.size:
            grown = _fill_holes(np.isin(labels, ids)) | hand
            area, new_area = hand.sum(), grown.sum()
            if new_area <= _MAX_SOFT_TISSUE_GROWTH * area and not _is_plate(
                _shape_stats(grown), new_area, region.sum()
            ):
                return grown, solid, n_other, t_low / 255.0
    return hand, solid, n_other, t_high / 255.0


def _inscribed_radius(mask: np.ndarray) -> float:
    """Radius of the largest disk inside the mask (the palm's, for a hand); image edge is outside."""
    padded = cv2.copyMakeBorder(mask.astype(np.uint8), 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    return float(cv2.distanceTransform(padded, cv2.DIST_L2, 3).max())


def _border_strips(mask: np.ndarray) -> np.ndarray:
    """Thin bands of ``mask`` along the image's sides: film edges, a cassette's frame.

    Seen from each side, a pixel is in a thin run when its run of mask, across the side, ends
    (background) within :data:`_STRIP_BAND` of the side's perpendicular size; connected thin runs
    that extend along at least :data:`_STRIP_SPAN` of the side are a strip. A forearm leaving the
    film at a side runs on past the band; a finger near a side is too short to be a strip.
    """
    strips = np.zeros(mask.shape, bool)
    views = ((mask, lambda a: a), (mask[:, ::-1], lambda a: a[:, ::-1]),
             (mask.T, lambda a: a.T), (mask[::-1].T, lambda a: a.T[::-1]))
    for view, back in views:
        length, depth = view.shape
        band = min(depth - 1, max(3, int(round(_STRIP_BAND * depth))))
        near = view[:, : band + 1]
        # first background at or after each pixel, along each line across the side
        ends = np.full(near.shape, band + 1, np.int32)
        ends[:, band] = np.where(near[:, band], band + 1, band)
        for j in range(band - 1, -1, -1):
            ends[:, j] = np.where(near[:, j], ends[:, j + 1], j)
        thin = near & (ends <= band)
        n, labels, stats, _ = cv2.connectedComponentsWithStats(thin.astype(np.uint8), connectivity=8)
        long = stats[:, cv2.CC_STAT_HEIGHT] >= _STRIP_SPAN * length
        long[0] = False
        if long.any():
            found = np.zeros(view.shape, bool)
            found[:, : band + 1] = long[labels]
            strips |= back(found)
    return strips


def _drop_thin_attachments(hand: np.ndarray) -> np.ndarray:
    """Cut lines (film edges, rulers) that touch the hand, keeping fingers.

    The opening radius scales with the palm's inscribed radius, so the fingers of small
    (infant) hands survive while one-to-few-pixel lines do not.
    """
    radius = int(round(_THIN_OPEN_FRACTION * _inscribed_radius(hand)))
    if radius < 1:
        return hand
    k = _disk(radius)
    core, _ = _largest_component(cv2.morphologyEx(hand.astype(np.uint8), cv2.MORPH_OPEN, k), 1)
    near = cv2.dilate(core.astype(np.uint8), k).astype(bool)
    kept, _ = _largest_component(hand & near, 1)
    return kept


def _distance_from(mask: np.ndarray) -> np.ndarray:
    """Euclidean distance (pixels) of every pixel from the mask (0 on it); a dilation by any radius is a
    threshold of it, at the cost of one pass whatever the radius."""
    return cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)


def _grow_faint_once(smooth: np.ndarray, current: np.ndarray, zone: np.ndarray, radius: float,
                     hand_level: float) -> np.ndarray:
    """One pass of :func:`_grow_faint_tissue`: the pixels above the local background, connected."""
    away = _distance_from(current)
    ring = (away > _FAINT_RING[0] * radius) & (away <= _FAINT_RING[1] * radius)
    if ring.sum() < 50:
        return current
    values = smooth[ring]
    median = float(np.median(values))
    spread = 1.4826 * float(np.median(np.abs(values - median)))
    contrast = max(hand_level - median, 0.0)
    # Local mean and spread of the background, markers and film edges (far above it) left out.
    weight = (ring & (smooth <= median + max(6 * spread, _FAINT_BACKGROUND_CAP * contrast))).astype(np.float32)
    window = (2 * int(round(_FAINT_WINDOW * radius)) + 1,) * 2
    count = cv2.boxFilter(weight, -1, window, normalize=False)
    total = cv2.boxFilter(smooth * weight, -1, window, normalize=False)
    squares = cv2.boxFilter(smooth * smooth * weight, -1, window, normalize=False)
    enough = count > 5
    mean = np.where(enough, total / np.maximum(count, 1), median)
    var = np.where(enough, squares / np.maximum(count, 1) - mean**2, spread**2)
    sigma = np.sqrt(np.maximum(var, (0.5 * spread) ** 2))
    above = (smooth > mean + np.maximum(_FAINT_SIGMAS * sigma, _FAINT_FLOOR * contrast)) & zone
    k3 = _disk(1)
    above = cv2.morphologyEx(above.astype(np.uint8), cv2.MORPH_OPEN, k3).astype(bool) | current
    _, labels = cv2.connectedComponents(above.astype(np.uint8), connectivity=8)
    return _fill_holes(np.isin(labels, np.unique(labels[current & (labels > 0)])))


def _grow_faint_tissue(work: np.ndarray, hand: np.ndarray, region: np.ndarray, *, reach: float = 1.0,
                       max_piece: float = 0.15) -> tuple[np.ndarray, bool]:
    """Grow the thresholded hand into soft tissue fainter than its threshold (thin fingertips).

    Judged against the local background rather than one global level, so that a fingertip whose
    soft tissue is only slightly brighter than the film around it is kept; see :data:`_FAINT_SIGMAS`
    and the constants beside it. ``region`` is where the hand was searched (inside a plate or
    collimation field when there is one); the growth stays inside it. Returns the grown mask and
    whether the growth was held back: a kept piece reached the edge of ``reach`` (palm radii) or a
    piece inside the image was dropped for its size alone (over ``max_piece`` of the hand).
    """
    radius = _inscribed_radius(hand)
    if radius < 2 or hand.all():
        return hand, False
    s = max(work.shape) / WORK_SIDE
    smooth = cv2.GaussianBlur(work.astype(np.float32), (0, 0), max(0.8, s))
    hand_level = float(np.median(smooth[hand]))
    away = _distance_from(hand)
    zone = (away <= reach * radius) & region
    current = hand
    for _ in range(_FAINT_PASSES):
        grown = _grow_faint_once(smooth, current, zone, radius, hand_level)
        if grown.sum() == current.sum():
            break
        current = grown
    # Thin seams along the outline (a pixel or two of blur) join every added piece into one that
    # reaches the forearm's cut end at the image's edge: the pieces are judged with the seams opened
    # away, and only the leaks (and a seam's width around them) are taken out again.
    added = current & ~hand
    seam = max(2.0, _FAINT_SEAM * radius)
    opened = cv2.morphologyEx(added.astype(np.uint8), cv2.MORPH_OPEN, _disk(seam))
    _, labels, stats, _ = cv2.connectedComponentsWithStats(opened, connectivity=8)
    h, w = hand.shape
    x, y, bw, bh, area = (stats[:, i] for i in range(5))
    edge = (x == 0) | (y == 0) | (x + bw == w) | (y + bh == h)
    large = area > max_piece * hand.sum()
    leak = edge | large
    leak[0] = False
    held_back = bool((large & ~edge)[1:].any())
    if leak.any():
        near_leak = _distance_from(leak[labels]) <= seam + 1
        added &= ~near_leak
        # what the leaks' removal cut off from the hand is not kept either
        _, pieces = cv2.connectedComponents((hand | added).astype(np.uint8), connectivity=8)
        added &= np.isin(pieces, np.unique(pieces[hand & (pieces > 0)]))
    held_back |= bool((added & (away > (reach - _FAINT_REACH_EDGE) * radius)).any())
    return _fill_holes(hand | added), held_back


def _grow_faint_tissue_safely(work: np.ndarray, hand: np.ndarray, region: np.ndarray) -> np.ndarray:
    """:func:`_grow_faint_tissue` cautiously (the second :data:`_FAINT_REACH` and
    :data:`_FAINT_MAX_PIECE`) and, where that was held back, boldly too (the first: far-reaching,
    and large pieces allowed, as whole fingers fainter than the threshold are), keeping what either
    found. The bold growth is dropped where it fills a plate (the mask turns into a solid
    rectangle); its leak removal, which can cut away a fingertip the cautious growth kept, never
    takes anything away."""
    (bold_reach, reach), (bold_piece, piece) = _FAINT_REACH, _FAINT_MAX_PIECE
    cautious, held_back = _grow_faint_tissue(work, hand, region, reach=reach, max_piece=piece)
    if not held_back:
        return cautious
    bold, held_back = _grow_faint_tissue(work, hand, region, reach=bold_reach, max_piece=bold_piece)
    grown = _fill_holes(cautious | bold)
    if _is_plate(_shape_stats(grown), grown.sum(), 0):
        return cautious
    # Fingers much fainter than the threshold reach past the bold growth's reach: step on from
    # what was grown, a palm radius at a time, keeping only pieces wider than a film edge's strip.
    radius = _inscribed_radius(hand)
    strip = _disk(max(1.5, _FAINT_STEP_STRIP * radius))
    for _ in range(_FAINT_STEPS):
        if not held_back:
            break
        more, held_back = _grow_faint_tissue(work, grown, region, reach=_FAINT_STEP_REACH, max_piece=bold_piece)
        added = cv2.morphologyEx((more & ~grown).astype(np.uint8), cv2.MORPH_OPEN, strip) > 0
        added = _finger_like(added, radius)
        stepped = _fill_holes(grown | added)
        if stepped.sum() == grown.sum() or _is_plate(_shape_stats(stepped), stepped.sum(), 0):
            break
        grown = stepped
    return grown


def _finger_like(pieces: np.ndarray, radius: float) -> np.ndarray:
    """The pieces of a step of faint growth that may be fingers: none wider than
    :data:`_FAINT_STEP_WIDTH` palm radii (inscribed radius; film background in a plate is wider), and
    none that runs along an image side within :data:`_FAINT_STEP_BORDER` of it for more than
    :data:`_FAINT_STEP_ALONG` palm radii (a leak along a film's edge; a fingertip near the film's edge
    meets it end on)."""
    n, labels = cv2.connectedComponents(pieces.astype(np.uint8), connectivity=8)
    if n <= 1:
        return pieces
    h, w = pieces.shape
    inside = cv2.distanceTransform(pieces.astype(np.uint8), cv2.DIST_L2, 5)
    border = _FAINT_STEP_BORDER * max(h, w)
    keep = np.zeros(n, bool)
    for k in range(1, n):
        ys, xs = np.nonzero(labels == k)
        top, left, bottom, right = ys.min(), xs.min(), h - 1 - ys.max(), w - 1 - xs.max()
        along = max(np.ptp(xs) if min(top, bottom) < border else 0, np.ptp(ys) if min(left, right) < border else 0)
        keep[k] = inside[ys, xs].max() <= _FAINT_STEP_WIDTH * radius and along <= _FAINT_STEP_ALONG * radius
    return keep[labels]


def _separation(image: np.ndarray, mask: np.ndarray) -> float:
    """Difference of the mean intensity inside and outside the mask, in pooled standard deviations."""
    if mask.all() or not mask.any():
        return 0.0
    inside, outside = image[mask], image[~mask]
    pooled = np.sqrt((inside.var() + outside.var()) / 2.0)
    return float((inside.mean() - outside.mean()) / pooled) if pooled > 0 else 0.0


def _segment_work(work: np.ndarray, faint_tissue: bool = True) -> tuple[np.ndarray, dict]:
    """Segment the hand on a working-size image; see :func:`segment_hand`."""
    h, w = work.shape
    s = max(h, w) / WORK_SIDE
    smooth = cv2.GaussianBlur(work, (0, 0), max(0.8, 1.5 * s))
    region = np.ones((h, w), bool)
    min_px = max(4, int(_MIN_COMPONENT_FRAC * h * w))
    levels = 0
    for level in range(_MAX_PLATE_LEVELS + 1):
        hand, solid, n_removed, threshold = _threshold_level(smooth, region, min_px, film_edges=faint_tissue)
        if not hand.any():
            break
        stats = _shape_stats(hand)
        if not _is_plate(stats, hand.sum(), h * w) or level == _MAX_PLATE_LEVELS:
            break
        # Look for the hand inside the plate, away from its (often blurred or bright) edges. A
        # bright frame around a darker field leaves a large hole: the field is that hole's convex
        # hull (the hand, bright like the frame, only notches it).
        levels = level + 1
        inner = hand
        holes = hand & ~solid
        if holes.sum() > _FRAME_HOLE_FRAC * hand.sum():
            hole, _ = _largest_component(holes, 1)
            hull = cv2.convexHull(cv2.findNonZero(hole.astype(np.uint8)))
            inner = np.zeros((h, w), np.uint8)
            cv2.fillConvexPoly(inner, hull, 1)
        edge = max(3, int(round(4 * s))) * 2 + 1
        region = cv2.erode(inner.astype(np.uint8), np.ones((edge, edge), np.uint8)).astype(bool)
    stats = {"solidity": 0.0, "rect_fill": 0.0, "roughness": np.inf}
    if hand.any():
        hand = _drop_thin_attachments(hand)
        kc = _disk(2)
        hand = _fill_holes(cv2.morphologyEx(hand.astype(np.uint8), cv2.MORPH_CLOSE, kc) > 0)
        if faint_tissue:  # and film edges (both off: the mask the CNN was trained on)
            hand = _grow_faint_tissue_safely(work, hand, region)
            strips = _border_strips(hand)
            if strips.any():
                hand = _fill_holes(_largest_component(hand & ~strips, 1)[0])
        stats = _shape_stats(hand)
    frac = float(hand.mean())
    separation = _separation(work, hand)
    found = (
        separation >= _MIN_SEPARATION and
        _MIN_HAND_FRAC <= frac <= _MAX_HAND_FRAC
        and _inscribed_radius(hand) >= _MIN_PALM_RADIUS * max(h, w)
        and stats["roughness"] <= _MAX_ROUGHNESS
        and not _is_plate(stats, hand.sum(), 0)
    )
    touches = bool(hand[0].any() or hand[-1].any() or hand[:, 0].any() or hand[:, -1].any())
    diag = {
        "diagnostics_hand_found": float(found),
        "diagnostics_hand_area_frac": frac,
        "diagnostics_n_components_removed": float(max(n_removed, 0)),
        "diagnostics_mask_touches_border": float(touches),
        "diagnostics_threshold": float(threshold),
        "diagnostics_plate_levels": float(levels),
        "diagnostics_mask_solidity": float(stats["solidity"]),
        "diagnostics_mask_roughness": float(min(stats["roughness"], 1e6)),
        "diagnostics_separation": separation,
    }
    return hand, diag


def segment_hand(image: np.ndarray, *, faint_tissue: bool = True) -> tuple[np.ndarray, dict]:
    """Segment the hand (and forearm) from background, markers, text plates and rulers.

    The image is downscaled to the working size (long side :data:`WORK_SIDE`), smoothed,
    stretched to its own 0.5-99.5 percentile window (so dark low-contrast scans and bright ones
    threshold alike) and thresholded with Otsu's method. If under 3% of the pixels are above the
    threshold they are markers or film edges: they are set aside and the threshold recomputed.
    The largest connected component is the hand; side markers, initials, text plates and rulers
    are separate, smaller components and are dropped. A second Otsu split of the darker class
    adds the soft tissue within a thin band around the bones. When the largest component is a
    convex, rectangle-filling region (a collimation field or film plate brighter than its
    surround, or the inside of a bright frame), the search is repeated inside it, up to three
    nested levels. Thin lines attached to the hand (film edges) are cut by an opening scaled to
    the palm, holes are filled and the outline closed. Last, with ``faint_tissue``, the mask grows
    into soft tissue too faint for the second threshold (the thin soft tissue of fingertips often
    is): pixels brighter than the local background by three of its local standard deviations and
    by 8% of the hand's contrast, connected to it. Two growths are united: a cautious one, within
    1.0 palm radii of the mask, where pieces that touch the image's edge or exceed 15% of the
    hand's area are leaks and are dropped with what they cut off from the hand; and a bold one,
    within 1.5 palm radii, pieces up to half the hand's area (whole fingers fainter than the
    threshold), itself dropped where the grown mask would fill a plate. Where the bold growth is
    still held back at its reach (fingers far fainter than the threshold, as on films that darken
    towards the fingertips), it steps on from what it grew, a palm radius at a time and up to three
    times, keeping only finger-like pieces: under half a palm radius wide and not running along the
    image's edge (fingertips meet a film's edge end on, leaks run along it). Last,
    thin strips of mask along the image's sides (a film's bright edge, a cassette's frame: runs that
    end within 10% of the image from a side and run along over a third of it) are cut off, and the
    largest piece left is the hand; where such strips outweighed the hand at the threshold, the
    largest component without them (over 4% of the image) is taken instead.

    The hand counts as found when it covers 1-97% of the image, its palm's inscribed radius is
    at least 1.5% of the image's long side, its outline is not ragged and it is at least 0.4
    pooled standard deviations brighter than the rest (blank, constant and noise images fail).

    Parameters
    ----------
    image : (M, N) ndarray
        Gray-level radiograph, bright bone on darker background.
    faint_tissue : bool, default=True
        Grow the mask into faint soft tissue and cut film edges off as described above; False
        gives the mask of versions before them (which cuts many fingertips off and keeps film
        edges; the CNN's training views were made with it).

    Returns
    -------
    mask : (M, N) ndarray of bool
        The hand. When no plausible hand is found the mask is the whole image.
    diagnostics : dict of str to float
        ``diagnostics_hand_found`` (0/1), ``diagnostics_hand_area_frac``,
        ``diagnostics_n_components_removed``, ``diagnostics_mask_touches_border``,
        ``diagnostics_threshold`` (on the normalised image), ``diagnostics_plate_levels``,
        ``diagnostics_mask_solidity``, ``diagnostics_mask_roughness``,
        ``diagnostics_separation`` (hand vs background contrast in pooled standard deviations).
    """
    img = _check_image(image)
    work, scale = _to_work(img)
    mask, diag = _segment_work(work, faint_tissue)
    if not diag["diagnostics_hand_found"]:
        mask = np.ones(work.shape, bool)
    if scale < 1.0:
        mask = cv2.resize(
            mask.astype(np.uint8), img.shape[::-1], interpolation=cv2.INTER_NEAREST
        ).astype(bool)
    return mask, diag


# --------------------------------------------------------------------------------------------
# geometry
# --------------------------------------------------------------------------------------------


def _bbox(mask: np.ndarray, margin: float) -> tuple[int, int, int, int]:
    """Bounding box (y0, y1, x0, x1), end-exclusive, grown by margin and clipped to the image."""
    h, w = mask.shape
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return 0, h, 0, w
    cols = np.flatnonzero(mask.any(axis=0))
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    my, mx = margin * (y1 - y0), margin * (x1 - x0)
    return (
        max(0, int(np.floor(y0 - my))),
        min(h, int(np.ceil(y1 + my))),
        max(0, int(np.floor(x0 - mx))),
        min(w, int(np.ceil(x1 + mx))),
    )


def crop_to_mask(
    image: np.ndarray, mask: np.ndarray, *, margin: float = 0.04
) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int]]:
    """Crop an image and its mask to the mask's bounding box plus a margin.

    Parameters
    ----------
    image : (M, N) ndarray
    mask : (M, N) ndarray of bool
        An empty mask keeps the whole image.
    margin : float
        Added on each side as a fraction of the box's height (top, bottom) and width (left,
        right), in [0, 1]; the box is clipped to the image.

    Returns
    -------
    image : (y1 - y0, x1 - x0) ndarray
    mask : (y1 - y0, x1 - x0) ndarray of bool
    bbox : (int, int, int, int)
        ``(y0, y1, x0, x1)``, end-exclusive, in the input's pixel coordinates.
    """
    img = _check_image(image)
    m = _check_mask(mask, img.shape)
    y0, y1, x0, x1 = _bbox(m, _check_margin(margin))
    return img[y0:y1, x0:x1].copy(), m[y0:y1, x0:x1].copy(), (y0, y1, x0, x1)


def _mask_grid(mask: np.ndarray) -> np.ndarray:
    """The mask's bounding box resampled to a (_GRID, _GRID) occupancy grid."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    box = mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].astype(np.float32)
    return cv2.resize(box, (_GRID, _GRID), interpolation=cv2.INTER_AREA)


def _up_score(mask: np.ndarray) -> float:
    """Linear score that the mask shows a hand with fingers up and forearm down."""
    h = np.ptp(np.flatnonzero(mask.any(axis=1))) + 1
    w = np.ptp(np.flatnonzero(mask.any(axis=0))) + 1
    return float(np.sum(_UP_WEIGHTS * _mask_grid(mask)) + _UP_ASPECT_WEIGHT * np.log(h / w))


def _thumb_score(mask: np.ndarray) -> float:
    """Linear score, antisymmetric under mirroring, that a fingers-up hand has its thumb right."""
    grid = _mask_grid(mask)
    return float(np.sum(_THUMB_WEIGHTS * (grid - grid[:, ::-1])[:, : _GRID // 2]))


def _orientation(mask: np.ndarray) -> tuple[int, bool, dict]:
    """Decide the canonical orientation of a hand mask.

    Returns ``k``, the number of counter-clockwise quarter turns (as for :func:`numpy.rot90`),
    whether to mirror left-right after turning, and diagnostics. Both decisions are
    conservative: the image is turned only when another quarter turn scores clearly better than
    the one given, and mirrored only when the thumb is clearly on the left.
    """
    scores = [_up_score(np.rot90(mask, k)) for k in range(4)]
    best = int(np.argmax(scores))
    confident = scores[best] - scores[0] > _ROTATE_MARGIN and scores[best] >= _ROTATE_MIN_SCORE
    k = best if confident else 0
    thumb = _thumb_score(np.rot90(mask, k))
    flip = thumb < -_FLIP_MARGIN
    return k, flip, {
        "diagnostics_rotation_deg": 90.0 * k,
        "diagnostics_flipped": float(flip),
        "diagnostics_up_score": float(scores[k]),
        "diagnostics_thumb_score": float(-thumb if flip else thumb),
    }


_NO_ORIENTATION = {
    "diagnostics_rotation_deg": 0.0,
    "diagnostics_flipped": 0.0,
    "diagnostics_up_score": 0.0,
    "diagnostics_thumb_score": 0.0,
}


def _apply_orientation(arr: np.ndarray, k: int, flip: bool) -> np.ndarray:
    out = np.rot90(arr, k)
    if flip:
        out = out[:, ::-1]
    return np.ascontiguousarray(out)


def orient_hand(image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
    """Rotate and mirror a hand into the canonical view.

    The canonical view is a left hand seen postero-anterior as it is normally displayed:
    fingers up, wrist and forearm down, thumb on the image's right. The decision is taken from
    the mask's shape alone: its bounding box is resampled to a 16 x 16 occupancy grid and scored
    by two linear models fitted on RSNA training masks (which are nearly all canonical) and
    their turned and mirrored copies. The quarter turn with the best "fingers up" score is taken
    when it beats the given orientation by a margin; then the hand is mirrored when the
    mirror-antisymmetric "thumb right" score is clearly negative (a right hand or a flipped
    image). Uncertain cases are left as they are, since most radiographs are already canonical.

    Parameters
    ----------
    image : (M, N) ndarray
    mask : (M, N) ndarray of bool
        The hand; an empty mask leaves the image as it is.

    Returns
    -------
    image, mask : ndarray
        Turned and mirrored copies ((N, M) after a quarter turn).
    diagnostics : dict of str to float
        ``diagnostics_rotation_deg`` (counter-clockwise turn applied: 0, 90, 180 or 270),
        ``diagnostics_flipped`` (0/1, mirrored after turning), ``diagnostics_up_score`` and
        ``diagnostics_thumb_score`` (the models' scores in the output's orientation; small
        values mean an uncertain decision).
    """
    img = _check_image(image)
    m = _check_mask(mask, img.shape)
    if not m.any():
        return img.copy(), m.copy(), dict(_NO_ORIENTATION)
    k, flip, diag = _orientation(m)
    return _apply_orientation(img, k, flip), _apply_orientation(m, k, flip), diag


def _fit_shape(shape: tuple[int, int], size: tuple[int, int]) -> tuple[int, int]:
    """Largest (h, w) with the aspect ratio of ``shape`` that fits inside ``size``."""
    s = min(size[0] / shape[0], size[1] / shape[1])
    return (
        min(size[0], max(1, int(round(shape[0] * s)))),
        min(size[1], max(1, int(round(shape[1] * s)))),
    )


def _resize(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    shrink = shape[0] < image.shape[0] or shape[1] < image.shape[1]
    interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    return cv2.resize(image, (shape[1], shape[0]), interpolation=interp)


def _place(arrays: list[np.ndarray], size: tuple[int, int]) -> list[np.ndarray]:
    """Paste same-shape arrays into zero canvases: bottom-aligned, centred horizontally."""
    h, w = arrays[0].shape
    y0, x0 = size[0] - h, (size[1] - w) // 2
    out = []
    for a in arrays:
        canvas = np.zeros(size, a.dtype)
        canvas[y0 : y0 + h, x0 : x0 + w] = a
        out.append(canvas)
    return out


def resize_canonical(
    image: np.ndarray, mask: np.ndarray, *, size: tuple[int, int] = (384, 320)
) -> tuple[np.ndarray, np.ndarray]:
    """Fit an image and its mask into a fixed canvas, keeping the aspect ratio.

    The image is scaled to fit inside ``size`` (INTER_AREA when shrinking, bilinear when
    enlarging) and pasted bottom-aligned and centred horizontally, so the wrist of a canonical
    hand sits on the canvas's bottom edge; the rest of the canvas is 0 (background) and False.

    Parameters
    ----------
    image : (M, N) ndarray
    mask : (M, N) ndarray of bool
    size : (int, int)
        Canvas (H, W).

    Returns
    -------
    image : (H, W) ndarray of float32
    mask : (H, W) ndarray of bool
    """
    img = _check_image(image)
    m = _check_mask(mask, img.shape)
    size = _check_size(size)
    shape = _fit_shape(img.shape, size)
    small = _resize(img, shape)
    small_mask = _resize(m.astype(np.float32), shape) > 0.5
    return tuple(_place([small, small_mask], size))


@dataclass(frozen=True)
class PreprocessedHand:
    """The canonical view of one hand radiograph.

    Attributes
    ----------
    image : (H, W) ndarray of float32
        Cropped, oriented, intensity-normalised over the hand, CLAHE applied, background 0.
    mask : (H, W) ndarray of bool
        The hand in the same frame.
    diagnostics : dict of str to float
        Provenance and quality-control values; every key starts with ``diagnostics_``.
    source_from_canonical : (3, 3) ndarray of float
        Affine map from canonical (x, y, 1) to pixels of the input image; see :meth:`to_source`.
    """

    image: np.ndarray
    mask: np.ndarray
    diagnostics: dict = field(default_factory=dict)
    source_from_canonical: np.ndarray = field(default_factory=lambda: np.eye(3))

    def to_source(self, points) -> np.ndarray:
        """Map (x, y) points of the canonical view to pixels of the input radiograph.

        Parameters
        ----------
        points : (2,) or (K, 2) array-like
            x (column) and y (row) in the canonical view, as the landmarks of
            :func:`boneage_features.regions.detect_regions`.

        Returns
        -------
        ndarray of float, the same shape
            x and y in the input image (pixel centres at integer coordinates).
        """
        xy = np.asarray(points, dtype=np.float64)
        flat = xy.reshape(-1, 2)
        out = flat @ self.source_from_canonical[:2, :2].T + self.source_from_canonical[:2, 2]
        return out.reshape(xy.shape)


def mirror_hand(hand: PreprocessedHand) -> PreprocessedHand:
    """The same hand mirrored left-right in its canvas (a thumb on the left brought to the right).

    Image and mask are flipped about the canvas's vertical centre line; ``source_from_canonical`` is
    composed with that flip, so :meth:`PreprocessedHand.to_source` still maps to the input radiograph;
    ``diagnostics_flipped`` is toggled and ``diagnostics_thumb_score`` negated.
    """
    width = hand.image.shape[1]
    flip = np.array([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    diagnostics = dict(hand.diagnostics)
    diagnostics["diagnostics_flipped"] = 1.0 - float(diagnostics.get("diagnostics_flipped", 0.0))
    diagnostics["diagnostics_thumb_score"] = -float(diagnostics.get("diagnostics_thumb_score", 0.0))
    return PreprocessedHand(
        image=np.ascontiguousarray(hand.image[:, ::-1]),
        mask=np.ascontiguousarray(hand.mask[:, ::-1]),
        diagnostics=diagnostics,
        source_from_canonical=hand.source_from_canonical @ flip,
    )


def preprocess_hand(
    image: np.ndarray,
    *,
    size: tuple[int, int] = (384, 320),
    clahe_clip: float = 2.0,
    margin: float = 0.04,
    faint_tissue: bool = True,
) -> PreprocessedHand:
    """Turn a hand radiograph into the canonical, cropped, normalised view.

    Steps, in this order:

    1. downscale the input (INTER_AREA) to the working size, long side :data:`WORK_SIDE`;
    2. :func:`segment_hand` on the working copy (it normalises intensity internally), with
       ``faint_tissue``;
    3. intensity window: the 0.5-99.5 percentiles of the hand's pixels;
    4. crop box: the mask's bounding box plus ``margin`` (:func:`crop_to_mask`);
    5. orientation from the cropped mask (:func:`orient_hand`);
    6. the crop is resampled from the *input* (not the working copy) straight to the output
       size, so full-resolution images keep their detail, windowed, turned and mirrored, and
       pasted bottom-aligned and centred horizontally (:func:`resize_canonical`);
    7. background set to 0, :func:`clahe` (8 x 8 tiles), background set to 0 again.

    When no plausible hand is found (``diagnostics_hand_found == 0``: blank, constant or noise
    images, very unusual radiographs) the whole image is kept, windowed over all its pixels and
    not turned, and the mask covers it all.

    Parameters
    ----------
    image : (M, N) ndarray
        Gray-level radiograph, any resolution, bright bone (as from
        :func:`boneage_features.io.read_image`).
    size : (int, int)
        Output (H, W).
    clahe_clip : float
        CLAHE clip limit (> 0).
    margin : float
        Crop margin around the hand, a fraction of the mask's box size.
    faint_tissue : bool, default=True
        Let the mask grow into faint soft tissue (fingertips) and cut film edges off; see
        :func:`segment_hand`.

    Returns
    -------
    PreprocessedHand
        Diagnostics: those of :func:`segment_hand` and :func:`orient_hand`, plus
        ``diagnostics_source_height`` / ``_width`` (input pixels), ``diagnostics_intensity_p50``
        (median of the hand's input intensities), ``diagnostics_contrast_range`` (width of the
        hand's 0.5-99.5 percentile window, in input units) and ``diagnostics_output_scale``
        (output pixels per input pixel).
    """
    img = _check_image(image)
    size = _check_size(size)
    margin = _check_margin(margin)
    if not np.isfinite(clahe_clip) or clahe_clip <= 0:
        raise ValueError(f"clahe_clip must be a positive number; got {clahe_clip!r}")
    work, _ = _to_work(img)
    mask, diag = _segment_work(work, faint_tissue)
    found = bool(diag["diagnostics_hand_found"])
    if not found:
        logger.debug("no hand found in a %d x %d image; keeping the whole image", *img.shape)
        mask = np.ones(work.shape, bool)
    lo, hi = _window(work, mask, 0.5, 99.5)
    y0, y1, x0, x1 = _bbox(mask, margin)
    crop_mask = mask[y0:y1, x0:x1]
    if found:
        k, flip, odiag = _orientation(crop_mask)
    else:
        k, flip, odiag = 0, False, dict(_NO_ORIENTATION)
    # The box in input pixels (the working copy may be smaller than the input).
    fy, fx = img.shape[0] / work.shape[0], img.shape[1] / work.shape[1]
    source = img[
        int(round(y0 * fy)) : max(int(round(y1 * fy)), int(round(y0 * fy)) + 1),
        int(round(x0 * fx)) : max(int(round(x1 * fx)), int(round(x0 * fx)) + 1),
    ]
    turned = crop_mask.shape[::-1] if k % 2 else crop_mask.shape
    out_h, out_w = _fit_shape(turned, size)
    unturned = (out_w, out_h) if k % 2 else (out_h, out_w)
    small = _apply_window(_resize(source, unturned), lo, hi)
    small_mask = _resize(crop_mask.astype(np.float32), unturned) > 0.5
    small = _apply_orientation(small, k, flip)
    small_mask = _apply_orientation(small_mask, k, flip)
    canvas, canvas_mask = _place([small, small_mask], size)
    geometry = _source_from_canonical(
        size, small.shape, unturned, source.shape, k, flip,
        (int(round(x0 * fx)), int(round(y0 * fy))),
    )
    canvas[~canvas_mask] = 0.0
    canvas = clahe(canvas, clip_limit=clahe_clip)
    canvas[~canvas_mask] = 0.0
    hand_values = work[mask]
    diag.update(odiag)
    diag.update(
        {
            "diagnostics_source_height": float(img.shape[0]),
            "diagnostics_source_width": float(img.shape[1]),
            "diagnostics_intensity_p50": float(np.median(hand_values)),
            "diagnostics_contrast_range": hi - lo,
            "diagnostics_output_scale": out_h / (turned[0] * (fx if k % 2 else fy)),
        }
    )
    return PreprocessedHand(image=canvas, mask=canvas_mask, diagnostics=diag, source_from_canonical=geometry)


def _source_from_canonical(size, placed, unturned, source, k, flip, origin) -> np.ndarray:
    """3 x 3 matrix taking canonical (x, y, 1) to input pixels: undo the paste, mirror, turns, resize, crop.

    ``placed``: shape of the turned crop pasted into the canvas of ``size``; ``unturned``: the
    resized crop's shape before turning; ``source``: the input crop's shape; ``origin``: the
    input crop's top-left (x, y).
    """
    h, w = placed
    matrix = np.array([[1.0, 0.0, -((size[1] - w) // 2)], [0.0, 1.0, -(size[0] - h)], [0.0, 0.0, 1.0]])
    if flip:
        matrix = np.array([[-1.0, 0.0, w - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]) @ matrix
    uh, uw = unturned
    for j in reversed(range(k % 4)):  # np.rot90 once: out(x, y) = in(C - 1 - y, x), C the input width
        width = uw if j % 2 == 0 else uh
        matrix = np.array([[0.0, -1.0, width - 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]) @ matrix
    sy, sx = source[0] / uh, source[1] / uw
    matrix = np.array([[sx, 0.0, 0.5 * sx - 0.5 + origin[0]], [0.0, sy, 0.5 * sy - 0.5 + origin[1]], [0.0, 0.0, 1.0]]) @ matrix
    return matrix

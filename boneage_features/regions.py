"""Landmarks and regions of interest of the hand: phalanx joints, metacarpals, carpus, radius and ulna.

Works on the canonical view of :func:`boneage_features.preprocess.preprocess_hand` (fingers up, wrist at
the bottom, thumb on the image's right). Every decision is classical and can be drawn
(:func:`boneage_features.plotting.plot_regions`):

1. palm centre and palm radius: the maximum of the distance transform of the hand mask;
2. fingertips: peaks of the distance from the palm centre along the hand contour; valleys between
   fingers: the lowest contour point between two neighbouring tips. The five tips are ordered from the
   little finger (image left) to the thumb (image right);
3. finger axes: from each tip the bone is tracked towards the palm, re-centring each step on the bright
   bone across a cross-section (so touching fingers do not pull the axis off the bone);
4. joints along each axis: joint spaces and growth plates are dark bands across the bone, i.e. minima
   of the intensity profile along the axis; of the candidate minima, the triple whose spacing best
   matches the proportions of the phalanges (and whose bands are darkest) is kept - DIP/PIP/MCP for
   the fingers, IP/MCP/CMC for the thumb;
5. the wrist: the distal ends of the radius (thumb side) and of the ulna, placed from the middle
   finger's length and the forearm's edges, refined on the dark radiocarpal band; the carpal region
   lies between the metacarpal bases and the radius.

Regions follow the TW3 RUS set (Tanner et al., *Assessment of skeletal maturity and prediction of adult
height (TW3 method)*, 3rd ed., 2001): each is a box centred on the epiphysis / growth plate of its bone,
turned with the bone's axis, sized from the finger length so that it scales with the hand. A region
that cannot be placed is returned with ``found=False``; nothing here raises for an odd image.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import cv2
import numpy as np

__all__ = [
    "REGION_NAMES",
    "HandRegions",
    "Region",
    "detect_regions",
    "extract_patch",
]

logger = logging.getLogger(__name__)

#: The regions, in feature-table order: the TW3 RUS bones (thumb, middle and little finger rays, then
#: radius and ulna) and the carpus. Metacarpals 3 and 5 are read at their heads (distal epiphyses);
#: the first metacarpal, whose epiphysis is proximal, at its base.
REGION_NAMES = (
    "dp1", "pp1", "mc1",
    "dp3", "mp3", "pp3", "mc3",
    "dp5", "mp5", "pp5", "mc5",
    "radius", "ulna", "carpal",
)


@dataclass(frozen=True)
class Region:
    """One region of interest in the canonical view.

    Attributes
    ----------
    name : str
        One of :data:`REGION_NAMES`.
    center : (float, float)
        (x, y) in pixels of the canonical view.
    size : (float, float)
        (height, width) of the box in pixels; height runs along the bone's axis.
    angle : float
        Direction of the bone's axis, degrees counter-clockwise from "pointing up" (0 for a vertical
        finger), so the patch is cut with the bone upright.
    found : bool
        False when the region could not be placed; the other fields are then NaN.
    """

    name: str
    center: tuple = (math.nan, math.nan)
    size: tuple = (math.nan, math.nan)
    angle: float = math.nan
    found: bool = False

    def corners(self) -> np.ndarray:
        """(4, 2) array of the box's corners (x, y), starting top-left, clockwise in the upright patch."""
        h, w = self.size
        a = math.radians(self.angle)
        up = np.array([-math.sin(a), -math.cos(a)])  # unit vector along the bone, towards the tip
        right = np.array([math.cos(a), -math.sin(a)])
        c = np.asarray(self.center, float)
        return np.array(
            [c + up * h / 2 - right * w / 2, c + up * h / 2 + right * w / 2,
             c - up * h / 2 + right * w / 2, c - up * h / 2 - right * w / 2]
        )


@dataclass(frozen=True)
class HandRegions:
    """What :func:`detect_regions` found in one hand.

    Attributes
    ----------
    regions : dict of str to Region
        Every name of :data:`REGION_NAMES`, found or not.
    landmarks : dict of str to (float, float)
        Named points (x, y) in the canonical view: ``palm``, ``tip1``..``tip5`` (1 = thumb),
        ``valley12``..``valley45``, the joints ``dip2``..``dip5``, ``pip2``..``pip5``,
        ``mcp1``..``mcp5``, ``ip1``, ``cmc1``, and ``radius``, ``ulna``. Points that were not found are
        absent.
    axes : dict of str to (K, 2) ndarray
        The tracked axis of each finger (``finger1``..``finger5``), points (x, y) from tip to base.
    diagnostics : dict of str to float
        ``diagnostics_<region>_found`` (0/1) for every region, ``diagnostics_regions_found`` (how many),
        ``diagnostics_regions_ok`` (1 when every region was found and passed the geometric checks),
        ``diagnostics_fingers_found`` and ``diagnostics_palm_radius``.
    """

    regions: dict
    landmarks: dict = field(default_factory=dict)
    axes: dict = field(default_factory=dict)
    diagnostics: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when every region was found and the geometry passed its sanity checks."""
        return bool(self.diagnostics.get("diagnostics_regions_ok", 0))


def extract_patch(image: np.ndarray, region: Region, *, shape=(48, 48)) -> np.ndarray | None:
    """Cut ``region`` out of ``image``, bone upright, resampled to ``shape``.

    Parameters
    ----------
    image : (M, N) ndarray
        The canonical view the region was found in.
    region : Region
    shape : (int, int)
        (height, width) of the patch.

    Returns
    -------
    patch : (H, W) ndarray of float32, or None when the region was not found
        Pixels outside the image are 0 (background).
    """
    if not region.found:
        return None
    out_h, out_w = int(shape[0]), int(shape[1])
    if out_h < 1 or out_w < 1:
        raise ValueError(f"patch shape must be positive; got {shape!r}")
    h, w = region.size
    a = math.radians(region.angle)
    up = np.array([-math.sin(a), -math.cos(a)])
    right = np.array([math.cos(a), -math.sin(a)])
    c = np.asarray(region.center, float)
    # Affine map from patch pixels (u, v) to image (x, y): origin at the box's top-left corner.
    origin = c + up * h / 2 - right * w / 2
    sx, sy = w / out_w, h / out_h
    matrix = np.array(
        [[right[0] * sx, -up[0] * sy, origin[0]], [right[1] * sx, -up[1] * sy, origin[1]]], np.float64
    )
    # Patch pixel (u, v) samples the box at fraction ((u + 0.5) / W, (v + 0.5) / H).
    matrix[:, 2] += 0.5 * (matrix[:, 0] + matrix[:, 1])
    return cv2.warpAffine(
        image.astype(np.float32), matrix, (out_w, out_h),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0,
    )


def _not_found(diagnostics: dict | None = None) -> HandRegions:
    regions = {name: Region(name) for name in REGION_NAMES}
    diag = {f"diagnostics_{name}_found": 0.0 for name in REGION_NAMES}
    diag.update(
        diagnostics_regions_found=0.0, diagnostics_regions_ok=0.0, diagnostics_regions_check=1.0,
        diagnostics_fingers_found=0.0,
        diagnostics_palm_radius=math.nan,
    )
    if diagnostics:
        diag.update(diagnostics)
    return HandRegions(regions=regions, diagnostics=diag)


# ----------------------------------------------------------------------------------------------------
# Detection. Lengths are in canonical pixels unless said otherwise; points are (x, y) float arrays.
# ----------------------------------------------------------------------------------------------------

# Joint positions along a ray, as fractions of the distance from the fingertip (contour) to the
# third joint: DIP and PIP along tip-to-MCP for a finger, IP and MCP along tip-to-CMC for the thumb,
# with the spread allowed; and the third joint's distance from the tip in palm radii (the largest
# inscribed circle of the palm), per ray, thumb first. The phalanges are nearly self-similar (each
# about 1.5 times the next), so ratios alone cannot tell DIP-PIP-MCP from PIP-MCP-CMC; the scale does.
# Read off RSNA training hands whose joints were checked by eye on zoomed overlays.
_FINGER_PRIOR = (np.array([0.13, 0.47]), np.array([0.07, 0.07]))
_THUMB_PRIOR = (np.array([0.22, 0.52]), np.array([0.08, 0.09]))
_SCALE = {1: (2.3, 0.4), 2: (1.65, 0.3), 3: (1.85, 0.3), 4: (1.75, 0.3), 5: (1.45, 0.3)}


def _palm(mask: np.ndarray) -> tuple[np.ndarray, float]:
    """Palm centre (x, y) and radius: the largest inscribed circle of the palm.

    The widest inscribed circle of the whole mask can sit in the forearm (infants' radiographs often
    show more forearm than hand), so the palm is the topmost strong maximum of the row-wise largest
    inscribed radius: the first wide part of the hand below the fingers.
    """
    from scipy.ndimage import uniform_filter1d
    from scipy.signal import find_peaks

    dist = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 5)
    per_row = uniform_filter1d(dist.max(axis=1), 5)
    peaks, _ = find_peaks(np.concatenate([[0.0], per_row, [0.0]]), prominence=0.05 * per_row.max())
    peaks = peaks - 1
    strong = [p for p in peaks if per_row[p] >= 0.6 * per_row.max()]
    row = int(strong[0]) if strong else int(np.argmax(per_row))
    band = dist[max(0, row - 3) : row + 4]
    y, x = np.unravel_index(int(np.argmax(band)), band.shape)
    y += max(0, row - 3)
    return np.array([float(x), float(y)]), float(dist[y, x])


def _contour(mask: np.ndarray) -> np.ndarray:
    """Outer contour (K, 2) of the largest component, as float (x, y) points."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return np.empty((0, 2))
    return max(contours, key=cv2.contourArea)[:, 0, :].astype(float)


def _circular_smooth(values: np.ndarray, width: int) -> np.ndarray:
    if width < 2:
        return values
    kernel = np.ones(width) / width
    padded = np.concatenate([values[-width:], values, values[:width]])
    return np.convolve(padded, kernel, mode="same")[width:-width]


def _tips_and_valleys(contour: np.ndarray, palm: np.ndarray, radius: float, shape) -> tuple[list, list]:
    """Fingertip and valley contour indices: peaks and troughs of the distance from the palm centre.

    Candidate tips lie above the wrist (not lower than half a palm radius under the palm centre) and
    off the canvas's bottom edge. Returns (tips, valleys) as contour indices, tips ordered by angle
    from the image's left (little finger) to its right (thumb), valleys between consecutive tips.
    """
    from scipy.signal import find_peaks

    n = len(contour)
    if n < 20:
        return [], []
    rel = contour - palm
    dist = _circular_smooth(np.hypot(rel[:, 0], rel[:, 1]), max(3, n // 200))
    # Roll so the contour starts at its lowest point (the wrist), never inside a finger.
    start = int(np.argmax(contour[:, 1]))
    order = np.roll(np.arange(n), -start)
    d = dist[order]
    peaks, props = find_peaks(d, prominence=0.12 * radius, distance=max(3, int(0.3 * radius)))
    keep = []
    for p, prom in zip(peaks, props["prominences"]):
        x, y = contour[order[p]]
        if y > palm[1] + 0.5 * radius or y >= shape[0] - 2:
            continue
        if d[p] < 1.3 * radius:
            continue
        keep.append((order[p], prom, d[p]))
    if len(keep) > 5:  # drop the least prominent extras (markers, film edges)
        keep = sorted(keep, key=lambda t: -t[1] * t[2])[:5]
    tips = [t[0] for t in keep]
    angles = [math.atan2(contour[i, 0] - palm[0], palm[1] - contour[i, 1]) for i in tips]
    tips = [t for _, t in sorted(zip(angles, tips))]
    valleys = []
    pos = {int(np.flatnonzero(order == t)[0]): t for t in tips}
    ordered_positions = sorted(pos)
    for a, b in zip(ordered_positions[:-1], ordered_positions[1:]):
        valleys.append(int(order[a + int(np.argmin(d[a : b + 1]))]))
    return tips, valleys


def _sample(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Bilinear samples of ``image`` at float (x, y) ``points`` of any leading shape; 0 outside."""
    pts = np.asarray(points, np.float32)
    flat = pts.reshape(-1, 2)
    values = cv2.remap(
        image.astype(np.float32), flat[:, 0].reshape(-1, 1), flat[:, 1].reshape(-1, 1),
        cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0,
    )
    return values.reshape(pts.shape[:-1])


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.hypot(v[0], v[1]))
    return v / n if n > 0 else np.array([0.0, 1.0])


def _normal(d: np.ndarray) -> np.ndarray:
    return np.array([-d[1], d[0]])


def _track(image: np.ndarray, start: np.ndarray, direction: np.ndarray, *, length: float,
           half_width: float, step: float = 2.0) -> np.ndarray:
    """Follow a bone from ``start`` along ``direction`` for ``length`` pixels.

    Each step moves ``step`` pixels ahead and re-centres on the bright bone: the centroid of the
    squared (intensity - cross-section minimum) over a cross-section of +/- ``half_width``; the direction
    is the mean of the last few steps, so the track bends with a finger but does not jitter.
    Returns (K, 2) points (x, y), 1 pixel apart.
    """
    offsets = np.linspace(-half_width, half_width, max(5, int(2 * half_width) + 1))
    points = [np.asarray(start, float)]
    d = _unit(np.asarray(direction, float))
    d0 = d
    n_steps = max(2, int(length / step))
    for _ in range(n_steps):
        p = points[-1] + d * step
        normal = _normal(d)
        section = _sample(image, p[None, :] + offsets[:, None] * normal[None, :])
        w = (section - section.min()) ** 2
        if w.sum() > 0:
            shift = float((w * offsets).sum() / w.sum())
            p = p + normal * 0.5 * shift
        points.append(p)
        back = points[max(0, len(points) - 6)]
        new = _unit(points[-1] - back) if len(points) > 3 else d
        # Never turn back on itself or swing far from the initial direction.
        if np.dot(new, d0) > 0.8:
            d = new
    points = np.array(points)
    return _resample(points, 1.0)


def _resample(points: np.ndarray, spacing: float) -> np.ndarray:
    seg = np.hypot(*np.diff(points, axis=0).T)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    if s[-1] <= 0:
        return points[:1]
    t = np.arange(0.0, s[-1] + 1e-9, spacing)
    return np.column_stack([np.interp(t, s, points[:, 0]), np.interp(t, s, points[:, 1])])


def _profile(image: np.ndarray, track: np.ndarray, half_width: float) -> np.ndarray:
    """Mean intensity across the bone (+/- ``half_width``) at each point of ``track``."""
    if len(track) < 3:
        return np.zeros(len(track))
    d = np.gradient(track, axis=0)
    d /= np.maximum(np.hypot(d[:, 0], d[:, 1]), 1e-9)[:, None]
    normal = np.column_stack([-d[:, 1], d[:, 0]])
    offsets = np.linspace(-half_width, half_width, max(3, int(2 * half_width) + 1))
    pts = track[:, None, :] + offsets[None, :, None] * normal[:, None, :]
    return _sample(image, pts).mean(axis=1)


def _joints(profile: np.ndarray, prior, *, start: int, scale: tuple, width: float, top: int = 6) -> list:
    """Three joints along a profile: the dark bands whose spacing best matches ``prior``.

    A joint space or an open growth plate is a narrow dark band across the bone: a peak of the
    profile's black top-hat (grey closing over ``width`` pixels minus the profile), which also removes
    the slow brightening from the fingertip to the palm. ``prior`` = (fractions of the first two
    joints along the tip-to-third-joint length, their spreads); positions count from the profile's
    start (the fingertip) and only bands past ``start`` (the bone's tip) are candidates. ``scale`` =
    (expected, spread) of the third joint's distance in pixels. A strong band skipped between the
    tip and the third joint counts against a triple (a joint left out). Returns the ``top`` best
    (score, positions) pairs, best first, positions as indices into the profile; empty when no triple fits.
    """
    from scipy.ndimage import gaussian_filter1d, grey_closing
    from scipy.signal import find_peaks

    smooth = gaussian_filter1d(profile.astype(float), 0.7)
    dark = grey_closing(smooth, size=max(3, int(width))) - smooth
    peaks, props = find_peaks(dark, prominence=0.015)
    keep = peaks > start + 1
    peaks, height = peaks[keep], props["prominences"][keep]
    if len(peaks) < 3:
        return []
    if len(peaks) > 16:
        best = np.sort(np.argsort(-height)[:16])
        peaks, height = peaks[best], height[best]
    norm = float(np.sort(height)[-3:].mean()) or 1.0
    strength = height / norm
    frac, spread = prior
    pos = peaks.astype(float)
    candidates = []
    for k in range(2, len(peaks)):
        c = pos[k]
        scale_err = ((c - scale[0]) / scale[1]) ** 2
        if scale_err > 9.0:
            continue
        # A strong dark band skipped between the tip and the third joint is a joint left out.
        skipped_total = float(strength[:k].sum())
        for j in range(1, k):
            for i in range(j):
                err = scale_err + ((pos[i] / c - frac[0]) / spread[0]) ** 2 + ((pos[j] / c - frac[1]) / spread[1]) ** 2
                chosen = strength[i] + strength[j] + strength[k]
                skipped = skipped_total - strength[i] - strength[j]
                score = chosen - 0.7 * skipped - 0.5 * err
                candidates.append((float(score), [int(peaks[i]), int(peaks[j]), int(peaks[k])]))
    candidates.sort(key=lambda c: -c[0])
    return candidates[:top]


def _bone_start(profile: np.ndarray) -> int:
    """Index where the bone begins past the fingertip's soft tissue (profile above half its median)."""
    from scipy.ndimage import gaussian_filter1d

    smooth = gaussian_filter1d(profile.astype(float), 1.0)
    level = 0.5 * float(np.median(smooth))
    above = np.flatnonzero(smooth > level)
    return int(above[0]) if len(above) else 0


def _angle(toward_tip: np.ndarray) -> float:
    """Region angle (degrees counter-clockwise from up) of a bone pointing along ``toward_tip``."""
    return math.degrees(math.atan2(-toward_tip[0], -toward_tip[1]))


def _tangent(track: np.ndarray, index: int, reach: int = 6) -> np.ndarray:
    """Unit direction of ``track`` at ``index``, pointing away from the tip."""
    i0, i1 = max(0, index - reach), min(len(track) - 1, index + reach)
    return _unit(track[i1] - track[i0])


def _box(name: str, joint: np.ndarray, toward_tip: np.ndarray, shift: float, side: float) -> Region:
    center = joint + shift * toward_tip
    return Region(name, (float(center[0]), float(center[1])), (float(side), float(side)), _angle(toward_tip), True)


def _ray(image, contour, tips, k, palm, radius):
    """Track one ray (k = 0 for the little finger ... 4 for the thumb) and find its three joints."""
    tip = contour[tips[k]]
    finger = 5 - k
    prior = _THUMB_PRIOR if finger == 1 else _FINGER_PRIOR
    scale, spread = _SCALE[finger]
    track = _track(image, tip, palm - tip, length=(scale + 3.5 * spread) * radius, half_width=0.25 * radius)
    profile = _profile(image, track, 0.08 * radius)
    start = _bone_start(profile)
    candidates = _joints(profile, prior, start=start, scale=(scale * radius, spread * radius), width=0.2 * radius)
    if not candidates:
        return None
    return {"tip": tip, "track": track, "start": start, "candidates": candidates,
            "joints": candidates[0][1], "score": candidates[0][0]}


# Tip-to-MCP length of the index, ring and little fingers relative to the middle finger's:
# (median, spread) of log ratios on RSNA training hands.
_LENGTH_RATIO = {2: (math.log(0.87), 0.07), 4: (math.log(0.94), 0.06), 5: (math.log(0.78), 0.10)}


def _choose_consistent(rays: dict) -> None:
    """Pick one joint triple per finger (2-5) so that the fingers are in proportion.

    Each finger keeps its few best triples; the combination with the best sum of triple scores minus
    a penalty on the fingers' tip-to-MCP lengths relative to the middle finger's wins. Updates
    ``rays`` in place.
    """
    import itertools

    fingers = [f for f in (2, 3, 4, 5) if f in rays]
    if 3 not in rays or len(fingers) < 2:
        return
    options = {}
    for f in fingers:
        track = rays[f]["track"]
        options[f] = [(score, joints, float(np.hypot(*(track[joints[2]] - track[0]))))
                      for score, joints in rays[f]["candidates"]]
    best, best_value = None, -math.inf
    for combo in itertools.product(*(options[f] for f in fingers)):
        chosen = dict(zip(fingers, combo))
        l3 = chosen[3][2]
        value = sum(c[0] for c in combo)
        for f in fingers:
            if f != 3 and l3 > 0:
                mu, sd = _LENGTH_RATIO[f]
                value -= 0.5 * ((math.log(max(chosen[f][2], 1e-6) / l3) - mu) / sd) ** 2
        if value > best_value:
            best, best_value = chosen, value
    for f, (score, joints, _) in best.items():
        rays[f]["joints"], rays[f]["score"] = joints, score


def detect_regions(image: np.ndarray, mask: np.ndarray) -> HandRegions:
    """Landmarks and TW3 regions of one hand in the canonical view.

    Parameters
    ----------
    image : (M, N) ndarray
        Canonical hand (float in [0, 1], background 0), as ``PreprocessedHand.image``.
    mask : (M, N) ndarray of bool
        The hand, as ``PreprocessedHand.mask``.

    Returns
    -------
    HandRegions
        Never raises for an odd image: regions that cannot be placed have ``found=False``.
    """
    image = np.asarray(image, np.float32)
    mask = np.asarray(mask, bool)
    if image.ndim != 2 or mask.shape != image.shape:
        raise ValueError(f"image must be 2-D and mask the same shape; got {image.shape} and {mask.shape}")
    if mask.sum() < 0.01 * mask.size or mask.all():
        return _not_found()
    palm, radius = _palm(mask)
    if radius < 5:
        return _not_found()
    contour = _contour(mask)
    tips, valleys = _tips_and_valleys(contour, palm, radius, mask.shape)
    landmarks = {"palm": (float(palm[0]), float(palm[1]))}
    diag = {"diagnostics_palm_radius": radius, "diagnostics_fingers_found": float(len(tips))}
    if len(tips) != 5:
        result = _not_found(diag)
        result.landmarks.update(landmarks)
        return result
    for k, index in enumerate(tips):
        landmarks[f"tip{5 - k}"] = tuple(float(v) for v in contour[index])
    for k, index in enumerate(valleys):
        landmarks[f"valley{4 - k}{5 - k}"] = tuple(float(v) for v in contour[index])

    regions, axes, rays = {}, {}, {}
    for k in range(5):
        ray = _ray(image, contour, tips, k, palm, radius)
        if ray is not None:
            rays[5 - k] = ray
    _choose_consistent(rays)
    for finger, ray in rays.items():
        track, (j1, j2, j3) = ray["track"], ray["joints"]
        axes[f"finger{finger}"] = track[: min(len(track), j3 + 1)].copy()
        p1, p2, p3 = track[j1], track[j2], track[j3]
        t1, t2, t3 = (-_tangent(track, j) for j in (j1, j2, j3))
        if finger == 1:
            landmarks.update(ip1=tuple(p1), mcp1=tuple(p2), cmc1=tuple(p3))
            side = float(np.hypot(*(p2 - p1)))
            regions["dp1"] = _box("dp1", p1, t1, 0.10 * side, 0.50 * side)
            regions["pp1"] = _box("pp1", p2, t2, 0.12 * side, 0.60 * side)
            regions["mc1"] = _box("mc1", p3, t3, 0.15 * side, 0.60 * side)
        else:
            landmarks.update({f"dip{finger}": tuple(p1), f"pip{finger}": tuple(p2), f"mcp{finger}": tuple(p3)})
            side = float(np.hypot(*(p3 - p2)))
            if finger in (3, 5):
                regions[f"dp{finger}"] = _box(f"dp{finger}", p1, t1, 0.10 * side, 0.45 * side)
                regions[f"mp{finger}"] = _box(f"mp{finger}", p2, t2, 0.10 * side, 0.50 * side)
                regions[f"pp{finger}"] = _box(f"pp{finger}", p3, t3, 0.12 * side, 0.55 * side)
                regions[f"mc{finger}"] = _box(f"mc{finger}", p3, t3, -0.15 * side, 0.55 * side)
    if 3 in rays:
        regions.update(_wrist(mask, rays[3], landmarks))
    landmarks = {name: (float(x), float(y)) for name, (x, y) in landmarks.items()}
    for name in REGION_NAMES:
        regions.setdefault(name, Region(name))
    check = _sane(rays, regions, landmarks, mask)
    diag.update({f"diagnostics_{name}_found": float(regions[name].found) for name in REGION_NAMES})
    diag["diagnostics_regions_found"] = float(sum(r.found for r in regions.values()))
    diag["diagnostics_regions_ok"] = float(check == 0)
    diag["diagnostics_regions_check"] = float(check)
    return HandRegions(regions={name: regions[name] for name in REGION_NAMES}, landmarks=landmarks,
                       axes=axes, diagnostics=diag)


def _extent(mask: np.ndarray, point: np.ndarray, normal: np.ndarray, reach: float) -> tuple[float, float]:
    """Distances from ``point`` to the mask's edge along -``normal`` and +``normal`` (within ``reach``)."""
    steps = np.arange(0.0, reach, 1.0)
    out = []
    for sign in (-1.0, 1.0):
        pts = point[None, :] + sign * steps[:, None] * normal[None, :]
        inside = _sample(mask.astype(np.float32), pts) > 0.5
        outside = np.flatnonzero(~inside)
        out.append(float(steps[outside[0]]) if len(outside) else float(reach))
    return out[0], out[1]


def _wrist(mask: np.ndarray, ray3: dict, landmarks: dict) -> dict:
    """Radius, ulna and carpal regions, placed from the middle finger's MCP joint and axis.

    In units of the third proximal phalanx's length P, the third metacarpal is about 1.45 P long and
    the carpus about 0.8 P high (adult and child hands alike, within the spread a box allows), so the
    distal radial and ulnar epiphyses lie about 2.2 P proximal of MCP3 on the middle finger's line. The
    radius takes the thumb side of the wrist, the ulna the other side.
    """
    track, (_, j2, j3) = ray3["track"], ray3["joints"]
    mcp, pip = track[j3], track[j2]
    length = float(np.hypot(*(mcp - pip)))
    u = _tangent(track, j3, reach=max(6, int(0.5 * length)))  # towards the wrist
    normal = np.array([-u[1], u[0]])  # towards the image's right (thumb side) when u points down
    if normal[0] < 0:
        normal = -normal
    level = mcp + 2.2 * length * u
    ulnar, radial = _extent(mask, level, normal, 3.0 * length)
    width = ulnar + radial
    if width < 0.5 * length or not mask[int(np.clip(level[1], 0, mask.shape[0] - 1)), int(np.clip(level[0], 0, mask.shape[1] - 1))]:
        return {}
    left = level - ulnar * normal
    radius_c = left + 0.66 * width * normal
    ulna_c = left + 0.22 * width * normal
    carpal_c = mcp + 1.85 * length * u + 0.05 * width * normal
    tip_dir = -u
    landmarks.update(radius=tuple(radius_c), ulna=tuple(ulna_c))
    angle = _angle(tip_dir)
    return {
        "radius": Region("radius", tuple(map(float, radius_c)), (0.7 * length, 0.40 * width), angle, True),
        "ulna": Region("ulna", tuple(map(float, ulna_c)), (0.6 * length, 0.28 * width), angle, True),
        "carpal": Region("carpal", tuple(map(float, carpal_c)), (0.9 * length, 0.6 * width), angle, True),
    }


#: Codes of ``diagnostics_regions_check``: which geometric check failed first (0 = all passed).
CHECKS = {
    0: "passed",
    1: "a ray or region is missing",
    2: "index finger out of proportion to the middle finger",
    3: "ring finger out of proportion to the middle finger",
    4: "little finger out of proportion to the middle finger",
    5: "thumb tip not below the middle fingertip",
    6: "MCP joints not in a row",
    7: "a region centre off the hand",
}


def _sane(rays: dict, regions: dict, landmarks: dict, mask: np.ndarray) -> int:
    """Geometric checks: five rays with joints, fingers in proportion, MCPs in a row, boxes on the hand.

    Returns the code (:data:`CHECKS`) of the first failed check, 0 when all pass.
    """
    if len(rays) != 5 or not all(r.found for r in regions.values()):
        return 1

    def length(f):
        ray = rays[f]
        return float(np.hypot(*(ray["track"][ray["joints"][2]] - ray["track"][0])))

    l3 = length(3)
    if l3 <= 0:
        return 1
    ratios = {2: (0.70, 1.05, 2), 4: (0.75, 1.05, 3), 5: (0.55, 0.95, 4)}
    for finger, (lo, hi, code) in ratios.items():
        if not lo <= length(finger) / l3 <= hi:
            return code
    if not landmarks["tip1"][1] > landmarks["tip3"][1]:
        return 5
    pp3 = float(np.hypot(*np.subtract(landmarks["mcp3"], landmarks["pip3"])))
    mcp_y = [landmarks[f"mcp{f}"][1] for f in (2, 3, 4, 5)]
    if np.ptp(mcp_y) > 1.2 * pp3:
        return 6
    h, w = mask.shape
    grown = cv2.dilate(mask.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    for region in regions.values():
        x, y = region.center
        if not (0 <= x < w and 0 <= y < h) or not grown[int(y), int(x)]:
            return 7
    return 0

"""Landmarks and regions of interest of the hand: phalanx joints, metacarpals, carpus, radius and ulna.

Works on the canonical view of :func:`boneage_features.preprocess.preprocess_hand` (fingers up, wrist at
the bottom, thumb on the image's right). Every decision is classical and can be drawn
(:func:`boneage_features.plotting.plot_regions`):

1. palm centre and palm radius: the largest inscribed circle of the palm (distance transform);
2. fingertips: peaks of the distance from the palm centre along the hand contour; webs: the lowest
   contour point between two neighbouring tips. The five tips are ordered from the little finger
   (image left) to the thumb (image right). Fingers pressed together leave no notch: then the four
   finger bones are found as bright ridges across the proximal phalanges and followed up to the tips;
3. finger axes: from each tip the bone is tracked towards the palm, re-centring each step on the bright
   bone across a cross-section (so touching fingers do not pull the axis off the bone);
4. joints along each axis: joint spaces and growth plates are dark bands across the bone, i.e. peaks of
   the black top-hat of the intensity profile along the axis. Of the candidate bands, the triple
   (DIP/PIP/MCP for a finger, IP/MCP/CMC for the thumb) is chosen by the darkness of its bands, the
   proportions of the phalanges, where the web lies along the proximal phalanx, the proximal phalanx's
   length over its shaft width, and agreement between the fingers: the middle finger anchors the
   others (proximal phalanx and fingertip-to-MCP lengths in proportion, the MCP joints in a row).
   A flat fingertip may have been cut off by the film's edge: its distal phalanx is then reported off
   the film instead of being placed on the wrong bone;
5. the wrist: from the thumb's CMC joint (on the distal carpal row) along the middle finger's line, or
   along the forearm's own axis where the wrist is bent sideways, the carpus and the distal ends of the
   radius (thumb side) and ulna, placed from the hand's edges there;
6. left and right (:func:`find_regions`): where the preprocessing's mirroring is in doubt, the search is
   repeated on the mirrored view and the view whose fingers fit their joints' priors better is kept.

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

from .preprocess import mirror_hand

__all__ = [
    "CHECKS",
    "DETECTOR_VERSION",
    "LANDMARK_NAMES",
    "REGION_NAMES",
    "HandRegions",
    "Region",
    "detect_regions",
    "extract_patch",
    "find_regions",
]

logger = logging.getLogger(__name__)

#: Bump when a change to the detector moves regions for the same image; it keys the feature cache.
DETECTOR_VERSION = 8

#: The regions, in feature-table order: the TW3 RUS bones (thumb, middle and little finger rays, then
#: radius and ulna) and the carpus. Metacarpals 3 and 5 are read at their heads (distal epiphyses);
#: the first metacarpal, whose epiphysis is proximal, at its base.
REGION_NAMES = (
    "dp1", "pp1", "mc1",
    "dp3", "mp3", "pp3", "mc3",
    "dp5", "mp5", "pp5", "mc5",
    "radius", "ulna", "carpal",
)


#: Every landmark :func:`~boneage_features.regions.detect_regions` may report, in a fixed order (tables
#: built from detections get the same columns whichever landmarks were found).
LANDMARK_NAMES = (
    "palm",
    "tip1", "tip2", "tip3", "tip4", "tip5",
    "valley12", "valley23", "valley34", "valley45",
    "ip1", "mcp1", "mcp2", "mcp3", "mcp4", "mcp5", "cmc1",
    "dip2", "dip3", "dip4", "dip5",
    "pip2", "pip3", "pip4", "pip5",
    "radius", "ulna",
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

    def frame(self) -> tuple[np.ndarray, np.ndarray]:
        """Unit vectors (x, y) of the upright patch: ``up`` along the bone towards its tip, ``right``."""
        a = math.radians(self.angle)
        return np.array([-math.sin(a), -math.cos(a)]), np.array([math.cos(a), -math.sin(a)])

    def corners(self) -> np.ndarray:
        """(4, 2) array of the box's corners (x, y), starting top-left, clockwise in the upright patch."""
        h, w = self.size
        up, right = self.frame()
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
        ``diagnostics_regions_ok`` (1 when every region on the film was found and the geometry passed
        its checks; a distal phalanx cut off by the film's edge is not on the film),
        ``diagnostics_regions_check`` (the first failed check, :data:`CHECKS`),
        ``diagnostics_fingers_found`` (fingertips on the contour), ``diagnostics_fingers_from_bone`` (1
        when the fingertips came from the finger bones instead), ``diagnostics_thumb_adducted`` (1 when
        the thumb's tip was taken near the palm, beside four fingertips), ``diagnostics_fingers_cut`` (rays
        whose distal phalanx is off the film), ``diagnostics_palm_radius``,
        ``diagnostics_rays_fit`` (how well the five rays' chosen joints fit: the sum of their scores,
        higher is better; NaN without five rays), ``diagnostics_mirrored_by_fingers`` (1 when
        :func:`find_regions` mirrored the hand because its fingers fit better that way) and
        ``diagnostics_regions_error`` (1 when the detector itself failed on the image).
    """

    regions: dict
    landmarks: dict = field(default_factory=dict)
    axes: dict = field(default_factory=dict)
    diagnostics: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when every region on the film was found and the geometry passed its sanity checks."""
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
    up, right = region.frame()
    # Affine map from patch pixels (u, v) to image (x, y): origin at the box's top-left corner.
    origin = region.corners()[0]
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
        diagnostics_fingers_found=0.0, diagnostics_fingers_from_bone=0.0, diagnostics_thumb_adducted=0.0,
        diagnostics_fingers_cut=0.0,
        diagnostics_palm_radius=math.nan, diagnostics_regions_error=0.0,
        diagnostics_rays_fit=math.nan, diagnostics_mirrored_by_fingers=0.0,
    )
    if diagnostics:
        diag.update(diagnostics)
    return HandRegions(regions=regions, diagnostics=diag)


# ----------------------------------------------------------------------------------------------------
# Detection. Lengths are in canonical pixels unless said otherwise; points are (x, y) float arrays.
# ----------------------------------------------------------------------------------------------------

# Along a ray, the dark bands of three joints split the bone from its tip into segments: distal,
# middle and proximal phalanx for a finger (tip-DIP-PIP-MCP), distal and proximal phalanx and first
# metacarpal for the thumb (tip-IP-MCP-CMC). _SEGMENTS: (expected, spread) of the length ratios
# first/second and second/third segment (adult middle finger about 19, 28 and 45 mm; thumb 22, 31
# and 46 mm); the first is loose, as the distal phalanx ossifies late and is often cut off by the
# film's edge. The segments are nearly self-similar, so ratios alone cannot tell tuft-DIP-PIP from
# DIP-PIP-MCP from PIP-MCP-CMC. Three things settle it:
# - the webs: a web between two fingers lies along the proximal phalanx, about three quarters of the
#   way from the PIP to the MCP joint, the thumb's web level with its MCP joint (_WEB_FRACTION: where,
#   as a fraction of the second-to-third joint segment; on 300 training hands the shifted triples put
#   the web at the second joint instead). A web nearer the fingertip than _MIN_WEB palm radii is a
#   notch between fingers touching lower down, not a web;
# - slenderness: the third segment's length over its shaft's width (_SLENDER) is about 4.7 for a
#   proximal phalanx, against about 3 for a middle phalanx and 8 for a metacarpal; loose for the
#   thumb, whose first metacarpal's shaft width is often measured across the thenar soft tissue or
#   the second metacarpal beside it (the CMC joint then lost to a band inside the metacarpal);
# - a loose prior on the third joint's distance from the fingertip in palm radii (_SCALE), the only
#   guide where no web shows.
# The little finger has its own priors ("little"): its distal phalanx is nearly as long as its short
# middle one, and its web lies lower on the proximal phalanx. On the 62 little fingers judged right by
# eye (tests/data/regions_eye_check*.csv), 10th-90th percentiles: first/second 0.74-1.09 (median
# 0.90), second/third 0.52-0.63 (0.59), web fraction 0.49-0.74 (0.62). Those were found under the
# finger priors, so the first ratio's prior is centred a little lower (0.85) and kept wide.
_SEGMENTS = {"finger": ((0.6, 0.3), (0.62, 0.1)), "little": ((0.85, 0.3), (0.59, 0.1)), "thumb": ((0.72, 0.3), (0.68, 0.14))}
_WEB_FRACTION = {"finger": (0.75, 0.15), "little": (0.6, 0.15), "thumb": (0.0, 0.2)}
_MIN_WEB = {1: 1.0, 2: 1.0, 3: 1.0, 4: 1.0, 5: 0.6}
_SLENDER = {"finger": (4.7, 0.7), "little": (4.7, 0.7), "thumb": (4.3, 2.0)}
_SCALE = {1: (2.3, 0.7), 2: (1.9, 0.7), 3: (2.1, 0.7), 4: (2.0, 0.7), 5: (1.6, 0.7)}
# Fingertips are often cut off by the film's edge, so the distal phalanx may be missing: a triple may
# start at the cut instead of a first joint, at a cost in score: small where the tip is flat (the
# hand's width 2 pixels inside the tip is at least _FLAT_TIP of its width 0.3 palm radii inside; a
# whole fingertip is rounded, about 0.55), large where it is round. On a flat tip, a "first joint"
# closer to the cut than _EDGE_BAND of the next segment is the cut's own edge, not a joint.
_FLAT_TIP = 0.8
# Dark bands count as joint candidates from a prominence of _PROMINENCE. Where that leaves a whole
# (rounded) fingertip without a first joint, bands from _WEAK_PROMINENCE are taken too, within
# _DISTAL_ZONE of the third joint's expected distance from the bone's tip.
_PROMINENCE = 0.015
_WEAK_PROMINENCE = 0.006
_DISTAL_ZONE = 0.4
_CUT_PENALTY = {True: 0.75, False: 3.0}
_EDGE_BAND = 0.25
# The bone's start past the fingertip's soft tissue is judged against the profile's first
# _START_REACH palm radii (about the distal phalanx and part of the middle one).
_START_REACH = 0.5
# Prominence (palm radii) of fingertips on the contour; when that finds fewer than five, fingers held
# together leave only shallow notches between their tips and a second search takes those.
_TIP_PROMINENCE = 0.12
_TOUCHING_PROMINENCE = 0.04
# The nearest a thumb held against the hand may reach, in palm radii from the palm centre (other
# fingertips: 1.3).
_THUMB_REACH = 1.0
# Where the proximal phalanges cross the hand, in palm radii above the palm centre (fingers held
# together, _tips_from_bones).
_BONE_ROWS = (1.3, 1.7)
_BONE_LEVEL = 0.8
# Agreement between fingers 2-5 (_choose_consistent): the middle finger's triples scoring within
# _CLOSE_CALL of its best are each tried as the anchor. Relative to the middle finger, the log ratio of
# another finger's proximal phalanx (_LENGTH_RATIO) and of its fingertip-to-MCP length (_REACH_RATIO):
# (median, spread below, spread above). Medians and spreads from the 36 hands checked by eye
# (tests/data/regions_golden.csv; adult lengths of the proximal phalanges about 40, 42, 32 and 45 mm
# agree); the spread below is wider because a finger bent towards the film looks shorter, never
# longer (the little finger most), and each squared deviation is capped at _RATIO_CAP so that one
# odd finger cannot overrule its joints' evidence. The MCP joints lie on a gentle arc: the spread of
# its second differences in units of the middle finger's proximal phalanx (_MCP_ROW).
_CLOSE_CALL = 2.0
_LENGTH_RATIO = {2: (-0.11, 0.08, 0.05), 4: (-0.07, 0.08, 0.05), 5: (-0.31, 0.15, 0.07)}
_REACH_RATIO = {2: (-0.14, 0.15, 0.08), 4: (-0.07, 0.15, 0.08), 5: (-0.4, 0.25, 0.12)}
_RATIO_CAP = 12.0
# The thumb against the middle finger's proximal phalanx (log ratios, as above): its first metacarpal
# and its proximal phalanx. On the 32 thumbs judged right by eye, MC1/PP3 0.81-1.15 (median 0.97) and
# PP1/PP3 0.52-0.78 (median 0.68); where the first metacarpal's box lay on the carpus, its "CMC
# joint" was a gap between carpal bones and MC1/PP3 came out 1.2-1.5. The ratio to the thumb's own
# proximal phalanx separates those far less (1.2-1.8 right, 1.3-2.0 on the carpus).
_THUMB_RATIO = {"mc1": (-0.03, 0.10, 0.07), "pp1": (-0.39, 0.15, 0.12)}
_MCP_ROW = 0.25
# The ulna's end (_ulna_end): tracked up from _ULNA_BACK third proximal phalanges below the level
# shared with the radius; it ends where the profile stays under _ULNA_END of the shaft's brightness;
# an end further than _ULNA_REACH of those lengths from that level is a wrong turn.
_ULNA_BACK = 0.6
_ULNA_END = 0.75
_ULNA_REACH = 0.6
# The first metacarpal's line: from its MCP joint through this fraction of the way to its CMC joint.
_MC1_SHAFT = 0.6


def _ratio_penalty(value: float, prior: tuple) -> float:
    """Squared deviation of a log length ratio from ``prior`` (median, spread below, spread above),
    capped at :data:`_RATIO_CAP`."""
    mu, below, above = prior
    z = (value - mu) / (below if value < mu else above)
    return min(z * z, _RATIO_CAP)


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


def _tips_and_valleys(contour: np.ndarray, palm: np.ndarray, radius: float, shape,
                      prominence: float = _TIP_PROMINENCE, adducted_thumb: bool = False) -> tuple[list, list]:
    """Fingertip and valley contour indices: peaks and troughs of the distance from the palm centre.

    Candidate tips lie above the wrist (not lower than half a palm radius under the palm centre) and
    off the canvas's bottom edge, at least 1.3 palm radii from its centre. With ``adducted_thumb``,
    when exactly four such tips are found, the most prominent peak nearer the palm (from
    :data:`_THUMB_REACH` radii) on the thumb's side of all four is taken as the thumb: a thumb held
    against the hand reaches little beyond the palm. Returns (tips, valleys) as contour indices, tips
    ordered by angle from the image's left (little finger) to its right (thumb), valleys between
    consecutive tips.
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
    peaks, props = find_peaks(d, prominence=prominence * radius, distance=max(3, int(0.3 * radius)))

    def angle(i):
        return math.atan2(contour[i, 0] - palm[0], palm[1] - contour[i, 1])

    keep, near = [], []
    for p, prom in zip(peaks, props["prominences"]):
        x, y = contour[order[p]]
        if y > palm[1] + 0.5 * radius or y >= shape[0] - 2:
            continue
        if d[p] < 1.3 * radius:
            if d[p] >= _THUMB_REACH * radius and x > palm[0]:
                near.append((order[p], prom, d[p]))
            continue
        keep.append((order[p], prom, d[p]))
    if len(keep) > 5:  # drop the least prominent extras (markers, film edges)
        keep = sorted(keep, key=lambda t: -t[1] * t[2])[:5]
    if adducted_thumb and len(keep) == 4:
        beyond = [t for t in near if angle(t[0]) > max(angle(k[0]) for k in keep)]
        if beyond:
            keep.append(max(beyond, key=lambda t: t[1]))
    tips = [t[0] for t in keep]
    angles = [angle(i) for i in tips]
    tips = [t for _, t in sorted(zip(angles, tips))]
    valleys = []
    pos = {int(np.flatnonzero(order == t)[0]): t for t in tips}
    ordered_positions = sorted(pos)
    for a, b in zip(ordered_positions[:-1], ordered_positions[1:]):
        valleys.append(int(order[a + int(np.argmin(d[a : b + 1]))]))
    # The contour may run either way round: order the valleys by angle too, like the tips.
    valleys.sort(key=lambda i: math.atan2(contour[i, 0] - palm[0], palm[1] - contour[i, 1]))
    return tips, valleys


def _tips_from_bones(image: np.ndarray, mask: np.ndarray, contour_tips: list, palm: np.ndarray,
                     radius: float) -> list | None:
    """Five fingertips of a hand whose fingers touch along their length, from the finger bones.

    The thumb stands apart even then: it is the contour tip furthest towards the image's right below
    the level of the other fingers' proximal phalanges. Across the proximal phalanges (a band of
    rows _BONE_ROWS palm radii above the palm centre, left of the thumb) the four finger bones are
    bright ridges parted by darker soft tissue; each of the four most prominent ridges is followed
    a little way up its bone, then straight on to where the hand ends: that finger's tip. Returns
    (tips, directions) ordered like :func:`_tips_and_valleys` (little finger first; each direction
    from the tip down the finger, None for the thumb), or None when four ridges do not show.
    """
    from scipy.ndimage import gaussian_filter1d
    from scipy.signal import find_peaks

    thumbs = [t for t in contour_tips if t[1] > palm[1] - _BONE_ROWS[1] * radius and t[0] > palm[0]]
    if not thumbs:
        return None
    thumb = max(thumbs, key=lambda t: t[0])
    y0, y1 = int(palm[1] - _BONE_ROWS[1] * radius), int(palm[1] - _BONE_ROWS[0] * radius)
    x1 = int(min(mask.shape[1], thumb[0] - 0.3 * radius))
    if y0 < 0 or y1 <= y0 or x1 < 10:
        return None
    band = image[y0:y1, :x1]
    inside = mask[y0:y1, :x1].mean(axis=0) > 0.5
    profile = gaussian_filter1d(band.mean(axis=0), max(1.0, 0.04 * radius))
    profile[~inside] = 0.0
    peaks, props = find_peaks(profile, distance=max(3, int(0.25 * radius)), prominence=0.02)
    if len(peaks) < 4:
        return None
    peaks = np.sort(peaks[np.argsort(-props["prominences"])[:4]])
    row = 0.5 * (y0 + y1)
    tips, directions = [], []
    for x in peaks:
        # Follow the bone a little way for its direction, then go straight on to the hand's edge: past
        # the distal phalanx only soft tissue is left, in which a re-centring track would wander.
        track = _track(image, np.array([float(x), row]), np.array([0.0, -1.0]), length=0.6 * radius,
                       half_width=0.12 * radius)
        # Keep the part on the bone: inside the hand, and no longer run than a joint space's below
        # _BONE_LEVEL of the bone's brightness (the track's upper quartile).
        level = _sample(image, track)
        inside = np.array([_on_mask(mask, p) for p in track])
        dark = (level < _BONE_LEVEL * float(np.percentile(level, 75))) | ~inside
        run, end = 0, len(track)
        for i, is_dark in enumerate(dark):
            run = run + 1 if is_dark else 0
            if run >= max(4, 0.1 * radius) or not inside[i]:
                end = i - run + 1
                break
        track = track[:end]
        if len(track) < 2:
            return None
        direction = _unit(track[-1] - track[0]) if len(track) > 5 else np.array([0.0, -1.0])
        if direction[1] > -0.5:  # not heading up the hand
            return None
        point = track[-1]
        for _ in range(int(3 * radius)):
            ahead = point + direction
            if not _on_mask(mask, ahead):
                break
            point = ahead
        tips.append(point)
        directions.append(-direction)
    return tips + [thumb], directions + [None]


def _on_mask(mask: np.ndarray, point: np.ndarray) -> bool:
    """Whether the (x, y) ``point`` lies on the image and inside the boolean ``mask``."""
    h, w = mask.shape
    return bool(0 <= point[0] < w and 0 <= point[1] < h and mask[int(point[1]), int(point[0])])


def _sample(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Bilinear samples of ``image`` at float (x, y) ``points`` of any leading shape; 0 outside."""
    pts = np.asarray(points, np.float32)
    flat = pts.reshape(-1, 2)
    n = len(flat)
    if n == 0:
        return np.zeros(pts.shape[:-1], np.float32)
    cols = min(n, 4096)  # cv2.remap maps must stay under 32767 a side
    rows = -(-n // cols)
    grid = np.zeros((rows * cols, 2), np.float32)
    grid[:n] = flat
    values = cv2.remap(
        np.ascontiguousarray(image, dtype=np.float32), grid[:, 0].reshape(rows, cols), grid[:, 1].reshape(rows, cols),
        cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0,
    )
    return values.reshape(-1)[:n].reshape(pts.shape[:-1])


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


def _bone_widths(image: np.ndarray, track: np.ndarray, reach: float) -> np.ndarray:
    """Width of the bright bone across ``track`` at each of its points (full width at half height).

    The cross-section (+/- ``reach`` pixels) is sampled every half pixel; the bone is the run above
    halfway between the brightest value near the axis and the section's 10th percentile that
    contains that brightest value.
    """
    if len(track) < 3:
        return np.full(len(track), np.nan)
    d = np.gradient(track, axis=0)
    d /= np.maximum(np.hypot(d[:, 0], d[:, 1]), 1e-9)[:, None]
    normal = np.column_stack([-d[:, 1], d[:, 0]])
    offsets = np.arange(-reach, reach + 0.25, 0.5)
    sections = _sample(image, track[:, None, :] + offsets[None, :, None] * normal[:, None, :])
    centre, near = len(offsets) // 2, 6
    peak_at = centre - near + np.argmax(sections[:, centre - near : centre + near + 1], axis=1)
    rows = np.arange(len(track))
    half = 0.5 * (sections[rows, peak_at] + np.percentile(sections, 10, axis=1))
    below = sections <= half[:, None]
    index = np.arange(sections.shape[1])[None, :]
    left = np.where(below & (index < peak_at[:, None]), index, -1).max(axis=1)
    right = np.where(below & (index > peak_at[:, None]), index, sections.shape[1]).min(axis=1)
    return 0.5 * (right - left - 1)


def _joints(profile: np.ndarray, segments, *, start: int, scale: tuple, web: float | None, web_fraction: tuple,
            cut: float, flat: bool, width: float, bone_widths: np.ndarray, slender: tuple, weak: bool = False,
            top: int = 40) -> list:
    """Candidate joint triples along a profile: dark bands whose spacing fits a finger.

    A joint space or an open growth plate is a narrow dark band across the bone: a peak of the
    profile's black top-hat (grey closing over ``width`` pixels minus the profile), which also removes
    the slow brightening from the fingertip to the palm. Only bands past ``start`` (the bone's tip)
    are candidates. A triple scores by the darkness of its bands, minus the strong bands it skips (a
    joint left out), minus squared deviations of: its segment ratios from ``segments``; the web
    (``web``, pixels from the fingertip; None where no web shows) from its place ``web_fraction``
    along the second-to-third joint segment; the third segment's slenderness (its length over the
    median of ``bone_widths`` along its middle half) from ``slender``; the third joint's distance
    from ``scale`` (expected, spread; pixels). The first joint may be the fingertip's cut by the
    film's edge (position -1: the distal phalanx is missing), at a penalty of ``cut``; on a ``flat``
    tip, bands right at the cut are its edge, not joints. With ``weak``, shallower bands near the bone's
    tip are candidates too (:data:`_WEAK_PROMINENCE`). Returns the ``top`` best (score,
    positions) pairs, best first, positions as indices into the profile; empty when no triple fits.
    """
    from scipy.ndimage import gaussian_filter1d, grey_closing
    from scipy.signal import find_peaks

    smooth = gaussian_filter1d(profile.astype(float), 0.7)
    dark = grey_closing(smooth, size=max(3, int(width))) - smooth
    peaks, props = find_peaks(dark, prominence=_WEAK_PROMINENCE if weak else _PROMINENCE)
    keep = peaks > start + 1
    if weak:  # weak bands only near the bone's tip
        keep &= (props["prominences"] >= _PROMINENCE) | (peaks < start + _DISTAL_ZONE * scale[0])
    peaks, height = peaks[keep], props["prominences"][keep]
    if len(peaks) > 16:
        best = np.sort(np.argsort(-height)[:16])
        peaks, height = peaks[best], height[best]
    if len(peaks) < 2:
        return []
    norm = float(np.sort(height)[-3:].mean()) or 1.0
    strength = height / norm
    # The bone's tip stands in for a first joint cut off with the fingertip.
    peaks = np.concatenate([[start], peaks])
    strength = np.concatenate([[0.0], strength])
    (r1_mu, r1_sd), (r2_mu, r2_sd) = segments
    w_mu, w_sd = web_fraction
    pos = peaks.astype(float)
    candidates = []
    for k in range(2, len(peaks)):
        c_err = ((pos[k] - scale[0]) / scale[1]) ** 2
        if c_err > 9.0:
            continue
        skipped_total = float(strength[:k].sum())
        for j in range(1, k):
            third = pos[k] - pos[j]
            shaft = bone_widths[int(pos[j] + 0.25 * third) : int(pos[k] - 0.25 * third) + 1]
            shaft = shaft[np.isfinite(shaft)]
            slender_err = ((third / float(np.median(shaft)) - slender[0]) / slender[1]) ** 2 if len(shaft) else 0.0
            web_err = 0.0
            if web is not None:
                web_err = (((web - pos[j]) / third - w_mu) / w_sd) ** 2
                if web_err > 9.0:
                    continue
            for i in range(j):
                if i == 0:
                    first_err, label = 2.0 * cut, -1
                elif flat and pos[i] - start < _EDGE_BAND * (pos[j] - pos[i]):
                    continue
                else:
                    first_err, label = ((pos[i] - start) / (pos[j] - pos[i]) - r1_mu) / r1_sd, int(peaks[i])
                    first_err = first_err**2
                second = pos[j] - pos[i]
                err = c_err + web_err + slender_err + first_err + ((second / third - r2_mu) / r2_sd) ** 2
                chosen = strength[i] + strength[j] + strength[k]
                skipped = skipped_total - strength[i] - strength[j]
                score = chosen - 0.7 * skipped - 0.5 * err
                candidates.append((float(score), [label, int(peaks[j]), int(peaks[k])]))
    candidates.sort(key=lambda c: -c[0])
    return candidates[:top]


def _bone_start(profile: np.ndarray, reach: int) -> int:
    """Index where the bone begins past the fingertip's soft tissue: the profile above half its median
    over the first ``reach`` points (the finger's own phalanges; further on, brighter metacarpals and
    carpals would put the level above a thin distal phalanx)."""
    from scipy.ndimage import gaussian_filter1d

    smooth = gaussian_filter1d(profile.astype(float), 1.0)
    level = 0.5 * float(np.median(smooth[: max(reach, 3)]))
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


def _tip_flatness(mask: np.ndarray, tip: np.ndarray, direction: np.ndarray, radius: float) -> float:
    """Width of the hand 2 pixels inside a fingertip over its width 0.3 palm radii inside (float mask)."""
    d = _unit(direction)
    n = _normal(d)
    near = sum(_extent(mask, tip + 2 * d, n, 0.5 * radius))
    far = sum(_extent(mask, tip + 0.3 * radius * d, n, 0.5 * radius))
    return near / far if far > 0 else 0.0


def _ray(image, hand, tips, valleys, k, palm, radius, known_direction=None):
    """Track one ray (k = 0 for the little finger ... 4 for the thumb) and find its joint candidates.

    ``hand`` is ``image > 0`` as float32. ``known_direction``: the finger's direction from its tip
    towards the palm when it is known already (fingers found from their bones).
    """
    tip = tips[k]
    finger = 5 - k
    scale = (_SCALE[finger][0] * radius, _SCALE[finger][1] * radius)
    if known_direction is not None:
        direction = known_direction
    else:
        # The finger's own direction, from a short first pass (the palm centre can lie well off the
        # axis of a spread little finger or thumb); the full track is then held near it.
        first = _track(image, tip, palm - tip, length=0.9 * radius, half_width=0.2 * radius)
        direction = first[-1] - first[min(5, len(first) - 1)] if len(first) > 8 else palm - tip
        if np.dot(_unit(direction), _unit(palm - tip)) < 0.3:
            direction = palm - tip
    track = _track(image, tip, direction, length=scale[0] + 2.5 * scale[1] + 5, half_width=0.2 * radius)
    profile = _profile(image, track, 0.08 * radius)
    start = _bone_start(profile, int(_START_REACH * radius))
    # The webs beside the finger: the index finger's is the one towards the middle finger (the
    # thumb's web lies far lower); the thumb's is the one towards the index finger. Each is placed
    # along the finger at its nearest point of the tracked axis.
    sides = {1: [3], 2: [2], 3: [1, 2], 4: [0, 1], 5: [0]}[finger]
    along = []
    for j in sides:
        if j < len(valleys) and valleys[j] is not None:
            gap = np.hypot(*(track - valleys[j]).T)
            along.append(float(np.argmin(gap)))
    web = float(np.mean(along)) if along else None
    if web is not None and (web < _MIN_WEB[finger] * radius or web >= len(track) - 2):
        web = None
    kind = {1: "thumb", 5: "little"}.get(finger, "finger")
    segments = _SEGMENTS[kind]
    flat = _tip_flatness(hand, tip, direction, radius) >= _FLAT_TIP
    options = dict(start=start, scale=scale, web_fraction=_WEB_FRACTION[kind], slender=_SLENDER[kind],
                   bone_widths=_bone_widths(image, track, 0.4 * radius), flat=flat,
                   cut=_CUT_PENALTY[flat],
                   width=0.2 * radius)
    options["web"] = web
    candidates = _joints(profile, segments, **options)
    if not candidates and web is not None:  # a web misplaced (touching or bent fingers): go without it
        options["web"] = None
        candidates = _joints(profile, segments, **options)
    if candidates and candidates[0][1][0] < 0 and not flat:
        # A whole, rounded fingertip, yet no first joint: on the profile's steep rise from the tip
        # the distal joint can be a shallow notch. Look again with the weak bands near the tip.
        candidates = _joints(profile, segments, weak=True, **options) or candidates
    if not candidates:
        return None
    return {"tip": tip, "track": track, "start": start, "web": web, "candidates": candidates,
            "joints": candidates[0][1], "score": candidates[0][0]}


def _straight_cmc(track: np.ndarray, mcp: int, cmc: int, point: np.ndarray, toward_tip: np.ndarray):
    """The thumb's CMC joint on its first metacarpal's own line.

    The metacarpal is straight, but at its base the track tends to veer towards the palm onto the
    trapezium or the second metacarpal's base. The joint is put on the shaft's line (from the MCP
    joint, index ``mcp`` of ``track``, through :data:`_MC1_SHAFT` of the way to the CMC joint,
    ``cmc``) at the joint's straight distance from the MCP. Returns (point, toward_tip); the given
    ``point`` and ``toward_tip`` where the shaft has no length.
    """
    start = track[mcp]
    shaft = track[min(len(track) - 1, mcp + max(2, int(_MC1_SHAFT * (cmc - mcp))))] - start
    if np.hypot(*shaft) == 0:
        return point, toward_tip
    toward_tip = -_unit(shaft)
    return start - float(np.hypot(*(track[cmc] - start))) * toward_tip, toward_tip


def _choose_consistent(rays: dict) -> None:
    """Pick one joint triple per finger (2-5) so that the fingers agree with each other.

    The middle finger anchors the others: for each of its triples scoring within :data:`_CLOSE_CALL`
    of its best, every other finger's triples are rescored by how well their proximal phalanx and
    their fingertip-to-MCP length fit the middle finger's (:data:`_LENGTH_RATIO`, :data:`_REACH_RATIO`),
    and their best few are combined under a penalty on the bend of the row of MCP joints (second
    differences, in units of _MCP_ROW times the middle finger's proximal phalanx). The middle
    triple with the best total wins, with the other fingers' choices under it; the thumb's triple is
    then chosen against the winning middle finger (:func:`_choose_thumb`). Updates ``rays`` in place.
    """
    import itertools

    fingers = [f for f in (2, 3, 4, 5) if f in rays]
    if 3 not in rays or len(fingers) < 2:
        return

    def geometry(f, joints):
        track = rays[f]["track"]
        return float(np.hypot(*(track[joints[2]] - track[joints[1]]))), float(joints[2]), track[joints[2]]

    middle = rays[3]["candidates"]
    best, best_value = None, -math.inf
    for score3, joints3 in middle:
        if score3 < middle[0][0] - _CLOSE_CALL:
            break
        pp3, reach3, mcp3 = geometry(3, joints3)
        if pp3 <= 0 or reach3 <= 0:
            continue
        options = {3: [(score3, joints3, mcp3)]}
        for f in fingers:
            if f == 3:
                continue
            rescored = []
            for score, joints in rays[f]["candidates"]:
                pp, reach, mcp = geometry(f, joints)
                penalty = _ratio_penalty(math.log(max(pp, 1e-6) / pp3), _LENGTH_RATIO[f])
                penalty += _ratio_penalty(math.log(max(reach, 1e-6) / reach3), _REACH_RATIO[f])
                rescored.append((score - 0.5 * penalty, joints, mcp))
            options[f] = sorted(rescored, key=lambda c: -c[0])[:3]
        for combo in itertools.product(*(options[f] for f in fingers)):
            value = sum(c[0] for c in combo)
            row = [c[2] for c in combo]
            for a, b, c in zip(row, row[1:], row[2:]):
                bend = float(np.hypot(*(a - 2 * b + c))) / (_MCP_ROW * pp3)
                value -= 0.5 * bend**2
            if value > best_value:
                best, best_value = dict(zip(fingers, combo)), value
    if best is None:
        return
    for f, (score, joints, _) in best.items():
        rays[f]["joints"], rays[f]["score"] = joints, score
    if 1 in rays:
        _choose_thumb(rays[1], geometry(3, best[3][1])[0])


def _choose_thumb(ray: dict, pp3: float) -> None:
    """Rescore the thumb's joint triples by its bones' lengths relative to the middle finger's proximal
    phalanx ``pp3`` (:data:`_THUMB_RATIO`) and keep the best; updates ``ray`` in place."""
    track = ray["track"]
    rescored = []
    for score, joints in ray["candidates"]:
        first, mcp, cmc = (track[j] if j >= 0 else None for j in joints)
        penalty = _ratio_penalty(math.log(max(float(np.hypot(*(cmc - mcp))), 1e-6) / pp3), _THUMB_RATIO["mc1"])
        if first is not None:
            penalty += _ratio_penalty(math.log(max(float(np.hypot(*(mcp - first))), 1e-6) / pp3), _THUMB_RATIO["pp1"])
        rescored.append((score - 0.5 * penalty, joints))
    ray["score"], ray["joints"] = max(rescored, key=lambda c: c[0])


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
        Never raises for an odd image: regions that cannot be placed have ``found=False`` (an
        unexpected failure inside the detector is logged and gives no regions).

    Raises
    ------
    ValueError
        When ``image`` is not 2-D or ``mask`` has another shape.
    """
    image = np.asarray(image, np.float32)
    mask = np.asarray(mask, bool)
    if image.ndim != 2 or mask.shape != image.shape:
        raise ValueError(f"image must be 2-D and mask the same shape; got {image.shape} and {mask.shape}")
    try:
        return _detect(image, mask)
    except Exception:  # a bug on one odd hand must cost its regions, not the image's other features
        logger.warning("landmark detection failed; no regions for this image", exc_info=True)
        return _not_found({"diagnostics_regions_error": 1.0})


# Left-right check (find_regions). The preprocessing mirrors a hand (diagnostics_flipped) from its
# mask's outline alone, and its 286 mirrorings of the 12,611 training hands were judged by eye (thumb
# side; tests/data/thumb_side.csv): 164 right, 111 wrong (11 unclear or upside down), the wrong ones
# often infants' hands, fists and fingers held together. The joints tell a thumb from a little
# finger better: a thumb read as a little finger (and the index as the ring finger) fits those
# fingers' priors badly, so the sum of the five rays' scores (diagnostics_rays_fit) drops.
# - A hand the preprocessing mirrored is searched both ways and the view whose rays fit better is kept
#   (or the only one with five rays). On the 275 judged mirrorings this undoes 60 wrong ones and 10
#   right ones; hands without five rays either way (about 50) stay as the preprocessing had them.
# - A hand left as it was is searched again mirrored only when its rays fit worse than _MIRROR_TRY;
#   the mirrored view is kept when its rays fit better by more than _MIRROR_MARGIN and well on their
#   own (above _MIRROR_CLEAN): 6 of the 12,611 training hands, each with its thumb on the left of the
#   view (looked at); none of 53 others judged at random. The phantom drawn mirrored is turned back.
_MIRROR_TRY = -5.0
_MIRROR_MARGIN = 4.0
_MIRROR_CLEAN = -3.0


def find_regions(hand):
    """Regions of a preprocessed hand, with its left-right orientation checked by its fingers.

    :func:`detect_regions` on ``hand`` and, where the orientation is in doubt, on the mirrored view
    (:func:`boneage_features.preprocess.mirror_hand`): for a hand the preprocessing mirrored, the
    view whose fingers fit better is kept; for any other hand, the mirrored view wins only when its
    fingers fit much better and well on their own.

    Parameters
    ----------
    hand : PreprocessedHand
        From :func:`boneage_features.preprocess.preprocess_hand`.

    Returns
    -------
    hand : PreprocessedHand
        ``hand`` itself, or its mirrored view (``diagnostics_flipped`` toggled; ``to_source`` still maps
        to the input radiograph).
    regions : HandRegions
        The regions in the returned hand's view; ``diagnostics_mirrored_by_fingers`` is 1 when mirrored.
    """
    found = detect_regions(hand.image, hand.mask)
    fit = found.diagnostics.get("diagnostics_rays_fit", math.nan)
    mirrored_before = bool(hand.diagnostics.get("diagnostics_flipped", 0.0))
    if not mirrored_before and not fit < _MIRROR_TRY:  # a good fit, or no five rays to judge by
        return hand, found
    mirrored = mirror_hand(hand)
    other = detect_regions(mirrored.image, mirrored.mask)
    other_fit = other.diagnostics.get("diagnostics_rays_fit", math.nan)
    if mirrored_before:
        better = other_fit > fit or (math.isnan(fit) and not math.isnan(other_fit))
    else:
        better = other_fit > fit + _MIRROR_MARGIN and other_fit > _MIRROR_CLEAN
    if not better:
        return hand, found
    other.diagnostics["diagnostics_mirrored_by_fingers"] = 1.0
    return mirrored, other


def _detect(image: np.ndarray, mask: np.ndarray) -> HandRegions:
    """The body of :func:`detect_regions`, on checked arguments."""
    if mask.sum() < 0.01 * mask.size or mask.all():
        return _not_found()
    palm, radius = _palm(mask)
    if radius < 5:
        return _not_found()
    contour = _contour(mask)
    tips, valleys = _tips_and_valleys(contour, palm, radius, mask.shape)
    if len(tips) < 5:  # fingers held together: only shallow notches part the fingertips
        tips, valleys = _tips_and_valleys(contour, palm, radius, mask.shape, prominence=_TOUCHING_PROMINENCE)
    diag = {"diagnostics_palm_radius": radius, "diagnostics_fingers_found": float(len(tips)),
            "diagnostics_fingers_from_bone": 0.0, "diagnostics_thumb_adducted": 0.0,
            "diagnostics_regions_error": 0.0, "diagnostics_rays_fit": math.nan, "diagnostics_mirrored_by_fingers": 0.0}
    tips, valleys = [contour[i] for i in tips], [contour[i] for i in valleys]
    directions = [None] * 5
    if len(tips) < 5:  # fingers pressed together: no notch at all; find them from their bones
        found = _tips_from_bones(image, mask, tips, palm, radius)
        if found is not None:
            (tips, directions), valleys = found, [None] * 4
            diag["diagnostics_fingers_from_bone"] = 1.0
        elif len(tips) == 4:  # four fingers and no thumb: an adducted thumb's tip lies near the palm
            near, near_valleys = _tips_and_valleys(contour, palm, radius, mask.shape,
                                                   prominence=_TOUCHING_PROMINENCE, adducted_thumb=True)
            if len(near) == 5:
                tips, valleys = [contour[i] for i in near], [contour[i] for i in near_valleys]
                diag["diagnostics_thumb_adducted"] = 1.0
    landmarks = {"palm": (float(palm[0]), float(palm[1]))}
    if len(tips) != 5:
        result = _not_found(diag)
        result.landmarks.update(landmarks)
        return result
    for k, point in enumerate(tips):
        landmarks[f"tip{5 - k}"] = tuple(float(v) for v in point)
    for k, point in enumerate(valleys):
        if point is not None:
            landmarks[f"valley{4 - k}{5 - k}"] = tuple(float(v) for v in point)

    regions, axes, rays = {}, {}, {}
    hand = (image > 0).astype(np.float32)  # where the tips' flatness is measured, once for all rays
    for k in range(5):
        ray = _ray(image, hand, tips, valleys, k, palm, radius, known_direction=directions[k])
        if ray is not None:
            rays[5 - k] = ray
    _choose_consistent(rays)
    diag["diagnostics_rays_fit"] = float(sum(r["score"] for r in rays.values())) if len(rays) == 5 else math.nan
    cut_fingers = 0
    for finger, ray in rays.items():
        track, (j1, j2, j3) = ray["track"], ray["joints"]
        axes[f"finger{finger}"] = track[: min(len(track), j3 + 1)].copy()
        cut = j1 < 0  # the distal phalanx is off the film: no first joint, no distal region
        cut_fingers += cut
        p2, p3 = track[j2], track[j3]
        t2, t3 = -_tangent(track, j2), -_tangent(track, j3)
        p1 = None if cut else track[j1]
        t1 = None if cut else -_tangent(track, j1)
        side = float(np.hypot(*(p3 - p2)))
        if finger == 1:
            p3, t3 = _straight_cmc(track, j2, j3, p3, t3)
            side *= 0.68  # the proximal phalanx, from the metacarpal's length
            if not cut:
                side = float(np.hypot(*(p2 - p1)))
                landmarks["ip1"] = tuple(p1)
                regions["dp1"] = _box("dp1", p1, t1, 0.10 * side, 0.50 * side)
            landmarks.update(mcp1=tuple(p2), cmc1=tuple(p3))
            regions["pp1"] = _box("pp1", p2, t2, 0.12 * side, 0.60 * side)
            regions["mc1"] = _box("mc1", p3, t3, 0.15 * side, 0.60 * side)
        else:
            if not cut:
                landmarks[f"dip{finger}"] = tuple(p1)
            landmarks.update({f"pip{finger}": tuple(p2), f"mcp{finger}": tuple(p3)})
            if finger in (3, 5):
                if not cut:
                    regions[f"dp{finger}"] = _box(f"dp{finger}", p1, t1, 0.10 * side, 0.45 * side)
                regions[f"mp{finger}"] = _box(f"mp{finger}", p2, t2, 0.10 * side, 0.50 * side)
                regions[f"pp{finger}"] = _box(f"pp{finger}", p3, t3, 0.12 * side, 0.55 * side)
                regions[f"mc{finger}"] = _box(f"mc{finger}", p3, t3, -0.15 * side, 0.55 * side)
    diag["diagnostics_fingers_cut"] = float(cut_fingers)
    if 3 in rays:
        regions.update(_wrist(image, mask, mask.astype(np.float32), rays[3], landmarks))
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
    """Distances from ``point`` to the mask's edge along -``normal`` and +``normal`` (within ``reach``).

    ``mask`` is float32 (1 inside), converted once by the caller: this runs several times per image.
    """
    steps = np.arange(0.0, reach, 1.0)
    out = []
    for sign in (-1.0, 1.0):
        pts = point[None, :] + sign * steps[:, None] * normal[None, :]
        inside = _sample(mask, pts) > 0.5
        outside = np.flatnonzero(~inside)
        out.append(float(steps[outside[0]]) if len(outside) else float(reach))
    return out[0], out[1]


def _forearm_direction(mask: np.ndarray, start: np.ndarray, reach: float) -> np.ndarray | None:
    """Unit direction of the forearm, away from the hand, from the mask's midline below ``start``.

    In the canonical view the forearm leaves the image at its bottom edge. The midline of each mask
    row from ``start`` down ``reach`` pixels (the centre of the run of mask pixels nearest the previous
    row's centre) is fitted by a line, x = a + b y. None when fewer than 8 rows are available (a crop
    that ends at the wrist).
    """
    h, w = mask.shape
    y0 = int(max(0, start[1]))
    y1 = int(min(h, start[1] + reach))
    centre = float(start[0])
    ys, xs = [], []
    for y in range(y0, y1):
        row = np.flatnonzero(mask[y])
        if len(row) < 2:
            continue
        runs = np.split(row, np.flatnonzero(np.diff(row) > 1) + 1)
        run = min(runs, key=lambda r: abs(0.5 * (r[0] + r[-1]) - centre))
        centre = 0.5 * (run[0] + run[-1])
        ys.append(y)
        xs.append(centre)
    if len(ys) < 8:
        return None
    b = float(np.polyfit(ys, xs, 1)[0])
    return _unit(np.array([b, 1.0]))


def _wrist(image: np.ndarray, mask: np.ndarray, mask_f: np.ndarray, ray3: dict, landmarks: dict) -> dict:
    """Radius, ulna and carpal regions, from the thumb's CMC joint and the forearm's axis.

    The first metacarpal's base (CMC1, found on the thumb's ray) sits on the distal carpal row: its
    level along the middle finger's line marks the carpometacarpal joints, the base point (without
    the thumb: 1.3 P past MCP3, P the third proximal phalanx's length). The wrist often bends sideways
    there (radial or ulnar deviation), so past the base the carpus and the forearm follow the
    forearm's own axis (:func:`_forearm_direction`; the middle finger's line where the crop shows too
    little forearm): the carpus is centred about 0.3 P along it and the distal epiphyses of the radius
    and ulna about 0.75 P along it. Across the axis, the radius takes the thumb side of the wrist and
    the ulna the other side, from the hand's edges at that level; the ulna's box then goes to the
    ulna's own end (:func:`_ulna_end`), which lies short of the radius's by a varying amount.
    """
    track, (_, j2, j3) = ray3["track"], ray3["joints"]
    mcp, pip = track[j3], track[j2]
    length = float(np.hypot(*(mcp - pip)))
    if length < 3:
        return {}
    u = _tangent(track, j3, reach=max(6, int(0.5 * length)))  # towards the wrist
    if "cmc1" in landmarks:
        base_s = float(np.dot(np.subtract(landmarks["cmc1"], mcp), u))
        base_s = float(np.clip(base_s, 0.8 * length, 2.2 * length))
    else:
        base_s = 1.3 * length
    base = mcp + base_s * u
    v = u
    if not _on_mask(mask, base + 0.75 * length * u):
        # The middle finger's line leaves the hand before the wrist: the wrist is bent sideways.
        bent = _forearm_direction(mask, base, 2.5 * length)
        if bent is not None and np.dot(bent, u) >= 0.5:
            v = bent
    normal = np.array([-v[1], v[0]])
    if normal[0] < 0:  # towards the image's right: the thumb side of a canonical hand
        normal = -normal
    carpal_s, wrist_s = 0.3 * length, 0.75 * length
    while wrist_s > carpal_s and not _on_mask(mask, base + wrist_s * v):  # a short crop: pull back onto the hand
        wrist_s -= 1.0
    if not _on_mask(mask, base + carpal_s * v) or not _on_mask(mask, base + wrist_s * v):
        return {}
    level = base + wrist_s * v
    ulnar, radial = _extent(mask_f, level, normal, 3.0 * length)
    width = ulnar + radial
    if width < 0.5 * length:
        return {}
    left = level - ulnar * normal
    radius_c = left + 0.64 * width * normal
    ulna_c = _ulna_end(image, mask, left + 0.24 * width * normal, v, normal, length, width)
    carpal_c = base + carpal_s * v + 0.05 * width * normal
    landmarks.update(radius=tuple(radius_c), ulna=tuple(ulna_c))
    angle = _angle(-v)
    return {
        "radius": Region("radius", tuple(map(float, radius_c)), (0.7 * length, 0.42 * width), angle, True),
        "ulna": Region("ulna", tuple(map(float, ulna_c)), (0.6 * length, 0.3 * width), angle, True),
        "carpal": Region("carpal", tuple(map(float, carpal_c)), (0.9 * length, 0.65 * width), angle, True),
    }


def _ulna_end(image: np.ndarray, mask: np.ndarray, estimate: np.ndarray, v: np.ndarray, normal: np.ndarray,
              length: float, width: float) -> np.ndarray:
    """The ulna's distal end, followed up its shaft from below ``estimate``; ``estimate`` where that fails.

    The ulna ends further from the fingers than the radius by a varying amount (ulnar variance), so
    the level shared with the radius often puts its box on the carpus or on the shaft. From
    :data:`_ULNA_BACK` ``length`` (P, the third proximal phalanx) down the forearm (``v``, away from the
    fingers) the track starts on the brightest point across (within a tenth of the wrist's
    ``width``), follows the bone towards the fingers, and stops where the profile stays under
    :data:`_ULNA_END` of the shaft's brightness (the joint space beyond the ulnar head, or an open
    growth plate). An end more than :data:`_ULNA_REACH` P along or 0.15 ``width`` across from the
    estimate is taken for a wrong turn.
    """
    from scipy.ndimage import gaussian_filter1d

    back = _ULNA_BACK * length
    while back > 0 and not _on_mask(mask, estimate + back * v):
        back -= 1.0
    below = estimate + back * v
    across = np.arange(-0.1 * width, 0.1 * width + 0.5, 0.5)
    section = gaussian_filter1d(_sample(image, below[None, :] + across[:, None] * normal[None, :]), 2.0)
    start = below + float(across[np.argmax(section)]) * normal
    track = _track(image, start, -v, length=back + 0.8 * length, half_width=0.06 * length)
    profile = gaussian_filter1d(_profile(image, track, 0.05 * length), 1.0)
    shaft = float(np.median(profile[: max(3, int(0.3 * length))]))
    dark = profile < _ULNA_END * shaft
    run = int(0.05 * length) + 2
    for i in range(int(0.15 * length), len(profile) - run):
        if dark[i : i + run].all():
            offset = track[i] - estimate
            if abs(float(np.dot(offset, v))) <= _ULNA_REACH * length and abs(float(np.dot(offset, normal))) <= 0.15 * width:
                return track[i]
            break
    return estimate


#: Codes of ``diagnostics_regions_check``: which geometric check failed first (0 = all passed).
CHECKS = {
    0: "passed",
    1: "a ray, or a region on the film, is missing",
    2: "index finger out of proportion to the middle finger",
    3: "ring finger out of proportion to the middle finger",
    4: "little finger out of proportion to the middle finger",
    5: "thumb tip not below the middle fingertip",
    6: "MCP joints not in a row",
    7: "a region centre off the hand",
}


def _sane(rays: dict, regions: dict, landmarks: dict, mask: np.ndarray) -> int:
    """Geometric checks: five rays with joints, fingers in proportion, MCPs in a row, boxes on the hand.

    A distal phalanx cut off by the film's edge is not on the image: its region is not required.
    Returns the code (:data:`CHECKS`) of the first failed check, 0 when all pass.
    """
    off_film = {f"dp{f}" for f, ray in rays.items() if ray["joints"][0] < 0}
    if len(rays) != 5 or not all(r.found for name, r in regions.items() if name not in off_film):
        return 1

    def length(f):  # the proximal phalanx (PIP to MCP) of a finger
        ray = rays[f]
        return float(np.hypot(*(ray["track"][ray["joints"][2]] - ray["track"][ray["joints"][1]])))

    l3 = length(3)
    if l3 <= 0:
        return 1
    ratios = {2: (0.70, 1.10, 2), 4: (0.75, 1.10, 3), 5: (0.50, 0.95, 4)}
    for finger, (lo, hi, code) in ratios.items():
        if not lo <= length(finger) / l3 <= hi:
            return code
    if not landmarks["tip1"][1] > landmarks["tip3"][1]:
        return 5
    pp3 = float(np.hypot(*np.subtract(landmarks["mcp3"], landmarks["pip3"])))
    mcp_y = [landmarks[f"mcp{f}"][1] for f in (2, 3, 4, 5)]
    if np.ptp(mcp_y) > 1.5 * pp3:
        return 6
    h, w = mask.shape
    grown = cv2.dilate(mask.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    for region in regions.values():
        if not region.found:
            continue
        x, y = region.center
        if not (0 <= x < w and 0 <= y < h) or not grown[int(y), int(x)]:
            return 7
    return 0

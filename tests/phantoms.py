"""A synthetic left hand in the canonical view with known joint positions, for testing the landmark detector.

Fingers 2-5 and the thumb are drawn as soft tissue around bright bones, with a dark band across the bone
at each joint; proportions follow an adult hand (phalanges about 19, 28 and 45 mm on the middle finger,
webs along the proximal phalanges, thumb web at its MCP joint). Coordinates are (x, y) pixels of a
384 x 320 canvas, thumb on the image's right.
"""

import cv2
import numpy as np

SHAPE = (384, 320)
SOFT, BONE, JOINT, BACKGROUND = 0.35, 0.78, 0.42, 0.0

# finger: (x of the axis, tip y, DIP y, PIP y, MCP y, soft-tissue half width, bone half width)
FINGERS = {
    5: (96, 78, 98, 128, 178, 12, 6),
    4: (132, 34, 58, 102, 170, 13, 7),
    3: (168, 20, 46, 92, 164, 14, 7),
    2: (204, 36, 60, 102, 168, 13, 7),
}
PALM_TOP = 150  # the webs between the fingers
PALM = (78, 228, 150, 292)  # x0, x1, y0, y1
FOREARM = (104, 204)
# thumb: tip, IP, MCP, CMC as (x, y), soft-tissue and bone half widths
THUMB = ((304, 112), (286, 142), (262, 182), (234, 238))
THUMB_WIDTHS = (14, 7)


def _band(image, a, b, at, half_width, value, thickness=3):
    """A dark band across the segment a-b at fraction ``at``, as wide as the bone."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    d = (b - a) / np.linalg.norm(b - a)
    n = np.array([-d[1], d[0]])
    c = a + at * (b - a)
    p, q = c + n * half_width, c - n * half_width
    cv2.line(image, tuple(int(round(v)) for v in p), tuple(int(round(v)) for v in q), value, thickness)


def _limb(image, a, b, half_width, value):
    cv2.line(image, tuple(int(round(v)) for v in a), tuple(int(round(v)) for v in b), value, 2 * half_width)


def draw_canonical_hand(*, seed=0, noise=0.02, touching=False, faint_distal=False):
    """(image, mask, truth) of a phantom hand; truth maps landmark names to (x, y).

    ``touching``: fingers 2-5 pressed together, the soft tissue between them filled up to just above the
    lower fingertip of each pair, so the contour shows no notch between them.
    ``faint_distal``: the distal phalanges of fingers 2-5 thin and faint (bone 0.33 in soft tissue of
    0.15), under half the brightness of the bones further down, as thin fingertips often are.
    """
    image = np.full(SHAPE, BACKGROUND, np.float32)
    x0, x1, y0, y1 = PALM
    # the palm narrows towards the index finger so that the thumb's web sits at its MCP joint
    palm = np.array([[x0, y0], [x1 - 11, y0], [x1 + 10, 192], [x1 + 18, 250], [x1, y1], [x0, y1]], np.int32)
    cv2.fillPoly(image, [palm], SOFT)
    cv2.rectangle(image, (FOREARM[0], y1), (FOREARM[1], SHAPE[0] - 1), SOFT, -1)
    truth = {}
    if touching:
        pairs = [(5, 4), (4, 3), (3, 2)]
        for a, b in pairs:
            xa, tip_a, soft_a = FINGERS[a][0], FINGERS[a][1], FINGERS[a][5]
            xb, tip_b, soft_b = FINGERS[b][0], FINGERS[b][1], FINGERS[b][5]
            cv2.rectangle(image, (xa, max(tip_a, tip_b) - 2), (xb, PALM_TOP + 2), SOFT, -1)
    for finger, (x, tip, dip, pip, mcp, soft, bone) in FINGERS.items():
        cv2.rectangle(image, (x - soft, tip + soft), (x + soft, PALM_TOP + 2), SOFT, -1)
        cv2.circle(image, (x, tip + soft), soft, SOFT, -1)
        # bones: from just below the fingertip pad to the metacarpal base
        _limb(image, (x, tip + 7), (x, 262), bone, BONE)
        if faint_distal:
            cv2.rectangle(image, (x - soft, tip), (x + soft, dip), 0.0, -1)
            cv2.rectangle(image, (x - soft + 3, tip + soft), (x + soft - 3, dip), 0.15, -1)
            cv2.circle(image, (x, tip + soft), soft - 3, 0.15, -1)
            _limb(image, (x, tip + 7), (x, dip), bone - 2, 0.33)
        for name, y in (("dip", dip), ("pip", pip), ("mcp", mcp)):
            level = 0.2 if faint_distal and name == "dip" else JOINT
            cv2.line(image, (x - bone, y), (x + bone, y), level, 3)
            truth[f"{name}{finger}"] = (float(x), float(y))
        truth[f"tip{finger}"] = (float(x), float(tip))
    # thumb: soft tissue from the tip down to the palm, bones and bands
    tip, ip, mcp, cmc = (np.asarray(p, float) for p in THUMB)
    soft, bone = THUMB_WIDTHS
    _limb(image, tip, cmc + (cmc - mcp) * 0.2, soft, SOFT)
    cv2.circle(image, tuple(int(v) for v in tip), soft, SOFT, -1)
    d = (cmc - tip) / np.linalg.norm(cmc - tip)
    _limb(image, tip + d * 8, cmc + d * 30, bone, BONE)  # on into the trapezium
    for name, p in (("ip1", ip), ("mcp1", mcp), ("cmc1", cmc)):
        _band(image, p - d * 5, p + d * 5, 0.5, bone, JOINT)
        truth[name] = (float(p[0]), float(p[1]))
    truth["tip1"] = (float(tip[0]), float(tip[1]))
    # carpus and forearm bones
    cv2.rectangle(image, (126, 268), (214, 300), 0.6, -1)
    cv2.rectangle(image, (160, 306), (200, 383), BONE, -1)  # radius (thumb side)
    cv2.rectangle(image, (114, 312), (146, 383), BONE, -1)  # ulna
    mask = image > 0.1
    rng = np.random.default_rng(seed)
    image = image + rng.normal(0, noise, image.shape).astype(np.float32)
    image = cv2.GaussianBlur(image, (3, 3), 0.8)
    image[~mask] = 0.0
    return np.clip(image, 0, 1), mask, truth

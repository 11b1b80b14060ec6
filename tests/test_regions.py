"""Landmarks and regions: a phantom with known joints, degenerate inputs, patches, and real radiographs."""

import math

import cv2
import numpy as np
import pandas as pd
import pytest

from boneage_features.regions import (
    CHECKS,
    LANDMARK_NAMES,
    REGION_NAMES,
    HandRegions,
    Region,
    detect_regions,
    extract_patch,
    find_regions,
)

from .phantoms import FINGERS, draw_canonical_hand

JOINTS = [f"{j}{f}" for f in (2, 3, 4, 5) for j in ("dip", "pip", "mcp")] + ["ip1", "mcp1", "cmc1"]


def _error(found, truth, name):
    return float(np.hypot(*np.subtract(found.landmarks[name], truth[name])))


def _check_shape(result: HandRegions):
    assert set(result.regions) == set(REGION_NAMES)
    for name in REGION_NAMES:
        assert result.diagnostics[f"diagnostics_{name}_found"] in (0.0, 1.0)
        assert result.regions[name].found == bool(result.diagnostics[f"diagnostics_{name}_found"])
    assert result.diagnostics["diagnostics_regions_check"] in CHECKS


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_phantom_joints_are_found_where_they_were_drawn(seed):
    image, mask, truth = draw_canonical_hand(seed=seed)
    found = detect_regions(image, mask)
    _check_shape(found)
    assert found.ok, found.diagnostics
    assert found.diagnostics["diagnostics_regions_found"] == len(REGION_NAMES)
    assert set(found.landmarks) == set(LANDMARK_NAMES)
    errors = {name: _error(found, truth, name) for name in JOINTS}
    assert max(errors.values()) <= 4.0, errors


def test_phantom_regions_sit_on_their_joints_and_turn_with_the_bone():
    image, mask, truth = draw_canonical_hand()
    found = detect_regions(image, mask)
    for region, joint in (("dp3", "dip3"), ("mp3", "pip3"), ("pp3", "mcp3"), ("mc3", "mcp3"), ("mp5", "pip5")):
        box = found.regions[region]
        assert abs(box.center[0] - truth[joint][0]) < 3
        assert abs(box.center[1] - truth[joint][1]) < 0.5 * box.size[0]
        assert abs(box.angle) < 5  # the fingers are upright in the phantom
    # proximal phalanx above the MCP joint, the metacarpal head below it
    assert found.regions["pp3"].center[1] < truth["mcp3"][1] < found.regions["mc3"].center[1]
    # the thumb leans to the right: its boxes are turned clockwise (negative angle)
    assert -60 < found.regions["pp1"].angle < -15
    # radius on the thumb side of the ulna, both proximal of the metacarpophalangeal joints
    assert found.landmarks["radius"][0] > found.landmarks["ulna"][0]
    assert found.landmarks["radius"][1] > truth["mcp3"][1] + 60


def test_a_tilted_hand_is_followed():
    image, mask, truth = draw_canonical_hand()
    angle = 10.0
    matrix = cv2.getRotationMatrix2D((160, 200), angle, 1.0)
    turned = cv2.warpAffine(image, matrix, image.shape[::-1], flags=cv2.INTER_LINEAR)
    turned_mask = cv2.warpAffine(mask.astype(np.uint8), matrix, mask.shape[::-1], flags=cv2.INTER_NEAREST) > 0
    moved = {k: tuple(matrix @ np.array([x, y, 1.0])) for k, (x, y) in truth.items()}
    found = detect_regions(turned, turned_mask)
    errors = {name: _error(found, moved, name) for name in JOINTS if name in found.landmarks}
    assert len(errors) == len(JOINTS)
    assert max(errors.values()) <= 5.0, errors


def test_fingertips_cut_off_by_the_film_edge_leave_the_rest():
    image, mask, truth = draw_canonical_hand()
    cut = 52  # below the middle finger's DIP joint: its distal phalanx is off the film
    image[:cut], mask[:cut] = 0.0, False
    found = detect_regions(image, mask)
    assert not found.regions["dp3"].found
    assert found.diagnostics["diagnostics_fingers_cut"] >= 1
    for name in ("pip3", "mcp3"):
        assert _error(found, truth, name) <= 4.0
    assert found.regions["mp3"].found and found.regions["pp3"].found
    assert found.ok  # a region off the film is not required


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fingers_pressed_together_are_found_from_their_bones(seed):
    """No notch parts the fingertips on the contour: the finger bones still place fingers 2-4 and the thumb."""
    image, mask, truth = draw_canonical_hand(seed=seed, touching=True)
    found = detect_regions(image, mask)
    assert found.diagnostics["diagnostics_fingers_found"] < 5  # the contour alone does not find them
    assert found.diagnostics["diagnostics_fingers_from_bone"] == 1.0
    joints = [f"{j}{f}" for f in (2, 3, 4) for j in ("dip", "pip", "mcp")] + ["ip1", "mcp1", "cmc1"]
    errors = {name: _error(found, truth, name) for name in joints}
    assert max(errors.values()) <= 4.0, errors
    # The little finger's tip sinks into the filled-in web on this phantom, so its distal phalanx may
    # be taken as cut off; its MCP joint must still be on its own ray.
    assert abs(found.landmarks["mcp5"][0] - truth["mcp5"][0]) <= 4.0


def test_an_adducted_thumb_is_the_fifth_tip_only_beside_four_fingers():
    """A thumb held against the hand ends within 1.3 palm radii of the palm centre, where no other
    fingertip is looked for: beside four fingertips, the most prominent such bump on the thumb's side
    becomes the thumb; on the little finger's side, or without the flag, it does not."""
    from boneage_features.regions import _contour, _tips_and_valleys

    palm, radius = np.array([160.0, 240.0]), 70.0
    mask = np.zeros((384, 320), np.uint8)
    cv2.circle(mask, (160, 240), 70, 1, -1)
    for x, top in ((110, 80), (145, 50), (180, 45), (215, 70)):
        cv2.rectangle(mask, (x - 12, top), (x + 12, 220), 1, -1)
    with_bump = mask.copy()
    cv2.circle(with_bump, (160 + 66, 240 - 30), 14, 1, -1)  # reaches ~1.2 radii from the palm centre
    contour = _contour(with_bump.astype(bool))
    assert len(_tips_and_valleys(contour, palm, radius, mask.shape, prominence=0.04)[0]) == 4
    tips, valleys = _tips_and_valleys(contour, palm, radius, mask.shape, prominence=0.04, adducted_thumb=True)
    assert len(tips) == 5 and len(valleys) == 4
    thumb = contour[tips[-1]]
    assert thumb[0] > 230 and 190 < thumb[1] < 230  # the bump, last in order (the thumb's place)
    mirrored = np.ascontiguousarray(with_bump[:, ::-1])  # the bump on the little finger's side
    contour = _contour(mirrored.astype(bool))
    mirrored_palm = np.array([320 - 1 - palm[0], palm[1]])
    assert len(_tips_and_valleys(contour, mirrored_palm, radius, mask.shape, prominence=0.04,
                                 adducted_thumb=True)[0]) == 4


# Thumbs held against the hand, looked at at 2x (thumb chain on the thumb: IP, MCP and CMC joints):
# their joints in pixels of the 384-px radiograph.
ADDUCTED_THUMBS = {
    4281: {"ip1": (224, 220), "mcp1": (206, 259), "cmc1": (162, 294)},
    7449: {"ip1": (298, 161), "mcp1": (279, 204), "cmc1": (274, 253)},
    4796: {"ip1": (220, 154), "mcp1": (218, 197), "cmc1": (207, 253)},
    1612: {"ip1": (169, 178), "mcp1": (161, 203), "cmc1": (143, 235)},
}


def test_real_hands_with_an_adducted_thumb_get_their_regions(data_dir):
    """Detector 6 found four fingertips and no regions on these hands: the thumb lay against the palm."""
    for image_id, joints in ADDUCTED_THUMBS.items():
        hand, found = _detect_file(data_dir / "train" / f"{image_id}.jpg")
        assert found.diagnostics["diagnostics_thumb_adducted"] == 1.0 and found.ok, (image_id, found.diagnostics)
        tolerance = 0.03 * _source_height(hand)
        for name, expected in joints.items():
            assert np.hypot(*(hand.to_source(found.landmarks[name]) - expected)) <= tolerance, (image_id, name)


def _two_hands():
    image, mask, _ = draw_canonical_hand()
    small = cv2.resize(image, (160, 192))
    both = np.zeros_like(image)
    both[100:292, 0:160] = small
    both[100:292, 160:320] = small
    return both, both > 0.1


@pytest.mark.parametrize(
    "case",
    ["empty", "everything", "noise", "blob", "two hands", "tiny"],
)
def test_degenerate_inputs_give_regions_not_found_never_an_exception(case):
    rng = np.random.default_rng(0)
    shape = (384, 320)
    if case == "empty":
        image, mask = np.zeros(shape, np.float32), np.zeros(shape, bool)
    elif case == "everything":
        image, mask = rng.random(shape).astype(np.float32), np.ones(shape, bool)
    elif case == "noise":
        image = rng.random(shape).astype(np.float32)
        mask = image > 0.5
    elif case == "blob":  # a fist-like blob: no fingers
        image = np.zeros(shape, np.float32)
        cv2.ellipse(image, (160, 220), (90, 120), 0, 0, 360, 0.6, -1)
        mask = image > 0.1
    elif case == "two hands":
        image, mask = _two_hands()
    else:
        image, mask = np.zeros((8, 8), np.float32), np.zeros((8, 8), bool)
        mask[2:5, 2:5] = True
    found = detect_regions(image, mask)
    _check_shape(found)
    if case in ("empty", "everything", "noise", "blob", "tiny"):
        assert not found.ok
    for region in found.regions.values():
        if not region.found:
            assert extract_patch(image, region) is None


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_faint_distal_phalanges_keep_their_joints(seed):
    """Thin fingertips whose bone is under half as bright as the bones further down: the bone's start is
    judged against the finger's own phalanges, so the distal joints are still found."""
    image, mask, truth = draw_canonical_hand(seed=seed, faint_distal=True)
    found = detect_regions(image, mask)
    assert found.ok, found.diagnostics
    for finger in (2, 3, 4, 5):
        assert _error(found, truth, f"dip{finger}") <= 4.0, finger
    assert found.regions["dp3"].found and found.regions["dp5"].found


def test_thumb_triple_is_chosen_in_proportion_to_the_middle_finger():
    """Of two thumb triples, the one whose first metacarpal runs on into the carpus scores better on the
    bands alone; measured against the middle finger's proximal phalanx it loses."""
    from boneage_features.regions import _choose_thumb

    track = np.column_stack([np.zeros(200), np.arange(200.0)])  # 1 px per point, straight down from the tip
    pp3 = 50.0
    into_carpus = [20, 55, 140]  # PP1 35 px (0.7 PP3), MC1 85 px (1.7 PP3)
    proportioned = [20, 55, 103]  # MC1 48 px (0.96 PP3)
    ray = {"track": track, "candidates": [(3.0, into_carpus), (2.2, proportioned)], "joints": into_carpus, "score": 3.0}
    _choose_thumb(ray, pp3)
    assert ray["joints"] == proportioned
    # a thumb whose distal phalanx is off the film (first joint -1) is judged on its metacarpal alone
    ray = {"track": track, "candidates": [(3.0, [-1, 55, 140]), (2.2, [-1, 55, 103])], "joints": [-1, 55, 140], "score": 3.0}
    _choose_thumb(ray, pp3)
    assert ray["joints"] == [-1, 55, 103]
    # proportions that fit both ways leave the band evidence in charge
    ray = {"track": track, "candidates": [(3.0, [20, 55, 100]), (2.2, [20, 55, 106])], "joints": [20, 55, 100], "score": 3.0}
    _choose_thumb(ray, pp3)
    assert ray["joints"] == [20, 55, 100]


def test_shallow_distal_joint_is_a_candidate_only_in_the_second_look():
    """A little finger's profile: the DIP a shallow notch on the steep rise from the fingertip, the PIP
    and MCP strong bands. The first look sees no first joint (the tip looks cut off); the second,
    with weak bands near the tip, finds the DIP where it was drawn."""
    from boneage_features.regions import _CUT_PENALTY, _SEGMENTS, _SLENDER, _WEB_FRACTION, _joints

    along = np.arange(130.0)
    profile = 0.05 + 0.45 * (1 - np.exp(-along / 12))
    for centre, depth, width in ((34, 0.02, 1.5), (62, 0.1, 2.0), (110, 0.1, 2.0)):
        profile -= depth * np.exp(-0.5 * ((along - centre) / width) ** 2)
    options = dict(start=2, scale=(105.0, 40.0), web=None, web_fraction=_WEB_FRACTION["little"], cut=_CUT_PENALTY[False],
                   flat=False, width=11, bone_widths=np.full(130, 10.0), slender=_SLENDER["little"])
    first = _joints(profile, _SEGMENTS["little"], **options)
    assert first[0][1] == [-1, 62, 110]
    second = _joints(profile, _SEGMENTS["little"], weak=True, **options)
    assert second[0][1] == [34, 62, 110]
    # weak bands far from the tip are not taken: the same notch in the proximal phalanx is no joint
    profile_far = profile.copy()
    profile_far -= 0.01 * np.exp(-0.5 * ((along - 86) / 1.5) ** 2)
    assert all(86 not in joints for _, joints in _joints(profile_far, _SEGMENTS["little"], weak=True, **options))


def test_thumb_cmc_stays_on_the_metacarpal_line():
    """A thumb track straight down the first metacarpal that veers sideways over its last third (onto
    the trapezium or the second metacarpal's base): the CMC joint is put on the shaft's line, at the
    joint's distance from the MCP."""
    from boneage_features.regions import _straight_cmc

    down = np.column_stack([np.full(41, 100.0), np.arange(100.0, 141.0)])  # MCP at y=100, shaft to y=140
    veer = np.column_stack([100.0 - np.arange(1.0, 21.0), np.full(20, 140.0)])  # then 20 px sideways
    track = np.vstack([down, veer])
    point, toward_tip = _straight_cmc(track, 0, 60, track[60], np.array([1.0, 0.0]))
    distance = float(np.hypot(*(track[60] - track[0])))
    np.testing.assert_allclose(point, [100.0, 100.0 + distance], atol=1e-6)
    np.testing.assert_allclose(toward_tip, [0.0, -1.0], atol=1e-6)
    # a straight track keeps its joint
    straight = down
    point, _ = _straight_cmc(straight, 0, 40, straight[40], np.array([0.0, -1.0]))
    np.testing.assert_allclose(point, straight[40], atol=1e-6)


def test_ulna_box_goes_to_the_ulnas_end():
    """A forearm seen upright: an ulna ending at y=100, a carpal bone beyond a joint space. From a level
    that put the box on the carpal bone or on the shaft, the ulna is followed to its end; a bone that
    ends too far from the level is not followed off the hand."""
    from boneage_features.regions import _ulna_end

    image = np.zeros((200, 200), np.float32)
    image[20:, 30:170] = 0.3  # soft tissue
    image[100:, 60:76] = 0.8 - 0.3 * np.abs(np.arange(60, 76) - 67.5) / 8  # the ulna (brightest along its axis), up to y=100
    image[70:90, 55:81] = 0.7  # a carpal bone beyond the joint space
    mask = image > 0
    down, across = np.array([0.0, 1.0]), np.array([1.0, 0.0])
    for estimate in ((67.0, 85.0), (67.0, 120.0)):
        end = _ulna_end(image, mask, np.array(estimate), down, across, 40.0, 120.0)
        assert abs(end[0] - 67.5) <= 3 and abs(end[1] - 100.0) <= 3, (estimate, end)
    far = np.array([67.0, 170.0])  # the end lies 70 px (1.75 lengths) away: kept where it was
    np.testing.assert_array_equal(_ulna_end(image, mask, far, down, across, 40.0, 120.0), far)


def test_a_hand_shown_mirrored_is_turned_back_by_its_fingers():
    """The thumb on the image's left: its fingers fit far worse than mirrored (a thumb read as a
    little finger), which the sanity checks alone do not catch; find_regions mirrors the view back."""
    from boneage_features.preprocess import PreprocessedHand

    image, mask, truth = draw_canonical_hand()
    width = image.shape[1]
    shown = PreprocessedHand(image=np.ascontiguousarray(image[:, ::-1]), mask=np.ascontiguousarray(mask[:, ::-1]),
                             diagnostics={"diagnostics_flipped": 0.0, "diagnostics_thumb_score": 1.0})
    as_shown = detect_regions(shown.image, shown.mask)
    assert as_shown.ok and as_shown.diagnostics["diagnostics_rays_fit"] < -5  # passes the checks, fits badly
    hand, found = find_regions(shown)
    assert found.diagnostics["diagnostics_mirrored_by_fingers"] == 1
    assert hand.diagnostics["diagnostics_flipped"] == 1 and np.array_equal(hand.image, image)
    assert found.ok and found.diagnostics["diagnostics_rays_fit"] > 0
    assert max(_error(found, truth, name) for name in JOINTS) <= 4.0
    # the map to the input follows: the thumb's joints land where they are in the shown (input) view
    x, y = truth["mcp1"]
    assert np.allclose(hand.to_source(found.landmarks["mcp1"]), (width - 1 - x, y), atol=4.0)
    # a hand shown the right way round is left as it is, with the same regions as detect_regions
    upright = PreprocessedHand(image=image, mask=mask, diagnostics={"diagnostics_flipped": 0.0})
    same, regions = find_regions(upright)
    assert same is upright and regions.diagnostics["diagnostics_mirrored_by_fingers"] == 0
    assert regions.landmarks == detect_regions(image, mask).landmarks


def test_detect_regions_checks_its_arguments():
    with pytest.raises(ValueError, match="same shape"):
        detect_regions(np.zeros((10, 10)), np.zeros((10, 11), bool))


def test_patch_is_cut_with_the_bone_upright():
    image = np.zeros((200, 200), np.float32)
    # a bright bar leaning 30 degrees to the left of vertical (counter-clockwise), through (100, 100)
    angle = 30.0
    a = math.radians(angle)
    up = np.array([-math.sin(a), -math.cos(a)])
    p, q = np.array([100.0, 100.0]) + 60 * up, np.array([100.0, 100.0]) - 60 * up
    cv2.line(image, tuple(int(v) for v in p), tuple(int(v) for v in q), 1.0, 5)
    patch = extract_patch(image, Region("pp3", (100.0, 100.0), (80.0, 40.0), angle, True), shape=(40, 20))
    assert patch.shape == (40, 20)
    columns = patch.mean(axis=0)
    assert abs(int(np.argmax(columns)) - 9.5) <= 1.5  # the bar runs down the middle column
    assert patch[:, 9:11].mean() > 0.8 and patch[:, :4].mean() < 0.05


def test_patch_arguments():
    region = Region("carpal", (50.0, 50.0), (20.0, 20.0), 0.0, True)
    with pytest.raises(ValueError, match="positive"):
        extract_patch(np.zeros((100, 100)), region, shape=(0, 10))
    assert extract_patch(np.zeros((100, 100)), Region("carpal")) is None
    # outside the image: zeros, not an error
    far = Region("carpal", (500.0, 500.0), (20.0, 20.0), 0.0, True)
    assert not extract_patch(np.ones((100, 100)), far).any()


def test_region_corners_follow_the_angle():
    upright = Region("mp3", (10.0, 20.0), (8.0, 4.0), 0.0, True).corners()
    np.testing.assert_allclose(upright, [[8, 16], [12, 16], [12, 24], [8, 24]])
    turned = Region("mp3", (0.0, 0.0), (8.0, 4.0), 90.0, True).corners()  # bone pointing left
    np.testing.assert_allclose(turned[0], [-4, 2], atol=1e-9)


# ---------------------------------------------------------------------------------------------------
# Real radiographs (skipped without ../shared/data)
# ---------------------------------------------------------------------------------------------------


def _detect_file(path):
    from boneage_features.io import read_image
    from boneage_features.preprocess import preprocess_hand

    return find_regions(preprocess_hand(read_image(path)))


def test_the_fingers_undo_most_wrong_mirrorings_of_real_hands(data_dir):
    """The thumb's side was judged by eye on every training hand the preprocessing mirrored (286) and on
    60 others (tests/data/thumb_side.csv: ``film_thumb``, the thumb's side on the radiograph turned
    fingers up; 11 unclear or upside down left out). With the mask alone, 164 of the 275 judged
    mirrorings were right and 111 wrong; find_regions undoes 60 of the wrong ones and 10 right ones. Of
    the hands the step left as they were, 53 judged at random (all with the thumb on the right) stay so,
    and the 6 of all 12,611 that find_regions mirrors all had their thumb on the left: 66 undone rightly,
    10 wrongly, 51 left wrong. The mask of features version 3 (film edges cut off, faint fingers
    followed further) turns 10 of the 334 the other way in the end: 7 to the right side, 3 to the wrong
    one (64, 11, 46: 57 end wrong, 61 before). Floors and ceilings at what was measured."""
    from pathlib import Path

    labels = pd.read_csv(Path(__file__).parent / "data" / "thumb_side.csv")
    labels = labels[labels["film_thumb"] != "unsure"]
    assert len(labels) == 334
    fixed = broken = kept_wrong = 0
    for image_id, thumb in labels[["id", "film_thumb"]].itertuples(index=False):
        hand, found = _detect_file(data_dir / "train" / f"{image_id}.jpg")
        now_right = bool(hand.diagnostics["diagnostics_flipped"]) == (thumb == "left")
        undone = bool(found.diagnostics["diagnostics_mirrored_by_fingers"])
        fixed += undone and now_right
        broken += undone and not now_right
        kept_wrong += not undone and not now_right
    assert fixed >= 64 and broken <= 11 and kept_wrong <= 46, (fixed, broken, kept_wrong)


def test_detection_rate_on_real_radiographs(data_dir):
    """A floor under the share of hands whose regions all pass the checks (detector 8 with the mask of
    features version 3: 97.5% of these 120, 95.1% of all 12,611; with version 2: 95% and 93.9%; detector
    6: 95% and 93.6%; detector 5: 93% and 93.0%; detector 4: 86% and 84.5%)."""
    table = pd.read_csv(data_dir / "train.csv").sample(120, random_state=7)
    ok = fingers = 0
    for image_id in table["id"]:
        _, found = _detect_file(data_dir / "train" / f"{image_id}.jpg")
        _check_shape(found)
        ok += found.ok
        fingers += found.diagnostics["diagnostics_fingers_found"] == 5
    assert fingers / len(table) >= 0.9
    assert ok / len(table) >= 0.93


def _source_height(hand) -> float:
    """The hand's height in pixels of the input image."""
    rows = np.flatnonzero(hand.mask.any(axis=1))
    return (rows[-1] - rows[0] + 1) / hand.diagnostics["diagnostics_output_scale"]


def test_originals_and_their_small_copies_give_the_same_landmarks(data_dir):
    """Most hands at full resolution and at 384 px agree within 3% of the hand's height.

    Compared on the radiograph (each landmark mapped back to its input image, the original's scaled
    to the 384-px copy's grid), so that a crop box a few pixels larger in one of them does not count.
    """
    from boneage_features.io import read_image

    originals = sorted((data_dir / "originals").glob("*.png"))
    assert originals
    agree = 0
    for path in originals:
        small_path = data_dir / "train" / f"{path.stem}.jpg"
        hand, big = _detect_file(path)
        small_hand, small = _detect_file(small_path)
        ratio = np.divide(read_image(small_path).shape[::-1], read_image(path).shape[::-1])  # (x, y)
        height = _source_height(small_hand)
        common = [k for k in big.landmarks if k in small.landmarks]
        gaps = [
            np.hypot(*(hand.to_source(big.landmarks[k]) * ratio - small_hand.to_source(small.landmarks[k]))) / height
            for k in common
        ]
        agree += bool(gaps) and float(np.median(gaps)) <= 0.03
    assert agree / len(originals) >= 0.85, f"{agree} of {len(originals)}"


def _moved_landmarks(data_dir, golden: pd.DataFrame) -> list:
    """Landmarks of ``golden`` (id, landmark, x, y in pixels of the 384-px training image) that a hand
    lost or moved by more than 3% of its height.

    Only the joints and the wrist are compared: the boxes judged by eye hang on them. Fingertips,
    valleys and the palm centre are read off the hand's outline and move with the hand mask. The
    joints of the index and ring fingers place no region and were not judged, so they are skipped.
    """
    moved = []
    for image_id, expected in golden.groupby("id"):
        hand, found = _detect_file(data_dir / "train" / f"{image_id}.jpg")
        tolerance = 0.03 * _source_height(hand)
        for name, x, y in expected[["landmark", "x", "y"]].itertuples(index=False):
            if name.startswith(("tip", "valley", "palm")) or (name[:-1] in ("dip", "pip", "mcp") and name[-1] in "24"):
                continue
            if name not in found.landmarks or np.hypot(*(hand.to_source(found.landmarks[name]) - (x, y))) > tolerance:
                moved.append(f"{image_id}:{name}")
    return moved


def test_hands_checked_by_eye_keep_their_landmarks(data_dir):
    """Two draws of 60 radiographs (3 per year of bone age; seeds 0 and 1) were looked at one by one.

    Seed 0 was first looked at with detector 3 (``verdict``, a lenient reading), again strictly with
    detector 4 (``verdict_d4``); seed 1 strictly with detector 4 (``verdict``). Detector 5 (hand mask
    keeping faint fingertips, thumb in proportion to the middle finger, the bone's start judged on the
    first phalanges) was looked at afresh on all 120 with the same strict reading (``verdict_d5``,
    ``category_d5``, ``note_d5``), and so was detector 6 (whole faint fingers kept, the little finger's
    own proportions, the thumb's CMC on its metacarpal's line, the ulna's box at its end:
    ``verdict_d6``, ``category_d6``, ``note_d6``). Detector 7 moved none of the 120; detector 8
    (left and right checked by the fingers) un-mirrored four, looked at afresh (``verdict_d8``,
    ``category_d8``, ``note_d8``; the other 116 keep their detector-6 verdicts). The hand mask of
    features version 3 (faint fingers followed further, film edges cut off) moved the landmarks of 8,
    looked at afresh (``verdict_f3``, ``category_f3``, ``note_f3``: 5 turned right, 11099 stayed right,
    9606 and 1863 stayed wrong; the other 112 keep their detector-8 verdicts). The hands right in the
    last look keep their landmarks (regions_golden.csv and regions_golden_seed1.csv: pixels of the
    384-px training images).
    """
    from pathlib import Path

    here = Path(__file__).parent / "data"
    first = pd.read_csv(here / "regions_eye_check.csv")
    fresh = pd.read_csv(here / "regions_eye_check_seed1.csv")
    for verdicts in (first, fresh):
        assert len(verdicts) == 60
        assert verdicts.groupby(verdicts["boneage"] // 12).size().max() <= 3
        for look in ("d5", "d6", "d8", "f3"):
            assert set(verdicts[f"verdict_{look}"]) == {"right", "wrong"}
            assert (verdicts.loc[verdicts[f"verdict_{look}"] == "wrong", f"category_{look}"].fillna("") != "").all()
    assert set(first["verdict"]) | set(first["verdict_d4"]) | set(fresh["verdict"]) == {"right", "wrong"}
    golden = pd.read_csv(here / "regions_golden.csv")
    golden_fresh = pd.read_csv(here / "regions_golden_seed1.csv")
    assert set(golden["id"]) == set(first.loc[first["verdict_f3"] == "right", "id"])
    assert set(golden_fresh["id"]) == set(fresh.loc[fresh["verdict_f3"] == "right", "id"])
    moved = _moved_landmarks(data_dir, pd.concat([golden, golden_fresh]))
    assert not moved, f"landmarks lost or moved: {moved}"


def test_a_failure_inside_the_detector_costs_the_regions_only(monkeypatch, caplog):
    import boneage_features.regions as regions

    def broken(*args, **kwargs):
        raise IndexError("boom")

    monkeypatch.setattr(regions, "_palm", broken)
    image, mask, _ = draw_canonical_hand()
    found = detect_regions(image, mask)
    _check_shape(found)
    assert not found.ok and found.diagnostics["diagnostics_regions_error"] == 1.0
    assert "landmark detection failed" in caplog.text

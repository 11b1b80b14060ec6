"""How often the landmark detector places every region, on every training radiograph, and how well the
full-resolution originals agree with their 384-pixel copies.

Reads the ``diagnostics_*`` values that feature extraction records (from the feature cache when the
region features were already extracted, e.g. by ``scripts/regions_cv.py``), and prints and writes
``artifacts/cv/regions_detection.json``:

- share of hands whose regions on the film were all found and passed the geometric checks
  (``diagnostics_regions_ok``), overall and by age band, and which check failed first otherwise;
- share with five fingertips on the contour, fingers whose tip (distal phalanx) is off the film;
- per region, the share found;
- originals vs their 384-px copies: per hand, the median distance between the same landmarks as a
  share of the hand's height, and the share of hands within 3%.

    python scripts/regions_detection.py ../shared/data/rsna-bone-age/train.csv
"""

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

import boneage_features as bf
from boneage_features.evaluate import AGE_BANDS, age_band
from boneage_features.preprocess import preprocess_hand
from boneage_features.regions import CHECKS, REGION_NAMES, find_regions


def originals_agreement(data_dir: Path) -> dict:
    """Landmarks of each full-resolution original against those of its 384-px training copy.

    Compared on the radiograph: each landmark is mapped back to its input image (``to_source``) and the
    original's are scaled to the copy's pixel grid, so a crop box a few pixels larger in one of the two
    does not count as disagreement. Gaps are shares of the hand's height on that grid.
    """
    per_hand = {}
    for path in sorted((data_dir / "originals").glob("*.png")):
        big_image, small_image = bf.read_image(path), bf.read_image(data_dir / "train" / f"{path.stem}.jpg")
        (big, a), (small, b) = find_regions(preprocess_hand(big_image)), find_regions(preprocess_hand(small_image))
        ratio = np.divide(small_image.shape[::-1], big_image.shape[::-1])  # (x, y)
        rows = np.flatnonzero(small.mask.any(axis=1))
        height = (rows[-1] - rows[0] + 1) / small.diagnostics["diagnostics_output_scale"]
        common = [k for k in a.landmarks if k in b.landmarks]
        gaps = [
            float(np.hypot(*(big.to_source(a.landmarks[k]) * ratio - small.to_source(b.landmarks[k])))) / height
            for k in common
        ]
        per_hand[path.stem] = {
            "landmarks": len(common),
            "median_gap": float(np.median(gaps)) if gaps else None,
            "share_within_3pct": float(np.mean(np.array(gaps) <= 0.03)) if gaps else None,
        }
    medians = [h["median_gap"] for h in per_hand.values() if h["median_gap"] is not None]
    return {
        "n": len(per_hand),
        "hands_median_within_3pct": int(sum(m <= 0.03 for m in medians)),
        "hands_all_within_3pct": int(sum(h["share_within_3pct"] == 1.0 for h in per_hand.values())),
        "per_hand": per_hand,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest")
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("-o", "--output", default="artifacts/cv/regions_detection.json")
    args = parser.parse_args()
    X, y = bf.read_manifest(args.manifest)
    extraction = bf.FeatureExtractor(regions=REGION_NAMES, n_jobs=args.n_jobs, progress=True).extract(X)
    d = extraction.diagnostics
    band = pd.Series(age_band(y.loc[d.index].to_numpy()), index=d.index)
    ok = d["diagnostics_regions_ok"] == 1
    checks = d["diagnostics_regions_check"].astype(int).value_counts().sort_index()
    result = {
        "n": int(len(d)),
        "regions_ok": float(ok.mean()),
        "regions_ok_by_band": {
            label: float(ok[band == i].mean()) for i, (label, _, _) in enumerate(AGE_BANDS) if (band == i).any()
        },
        "first_failed_check": {CHECKS[int(code)]: int(count) for code, count in checks.items()},
        "five_fingertips": float((d["diagnostics_fingers_found"] == 5).mean()),
        "fingers_cut": {int(k): int(v) for k, v in d["diagnostics_fingers_cut"].value_counts().sort_index().items()},
        "found_by_region": {name: float(d[f"diagnostics_{name}_found"].mean()) for name in REGION_NAMES},
        "originals_vs_384": originals_agreement(Path(args.manifest).parent),
    }
    print(json.dumps({k: v for k, v in result.items() if k != "originals_vs_384"}, indent=2))
    agree = result["originals_vs_384"]
    print(f"originals vs 384 px: median landmark gap within 3% of the hand's height on "
          f"{agree['hands_median_within_3pct']} of {agree['n']} hands; every landmark within 3% on "
          f"{agree['hands_all_within_3pct']}")
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""Draw the radiographs for the by-eye check of the landmark detector: 3 per year of bone age (0-19),
seeded, as a manifest plus 2.5x overlays written by ``boneage-features regions``.

    python scripts/regions_eye_check.py ../shared/data/rsna-bone-age/train.csv -o eye_check/ [--seed 1]

Writes ``eye_check/manifest.csv`` (id, image, sex, boneage, sorted by age) and runs the ``regions``
command on it, so ``eye_check/overlays/<id>.png`` can be looked at one by one. The verdicts of the
checks are in ``tests/data/regions_eye_check.csv`` (seed 0: detectors 3, 4, 5 and 6) and
``tests/data/regions_eye_check_seed1.csv`` (seed 1, a fresh draw for detector 4, looked at again for
detectors 5 and 6).
"""

import argparse
from pathlib import Path

import pandas as pd

from boneage_features.cli import main as cli


def draw(train_csv: Path, per_year: int = 3, seed: int = 0) -> pd.DataFrame:
    table = pd.read_csv(train_csv)
    table["year"] = (table["boneage"] // 12).clip(0, 19)
    picked = table.groupby("year", group_keys=False).apply(lambda g: g.sample(min(per_year, len(g)), random_state=seed))
    return picked.sort_values("boneage")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest", type=Path, help="the RSNA train.csv")
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0, help="seed of the draw (default 0: the first check's)")
    args = parser.parse_args()
    picked = draw(args.manifest, seed=args.seed)
    args.output.mkdir(parents=True, exist_ok=True)
    images = args.manifest.parent / "train"
    manifest = pd.DataFrame({
        "id": picked["id"],
        "image": [str((images / f"{i}.jpg").resolve()) for i in picked["id"]],
        "sex": ["M" if m else "F" for m in picked["male"]],
        "boneage": picked["boneage"],
    })
    manifest.to_csv(args.output / "manifest.csv", index=False)
    return cli(["regions", str(args.output / "manifest.csv"), "-o", str(args.output), "--zoom", "2.5"])


if __name__ == "__main__":
    raise SystemExit(main())

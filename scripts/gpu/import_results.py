"""Turn a GPU run's table (``oof.csv`` or ``nested.csv`` of crossfit.py) into a shipped artifact.

The GPU machine knows the images by row id only; the package finds a training image's stacked CNN
age by the SHA-1 of its file (any copy, any name). This adds that column and keeps ``id``, ``fold``
and the ``cnn_age*`` columns. ``--into`` adds the columns to an existing table of the same images
instead (same ids, SHA-1s and folds, checked), e.g. a nested run's ages beside the out-of-fold ones::

    python scripts/gpu/import_results.py RUN/nested.csv --images ../shared/data/rsna-bone-age/train \\
        --into artifacts/cnn/cnn_oof.csv -o artifacts/cnn/cnn_oof.csv
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from boneage_features.io import file_sha1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("table", type=Path, help="oof.csv or nested.csv from scripts/gpu/crossfit.py")
    ap.add_argument("--images", type=Path, required=True, help="folder of <id>.jpg|png")
    ap.add_argument("--into", type=Path, help="an earlier table of the same images to add the columns to")
    ap.add_argument("-o", "--output", type=Path, required=True)
    args = ap.parse_args(argv)

    table = pd.read_csv(args.table)
    ages = [c for c in table.columns if c.startswith("cnn_age")]
    if "id" not in table.columns or "fold" not in table.columns or not ages:
        raise SystemExit(f"{args.table}: expected id, fold and cnn_age* columns; got {list(table.columns)}")
    sha1 = []
    for image_id in table["id"]:
        found = [p for p in (args.images / f"{image_id}.jpg", args.images / f"{image_id}.png") if p.exists()]
        if not found:
            raise SystemExit(f"{args.table}: id {image_id}: no {image_id}.jpg or .png in {args.images}")
        sha1.append(file_sha1(found[0]))
    out = table[["id"]].assign(sha1=sha1).join(table[["fold", *ages]])
    if args.into is not None:
        base = pd.read_csv(args.into)
        merged = base.merge(out, on="id", how="outer", suffixes=("", "_new"), indicator=True)
        if (merged["_merge"] != "both").any():
            raise SystemExit(f"{args.into} and {args.table} hold different images")
        for key in ("sha1", "fold"):
            if key in base.columns and (merged[key] != merged[f"{key}_new"]).any():
                raise SystemExit(f"{args.into} and {args.table} disagree on {key}")
        clash = [c for c in ages if c in base.columns]
        if clash:
            raise SystemExit(f"{args.into} already has {', '.join(clash)}")
        out = base.merge(out[["id", *(["fold"] if "fold" not in base.columns else []), *ages]], on="id")
    out.to_csv(args.output, index=False, float_format="%.3f")
    print(f"{args.output}: {len(out)} rows, columns {', '.join(out.columns)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

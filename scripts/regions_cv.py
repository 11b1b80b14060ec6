"""Cross-validated MAE of whole-hand features, region features and both, on one feature table.

The table is extracted once (cached) with every descriptor; each variant keeps its columns (plus the
child's sex) and runs the same folds as ``boneage-features evaluate``. Writes
``artifacts/cv/lightgbm_{whole,regions,both}.json`` and prints the three reports.

    python scripts/regions_cv.py ../shared/data/rsna-bone-age/train.csv [--limit N] [--variants regions both]
"""

import json
from pathlib import Path

import _cv_setup
import boneage_features as bf
from boneage_features.evaluate import cross_validate, format_report
from boneage_features.model import SEX_FEATURE
from boneage_features.regions import REGION_NAMES


def main():
    parser = _cv_setup.parser(__doc__)
    parser.add_argument("--out", default="artifacts/cv", help="folder of the JSON results")
    parser.add_argument("--variants", nargs="+", choices=("whole", "regions", "both"), default=("whole", "regions", "both"),
                        help="which to run (whole-hand features do not depend on the landmark detector)")
    args = parser.parse_args()
    X, y, extractor = _cv_setup.load(args)
    pipeline = bf.Pipeline(extractor=extractor, n_jobs=args.n_jobs)
    table, _ = pipeline.make_table(X)
    regional = tuple(f"{name}_" for name in REGION_NAMES)
    variants = {
        "whole": [c for c in table.columns if c.startswith("whole_") or c == SEX_FEATURE],
        "regions": [c for c in table.columns if c.startswith(regional) or c == SEX_FEATURE],
        "both": list(table.columns),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in args.variants:
        columns = variants[name]
        result = cross_validate(pipeline, X, y, table=table[columns])
        result.pop("predictions")
        result["config"]["features"] = name
        print(f"== {name}\n{format_report(result)}\n", flush=True)
        if not args.limit:
            (out / f"lightgbm_{name}.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

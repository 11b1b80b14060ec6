"""Print the README's results table (markdown) from the cross-validation JSON files of `evaluate -o`.

Usage: python scripts/results_table.py artifacts/cv/*.json
"""

import json
import sys
from pathlib import Path

BANDS = ("0-2y", "2-6y", "6-10y", "10-14y", "14-19y")


def main(paths):
    header = "| configuration | MAE | RMSE | R² | MAE M | MAE F | " + " | ".join(BANDS) + " |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for path in paths:
        result = json.loads(Path(path).read_text())
        if "config" not in result or "overall" not in result:
            continue  # not a cross-validation result (importance, detection, sex study)
        c, o = result["config"], result["overall"]
        sex = "sex as a feature" if c["sex_mode"] == "feature" else "one model per sex"
        features = c.get("features") or ("whole" if c["n_features"] <= 4057 else "both")  # older files: by size
        stacking = f" ({c['cnn_stacking']})" if c.get("cnn_stacking") else ""
        name = f"{features}, {c['booster']}, {sex}" + (f", + CNN age{stacking}" if c.get("cnn") else "")
        bands = " | ".join(f"{o['mae_by_band'][b]['mae']:.1f}" if b in o["mae_by_band"] else "" for b in BANDS)
        print(
            f"| {name} (`{Path(path).name}`) | **{o['mae']:.2f}** | {o['rmse']:.2f} | {o['r2']:.3f} | "
            f"{o['mae_by_sex']['M']['mae']:.2f} | {o['mae_by_sex']['F']['mae']:.2f} | {bands} |"
        )


if __name__ == "__main__":
    main(sys.argv[1:])

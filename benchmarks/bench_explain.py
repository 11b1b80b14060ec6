"""Time explaining real radiographs and rendering their HTML report with the shipped model.

Usage: python benchmarks/bench_explain.py [--n 100] [--n-jobs 2] [--model PATH] [--keep report.html]

``explain`` is :func:`boneage_features.report.explain_batch` over ``--n`` training radiographs (features,
CNN and TreeSHAP contributions of every feature), with the feature cache off, as for new images. The
report is :func:`boneage_features.write_report` on the same images with their reference ages: it
explains them again and adds, per image, the canonical view, the region detection and the heatmap, plus
the accuracy and importance figures; its time less the explain time is what the report itself costs.
Prints seconds and milliseconds per image; nothing is asserted.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import boneage_features as bf
from boneage_features.report import explain_batch

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "rsna-bone-age"


def _line(what: str, seconds: float, n: int) -> str:
    return f"  {what:<28} {seconds:7.1f} s  {1000 * seconds / n:7.0f} ms/image"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--model", help="model file (default: the shipped one)")
    parser.add_argument("--keep", help="write the report here instead of a temporary file")
    args = parser.parse_args()
    if not (DATA / "train.csv").exists():
        sys.exit(f"RSNA data not found at {DATA}; nothing to benchmark")
    X_all, y_all = bf.read_manifest(DATA / "train.csv")
    X = X_all.sample(n=args.n, random_state=0)
    y = y_all.loc[X.index]
    model = bf.load_model(args.model)
    model.extractor_.set_params(n_jobs=args.n_jobs, cache_dir=False, progress=False)
    explain_batch(model, X_all.drop(index=X.index).iloc[:2])  # load the network, start the workers: untimed

    start = time.perf_counter()
    contrib, outcome = explain_batch(model, X)
    explain_s = time.perf_counter() - start
    ok = int((outcome["status"] == "ok").sum())

    with tempfile.TemporaryDirectory() as folder:
        path = Path(args.keep or Path(folder) / "report.html")
        start = time.perf_counter()
        bf.write_report(model, X, y, path=path)
        report_s = time.perf_counter() - start
        size_mb = path.stat().st_size / 2**20

    print(f"{len(X)} real radiographs ({ok} explained, {contrib.shape[1] - 1} features), n_jobs={args.n_jobs}, "
          "feature cache off:")
    print(_line("explain (explain_batch)", explain_s, len(X)))
    print(_line("report (write_report)", report_s, len(X)))
    print(_line("report less explain", report_s - explain_s, len(X)))
    print(f"  report size {size_mb:.1f} MiB ({1024 * size_mb / len(X):.0f} KiB per image)")


if __name__ == "__main__":
    main()

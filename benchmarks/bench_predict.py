"""Per-stage time per image and end-to-end throughput of ``predict`` on real radiographs.

Usage: python benchmarks/bench_predict.py [--n 500] [--n-jobs 2] [--model PATH]

Stages are timed one image at a time (read, preprocess, features, predict); when the model uses CNN
features, the CNN stage (its own preprocessing and the network, on torch's threads) is timed per image
too, and its throughput at its batch size. The end-to-end figure is ``predict_batch`` over ``--n``
images with ``--n-jobs`` workers and the feature cache off, as a user scoring new images would see it.
Peak memory is the resident set of this process and of its largest worker. Prints a table; nothing is
asserted.
"""

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from joblib.externals.loky import get_reusable_executor

import boneage_features as bf
from boneage_features.descriptors import DESCRIPTORS
from boneage_features.model import as_table
from boneage_features.preprocess import preprocess_hand

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "rsna-bone-age"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--model", help="model file (default: the shipped one)")
    args = parser.parse_args()
    if not (DATA / "train.csv").exists():
        sys.exit(f"RSNA data not found at {DATA}; nothing to benchmark")
    X, _ = bf.read_manifest(DATA / "train.csv")
    X = X.sample(n=args.n, random_state=0)
    model = bf.load_model(args.model)
    extractor = model.extractor_
    config = extractor._config()

    stages = {"read": [], "preprocess": [], "features": [], "predict": []}
    if model.cnn_ is not None:
        stages["cnn"] = []
        model.cnn_.transform(X.iloc[:2])  # load the network once, outside the timings
    names = extractor.get_feature_names_out()
    for row, path, sex in zip(X.index[:100], X["image"][:100], X["sex"][:100]):
        t0 = time.perf_counter()
        image = bf.read_image(path)
        t1 = time.perf_counter()
        hand = preprocess_hand(image, size=config["size"], clahe_clip=config["clahe_clip"])
        t2 = time.perf_counter()
        values = np.concatenate(
            [DESCRIPTORS[f].describe(hand.image, hand.mask, **config["params"][f])[1] for f in config["families"]]
        )
        features = pd.DataFrame([values], columns=names, index=[row])
        t3 = time.perf_counter()
        if model.cnn_ is not None:  # one image through the network, its own preprocessing included
            features = features.join(model.cnn_.transform(X.loc[[row]]))
            stages["cnn"].append(time.perf_counter() - t3)
        t4 = time.perf_counter()
        model.regressor_.predict(as_table(features, [sex == "M"]))
        t5 = time.perf_counter()
        for stage, seconds in zip(("read", "preprocess", "features", "predict"), (t1 - t0, t2 - t1, t3 - t2, t5 - t4)):
            stages[stage].append(seconds)

    if model.cnn_ is not None:
        batch = X.iloc[:64]
        start = time.perf_counter()
        model.cnn_.transform(batch)
        print(f"CNN (preprocess + network) at batch {model.cnn_.batch_size}: "
              f"{len(batch) / (time.perf_counter() - start):.1f} images/s")

    print(f"per-stage time per image, median of {len(stages['read'])} real radiographs, one at a time:")
    for stage, seconds in stages.items():
        print(f"  {stage:<11} {1000 * np.median(seconds):7.1f} ms")
    total = sum(np.median(s) for s in stages.values())
    print(f"  {'total':<11} {1000 * total:7.1f} ms  ({1 / total:.1f} images/s one image at a time)")
    if "cnn" in stages:
        print(f"  CNN share of the per-image time: {100 * np.median(stages['cnn']) / total:.0f}%")

    extractor.set_params(n_jobs=args.n_jobs, cache_dir=False, progress=False)
    start = time.perf_counter()
    result = model.predict_batch(X)
    elapsed = time.perf_counter() - start
    ok = int((result["status"] == "ok").sum())
    get_reusable_executor().shutdown(wait=True)  # a worker's peak is counted once it has exited
    peak_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    peak_workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"predict_batch end to end: {len(X)} images ({ok} ok) in {elapsed:.1f} s with n_jobs={args.n_jobs}: "
          f"{len(X) / elapsed:.1f} images/s (target >= 20 handcrafted only, >= 5 with the CNN)")
    print(f"peak memory: {peak_self:.0f} MiB main process, {peak_workers:.0f} MiB largest worker")


if __name__ == "__main__":
    main()

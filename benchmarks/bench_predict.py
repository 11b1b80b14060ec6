"""Per-stage time per image and end-to-end throughput of ``predict`` on real radiographs.

Usage: python benchmarks/bench_predict.py [--n 500] [--n-jobs 2] [--model PATH | --fit-regions N]

Stages are timed one image at a time (read, preprocess, whole-hand features, landmarks, region
features, predict); ``--fit-regions N`` first fits a handcrafted model with the 14 bone regions on N
training images (instead of loading a model), to time that path. When the model uses CNN
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
from boneage_features.features import _describe_regions
from boneage_features.model import as_table
from boneage_features.preprocess import preprocess_hand
from boneage_features.regions import REGION_NAMES, find_regions

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "rsna-bone-age"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--model", help="model file (default: the shipped one)")
    parser.add_argument("--fit-regions", type=int, metavar="N",
                        help="fit a handcrafted model with region features on N other training images and time it")
    args = parser.parse_args()
    if not (DATA / "train.csv").exists():
        sys.exit(f"RSNA data not found at {DATA}; nothing to benchmark")
    X_all, y_all = bf.read_manifest(DATA / "train.csv")
    X = X_all.sample(n=args.n, random_state=0)
    if args.fit_regions:
        rest = X_all.index.difference(X.index)
        train = X_all.loc[rest].sample(n=args.fit_regions, random_state=1).index
        extractor = bf.FeatureExtractor(regions=REGION_NAMES, n_jobs=args.n_jobs)
        model = bf.Pipeline(extractor=extractor, n_jobs=args.n_jobs).fit(X_all.loc[train], y_all.loc[train])
        print(f"fitted a handcrafted + regions model on {len(train)} images")
    else:
        model = bf.load_model(args.model)
    extractor = model.extractor_
    config = extractor._config()

    stages = {"read": [], "preprocess": [], "features": [], "landmarks": [], "regions": [], "predict": []}
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
        if config.get("regions"):
            hand, found = find_regions(hand)
        t3a = time.perf_counter()
        parts = [DESCRIPTORS[f].describe(hand.image, hand.mask, **config["params"][f])[1] for f in config["families"]]
        t3b = time.perf_counter()
        if config.get("regions"):
            parts += _describe_regions(hand, found, config["regions"], {})
        t3 = time.perf_counter()
        features = pd.DataFrame([np.concatenate(parts)], columns=names, index=[row])
        if model.cnn_ is not None:  # one image through the network, its own preprocessing included
            features = features.join(model.cnn_.transform(X.loc[[row]]))
            stages["cnn"].append(time.perf_counter() - t3)
        t4 = time.perf_counter()
        model.regressor_.predict(as_table(features, [sex == "M"]))
        t5 = time.perf_counter()
        timings = (t1 - t0, t2 - t1, t3b - t3a, t3a - t2, t3 - t3b, t5 - t4)  # landmarks come before features
        for stage, seconds in zip(("read", "preprocess", "features", "landmarks", "regions", "predict"), timings):
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
          f"{len(X) / elapsed:.1f} images/s (targets: >= 20 whole-hand only, >= 10 with regions, >= 5 with the CNN)")
    print(f"peak memory: {peak_self:.0f} MiB main process, {peak_workers:.0f} MiB largest worker")


if __name__ == "__main__":
    main()

"""What the cross-validation scripts share: the training manifest, an optional first-N slice, and the
feature extractor with every descriptor (whole hand and the 14 regions), whose table is cached."""

import argparse
import logging

import boneage_features as bf
from boneage_features.regions import REGION_NAMES


def parser(doc: str) -> argparse.ArgumentParser:
    """Argument parser with ``manifest``, ``--limit`` and ``--n-jobs``; the script adds its own."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("manifest")
    parser.add_argument("--limit", type=int, help="first N rows only (a quick check)")
    parser.add_argument("--n-jobs", type=int, default=2)
    return parser


def load(args):
    """(X, y, extractor) for parsed ``args``; logs at INFO."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    X, y = bf.read_manifest(args.manifest)
    if args.limit:
        X, y = X.iloc[: args.limit], y.iloc[: args.limit]
    return X, y, bf.FeatureExtractor(regions=REGION_NAMES, n_jobs=args.n_jobs, progress=True)

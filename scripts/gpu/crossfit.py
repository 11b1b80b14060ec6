"""Cross-fitted fine-tuning of the bone-age CNN on one GPU, within a fixed time budget.

Reads what ``scripts/gpu/pack.py`` wrote (``<data>/common``, ``<data>/shard*/data.npz`` and any
``shard*/data.npz`` under ``--extra-data``), decodes every image into one uint8 tensor on the
device, then

1. for each fold k = 0..4: fine-tunes ImageNet EfficientNet-Lite0 on the other folds (validation
   MAE on fold k printed per epoch) and predicts fold k: out-of-fold bone age and pooled
   1280-d embedding of every training image;
2. fine-tunes once on all images and saves those weights (float16).

Written to ``--out`` (rewritten after every fold, so an interrupted run leaves what it finished):

- ``oof.csv``: id, fold, boneage, male, cnn_age (out-of-fold months; empty for a fold not run)
- ``oof_embed_<j>.npz`` (j = 0, 1, ...): ``ids``, ``fold``, ``embed`` (float16, rows in
  ``labels.csv`` order, split by rows into parts of at most 12 MiB). Each fold's embeddings come
  from that fold's own network: their axes are not shared across folds.
- ``cnn_full.pt``: the all-data network (``boneage_features.embed.backbone.load_model``)
- ``log.txt``: everything printed, with per-epoch and total timings and the OOF MAE.

Time guard: ``--time-budget`` seconds from the start of this script. Each run gets a share of what
is left in proportion to its size (fold runs 0.8, the full run 1.0); inside a run the epochs are
cut after the first one if they would not fit (see ``boneage_features.embed.train.fit``), and later
runs use the epochs that the first run could afford.

``--nested`` trains, instead, one network per pair of folds {a, b} (10 for 5 folds) on the three
other folds and predicts both folds a and b. Nested cross-validation of the stacked booster needs
these: when fold k is evaluated, a training row of fold j must get its CNN age from a network that
saw neither fold j nor fold k, i.e. the pair network {j, k}; one such network serves outer fold k for
the rows of fold j and outer fold j for the rows of fold k. Written: ``nested.csv`` (id, fold,
boneage, male, ``cnn_age_<k>`` = the row's age from the network without its own fold and fold k;
empty where k is the row's own fold or the pair was not run) and ``log.txt``.
"""

from __future__ import annotations

import time

T0 = time.time()

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _light  # noqa: E402

_PART_BYTES = 12 * 2**20
_RESERVE_S = 15.0  # final writes
_FOLD_WEIGHT = 0.8  # a fold run trains on 4/5 of the rows
_FULL_SEED = 99


class Log:
    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fh = open(path, "a", buffering=1)

    def __call__(self, msg: str) -> None:
        line = f"[{time.time() - T0:7.1f}s] {msg}"
        print(line, flush=True)
        self.fh.write(line + "\n")
        self.fh.flush()


def _shards(data: Path, extra: list[Path]) -> list[Path]:
    found = sorted(data.glob("shard*/data.npz"))
    for e in extra:
        if e.is_dir():
            found += sorted(e.glob("**/data.npz"))
    return found


def _decode(labels: pd.DataFrame, shard_files: list[Path], size, log) -> np.ndarray:
    pos = {int(i): j for j, i in enumerate(labels["id"])}
    jobs = []
    for f in shard_files:
        z = np.load(f)
        ids, off, blob = z["ids"], z["offsets"], z["blob"]
        log(f"shard {f}: {len(ids)} images, {blob.nbytes / 2**20:.1f} MiB")
        jobs += [(pos[int(i)], blob, off[k], off[k + 1]) for k, i in enumerate(ids)
                 if int(i) in pos]
    have = {j for j, *_ in jobs}
    missing = len(labels) - len(have)
    if missing:
        raise SystemExit(f"{missing} of {len(labels)} images are in no shard "
                         f"(looked in {[str(f) for f in shard_files]})")
    first = cv2.imdecode(jobs[0][1][jobs[0][2]:jobs[0][3]], cv2.IMREAD_GRAYSCALE)
    h, w = size if size is not None else first.shape
    out = np.empty((len(labels), h, w), np.uint8)

    def one(job):
        j, blob, a, b = job
        im = cv2.imdecode(blob[a:b], cv2.IMREAD_GRAYSCALE)
        if im is None:
            raise ValueError(f"cannot decode row {j}")
        if im.shape != (h, w):
            im = cv2.resize(im, (w, h), interpolation=cv2.INTER_AREA)
        out[j] = im

    with ThreadPoolExecutor(max(1, min(16, os.cpu_count() or 1))) as ex:
        list(ex.map(one, jobs, chunksize=64))
    return out


def _write_outputs(out: Path, labels, oof_age, oof_emb, done_folds) -> None:
    df = labels[["id", "fold", "boneage", "male"]].copy()
    df["cnn_age"] = oof_age
    tmp = out / "oof.csv.tmp"
    df.to_csv(tmp, index=False, float_format="%.3f")
    tmp.replace(out / "oof.csv")
    emb16 = oof_emb.astype(np.float16)
    n_parts = max(1, math.ceil(emb16.nbytes / _PART_BYTES))
    bounds = np.linspace(0, len(df), n_parts + 1).astype(int)
    for j in range(n_parts):
        a, b = bounds[j], bounds[j + 1]
        tmp = out / f"oof_embed_{j}.tmp.npz"
        np.savez(tmp, ids=df["id"].to_numpy()[a:b], fold=df["fold"].to_numpy()[a:b],
                 embed=emb16[a:b], done_folds=np.asarray(sorted(done_folds)))
        tmp.replace(out / f"oof_embed_{j}.npz")


def _fit_network(args, weights, dev, x, sex, age, *, seed, epochs, budget, log, val=None):
    """A fresh ImageNet-initialised network fine-tuned on ``x``, ``sex``, ``age`` with the run's settings.

    ``seed`` seeds the head's initialisation and the batches. Returns (model, history of ``fit``).
    """
    import torch

    from boneage_features.embed.backbone import build_model
    from boneage_features.embed.train import TrainConfig, fit

    torch.manual_seed(seed)  # the head's initialisation
    model = build_model(weights_path=weights).to(dev)
    cfg = TrainConfig(epochs=epochs, batch_size=args.batch_size, lr=args.lr, head_lr=args.head_lr,
                      seed=seed, time_budget=budget)
    return model, fit(model, x, sex, age, config=cfg, val=val, log=log)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=_light.ROOT / ".gpu")
    ap.add_argument("--extra-data", type=Path, nargs="*", default=[Path("/root/data")])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--time-budget", type=float, default=380.0,
                    help="seconds from the start of this script to the last file written")
    ap.add_argument("--epochs", type=int, default=12, help="most epochs per run")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3, help="backbone peak learning rate")
    ap.add_argument("--head-lr", type=float, default=3e-3)
    ap.add_argument("--limit", type=int, default=None, help="first N rows only (smoke tests)")
    ap.add_argument("--size", nargs="+", default=None,
                    help="'small' (96x80) or H W to resize the packed images (smoke tests)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--skip-full", action="store_true")
    ap.add_argument("--nested", action="store_true",
                    help="one network per pair of folds (nested CV of the stacked booster); "
                         "no out-of-fold run, no full run")
    args = ap.parse_args(argv)

    args.out.mkdir(parents=True, exist_ok=True)
    log = Log(args.out / "log.txt")
    _light.setup(args.data / "common" / "vendor")
    import torch

    from boneage_features.embed.backbone import save_model
    from boneage_features.embed.train import predict, resolve_device

    dev = resolve_device(args.device)
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    gpu = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    log(f"torch {torch.__version__} on {gpu}; budget {args.time_budget:.0f}s, "
        f"up to {args.epochs} epochs, batch {args.batch_size}, lr {args.lr:g}/{args.head_lr:g}")

    common = args.data / "common"
    meta = json.loads((common / "meta.json").read_text())
    log(f"packed data: {json.dumps({k: meta[k] for k in ('n', 'size', 'quality', 'preprocess')})}")
    labels = pd.read_csv(common / "labels.csv")
    if args.limit:
        labels = labels.iloc[: args.limit].reset_index(drop=True)
    size = None
    if args.size:
        size = (96, 80) if args.size == ["small"] else tuple(int(v) for v in args.size)
    t = time.time()
    images = _decode(labels, _shards(args.data, args.extra_data), size, log)
    log(f"decoded {images.shape} in {time.time() - t:.1f}s")
    weights = common / "lite0_imagenet_fp16.pt"

    x_all = torch.from_numpy(images).unsqueeze(1).to(dev)
    sex_all = torch.tensor(labels["male"].to_numpy(), dtype=torch.float32, device=dev)
    age_all = torch.tensor(labels["boneage"].to_numpy(), dtype=torch.float32, device=dev)
    folds = labels["fold"].to_numpy()
    n_folds = int(folds.max()) + 1
    del images

    n = len(labels)
    if args.nested:
        return _nested(args, labels, folds, x_all, sex_all, age_all, weights, dev, log)
    oof_age = np.full(n, np.nan, np.float32)
    oof_emb = np.zeros((n, 1280), np.float32)
    done: list[int] = []
    epochs = args.epochs
    weights_left = _FOLD_WEIGHT * n_folds + (0.0 if args.skip_full else 1.0)

    def allot(w: float) -> float:
        left = args.time_budget - _RESERVE_S - (time.time() - T0)
        return max(1.0, left * w / weights_left)

    for k in range(n_folds):
        tr = np.flatnonzero(folds != k)
        te = np.flatnonzero(folds == k)
        tr_t, te_t = torch.from_numpy(tr).to(dev), torch.from_numpy(te).to(dev)
        budget = allot(_FOLD_WEIGHT)
        log(f"fold {k}: train {len(tr)}, predict {len(te)}, {epochs} epochs, "
            f"budget {budget:.0f}s")
        model, hist = _fit_network(args, weights, dev, x_all[tr_t], sex_all[tr_t], age_all[tr_t],
                                   seed=k, epochs=epochs, budget=budget, log=log,
                                   val=(x_all[te_t], sex_all[te_t], age_all[te_t]))
        epochs = min(epochs, hist["epochs_planned"])
        t = time.time()
        a, e = predict(model, x_all[te_t], sex_all[te_t])
        oof_age[te], oof_emb[te] = a, e
        done.append(k)
        mae = float(np.mean(np.abs(a - labels["boneage"].to_numpy()[te])))
        ips = hist["steps"] * min(args.batch_size, len(tr)) / max(1e-9, sum(hist["epoch_seconds"]))
        log(f"fold {k}: MAE {mae:.2f} months; {hist['epochs_run']} epochs in "
            f"{hist['seconds']:.1f}s (~{ips:.0f} train img/s incl. validation), "
            f"predict {time.time() - t:.1f}s")
        weights_left -= _FOLD_WEIGHT
        _write_outputs(args.out, labels, oof_age, oof_emb, done)
        del model

    ok = ~np.isnan(oof_age)
    y = labels["boneage"].to_numpy()
    per_fold = {int(k): float(np.mean(np.abs(oof_age[folds == k] - y[folds == k])))
                for k in done}
    summary = {"oof_mae": float(np.mean(np.abs(oof_age[ok] - y[ok]))) if ok.any() else None,
               "oof_mae_by_fold": per_fold, "folds_done": done, "epochs": epochs}
    log(f"OOF MAE {summary['oof_mae']:.2f} months over {int(ok.sum())} rows; by fold "
        + ", ".join(f"{k}: {v:.2f}" for k, v in per_fold.items()))

    if not args.skip_full:
        budget = allot(1.0)
        log(f"full: train {n}, {epochs} epochs, budget {budget:.0f}s")
        model, hist = _fit_network(args, weights, dev, x_all, sex_all, age_all, seed=_FULL_SEED,
                                   epochs=epochs, budget=budget, log=log)
        path = save_model(model.float().cpu(), args.out / "cnn_full.pt")
        summary["full"] = {"epochs_run": hist["epochs_run"], "seconds": hist["seconds"],
                           "stopped_by_budget": hist["stopped_by_budget"],
                           "bytes": path.stat().st_size}
        log(f"full: {hist['epochs_run']} epochs in {hist['seconds']:.1f}s, final train loss "
            f"{hist['train_loss'][-1]:.2f} months; saved {path.name} "
            f"({path.stat().st_size / 2**20:.1f} MiB)")
    summary["total_seconds"] = time.time() - T0
    log("SUMMARY " + json.dumps(summary))
    return 0


def _write_nested(out: Path, labels, nested) -> None:
    df = labels[["id", "fold", "boneage", "male"]].copy()
    for k in range(nested.shape[1]):
        df[f"cnn_age_{k}"] = nested[:, k]
    tmp = out / "nested.csv.tmp"
    df.to_csv(tmp, index=False, float_format="%.3f")
    tmp.replace(out / "nested.csv")


def _nested(args, labels, folds, x_all, sex_all, age_all, weights, dev, log) -> int:
    """One network per pair of folds, trained on the other folds, predicting both (see the module)."""
    import itertools

    import torch

    from boneage_features.embed.train import predict

    n_folds = int(folds.max()) + 1
    pairs = list(itertools.combinations(range(n_folds), 2))
    y = labels["boneage"].to_numpy()
    nested = np.full((len(labels), n_folds), np.nan, np.float32)
    epochs = args.epochs
    runs_left = float(len(pairs))
    done = []
    for a, b in pairs:
        tr = np.flatnonzero((folds != a) & (folds != b))
        te = np.flatnonzero((folds == a) | (folds == b))
        tr_t, te_t = torch.from_numpy(tr).to(dev), torch.from_numpy(te).to(dev)
        left = args.time_budget - _RESERVE_S - (time.time() - T0)
        budget = max(1.0, left / runs_left)
        seed = 100 + 10 * a + b
        log(f"pair {a}{b}: train {len(tr)}, predict {len(te)}, {epochs} epochs, budget {budget:.0f}s, "
            f"seed {seed}")
        model, hist = _fit_network(args, weights, dev, x_all[tr_t], sex_all[tr_t], age_all[tr_t],
                                   seed=seed, epochs=epochs, budget=budget, log=log)
        epochs = min(epochs, hist["epochs_planned"])
        age, _ = predict(model, x_all[te_t], sex_all[te_t])
        # A row of fold a gets this network's age as its feature when fold b is evaluated, and
        # the other way round.
        in_a = folds[te] == a
        nested[te[in_a], b] = age[in_a]
        nested[te[~in_a], a] = age[~in_a]
        mae_a = float(np.mean(np.abs(age[in_a] - y[te[in_a]])))
        mae_b = float(np.mean(np.abs(age[~in_a] - y[te[~in_a]])))
        log(f"pair {a}{b}: MAE fold {a} {mae_a:.2f}, fold {b} {mae_b:.2f} months; "
            f"{hist['epochs_run']} epochs in {hist['seconds']:.1f}s"
            + (" (stopped by the time budget)" if hist["stopped_by_budget"] else ""))
        done.append(f"{a}{b}")
        runs_left -= 1
        _write_nested(args.out, labels, nested)
        del model
    own = np.isnan(nested).sum(axis=1)
    err = np.abs(nested - y[:, None])
    summary = {"pairs_done": done, "epochs": epochs,
               "nested_mae": float(np.nanmean(err)) if np.isfinite(err).any() else None,
               "nested_mae_by_outer_fold": {int(k): float(np.nanmean(err[:, k]))
                                            for k in range(n_folds) if np.isfinite(err[:, k]).any()},
               "rows_with_all_ages": int(np.sum(own == 1)),
               "total_seconds": time.time() - T0}
    log("SUMMARY " + json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())

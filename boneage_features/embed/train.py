"""Fine-tuning and prediction of :class:`~.backbone.BoneAgeNet` on images held in memory.

Images are one ``(N, 1, H, W)`` uint8 tensor on the training device (12,611 images at 320x256
are 1 GB, nothing for a GPU), so a step is an index gather plus augmentation with torch ops on the
device: no DataLoader, no decoding per epoch. Augmentation is geometric (rotation, isotropic
scale, shift through ``affine_grid``/``grid_sample``; never a horizontal flip, since the view is
canonical: a left hand, thumb on the right) and photometric (gamma, contrast, brightness).

Training: L1 loss on ``age / age_std`` (the model's target scale), AdamW with a higher rate for
the new head, linear warm-up then cosine decay, bf16 autocast and channels_last on CUDA. On the
CPU, with a fixed ``seed``, two runs give identical weights.

Interrupted runs: ``on_epoch`` receives the whole training state after every epoch (model,
optimizer, step, epoch, random generators, history) for a checkpoint, and ``resume=`` that state
continues the run where it stopped; on the CPU the result is bitwise that of an uninterrupted run.

A time guard keeps a run within ``time_budget`` seconds: after the first epoch the number of
epochs is cut to what fits (the cosine schedule is re-planned on the shorter length), and a run
that still overruns stops at the budget.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .backbone import EMBED_DIM, BoneAgeNet

logger = logging.getLogger(__name__)

__all__ = ["AugmentConfig", "TrainConfig", "augment", "fit", "predict", "resolve_device"]

# Steps of the first epoch that are not timed (cudnn autotuning, allocator warm-up).
_UNTIMED_STEPS = 8
# Safety factor on the extrapolated epoch time of the time guard.
_GUARD_MARGIN = 1.05
# Per-epoch lists of fit's history, carried in a training state.
_EPOCH_KEYS = ("epoch_seconds", "train_loss", "val_mae")


@dataclass
class AugmentConfig:
    """Ranges of the random augmentation (uniform unless said otherwise)."""

    rotate_deg: float = 10.0
    scale: float = 0.10
    shift: float = 0.05  # fraction of the image side
    log_gamma: float = 0.25  # gamma = exp(U(-log_gamma, log_gamma))
    contrast: float = 0.10
    brightness: float = 0.05


@dataclass
class TrainConfig:
    """Hyper-parameters of :func:`fit`."""

    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3  # backbone
    head_lr: float = 3e-3
    weight_decay: float = 1e-2
    warmup_frac: float = 0.06
    min_lr_frac: float = 0.02
    seed: int = 0
    augment: AugmentConfig | None = field(default_factory=AugmentConfig)
    amp: bool = True  # bf16 autocast, CUDA only
    channels_last: bool = True  # CUDA only
    time_budget: float | None = None  # seconds for the whole run
    eval_batch_size: int = 256


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:n]'; got {device!r}")
    return torch.device(device)


def _uniform(n: int, half_width: float, gen: torch.Generator, device) -> torch.Tensor:
    return (torch.rand(n, generator=gen, device=device) * 2.0 - 1.0) * half_width


def augment(x: torch.Tensor, config: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    """Randomly transform a batch of images in [0, 1].

    Parameters
    ----------
    x : (B, 1, H, W) Tensor of float
        Images in [0, 1], background 0 (the value that fills what moves into the frame).
    config : AugmentConfig
    gen : torch.Generator
        On ``x``'s device; the only source of randomness.

    Returns
    -------
    (B, 1, H, W) Tensor
        Same dtype and device, values in [0, 1].
    """
    b, _, h, w = x.shape
    dev = x.device
    angle = _uniform(b, math.radians(config.rotate_deg), gen, dev)
    scale = 1.0 + _uniform(b, config.scale, gen, dev)
    tx = _uniform(b, 2.0 * config.shift, gen, dev)  # normalised coordinates span 2
    ty = _uniform(b, 2.0 * config.shift, gen, dev)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    # A rotation in pixels, written in normalised coordinates of a non-square image.
    theta = torch.stack(
        [
            torch.stack([cos, -sin * (h / w), tx], dim=1),
            torch.stack([sin * (w / h), cos, ty], dim=1),
        ],
        dim=1,
    ).to(x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    gamma = torch.exp(_uniform(b, config.log_gamma, gen, dev)).view(b, 1, 1, 1).to(x.dtype)
    contrast = (1.0 + _uniform(b, config.contrast, gen, dev)).view(b, 1, 1, 1).to(x.dtype)
    bright = _uniform(b, config.brightness, gen, dev).view(b, 1, 1, 1).to(x.dtype)
    fg = x > 0  # keep the background at 0
    x = x.clamp(min=1e-6) ** gamma
    x = ((x - 0.5) * contrast + 0.5 + bright).clamp(0.0, 1.0)
    return x * fg


def _param_groups(model: BoneAgeNet, config: TrainConfig) -> list[dict]:
    decay, no_decay, head = [], [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if name.startswith("head."):
            head.append(p)
        elif p.ndim <= 1:  # BatchNorm and biases
            no_decay.append(p)
        else:
            decay.append(p)
    return [
        {"params": decay, "lr": config.lr, "weight_decay": config.weight_decay},
        {"params": no_decay, "lr": config.lr, "weight_decay": 0.0},
        {"params": head, "lr": config.head_lr, "weight_decay": config.weight_decay},
    ]


def _lr_factor(step: int, total: int, config: TrainConfig) -> float:
    warm = max(1, int(round(config.warmup_frac * total)))
    if step < warm:
        return (step + 1) / warm
    t = min(1.0, (step - warm) / max(1, total - warm))
    return config.min_lr_frac + (1.0 - config.min_lr_frac) * 0.5 * (1.0 + math.cos(math.pi * t))


def _to_input(x_u8: torch.Tensor, channels_last: bool) -> torch.Tensor:
    x = x_u8.float().mul_(1.0 / 255.0)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def _check_data(images: torch.Tensor, sex, age=None) -> None:
    if images.ndim != 4 or images.shape[1] != 1 or images.dtype != torch.uint8:
        raise ValueError(
            f"images must be a (N, 1, H, W) uint8 tensor; got {tuple(images.shape)} {images.dtype}"
        )
    n = images.shape[0]
    if len(sex) != n or (age is not None and len(age) != n):
        raise ValueError(f"images, sex and age must have the same length; got {n}, {len(sex)}, "
                         f"{None if age is None else len(age)}")


@torch.no_grad()
def predict(
    model: BoneAgeNet,
    images: torch.Tensor,
    sex: torch.Tensor,
    *,
    batch_size: int = 256,
    amp: bool = True,
    channels_last: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Bone age (months) and pooled embeddings of every image, in order.

    Parameters
    ----------
    model : BoneAgeNet
        On the device of ``images``; put in eval mode here.
    images : (N, 1, H, W) Tensor of uint8
    sex : (N,) Tensor
        1 male, 0 female, on the same device.

    Returns
    -------
    age : (N,) ndarray of float32
    embedding : (N, 1280) ndarray of float32
    """
    _check_data(images, sex)
    model.eval()
    cuda = images.is_cuda
    if cuda and channels_last:
        model.to(memory_format=torch.channels_last)
    ages, embs = [], []
    for i in range(0, images.shape[0], batch_size):
        xb, sb = images[i:i + batch_size], sex[i:i + batch_size]
        m = xb.shape[0]
        if cuda and m < batch_size and images.shape[0] > batch_size:
            # One batch shape only: cudnn.benchmark would autotune every layer again otherwise.
            xb = torch.cat([xb, xb.new_zeros((batch_size - m,) + tuple(xb.shape[1:]))])
            sb = torch.cat([sb, sb.new_zeros(batch_size - m)])
        x = _to_input(xb, cuda and channels_last)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda and amp):
            a, e = model(x, sb)
        ages.append(a[:m].float().cpu())
        embs.append(e[:m].float().cpu())
    if not ages:
        return np.zeros(0, np.float32), np.zeros((0, EMBED_DIM), np.float32)
    return torch.cat(ages).numpy(), torch.cat(embs).numpy()


def _training_state(model, opt, gen, *, epoch: int, step: int, hist: dict) -> dict:
    dev = gen.device
    return {
        "epoch": epoch,
        "step": step,
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "generator": gen.get_state(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state(dev) if dev.type == "cuda" else None,
        "history": {k: list(hist[k]) for k in _EPOCH_KEYS},
    }


def _restore(state: dict, model, opt, gen) -> None:
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    gen.set_state(state["generator"].cpu())
    torch.set_rng_state(state["torch_rng"].cpu())
    if state.get("cuda_rng") is not None and gen.device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda_rng"].cpu(), gen.device)


def fit(
    model: BoneAgeNet,
    images: torch.Tensor,
    sex: torch.Tensor,
    age: torch.Tensor,
    *,
    config: TrainConfig | None = None,
    val: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    log=None,
    on_epoch: Callable[[dict], None] | None = None,
    resume: dict | None = None,
    progress: bool = False,
) -> dict:
    """Fine-tune ``model`` in place on images already on its device.

    Parameters
    ----------
    model : BoneAgeNet
        On the same device as the data.
    images : (N, 1, H, W) Tensor of uint8
    sex : (N,) Tensor
        1 male, 0 female.
    age : (N,) Tensor of float
        Months.
    config : TrainConfig, optional
    val : (images, sex, age), optional
        Scored (MAE in months) after every epoch.
    log : callable(str), optional
        Progress lines (one per epoch); default the module logger.
    on_epoch : callable(dict), optional
        Called after every epoch (and its validation) with the training state: ``epoch`` (epochs
        done), ``step``, ``model`` and ``optimizer`` state dicts, ``generator``, ``torch_rng`` and
        ``cuda_rng`` states, ``history`` (the per-epoch lists so far). Tensors are live references:
        save them (``torch.save``) before the next step.
    resume : dict, optional
        A state given to ``on_epoch`` by an earlier call with the same data and config: training
        continues at its epoch and step. ``config.epochs`` may differ from that run's; the
        schedule then continues on the new length.
    progress : bool
        A tqdm bar over the batches of each epoch, on stderr.

    Returns
    -------
    dict
        ``epochs_planned``, ``epochs_run``, ``steps``, ``seconds``, ``epoch_seconds`` (list),
        ``train_loss`` (list, months), ``val_mae`` (list), ``stopped_by_budget`` (bool).
    """
    config = config or TrainConfig()
    log = log or logger.info
    _check_data(images, sex, age)
    if config.epochs < 1 or config.batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1; got {config.epochs}, "
                         f"{config.batch_size}")
    dev = images.device
    cuda = dev.type == "cuda"
    amp = cuda and config.amp
    cl = cuda and config.channels_last
    n = images.shape[0]
    bs = min(config.batch_size, n)
    steps_per_epoch = n // bs  # drop the ragged last batch: BatchNorm dislikes tiny batches

    torch.manual_seed(config.seed)
    gen = torch.Generator(device=dev)
    gen.manual_seed(config.seed)
    if cl:
        model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(_param_groups(model, config), betas=(0.9, 0.999), eps=1e-6,
                            fused=cuda)
    base_lrs = [g["lr"] for g in opt.param_groups]
    if resume is not None:
        _restore(resume, model, opt, gen)
    age_f = age.float()
    sex_f = sex.float()
    inv_std = 1.0 / float(model.age_std)

    epochs = int(config.epochs)
    total = epochs * steps_per_epoch
    hist = {"epochs_planned": epochs, "epoch_seconds": [], "train_loss": [], "val_mae": [],
            "stopped_by_budget": False}
    step = 0
    epoch = 0
    if resume is not None:
        step, epoch = int(resume["step"]), int(resume["epoch"])
        hist.update({k: list(resume["history"][k]) for k in _EPOCH_KEYS})
    t_start = time.perf_counter()
    while epoch < epochs:
        model.train()
        t_ep = time.perf_counter()
        t_timed = None
        perm = torch.randperm(n, generator=gen, device=dev)
        loss_sum = torch.zeros((), device=dev)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch + 1}/{epochs}", unit="batch",
                       leave=False, file=sys.stderr)
        for i in range(steps_per_epoch):
            if epoch == 0 and i == min(_UNTIMED_STEPS, steps_per_epoch - 1):
                if cuda:
                    torch.cuda.synchronize()
                t_timed = time.perf_counter()
                # The first steps of a fresh process (cuDNN autotuning, kernel loading) took 50 s on
                # an H100 against 3 s for a whole later epoch; charged to the budget, they cut every
                # run of the first GPU run to one epoch. They are a one-off: not charged.
                t_start += t_timed - t_ep
            idx = perm[i * bs:(i + 1) * bs]
            x = _to_input(images[idx], False)
            if config.augment is not None:
                x = augment(x, config.augment, gen)
            if cl:
                x = x.contiguous(memory_format=torch.channels_last)
            f = _lr_factor(step, total, config)
            for g, lr in zip(opt.param_groups, base_lrs):
                g["lr"] = lr * f
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
                pred, _ = model(x, sex_f[idx])
            loss = F.l1_loss(pred.float() * inv_std, age_f[idx] * inv_std)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.detach()
            step += 1
            if bar is not None:
                bar.update()
            if (
                config.time_budget is not None
                and i % 16 == 15
                and time.perf_counter() - t_start > config.time_budget
            ):
                hist["stopped_by_budget"] = True
                break
        if bar is not None:
            bar.close()
        if cuda:
            torch.cuda.synchronize()
        now = time.perf_counter()
        done_steps = i + 1
        hist["epoch_seconds"].append(now - t_ep)
        hist["train_loss"].append(float(loss_sum) / done_steps / inv_std)
        msg = (f"epoch {epoch + 1}/{epochs} steps {done_steps} loss {hist['train_loss'][-1]:.2f} "
               f"mo  {now - t_ep:.1f}s")
        if val is not None:
            va, _ = predict(model, *val[:2], batch_size=config.eval_batch_size, amp=config.amp,
                            channels_last=config.channels_last)
            mae = float(np.mean(np.abs(va - val[2].float().cpu().numpy())))
            hist["val_mae"].append(mae)
            msg += f"  val MAE {mae:.2f} mo ({time.perf_counter() - now:.1f}s)"
        log(msg)
        epoch += 1
        if on_epoch is not None:
            on_epoch(_training_state(model, opt, gen, epoch=epoch, step=step, hist=hist))
        if hist["stopped_by_budget"]:
            log(f"time budget {config.time_budget:.0f}s reached: stopped in epoch {epoch}")
            break
        if epoch == 1 and config.time_budget is not None and epochs > 1:
            # Extrapolate from the timed part of epoch 1 (autotuning excluded), validation included.
            timed_steps = steps_per_epoch - min(_UNTIMED_STEPS, steps_per_epoch - 1)
            per_epoch = (now - (t_timed or t_ep)) * steps_per_epoch / max(1, timed_steps)
            per_epoch = per_epoch * _GUARD_MARGIN + (time.perf_counter() - now)  # + validation
            left = config.time_budget - (time.perf_counter() - t_start)
            fits = 1 + int(left // per_epoch)
            if fits < epochs:
                log(f"time guard: {per_epoch:.1f}s per epoch, {left:.0f}s left -> "
                    f"{fits} epochs instead of {epochs}")
                epochs = max(1, fits)
                total = epochs * steps_per_epoch
    hist.update(epochs_run=epoch, steps=step, seconds=time.perf_counter() - t_start)
    hist["epochs_planned"] = epochs
    return hist

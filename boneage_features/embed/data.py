"""Data for training the CNN: preprocessed crops as one uint8 array, a validation split, checkpoints.

Every radiograph is read and put through :func:`boneage_features.preprocess.preprocess_hand` once,
in parallel (joblib), and rounded to uint8 exactly as :class:`~.embedder.CNNEmbedder` does before
it runs the network, so a network trained here sees at prediction time what it saw in training.
An image that cannot be read or preprocessed is reported, not fatal: its row is left out.

Checkpoints are whole training states (see :func:`.train.fit`'s ``on_epoch``) written atomically,
so a run killed while writing leaves the previous checkpoint intact.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

__all__ = ["hand_u8", "load_checkpoint", "preprocess_images", "save_checkpoint", "stratified_split"]

#: Name of the (only) checkpoint file in a checkpoint folder: the state after the last epoch.
CHECKPOINT_FILE = "last.pt"


def hand_u8(ref, *, size: tuple[int, int]) -> np.ndarray:
    """The preprocessed hand of one radiograph as the network takes it.

    Parameters
    ----------
    ref : str, os.PathLike or ndarray
        An image file or array (anything :func:`boneage_features.io.read_image` reads).
    size : (int, int)
        Output (H, W).

    Returns
    -------
    (H, W) ndarray of uint8
        ``preprocess_hand(image, size=size, faint_tissue=False).image`` (in [0, 1]) times 255,
        rounded. The networks were trained on the hand mask without the faint-tissue growth, so
        they keep being fed that mask.
    """
    from ..io import read_image
    from ..preprocess import preprocess_hand

    hand = preprocess_hand(read_image(ref), size=tuple(size), faint_tissue=False)
    return np.clip(np.round(hand.image * 255.0), 0, 255).astype(np.uint8)


def _hand_or_failure(ref, size):
    try:
        return hand_u8(ref, size=size), None
    except Exception as exc:  # any failure is that row's, reported by file; the batch goes on
        from ..io import ImageReadError

        if isinstance(exc, ImageReadError):
            return None, str(exc)
        return None, f"{ref}: {type(exc).__name__}: {exc}"


def preprocess_images(
    refs, *, size: tuple[int, int], n_jobs: int = 1, progress: bool = False
) -> tuple[np.ndarray, np.ndarray, pd.Series]:
    """Preprocess every image once, in parallel.

    Parameters
    ----------
    refs : sequence of str, os.PathLike or ndarray
        Image files or arrays.
    size : (int, int)
        Output (H, W) of each crop.
    n_jobs : int
        joblib workers (-1: all cores).
    progress : bool
        A tqdm bar over the images on stderr.

    Returns
    -------
    images : (K, H, W) ndarray of uint8
        The crops of the images that worked, in input order.
    ok : (N,) ndarray of bool
        Which inputs those are.
    errors : Series of str
        ``"<file>: <reason>"`` of each failed input, indexed by its position in ``refs``.
    """
    from joblib import Parallel, delayed

    h, w = (int(v) for v in size)
    if h < 1 or w < 1:
        raise ValueError(f"size must be two positive integers (H, W); got {size!r}")
    refs = list(refs)
    out = np.empty((len(refs), h, w), np.uint8)
    ok = np.zeros(len(refs), bool)
    errors = {}
    n_jobs = n_jobs if len(refs) > 1 else 1
    results = Parallel(n_jobs=n_jobs, return_as="generator", batch_size=16 if n_jobs != 1 else 1)(
        delayed(_hand_or_failure)(ref, (h, w)) for ref in refs
    )
    if progress:
        from tqdm.auto import tqdm

        results = tqdm(results, total=len(refs), desc="preprocess", unit="img")
    for position, (image, failure) in enumerate(results):
        if failure is None:
            out[position] = image
            ok[position] = True
        else:
            errors[position] = failure
    return out[ok], ok, pd.Series(errors, dtype=str)


def stratified_split(strata, *, val_fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A seeded train/validation split that keeps each stratum's share.

    Rows are ordered by stratum (randomly within each) and the validation rows are picked at
    evenly spaced positions of that order, so every stratum gets its share up to one row, even when
    a stratum has a single member (where ``StratifiedShuffleSplit`` refuses).

    Parameters
    ----------
    strata : (N,) array-like of int
        Stratum of each row, e.g. ``age_band(age) * 2 + male``.
    val_fraction : float
        Share of rows for validation, in [0, 1); 0 gives no validation rows. At least one row
        goes to each side when it is positive.
    seed : int

    Returns
    -------
    train, val : ndarray of int
        Row positions, sorted.
    """
    strata = np.asarray(strata)
    n = len(strata)
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1); got {val_fraction!r}")
    n_val = 0
    if val_fraction > 0:
        if n < 2:
            raise ValueError(f"a validation split needs at least 2 rows; got {n}")
        n_val = min(max(1, int(round(val_fraction * n))), n - 1)
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(n), strata))
    is_val = np.zeros(n, bool)
    if n_val:
        is_val[order[((np.arange(n_val) + rng.random()) * n / n_val).astype(int)]] = True
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def save_checkpoint(state: dict, folder) -> Path:
    """Write a training state to ``<folder>/last.pt`` atomically; returns the path."""
    import torch

    from ..io import write_atomic

    return write_atomic(Path(folder) / CHECKPOINT_FILE, lambda tmp: torch.save(state, tmp))


def load_checkpoint(folder, *, map_location="cpu") -> dict | None:
    """The training state in ``<folder>/last.pt``, or None when there is none."""
    import torch

    path = Path(folder) / CHECKPOINT_FILE
    if not path.is_file():
        return None
    return torch.load(path, map_location=map_location, weights_only=True)

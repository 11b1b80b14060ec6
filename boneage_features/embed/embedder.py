"""CNNEmbedder: the fine-tuned bone-age CNN as features for the boosters.

For each image the network (:mod:`.backbone`) gives its own age estimate, ``whole_cnn_age``, and
optionally its pooled 1280-d embedding, ``whole_cnn_0000`` ... ``whole_cnn_1279``.

Stacking without leakage: a booster must not be trained on CNN outputs for images the CNN was
trained on (they are too good, and the booster would learn to trust them blindly). The shipped
network comes with out-of-fold ages (``cnn_oof.csv``): for each training radiograph, the estimate of
a network cross-fitted on the four other folds (the folds of :func:`boneage_features.evaluate.make_folds`).
With ``oof=True`` (what :meth:`Pipeline.fit` and cross-validation ask for) an image found there, by the
SHA-1 of its file, gets its out-of-fold age; every other image is run through the network.

Cross-validating the stacked booster needs one step more (nested cross-fitting): when fold k is
evaluated, the booster's training rows must not carry ages from networks that saw fold k, and each
out-of-fold network but the k-th did. The same table therefore also holds, for each row of fold j and
each other fold k, ``cnn_age_<k>``: the age from a network trained on the three folds other than j
and k (one network per pair of folds, 10 for 5 folds). :meth:`CNNEmbedder.cross_fit_ages` reads them;
:func:`boneage_features.evaluate.cross_validate` uses them.

Embeddings have no out-of-fold version that a booster could use (each fold's network has its own
feature axes), so they are off by default.

torch is imported only when a network is run, so a pickled Pipeline that holds a CNNEmbedder loads
without it and says what to install when it must predict.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from ..io import file_sha1

logger = logging.getLogger(__name__)

AGE_FEATURE = "whole_cnn_age"
EMBED_DIM = 1280
_WEIGHTS_FILE = "cnn/lite0_boneage.pt"
_OOF_FILE = "cnn/cnn_oof.csv"


def _artifact(name) -> Path:
    from ..pipeline import artifacts_dir

    return artifacts_dir() / name


class CNNEmbedder(TransformerMixin, BaseEstimator):
    """Bone age (and optionally embeddings) from the fine-tuned EfficientNet-Lite0.

    Parameters
    ----------
    weights : str or Path, optional
        Network file written by :func:`boneage_features.embed.backbone.save_model`; the shipped
        ``artifacts/cnn/lite0_boneage.pt`` when None.
    oof_table : str or Path, optional
        CSV with ``sha1`` and ``cnn_age`` columns: out-of-fold ages of the images the network was
        trained on; optionally ``fold`` (each image's cross-fitting fold) and ``cnn_age_<k>`` (nested
        ages, see above). The shipped ``artifacts/cnn/cnn_oof.csv`` when None (only with default
        weights).
    size : (int, int), default=(320, 256)
        (height, width) of the preprocessed hand the network sees; as in training.
    include_embedding : bool, default=False
        Also return the pooled 1280-d embedding.
    device : {"auto", "cpu", "cuda"}, default="auto"
        "auto" takes the GPU when there is one.
    batch_size : int, default=32
    n_threads : int, optional
        torch CPU threads; torch's default when None.
    """

    def __init__(
        self,
        *,
        weights=None,
        oof_table=None,
        size=(320, 256),
        include_embedding=False,
        device="auto",
        batch_size=32,
        n_threads=None,
    ):
        self.weights = weights
        self.oof_table = oof_table
        self.size = size
        self.include_embedding = include_embedding
        self.device = device
        self.batch_size = batch_size
        self.n_threads = n_threads

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        names = [AGE_FEATURE]
        if self.include_embedding:
            names += [f"whole_cnn_{i:04d}" for i in range(EMBED_DIM)]
        return np.array(names, dtype=object)

    def fit(self, X=None, y=None):
        """Nothing to learn here (the network is trained by ``train-cnn``); records the names."""
        self.feature_names_out_ = self.get_feature_names_out()
        return self

    def _weights_path(self) -> Path:
        return Path(self.weights) if self.weights is not None else _artifact(_WEIGHTS_FILE)

    def _oof_path(self) -> Path | None:
        if self.oof_table is None and self.weights is not None:
            return None
        return Path(self.oof_table) if self.oof_table is not None else _artifact(_OOF_FILE)

    def _oof(self) -> dict:
        path = self._oof_path()
        if path is None:
            return {}
        table = pd.read_csv(path, usecols=["sha1", "cnn_age"]).drop_duplicates("sha1")
        return dict(zip(table["sha1"], table["cnn_age"].astype(float)))

    def cross_fit_ages(self, X) -> pd.DataFrame | None:
        """Cross-fitting fold, out-of-fold and nested ages of each row of ``X`` the network was trained on.

        Returns None when the out-of-fold table gives no folds (or there is none). Otherwise a
        DataFrame indexed like ``X``: ``fold`` (NaN for an image not in the table), ``cnn_age`` (its
        out-of-fold age), one ``cnn_age_<k>`` column per fold the table has them for (the row's age
        from a network that saw neither the row's fold nor fold k; NaN where k is the row's own fold)
        and ``checked`` (False for an image given as an array, which cannot be looked up). The
        table's number of folds is in ``attrs["n_folds"]``.

        Raises ValueError when one image (by SHA-1) is in the table under two different folds.
        """
        path = self._oof_path()
        if path is None:
            return None
        table = pd.read_csv(path)
        if "fold" not in table.columns:
            return None
        clash = table.groupby("sha1")["fold"].nunique()
        if (clash > 1).any():
            raise ValueError(f"{path}: {int((clash > 1).sum())} images are in two folds (e.g. SHA-1 "
                             f"{clash[clash > 1].index[0]}): their ages cannot be nested")
        nested = sorted((c for c in table.columns if c.startswith("cnn_age_") and c[8:].isdigit()),
                        key=lambda c: int(c[8:]))
        n_folds = int(table["fold"].max()) + 1
        table = table.drop_duplicates("sha1").set_index("sha1")[["fold", "cnn_age", *nested]]
        checked = np.array([not isinstance(ref, np.ndarray) for ref in X["image"]])
        keys = [file_sha1(ref) if ok else None for ref, ok in zip(X["image"], checked)]
        out = table.reindex(keys).astype(float)
        out.index = X.index
        out["checked"] = checked
        out.attrs["n_folds"] = n_folds
        return out

    def _network(self):
        if getattr(self, "_net", None) is None:
            try:
                import torch  # noqa: F401
            except ImportError as exc:
                raise ImportError(
                    "this model uses CNN features, which need torch: pip install 'boneage-features[cnn]'"
                ) from exc
            from .backbone import load_model
            from .train import resolve_device

            device = resolve_device(self.device)
            self._net = load_model(self._weights_path(), map_location=device).to(device)
            self._torch_device = device
        return self._net

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("_net", None)  # the network is reloaded from its file, not pickled
        state.pop("_torch_device", None)
        return state

    def transform(self, X, *, oof=False) -> pd.DataFrame:
        """CNN features of every row of ``X`` (a DataFrame with ``image`` and ``sex`` columns).

        With ``oof=True``, images listed in the out-of-fold table get their out-of-fold age instead of
        the network's (which saw them in training); embeddings are then not allowed.
        """
        if "image" not in X.columns or "sex" not in X.columns:
            raise ValueError(f"X must have 'image' and 'sex' columns; got {list(X.columns)}")
        from ..io import parse_sex

        male = np.array([parse_sex(v) == "M" for v in X["sex"]], dtype=np.float32)
        names = self.get_feature_names_out()
        out = pd.DataFrame(np.nan, index=X.index, columns=names, dtype=np.float32)
        todo = np.ones(len(X), bool)
        if oof:
            if self.include_embedding:
                raise ValueError("embeddings have no out-of-fold version; use include_embedding=False to fit")
            table = self._oof()
            for position, ref in enumerate(X["image"]):
                if isinstance(ref, np.ndarray):
                    continue
                age = table.get(file_sha1(ref))
                if age is not None:
                    out.iloc[position, 0] = age
                    todo[position] = False
            logger.info("CNN ages: %d out-of-fold, %d from the network", (~todo).sum(), todo.sum())
        positions = np.flatnonzero(todo)
        if len(positions):
            self._run(X["image"].to_numpy()[positions], male[positions], out, positions)
        return out

    def _run(self, refs, male, out, positions):
        import torch

        from .data import hand_u8
        from .train import predict

        net = self._network()
        if self.n_threads:
            torch.set_num_threads(int(self.n_threads))
        for start in range(0, len(refs), int(self.batch_size)):
            chunk = slice(start, start + int(self.batch_size))
            images = torch.from_numpy(np.stack([hand_u8(ref, size=self.size) for ref in refs[chunk]]))[:, None]
            sex = torch.from_numpy(male[chunk])
            age, embedding = predict(
                net, images.to(self._torch_device), sex.to(self._torch_device), batch_size=int(self.batch_size)
            )
            rows = positions[chunk]
            out.iloc[rows, 0] = age
            if self.include_embedding:
                out.iloc[rows, 1:] = embedding

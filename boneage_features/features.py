"""FeatureExtractor: radiographs in, one row of named features per image out.

Each image is read, preprocessed (normalised, hand segmented, cropped, oriented, CLAHE) and described by
the descriptor families in :mod:`boneage_features.descriptors`: over the whole hand and, when
``regions`` are asked for, over each region of interest found by
:func:`boneage_features.regions.detect_regions` (a patch cut out with the bone upright; a region that is
not found gives NaN features). Images are processed in parallel (``n_jobs``) and every result is cached
on disk, keyed by the image's content and by the extractor's parameters, so a second fit, a
cross-validation or a grid search over the booster never recomputes a feature. Quality values
(``diagnostics_*``) come out beside the features and never go into a model.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.base import BaseEstimator, TransformerMixin

from .descriptors import DESCRIPTORS
from .io import ImageReadError, file_sha1, read_image, write_atomic
from .preprocess import preprocess_hand
from .regions import DETECTOR_VERSION, REGION_NAMES, extract_patch, find_regions

logger = logging.getLogger(__name__)

#: Bump when a change alters the values computed for the same parameters; it keys the cache and is
#: checked when a saved model is loaded. 2: the hand mask (``faint_tissue=True``) also keeps whole fingers
#: fainter than its threshold. 3: it steps on past the bold growth's reach, so fingertips far fainter
#: than the threshold are no longer cut off, and thin strips along the image's sides (film edges,
#: frames) are cut off.
FEATURES_VERSION = 3

_CACHE_ENV = "BONEAGE_FEATURES_CACHE"


def default_cache_dir() -> Path:
    """Folder of the feature cache: ``$BONEAGE_FEATURES_CACHE`` or ``~/.cache/boneage_features``."""
    if os.environ.get(_CACHE_ENV):
        return Path(os.environ[_CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "boneage_features"


@dataclass
class Extraction:
    """What :meth:`FeatureExtractor.extract` returns for a batch.

    Attributes
    ----------
    features : DataFrame
        One row per input row that succeeded, indexed like the input; columns are feature names.
    diagnostics : DataFrame
        ``diagnostics_*`` quality values for the same rows.
    errors : Series of str
        The error message of every row that failed, indexed like the input (empty when none did).
    """

    features: pd.DataFrame
    diagnostics: pd.DataFrame
    errors: pd.Series


def _as_image_list(X):
    """Index and image references (paths or arrays) of a DataFrame, Series or sequence."""
    if isinstance(X, pd.DataFrame):
        if "image" not in X.columns:
            raise ValueError(f"X must have an 'image' column (path or array); got columns {list(X.columns)}")
        return X.index, list(X["image"])
    if isinstance(X, pd.Series):
        return X.index, list(X)
    if isinstance(X, np.ndarray) and X.ndim == 2 and X.dtype != object:
        raise ValueError("X is a single 2-D array; pass a list of images or a DataFrame with an 'image' column")
    items = list(X)
    return pd.RangeIndex(len(items)), items


def _content_key(ref) -> str:
    """Hash of the image's content: the file's bytes, or the array's dtype, shape and bytes."""
    if not isinstance(ref, np.ndarray):
        return file_sha1(ref)
    digest = hashlib.sha1()
    digest.update(f"{ref.dtype}{ref.shape}".encode())
    digest.update(np.ascontiguousarray(ref).tobytes())
    return digest.hexdigest()


def _savez(path, arrays):
    with open(path, "wb") as handle:  # a handle, so np.savez does not append ".npz" to the name
        np.savez(handle, **arrays)


def _describe_one(ref, config: dict, cache_dir: str | None):
    """Features and diagnostics of one image, from the cache when there.

    Returns ``(values, diagnostics, None)`` or ``(None, None, (file, reason))``; never raises for a bad
    image, so that a batch goes on.
    """
    name = "<array>" if isinstance(ref, np.ndarray) else str(ref)
    try:
        cache_file = None
        if cache_dir is not None:
            try:
                key = _content_key(ref)
            except OSError:
                read_image(ref)  # raises the ImageReadError that names the file and the reason
                raise
            cache_file = Path(cache_dir) / key[:2] / f"{key}.npz"
            if cache_file.exists():
                try:
                    with np.load(cache_file) as stored:
                        diagnostics = dict(zip(stored["diag_names"].tolist(), stored["diag_values"].tolist()))
                        return stored["values"], diagnostics, None
                except Exception as exc:  # a torn or foreign file: recompute and overwrite it
                    logger.warning("ignoring unreadable cache file %s: %s", cache_file, exc)
        image = read_image(ref)
        hand = preprocess_hand(
            image,
            size=tuple(config["size"]),
            clahe_clip=config["clahe_clip"],
            faint_tissue=config.get("faint_tissue", False),
        )
        found = None
        if config.get("regions"):  # first: the fingers may show the hand mirrored, for every family
            hand, found = find_regions(hand)
        parts = []
        for family in config["families"]:
            _, values = DESCRIPTORS[family].describe(hand.image, hand.mask, **config["params"][family])
            parts.append(values)
        diagnostics = {key: float(value) for key, value in hand.diagnostics.items()}
        if config.get("regions"):
            parts += _describe_regions(hand, found, config["regions"], diagnostics)
        values = np.concatenate(parts).astype(np.float32)
        if cache_file is not None:
            arrays = {
                "values": values,
                "diag_names": np.array(list(diagnostics), dtype=str),
                "diag_values": np.array(list(diagnostics.values()), dtype=np.float64),
            }
            write_atomic(cache_file, lambda tmp: _savez(tmp, arrays))
        return values, diagnostics, None
    except ImageReadError as exc:
        return None, None, (name, exc.reason)
    except Exception as exc:  # any other failure on one image must not stop a batch
        logger.exception("feature extraction failed for %s", name)
        return None, None, (name, f"feature extraction failed: {type(exc).__name__}: {exc}")


def _describe_regions(hand, found, region_config: dict, diagnostics: dict) -> list:
    """Feature vectors of the configured regions of ``hand``, in order; adds the regions' diagnostics.

    ``hand`` and ``found`` are what :func:`~boneage_features.regions.find_regions` returned (the hand
    possibly mirrored, its :class:`~boneage_features.regions.HandRegions`).
    """
    diagnostics.update({key: float(value) for key, value in found.diagnostics.items()})
    shape = tuple(region_config["patch"])
    parts = []
    for name in region_config["names"]:
        patch = extract_patch(hand.image, found.regions[name], shape=shape)
        for family in region_config["families"]:
            params = region_config["params"][family]
            if patch is None:
                length = len(DESCRIPTORS[family].feature_names(source=name, **params))
                parts.append(np.full(length, np.nan, np.float32))
            else:
                parts.append(DESCRIPTORS[family].describe(patch, patch > 0, source=name, **params)[1])
    return parts


def _pair_of_positive_ints(value, name: str) -> tuple:
    try:
        pair = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        pair = ()
    if len(pair) != 2 or min(pair) < 1 or any(int(v) != v for v in value):
        raise ValueError(f"{name} must be two positive integers; got {value!r}")
    return pair


def _names_tuple(value, name: str) -> tuple:
    if isinstance(value, str):
        raise ValueError(f"{name} must be a tuple of names, not a string; got {value!r} (write ({value!r},))")
    names = tuple(value)
    duplicated = sorted({v for v in names if names.count(v) > 1})
    if duplicated:
        raise ValueError(f"{name} lists {', '.join(map(repr, duplicated))} more than once; got {value!r}")
    return names


class FeatureExtractor(TransformerMixin, BaseEstimator):
    """Whole-hand and per-region descriptors of hand radiographs.

    Parameters
    ----------
    size : (int, int), default=(384, 320)
        (height, width) of the canonical preprocessed hand.
    clahe_clip : float, default=2.0
        CLAHE clip limit of the preprocessing.
    faint_tissue : bool, default=True
        Grow the hand mask into soft tissue fainter than its threshold (thin fingertips), judged
        against the local background (see :func:`boneage_features.preprocess.segment_hand`). False
        gives the mask of earlier versions, which often cuts fingertips off; a model saved before
        this parameter existed keeps False.
    families : tuple of str, default=("hog", "lbp", "intensity")
        Descriptor families computed over the whole hand, from
        :data:`boneage_features.descriptors.DESCRIPTORS`; may be empty when ``regions`` is not.
    hog_size : (int, int), default=(192, 160)
        Size the hand is resized to for HOG.
    hog_cell : int, default=16
        HOG cell side in pixels of ``hog_size``.
    hog_orientations : int, default=9
        HOG orientation bins.
    lbp_radii : tuple of int, default=(1, 2)
        LBP radii, pixels of ``lbp_size``.
    lbp_grid : (int, int), default=(4, 4)
        Grid of cells for the LBP histograms.
    lbp_size : (int, int), default=(192, 160)
        Size the hand is resized to for LBP.
    intensity_grid : (int, int), default=(4, 4)
        Grid of cells for the intensity statistics.
    regions : tuple of str, default=REGION_NAMES
        Regions of interest to describe, from :data:`boneage_features.regions.REGION_NAMES` (all 14 by
        default), in column order; empty for whole-hand features only. Their features are named after the region
        (``pp3_hog_0042``, ``carpal_lbp_r2u07``, ``radius_intensity_p50``) and are NaN where the
        region is not found; ``diagnostics_<region>_found`` says which were.
    region_families : tuple of str, default=("hog", "lbp", "intensity")
        Descriptor families computed on each region's patch.
    region_patch : (int, int), default=(48, 48)
        (height, width) each region is resampled to, bone upright; a multiple of ``region_hog_cell``.
    region_hog_cell : int, default=12
        HOG cell side in pixels of the patch.
    region_hog_orientations : int, default=9
        HOG orientation bins on the patches.
    region_lbp_radii : tuple of int, default=(1, 2, 3)
        LBP radii in pixels of the patch; one histogram per radius over the whole patch.
    region_intensity_grid : (int, int), default=(2, 1)
        Grid of cells for the intensity statistics of a patch (2 x 1: epiphysis and metaphysis).
    n_jobs : int, default=1
        Images processed in parallel (joblib; -1 for all cores).
    cache_dir : str, Path, False or None, default=None
        Feature cache folder; None uses :func:`default_cache_dir`, False disables caching.
    progress : bool, default=False
        Show a progress bar on stderr.
    """

    def __init__(
        self,
        *,
        size=(384, 320),
        clahe_clip=2.0,
        faint_tissue=True,
        families=("hog", "lbp", "intensity"),
        hog_size=(192, 160),
        hog_cell=16,
        hog_orientations=9,
        lbp_radii=(1, 2),
        lbp_grid=(4, 4),
        lbp_size=(192, 160),
        intensity_grid=(4, 4),
        regions=REGION_NAMES,
        region_families=("hog", "lbp", "intensity"),
        region_patch=(48, 48),
        region_hog_cell=12,
        region_hog_orientations=9,
        region_lbp_radii=(1, 2, 3),
        region_intensity_grid=(2, 1),
        n_jobs=1,
        cache_dir=None,
        progress=False,
    ):
        self.size = size
        self.clahe_clip = clahe_clip
        self.faint_tissue = faint_tissue
        self.families = families
        self.hog_size = hog_size
        self.hog_cell = hog_cell
        self.hog_orientations = hog_orientations
        self.lbp_radii = lbp_radii
        self.lbp_grid = lbp_grid
        self.lbp_size = lbp_size
        self.intensity_grid = intensity_grid
        self.regions = regions
        self.region_families = region_families
        self.region_patch = region_patch
        self.region_hog_cell = region_hog_cell
        self.region_hog_orientations = region_hog_orientations
        self.region_lbp_radii = region_lbp_radii
        self.region_intensity_grid = region_intensity_grid
        self.n_jobs = n_jobs
        self.cache_dir = cache_dir
        self.progress = progress

    def __setstate__(self, state):
        # An extractor pickled before a parameter existed lacks its attribute; the parameter's default
        # is what that extractor computed, except for regions, which came with defaults on.
        state.setdefault("regions", ())
        state.setdefault("faint_tissue", False)
        for name, parameter in inspect.signature(type(self).__init__).parameters.items():
            if parameter.kind is parameter.KEYWORD_ONLY:
                state.setdefault(name, parameter.default)
        super().__setstate__(state)

    def _config(self) -> dict:
        families = _names_tuple(self.families, "families")
        regions = _names_tuple(self.regions, "regions")
        unknown = [f for f in families if f not in DESCRIPTORS]
        if unknown:
            raise ValueError(f"families must be a subset of {sorted(DESCRIPTORS)}; got {self.families!r}")
        if not families and not regions:
            raise ValueError(
                "families and regions are both empty: there would be no features; "
                f"give families from {sorted(DESCRIPTORS)} or regions from {list(REGION_NAMES)}"
            )
        params = {
            "hog": {"size": tuple(self.hog_size), "cell": int(self.hog_cell), "orientations": int(self.hog_orientations)},
            "lbp": {"radii": tuple(self.lbp_radii), "grid": tuple(self.lbp_grid), "size": tuple(self.lbp_size)},
            "intensity": {"grid": tuple(self.intensity_grid)},
        }
        config = {
            "version": FEATURES_VERSION,
            "size": tuple(self.size),
            "clahe_clip": float(self.clahe_clip),
            "families": families,
            "params": {family: params[family] for family in families},
        }
        if self.faint_tissue:  # only then, so that the earlier mask keeps its cache entries
            config["faint_tissue"] = True
        if regions:  # only then, so that whole-hand configurations keep their cache entries
            config["regions"] = self._region_config(regions)
        return config

    def _region_config(self, regions: tuple) -> dict:
        unknown = [r for r in regions if r not in REGION_NAMES]
        if unknown:
            raise ValueError(
                f"unknown region{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} in regions; "
                f"valid names: {', '.join(REGION_NAMES)}"
            )
        families = _names_tuple(self.region_families, "region_families")
        if not families or any(f not in DESCRIPTORS for f in families):
            raise ValueError(
                f"region_families must be a non-empty subset of {sorted(DESCRIPTORS)}; got {self.region_families!r}"
            )
        patch = _pair_of_positive_ints(self.region_patch, "region_patch")
        cell = int(self.region_hog_cell)
        if "hog" in families and (cell < 1 or patch[0] % cell or patch[1] % cell or min(patch) < 2 * cell):
            raise ValueError(
                f"region_patch must be a multiple of region_hog_cell and at least 2 cells on each side; "
                f"got region_patch={self.region_patch!r}, region_hog_cell={self.region_hog_cell!r}"
            )
        radii = tuple(int(r) for r in self.region_lbp_radii)
        if not radii or min(radii) < 1:
            raise ValueError(f"region_lbp_radii must be positive integers; got {self.region_lbp_radii!r}")
        params = {
            "hog": {"size": patch, "cell": cell, "orientations": int(self.region_hog_orientations)},
            "lbp": {"radii": radii, "grid": (1, 1), "size": patch},
            "intensity": {"grid": _pair_of_positive_ints(self.region_intensity_grid, "region_intensity_grid")},
        }
        return {
            "detector": DETECTOR_VERSION,
            "names": regions,
            "families": families,
            "patch": patch,
            "params": {family: params[family] for family in families},
        }

    def _cache_folder(self, config) -> str | None:
        if self.cache_dir is False:
            return None
        root = Path(self.cache_dir) if self.cache_dir is not None else default_cache_dir()
        digest = hashlib.sha1(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]
        return str(root / f"features-{digest}")

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        """Feature names, in column order; they depend only on the parameters."""
        config = self._config()
        names = []
        for family in config["families"]:
            names += DESCRIPTORS[family].feature_names(**config["params"][family])
        region_config = config.get("regions")
        if region_config:
            for region in region_config["names"]:
                for family in region_config["families"]:
                    names += DESCRIPTORS[family].feature_names(source=region, **region_config["params"][family])
        return np.array(names, dtype=object)

    def fit(self, X=None, y=None):
        """Record the feature names; nothing is learned from the images."""
        self.feature_names_out_ = self.get_feature_names_out()
        self.n_features_out_ = len(self.feature_names_out_)
        return self

    def extract(self, X, *, errors="raise") -> Extraction:
        """Features and diagnostics of every image of ``X``.

        Parameters
        ----------
        X : DataFrame with an ``image`` column, Series or sequence of paths or (M, N) arrays
        errors : {"raise", "record"}, default="raise"
            "raise" stops at the first failed image with its error; "record" keeps going and lists
            each failed row in :attr:`Extraction.errors`.
        """
        if errors not in ("raise", "record"):
            raise ValueError(f"errors must be 'raise' or 'record'; got {errors!r}")
        config = self._config()
        names = self.get_feature_names_out()
        index, refs = _as_image_list(X)
        cache = self._cache_folder(config)
        jobs = (delayed(_describe_one)(ref, config, cache) for ref in refs)
        n_jobs = self.n_jobs if len(refs) > 1 else 1
        results = Parallel(n_jobs=n_jobs, return_as="generator", batch_size=16 if n_jobs != 1 else 1)(jobs)
        if self.progress:
            from tqdm.auto import tqdm

            results = tqdm(results, total=len(refs), desc="features", unit="img")
        rows, diags, keep, failed = [], [], [], {}
        for position, (values, diagnostics, failure) in enumerate(results):
            if failure is not None:
                if errors == "raise":
                    raise ImageReadError(*failure)
                failed[index[position]] = "{}: {}".format(*failure)
                continue
            rows.append(values)
            diags.append(diagnostics)
            keep.append(position)
        kept_index = index[keep] if len(keep) else index[:0]
        matrix = np.vstack(rows) if rows else np.empty((0, len(names)), np.float32)
        features = pd.DataFrame(matrix, index=kept_index, columns=names)
        diagnostics = pd.DataFrame(diags, index=kept_index)
        return Extraction(features, diagnostics, pd.Series(failed, dtype=str))

    def transform(self, X) -> pd.DataFrame:
        """Feature table of ``X`` (one row per image); raises on the first unreadable image."""
        return self.extract(X, errors="raise").features

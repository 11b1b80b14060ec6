"""First-order intensity statistics of the hand and of a grid over it.

Bone density and the contrast between bone, cartilage and soft tissue change with age. Computed on
the preprocessed (normalised, CLAHE) hand over hand pixels only: percentiles, mean, standard
deviation, skewness and kurtosis of the whole hand, mean and standard deviation per grid cell, and
the crop's aspect ratio (a child's hand and forearm are proportioned differently from an adult's).
A grid cell without hand pixels gives NaN.
"""

import numpy as np

FAMILY = "intensity"
_PERCENTILES = (5, 25, 50, 75, 95)


def feature_names(*, source="whole", grid=(4, 4)):
    """Names of the intensity features, in order."""
    names = [f"{source}_{FAMILY}_p{p:02d}" for p in _PERCENTILES]
    names += [f"{source}_{FAMILY}_{stat}" for stat in ("mean", "std", "skew", "kurtosis", "handfrac", "aspect")]
    for cell in range(grid[0] * grid[1]):
        names += [f"{source}_{FAMILY}_g{cell:02d}mean", f"{source}_{FAMILY}_g{cell:02d}std"]
    return names


def describe(image, mask=None, *, source="whole", grid=(4, 4)):
    """Intensity statistics of the hand.

    Parameters
    ----------
    image : (M, N) ndarray
        Preprocessed hand, float in [0, 1].
    mask : (M, N) ndarray of bool, optional
        Hand pixels. All pixels when None.
    source : str
        First part of the feature names.
    grid : (int, int)
        Rows and columns of the grid of cells.

    Returns
    -------
    names : list of str
    values : (K,) ndarray of float32
    """
    if image.ndim != 2:
        raise ValueError(f"image must be 2-D; got shape {image.shape}")
    image = image.astype(np.float32)
    inside = np.ones(image.shape, bool) if mask is None else mask.astype(bool)
    pixels = image[inside]
    n_global = len(_PERCENTILES) + 6
    values = np.full(len(feature_names(source=source, grid=grid)), np.nan, np.float32)
    if pixels.size:
        mean, std = float(pixels.mean()), float(pixels.std())
        centred = pixels - mean
        skew = float(np.mean(centred**3) / std**3) if std > 0 else 0.0
        kurtosis = float(np.mean(centred**4) / std**4 - 3.0) if std > 0 else 0.0
        values[: len(_PERCENTILES)] = np.percentile(pixels, _PERCENTILES)
        values[len(_PERCENTILES) : n_global] = (
            mean, std, skew, kurtosis, pixels.size / image.size, image.shape[0] / image.shape[1]
        )
    rows = np.linspace(0, image.shape[0], grid[0] + 1).astype(int)
    cols = np.linspace(0, image.shape[1], grid[1] + 1).astype(int)
    k = n_global
    for i in range(grid[0]):
        for j in range(grid[1]):
            cell = image[rows[i] : rows[i + 1], cols[j] : cols[j + 1]][inside[rows[i] : rows[i + 1], cols[j] : cols[j + 1]]]
            if cell.size:
                values[k : k + 2] = cell.mean(), cell.std()
            k += 2
    return feature_names(source=source, grid=grid), values

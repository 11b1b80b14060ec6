"""Histograms of oriented gradients (HOG) over the whole hand.

Bone edges, the shape of epiphyses and the width of joint spaces change with age; HOG summarises the
local edge directions on a grid of cells in blocks of 2x2 cells, L2-Hys normalised so that exposure
differences cancel (Dalal & Triggs, CVPR 2005). The image is first resized to ``size`` so that the
descriptor length is fixed whatever the crop.
"""

import cv2
import numpy as np
from skimage.feature import hog

FAMILY = "hog"


def n_features(*, size=(192, 160), cell=16, orientations=9):
    """Length of the HOG vector for these parameters."""
    height, width = size
    return (height // cell - 1) * (width // cell - 1) * 4 * orientations


def feature_names(*, source="whole", size=(192, 160), cell=16, orientations=9):
    """Names ``<source>_hog_NNNN`` of the HOG vector, in order."""
    return [f"{source}_{FAMILY}_{i:04d}" for i in range(n_features(size=size, cell=cell, orientations=orientations))]


def describe(image, mask=None, *, source="whole", size=(192, 160), cell=16, orientations=9):
    """HOG of ``image`` resized to ``size``.

    Parameters
    ----------
    image : (M, N) ndarray
        Preprocessed hand, float in [0, 1].
    mask : (M, N) ndarray of bool, optional
        Unused: background is already 0 in a preprocessed hand. Accepted for a uniform signature.
    source : str
        First part of the feature names.
    size : (int, int)
        (height, width) the image is resized to, multiples of ``cell``.
    cell : int
        Cell side in pixels of the resized image.
    orientations : int
        Number of unsigned orientation bins.

    Returns
    -------
    names : list of str
    values : (K,) ndarray of float32
    """
    if image.ndim != 2:
        raise ValueError(f"image must be 2-D; got shape {image.shape}")
    height, width = size
    if height % cell or width % cell or height // cell < 2 or width // cell < 2:
        raise ValueError(f"HOG size must be at least 2x2 cells and a multiple of cell={cell!r}; got {size!r}")
    resized = cv2.resize(image.astype(np.float32), (width, height), interpolation=cv2.INTER_AREA)
    values = hog(
        resized,
        orientations=orientations,
        pixels_per_cell=(cell, cell),
        cells_per_block=(2, 2),
        block_norm="L2-Hys",
        feature_vector=True,
    ).astype(np.float32)
    return feature_names(source=source, size=size, cell=cell, orientations=orientations), values

"""Local binary patterns (LBP): histograms of micro-texture on a grid over the hand.

Trabecular texture and the granularity of growth plates change with maturation. For each radius
``R`` the rotation-invariant uniform patterns with ``P = 8 R`` neighbours (capped at 24) are counted in
each cell of a ``grid`` over the hand, over hand pixels only, and normalised to frequencies
(Ojala, Pietikainen & Maenpaa, IEEE TPAMI 2002). A cell with no hand pixel gives NaN.
Component names: ``g03r2u07`` is grid cell 3 (row-major), radius 2, uniform code 7; with a single
cell (``grid=(1, 1)``, as for a region's patch) the cell part is left out: ``r2u07``.
"""

import cv2
import numpy as np
from skimage.feature import local_binary_pattern

FAMILY = "lbp"


def _n_points(radius):
    return min(8 * radius, 24)


def feature_names(*, source="whole", radii=(1, 2), grid=(4, 4), size=(192, 160)):
    """Names of the LBP histogram entries, in order."""
    n_cells = grid[0] * grid[1]
    names = []
    for cell in range(n_cells):
        prefix = f"g{cell:02d}" if n_cells > 1 else ""
        for radius in radii:
            for code in range(_n_points(radius) + 2):
                names.append(f"{source}_{FAMILY}_{prefix}r{radius}u{code:02d}")
    return names


def describe(image, mask=None, *, source="whole", radii=(1, 2), grid=(4, 4), size=(192, 160)):
    """Uniform LBP histograms per grid cell.

    Parameters
    ----------
    image : (M, N) ndarray
        Preprocessed hand, float in [0, 1].
    mask : (M, N) ndarray of bool, optional
        Hand pixels; histograms count only these. All pixels when None.
    source : str
        First part of the feature names.
    radii : tuple of int
        LBP radii in pixels of the image resized to ``size``.
    grid : (int, int)
        Rows and columns of cells.
    size : (int, int)
        (height, width) the image is resized to before coding, so texture scale is comparable.

    Returns
    -------
    names : list of str
    values : (K,) ndarray of float32
    """
    if image.ndim != 2:
        raise ValueError(f"image must be 2-D; got shape {image.shape}")
    if any(r < 1 for r in radii):
        raise ValueError(f"radii must be positive integers; got {radii!r}")
    height, width = size
    pixels = cv2.resize(image.astype(np.float32), (width, height), interpolation=cv2.INTER_AREA)
    pixels = np.clip(pixels * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if mask is None:
        inside = np.ones((height, width), bool)
    else:
        inside = cv2.resize(mask.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST) > 0
    rows = np.linspace(0, height, grid[0] + 1).astype(int)
    cols = np.linspace(0, width, grid[1] + 1).astype(int)
    codes = {r: local_binary_pattern(pixels, _n_points(r), r, method="uniform").astype(np.int32) for r in radii}
    values = []
    for i in range(grid[0]):
        for j in range(grid[1]):
            cell_mask = inside[rows[i] : rows[i + 1], cols[j] : cols[j + 1]]
            n = int(cell_mask.sum())
            for radius in radii:
                n_bins = _n_points(radius) + 2
                if n == 0:
                    values.append(np.full(n_bins, np.nan, np.float32))
                    continue
                cell_codes = codes[radius][rows[i] : rows[i + 1], cols[j] : cols[j + 1]][cell_mask]
                values.append(np.bincount(cell_codes, minlength=n_bins).astype(np.float32) / n)
    return feature_names(source=source, radii=radii, grid=grid, size=size), np.concatenate(values)

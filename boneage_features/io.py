"""Reading hand radiographs and the label manifests that list them.

This is the only module that touches files. :func:`read_image` turns a PNG, JPEG, TIFF, BMP or DICOM
file (8- or 16-bit, gray or colour, MONOCHROME1 or MONOCHROME2) or an in-memory array into one
``(H, W)`` float32 image in [0, 1] with bone bright, and turns every way a file can be unreadable into
an :class:`ImageReadError` that names the file and says why, so that a batch can record the reason for
one row and go on. :func:`read_manifest` reads the three label layouts of the RSNA Pediatric Bone Age
challenge and a plain ``image,sex[,boneage]`` layout into the ``X`` (image path and sex per id) and
``y`` (bone age in months) that the rest of the package takes; a bad row is a :class:`ManifestError`
naming the file, column, row and value, or with ``errors="coerce"`` a per-row message in ``X.error``.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import numbers
import os
import struct
import tempfile
import zlib
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

__all__ = [
    "MAX_AGE_MONTHS",
    "MIN_IMAGE_SIDE",
    "ImageReadError",
    "ManifestError",
    "parse_sex",
    "read_image",
    "read_manifest",
]

#: Images smaller than this many pixels on either side are rejected: no hand can be seen in them.
MIN_IMAGE_SIDE = 32

#: Ages above this many months (25 years) are rejected as typos; the RSNA labels span 1-228.
MAX_AGE_MONTHS = 300

#: Label used in place of a file name when :func:`read_image` is given an array.
ARRAY_SOURCE = "<array>"

# ITU-R BT.601 luma weights, the ones OpenCV and Pillow use to fold colour to gray.
_LUMA_RGB = np.array([0.299, 0.587, 0.114], dtype=np.float32)

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SIGNATURE = b"\xff\xd8\xff"
_TIFF_SIGNATURES = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF
_BMP_SIGNATURE = b"BM"
_DICOM_MAGIC_OFFSET = 128
_DICOM_SUFFIXES = (".dcm", ".dicom")

# File extensions an RSNA id may carry on disk, in order of preference when several exist.
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".dcm", ".dicom")

_SEX_MALE = frozenset({"m", "male", "true", "1", "1.0"})
_SEX_FEMALE = frozenset({"f", "female", "false", "0", "0.0"})
# Spellings of "no value" that spreadsheets and pandas write into CSV cells.
_MISSING_TOKENS = frozenset({"", "nan", "na", "n/a", "none", "null"})


class ImageReadError(ValueError):
    """An image file (or array) that cannot be turned into a radiograph.

    The message is always ``"<path>: <reason>"``, so a batch log or an error column names the file
    without further context.

    Parameters
    ----------
    path : str or os.PathLike
        The file that failed, or ``"<array>"`` for an in-memory array.
    reason : str
        What is wrong with it, in words a user can act on.

    Attributes
    ----------
    path : str
    reason : str
    """

    def __init__(self, path, reason):
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):
        # Keeps the exception picklable across joblib/multiprocessing workers despite the 2-arg init.
        return type(self), (self.path, self.reason)


class ManifestError(ValueError):
    """A label manifest (CSV) that cannot be read, or a bad value in one of its rows.

    The message is ``"<manifest path>: <reason>"``; for a bad value the reason names the column, the
    1-based data row (the first row after the header is row 1), the row's id and the value.

    Parameters
    ----------
    path : str or os.PathLike
        The manifest file.
    reason : str
        What is wrong.
    column : str, optional
        The column holding the bad value, as spelled in the file.
    row : int, optional
        1-based data row number of the bad value.

    Attributes
    ----------
    path, reason, column, row
    """

    def __init__(self, path, reason, *, column=None, row=None):
        self.path = os.fspath(path)
        self.reason = reason
        self.column = column
        self.row = row
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):
        return _rebuild_manifest_error, (self.path, self.reason, self.column, self.row)


def _rebuild_manifest_error(path, reason, column, row):
    return ManifestError(path, reason, column=column, row=row)


# --------------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------------


def read_image(path_or_array) -> np.ndarray:
    """Read a radiograph as a gray image in [0, 1].

    Parameters
    ----------
    path_or_array : str, os.PathLike or ndarray
        A PNG, JPEG, TIFF, BMP or DICOM file, recognised by its content (DICOM also by a ``.dcm`` or
        ``.dicom`` suffix when the file has no preamble), or an image array: ``(H, W)`` gray or
        ``(H, W, 3|4)`` RGB/RGBA, of dtype uint8, uint16 or float.

    Returns
    -------
    image : (H, W) ndarray of float32
        Values in [0, 1]. 8-bit data is divided by 255 and 16-bit data by 65535, so 16-bit precision
        is kept. Float data must be finite and is min-max scaled only when it leaves [0, 1]. Colour is
        folded to luminance (BT.601) and alpha is ignored. DICOM pixel data goes through the Modality
        LUT (rescale slope and intercept), then the VOI LUT or window centre/width when the file has
        one, else min-max; MONOCHROME1 is inverted so bone is bright; of a multi-frame file only the
        first frame is read (with a logged warning). Orientation tags are ignored.

    Raises
    ------
    ImageReadError
        For any file or array that cannot be read: missing, a directory, empty, not an image,
        corrupt or truncated, an unsupported DICOM, smaller than ``MIN_IMAGE_SIDE`` pixels a side,
        or an array of the wrong shape or dtype or with NaN/inf. The message starts with the path.
    TypeError
        If `path_or_array` is neither a path nor an array.
    """
    if isinstance(path_or_array, np.ndarray):
        image = _to_gray_float(path_or_array, source=ARRAY_SOURCE)
    elif isinstance(path_or_array, (str, os.PathLike)):
        path = os.fspath(path_or_array)
        image = _read_image_file(path)
    else:
        raise TypeError(
            f"read_image expects a file path or a numpy array; got {type(path_or_array).__name__}"
        )
    return image


def _read_image_file(path: str) -> np.ndarray:
    data = _read_bytes(path)
    head = data[:16]
    if data[_DICOM_MAGIC_OFFSET : _DICOM_MAGIC_OFFSET + 4] == b"DICM":
        # Checked first: a DICOM preamble may itself hold a TIFF header (dual-format files).
        return _read_dicom(path, data, has_magic=True)
    if data.startswith(_PNG_SIGNATURE):
        problem = _png_structure_problem(data)
        if problem:
            raise ImageReadError(path, problem)
        return _decode_raster(path, data, "PNG")
    if data.startswith(_JPEG_SIGNATURE):
        # Older OpenCV builds decode a cut-off JPEG silently (the missing part comes back gray);
        # checking the markers makes "truncated" an error whatever the decoder does.
        if not _jpeg_is_complete(data):
            raise ImageReadError(
                path,
                f"truncated JPEG: no end-of-image marker (FFD9) after the image data; the file "
                f"({len(data)} bytes) is cut short",
            )
        return _decode_raster(path, data, "JPEG")
    if head.startswith(_TIFF_SIGNATURES):
        return _decode_raster(path, data, "TIFF")
    if head.startswith(_BMP_SIGNATURE):
        return _decode_raster(path, data, "BMP")
    if path.lower().endswith(_DICOM_SUFFIXES):
        return _read_dicom(path, data, has_magic=False)
    raise ImageReadError(
        path,
        f"not a recognised image format (starts with {head!r}); expected PNG, JPEG, TIFF, BMP or DICOM",
    )


def _read_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        raise ImageReadError(path, "file not found") from None
    except IsADirectoryError:
        raise ImageReadError(path, "is a directory, not an image file") from None
    except OSError as exc:
        if os.path.isdir(path):  # Windows reports a directory as PermissionError
            raise ImageReadError(path, "is a directory, not an image file") from None
        raise ImageReadError(path, f"cannot read file ({exc.strerror or exc})") from exc
    if not data:
        raise ImageReadError(path, "file is empty (0 bytes)")
    return data


def _png_structure_problem(data: bytes) -> str | None:
    """Walk the PNG chunks and check their CRCs; say what is wrong, or None if the file is whole.

    libpng reports a corrupt chunk only as a failed decode (and a line on stderr); the walk gives
    the user the chunk and offset, and costs a CRC pass (~1 ms per MB).
    """
    view = memoryview(data)
    pos = len(_PNG_SIGNATURE)
    size = len(data)
    while True:
        if pos + 8 > size:
            return f"truncated PNG: the file ends at byte {size} before the IEND chunk"
        (length,) = struct.unpack_from(">I", data, pos)
        ctype = bytes(view[pos + 4 : pos + 8])
        name = ctype.decode("latin-1")
        if length > 0x7FFFFFFF or not ctype.isalpha():
            return f"corrupt PNG: invalid chunk header {ctype!r} at byte {pos}"
        end = pos + 12 + length
        if end > size:
            return f"truncated PNG: the file ends at byte {size} inside the {name} chunk at byte {pos}"
        (crc,) = struct.unpack_from(">I", data, end - 4)
        if zlib.crc32(view[pos + 4 : end - 4]) != crc:
            return f"corrupt PNG: CRC mismatch in the {name} chunk at byte {pos} (broken data)"
        if ctype == b"IEND":
            return None
        pos = end


def _jpeg_is_complete(data: bytes) -> bool:
    # Inside entropy-coded data every 0xFF byte is followed by 0x00 or a restart marker, so an EOI
    # (FFD9) after the last start-of-scan (FFDA) can only be the real end. This also accepts the
    # zero padding or trailing bytes that some writers put after EOI, and ignores the EOI of an
    # EXIF thumbnail (which comes before the main image's scans).
    last_sos = data.rfind(b"\xff\xda")
    return last_sos != -1 and data.find(b"\xff\xd9", last_sos + 2) != -1


def _decode_raster(path: str, data: bytes, fmt: str) -> np.ndarray:
    try:
        # IMREAD_UNCHANGED keeps 16 bits and does not apply EXIF rotation (orientation is
        # preprocess's job, from the image content).
        decoded = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        decoded = None
        logger.debug("OpenCV failed on %s: %s", path, exc)
    if decoded is None:
        # OpenCV says only "None"; Pillow either decodes what OpenCV could not or says why not.
        decoded = _decode_with_pillow(path, data, fmt)
    elif decoded.ndim == 3 and decoded.shape[2] in (3, 4):
        decoded = decoded[:, :, 2::-1]  # OpenCV's BGR(A) -> RGB, alpha dropped
    return _to_gray_float(decoded, source=path)


def _decode_with_pillow(path: str, data: bytes, fmt: str) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            if im.mode == "1":
                im = im.convert("L")
            elif not (im.mode in ("L", "I", "F", "RGB", "RGBA") or im.mode.startswith("I;16")):
                im = im.convert("RGBA" if "A" in im.mode or "transparency" in im.info else "RGB")
            arr = np.asarray(im)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageReadError(path, f"cannot decode {fmt} data: corrupt or unsupported ({exc})") from exc
    if arr.dtype.kind in "iu" and arr.dtype != np.uint8:
        # Pillow holds 16-bit gray as "I;16" (any byte order) or as 32-bit "I".
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise ImageReadError(path, f"unsupported {fmt} pixel data: integers outside 0-65535")
        arr = arr.astype(np.uint16)
    return arr


def _read_dicom(path: str, data: bytes, *, has_magic: bool) -> np.ndarray:
    import pydicom

    try:
        # Without the DICM magic (a bare dataset named .dcm) pydicom needs force=True to try.
        ds = pydicom.dcmread(io.BytesIO(data), force=not has_magic)
    except Exception as exc:  # a broken dataset can fail in many places of pydicom's parser
        raise ImageReadError(path, f"not a readable DICOM file ({exc})") from exc

    if not any(tag in ds for tag in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        sop = ds.get("SOPClassUID")
        kind = f" (SOP class {getattr(sop, 'name', sop)})" if sop else ""
        raise ImageReadError(path, f"DICOM file has no pixel data{kind}")
    _fill_missing_transfer_syntax(ds)

    try:
        arr = ds.pixel_array
    except Exception as exc:  # pydicom raises RuntimeError, NotImplementedError, ValueError, ...
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        if syntax is not None and syntax.is_compressed:
            raise ImageReadError(
                path,
                f"compressed DICOM transfer syntax {syntax.name} ({syntax}) cannot be decoded: no "
                f"decoder installed for it (install pylibjpeg with its plugins, or gdcm) ({exc})",
            ) from exc
        raise ImageReadError(path, f"cannot decode DICOM pixel data ({exc})") from exc

    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if n_frames > 1:
        logger.warning("%s: DICOM has %d frames; reading only the first", path, n_frames)
        arr = arr[0]
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()

    if samples > 1 or photometric not in ("MONOCHROME1", "MONOCHROME2"):
        return _dicom_colour_to_gray(path, ds, arr, photometric)

    image = _dicom_monochrome_to_unit(path, ds, arr)
    if photometric == "MONOCHROME1":
        # MONOCHROME1 means low values are white; invert so bone is bright as everywhere else.
        image = 1.0 - image
    return _checked_size(image.astype(np.float32), source=path)


def _fill_missing_transfer_syntax(ds) -> None:
    """Give a bare dataset (no file meta, as some old archives write) the syntax it was read in.

    pydicom refuses to decode pixels without a Transfer Syntax UID; a dataset without file meta
    cannot hold compressed pixels, so the encoding pydicom detected while reading is the answer.
    """
    import pydicom.uid
    from pydicom.dataset import FileMetaDataset

    meta = getattr(ds, "file_meta", None)
    if meta is not None and "TransferSyntaxUID" in meta:
        return
    encoding = getattr(ds, "original_encoding", None)  # pydicom >= 3
    implicit, little = encoding if encoding else (ds.is_implicit_VR, ds.is_little_endian)
    if implicit:
        syntax = pydicom.uid.ImplicitVRLittleEndian
    else:
        syntax = pydicom.uid.ExplicitVRLittleEndian if little else pydicom.uid.ExplicitVRBigEndian
    if meta is None:
        ds.file_meta = meta = FileMetaDataset()
    meta.TransferSyntaxUID = syntax


def _dicom_monochrome_to_unit(path: str, ds, arr: np.ndarray) -> np.ndarray:
    """Modality LUT, then VOI LUT / window (or min-max), scaled to [0, 1]."""
    apply_modality_lut, apply_voi, apply_windowing = _pydicom_lut_functions()

    values = apply_modality_lut(arr, ds)
    voi_seq = ds.get("VOILUTSequence")
    if voi_seq and "LUTDescriptor" in voi_seq[0] and "LUTData" in voi_seq[0]:
        entries, first_mapped, bits = (int(v) for v in voi_seq[0].LUTDescriptor)
        if bits == 8:
            # pydicom indexes the LUT with an array of the LUT's own dtype, which wraps around for an
            # 8-bit LUT of more than 256 entries; the entries are 16-bit words on disk either way.
            voi_seq[0].LUTDescriptor = [entries, first_mapped, 16]
        try:
            # The LUT is indexed by integer modality values; rounding avoids pydicom's float warning.
            out = apply_voi(np.rint(values).astype(np.int64), ds, index=0)
        except (ValueError, TypeError, IndexError, NotImplementedError, struct.error) as exc:
            logger.warning("%s: unusable DICOM VOI LUT (%s); trying the window, else min-max", path, exc)
        else:
            return np.clip(out.astype(np.float64) / (2**bits - 1), 0.0, 1.0)
    if "WindowCenter" in ds and "WindowWidth" in ds:
        try:
            out = apply_windowing(values, ds, index=0)
            # pydicom maps the window onto the stored-value range, which depends on bits stored,
            # sign and rescale; sending -inf/+inf through the same function gives that range.
            with np.errstate(over="ignore"):
                low, high = apply_windowing(np.array([-1e300, 1e300]), ds, index=0)
        except (ValueError, TypeError, IndexError) as exc:
            logger.warning("%s: unusable DICOM window (%s); scaling by min-max instead", path, exc)
        else:
            low, high = min(low, high), max(low, high)
            if high > low:
                return np.clip((out - low) / (high - low), 0.0, 1.0)
    return _min_max(np.asarray(values, dtype=np.float64))


def _dicom_colour_to_gray(path: str, ds, arr: np.ndarray, photometric: str) -> np.ndarray:
    # pydicom >= 3 hands YBR data back already converted to RGB.
    if not (arr.ndim == 3 and arr.shape[2] == 3 and photometric in ("RGB", "YBR_FULL", "YBR_FULL_422")):
        raise ImageReadError(path, f"unsupported DICOM PhotometricInterpretation {photometric!r}")
    rgb = arr.astype(np.float32) / (2 ** int(ds.get("BitsStored", 8)) - 1)
    return _checked_size(np.clip(rgb @ _LUMA_RGB, 0.0, 1.0), source=path)


def _pydicom_lut_functions():
    try:  # pydicom >= 3
        from pydicom.pixels import apply_modality_lut, apply_voi, apply_windowing
    except ImportError:  # pydicom 2.x
        from pydicom.pixel_data_handlers.util import apply_modality_lut, apply_voi, apply_windowing
    return apply_modality_lut, apply_voi, apply_windowing


def _to_gray_float(arr: np.ndarray, *, source: str) -> np.ndarray:
    """Validate a decoded or user array and turn it into ``(H, W)`` float32 in [0, 1]."""
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))):
        raise ImageReadError(
            source, f"expected a (H, W) gray or (H, W, 3|4) RGB/RGBA image; got shape {arr.shape}"
        )
    _checked_size(arr, source=source)

    if arr.dtype == np.uint8:
        scale = 255.0
    elif arr.dtype == np.uint16:
        scale = 65535.0
    elif np.issubdtype(arr.dtype, np.floating):
        scale = None
    else:
        raise ImageReadError(source, f"unsupported pixel type {arr.dtype}; expected uint8, uint16 or float")

    if scale is not None:
        if arr.ndim == 2:
            gray = arr.astype(np.float32)
            gray /= np.float32(scale)  # x / 255 is exact at the ends: 0 and 1 stay 0 and 1
            return gray
        gray = arr[:, :, :3].astype(np.float32) @ _LUMA_RGB
        # float32 luma weights sum to 1 + 1 ulp; the clip keeps pure white at exactly 1.
        return np.clip(gray / np.float32(scale), 0.0, 1.0)

    values = arr.astype(np.float64) if arr.ndim == 2 else arr[:, :, :3].astype(np.float64) @ _LUMA_RGB
    if not np.isfinite(values).all():
        raise ImageReadError(source, "image contains NaN or infinite values")
    if values.min() < 0.0 or values.max() > 1.0:
        values = _min_max(values)
    return values.astype(np.float32)


def _min_max(values: np.ndarray) -> np.ndarray:
    low, high = float(values.min()), float(values.max())
    if high <= low:  # a constant image carries no contrast to stretch
        return np.zeros_like(values)
    return (values - low) / (high - low)


def _checked_size(image: np.ndarray, *, source: str) -> np.ndarray:
    height, width = image.shape[:2]
    if height < MIN_IMAGE_SIDE or width < MIN_IMAGE_SIDE:
        raise ImageReadError(
            source, f"image is {width}x{height} px; need at least {MIN_IMAGE_SIDE} px a side"
        )
    return image


# --------------------------------------------------------------------------------------------------
# Manifests
# --------------------------------------------------------------------------------------------------

# Accepted column names (lower case, whitespace collapsed), in order of preference.
_ID_COLUMNS = ("id", "image id", "case id")
_IMAGE_COLUMNS = ("image",)
_SEX_COLUMNS = ("sex", "male")
_AGE_COLUMNS = ("boneage", "bone age (months)", "ground truth bone age (months)")


def parse_sex(value) -> str:
    """Normalise a sex value to ``"M"`` or ``"F"``.

    Parameters
    ----------
    value : str, bool, int, float or None
        ``M``/``F``, ``male``/``female``, ``True``/``False`` (the RSNA ``male`` column) or ``1``/``0``
        (1 = male), in any case and with surrounding spaces; also a bool or a number.

    Returns
    -------
    {"M", "F"}

    Raises
    ------
    ValueError
        ``"sex is missing ..."`` for None, NaN or an empty string, else
        ``"unknown sex value ...; expected one of ..."``.

    Examples
    --------
    >>> parse_sex(" female "), parse_sex(True), parse_sex(0)
    ('F', 'M', 'F')
    """
    if isinstance(value, (bool, np.bool_)):
        return "M" if value else "F"
    if value is None or value is pd.NA:
        raise ValueError(f"sex is missing (got {value!r})")
    if isinstance(value, numbers.Real):
        if math.isnan(value):
            raise ValueError(f"sex is missing (got {value!r})")
        if value in (0, 1):
            return "M" if value == 1 else "F"
    elif isinstance(value, str):
        token = value.strip().lower()
        if token in _SEX_MALE:
            return "M"
        if token in _SEX_FEMALE:
            return "F"
        if token in _MISSING_TOKENS:
            raise ValueError(f"sex is missing (got {value!r})")
    raise ValueError(f"unknown sex value {value!r}; expected one of M/F, male/female, True/False, 1/0")


def read_manifest(path, *, image_dir=None, errors="raise") -> tuple[pd.DataFrame, pd.Series | None]:
    """Read a label manifest (CSV) into image paths, sex and bone age.

    Column names are matched case-insensitively with surrounding whitespace stripped. Accepted
    layouts:

    - RSNA training: ``id,boneage,male`` (``male`` True/False; extra columns are ignored),
    - RSNA validation: ``Image ID,male,Bone Age (months)``,
    - RSNA test: ``Case ID,Sex,Ground truth bone age (months)`` (``Sex`` M/F),
    - plain: ``image,sex[,boneage]`` with an optional ``id`` column (else the id is the image's
      file stem); ``image`` is a path, relative to `image_dir` if given, else to the CSV's folder.

    In the RSNA layouts the id names the image ``<id>.png``, ``.jpg``, ``.jpeg`` (or another
    :func:`read_image` format) in `image_dir` if given, else in the first of ``<csv folder>/train``,
    ``<csv folder>/images`` and the CSV's folder that holds it. Each folder is listed once. An
    image that is not found still gets its most likely path (a warning is logged), so reading it
    later fails with "file not found" naming that path; plain paths are not checked at all.

    Parameters
    ----------
    path : str or os.PathLike
        The CSV file.
    image_dir : str or os.PathLike, optional
        Folder holding the images (RSNA layouts) or the base of relative image paths (plain layout).
    errors : {"raise", "coerce"}, default "raise"
        What to do with a bad sex or age value. ``"raise"``: a :class:`ManifestError` naming the
        column, row, id and value of the first bad row. ``"coerce"``: that row's sex becomes None or
        its age NaN, and ``X`` gets a column ``error`` with the row's message ("" when fine), so a
        batch can go on and report the row. A missing age cell is NaN either way, not an error.

    Returns
    -------
    X : DataFrame
        Index ``id`` (str), columns ``image`` (absolute path, str) and ``sex`` ("M"/"F"; None for a
        bad value under ``"coerce"``), plus ``error`` under ``"coerce"``. Rows in file order.
    y : Series of float64 or None
        Bone age in months named ``boneage``, indexed like ``X``; None when the manifest has no age
        column.

    Raises
    ------
    ManifestError
        If the file is missing, empty, not a CSV, lacks a required column (the message lists the
        columns found), has an empty or duplicate id or image path, or (``errors="raise"``) holds an
        unknown sex or a non-numeric, negative or > ``MAX_AGE_MONTHS`` age.
    ValueError
        If `errors` is not "raise" or "coerce".
    """
    if errors not in ("raise", "coerce"):
        raise ValueError(f"errors must be 'raise' or 'coerce'; got {errors!r}")
    manifest = os.path.abspath(os.fspath(path))
    table = _read_csv(manifest)
    columns = _find_columns(manifest, table)
    n_rows = len(table)
    csv_dir = os.path.dirname(manifest)
    base_dir = os.path.abspath(os.fspath(image_dir)) if image_dir is not None else None

    if columns["image"] is not None:
        image_col = columns["image"]
        raw_paths = table[image_col].tolist()
        for row, value in enumerate(raw_paths, start=1):
            if not value:
                raise ManifestError(
                    manifest, f"column {image_col!r}, data row {row}: image path is empty",
                    column=image_col, row=row,
                )
        images = _resolve_paths(raw_paths, base_dir or csv_dir)
        if columns["id"] is not None:
            ids = table[columns["id"]].tolist()
        else:
            ids = [Path(p).stem for p in raw_paths]
    else:
        ids = table[columns["id"]].tolist()
        if base_dir:
            folders = [base_dir]
        else:
            folders = [os.path.join(csv_dir, "train"), os.path.join(csv_dir, "images"), csv_dir]
        images = _locate_images(ids, folders)

    id_source = columns["id"] or columns["image"]
    _check_ids(manifest, ids, id_source, derived=columns["id"] is None)

    messages = [[] for _ in range(n_rows)]
    sex = _parse_sex_column(table[columns["sex"]], columns["sex"], ids, messages)
    age = None
    if columns["age"] is not None:
        age = _parse_age_column(table[columns["age"]], columns["age"], ids, messages)

    bad_rows = [i for i, row_messages in enumerate(messages) if row_messages]
    if bad_rows and errors == "raise":
        first = bad_rows[0]
        more = len(bad_rows) - 1
        suffix = f" (and {more} more bad row{'s' * (more > 1)})" if more else ""
        column = messages[first][0][0]
        raise ManifestError(
            manifest, messages[first][0][1] + suffix, column=column, row=first + 1
        )

    index = pd.Index(ids, name="id", dtype=str)
    # object dtype so that a coerced bad value is a real None, not the NaN a str column would hold.
    X = pd.DataFrame(
        {
            "image": pd.Series(images, index=index, dtype=str),
            "sex": pd.Series(sex, index=index, dtype=object),
        }
    )
    if errors == "coerce":
        X["error"] = pd.Series(["; ".join(text for _, text in m) for m in messages], index=index, dtype=str)
        if bad_rows:
            logger.warning(
                "%s: %d of %d rows have bad values (see the error column)", manifest, len(bad_rows), n_rows
            )
    y = None if age is None else pd.Series(age, index=index, name="boneage", dtype="float64")
    logger.info("%s: %d rows, columns %s", manifest, n_rows, {k: v for k, v in columns.items() if v})
    return X, y


def _read_csv(manifest: str) -> pd.DataFrame:
    if not os.path.isfile(manifest):
        reason = "is a directory, not a CSV file" if os.path.isdir(manifest) else "manifest file not found"
        raise ManifestError(manifest, reason)
    try:
        # Everything as literal text: ids keep leading zeros, "NA" stays a string we judge ourselves.
        table = pd.read_csv(
            manifest, dtype=str, keep_default_na=False, na_filter=False, encoding="utf-8-sig",
            skipinitialspace=True,
        )
    except pd.errors.EmptyDataError:
        raise ManifestError(manifest, "manifest is empty (no header and no rows)") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ManifestError(manifest, f"cannot parse as CSV ({exc})") from exc
    if table.empty:
        raise ManifestError(manifest, f"manifest has no data rows (columns {list(table.columns)})")
    return table.apply(lambda column: column.str.strip())


def _find_columns(manifest: str, table: pd.DataFrame) -> dict:
    by_name = {}
    for column in table.columns:
        by_name.setdefault(" ".join(str(column).split()).lower(), column)

    def pick(role, candidates):
        present = [by_name[c] for c in candidates if c in by_name]
        if len(present) > 1:
            raise ManifestError(manifest, f"ambiguous {role} column: found {present}; keep only one")
        return present[0] if present else None

    found = {
        "id": pick("id", _ID_COLUMNS),
        "image": pick("image", _IMAGE_COLUMNS),
        "sex": pick("sex", _SEX_COLUMNS),
        "age": pick("age", _AGE_COLUMNS),
    }
    missing = []
    if found["id"] is None and found["image"] is None:
        missing.append("'image' (a path) or an id column ('id', 'Image ID' or 'Case ID')")
    if found["sex"] is None:
        missing.append("'sex' (or 'male')")
    if missing:
        raise ManifestError(
            manifest,
            f"missing required column(s) {' and '.join(missing)}; found columns {list(table.columns)}",
        )
    return found


def _resolve_paths(raw_paths: list[str], base: str) -> list[str]:
    return [os.path.abspath(os.path.join(base, os.path.expanduser(p))) for p in raw_paths]


def _locate_images(ids: list[str], folders: list[str]) -> list[str]:
    """Map each RSNA id to ``<folder>/<id>.<ext>``, listing each folder once."""
    indexes = [(folder, _index_folder(folder)) for folder in folders]
    images = []
    missing = []
    found_in = Counter()
    for image_id in ids:
        for folder, index in indexes:
            if image_id in index:
                images.append(index[image_id])
                found_in[folder] += 1
                break
        else:
            images.append(None)
            missing.append(len(images) - 1)
    if missing:
        guess_dir, guess_ext = _likely_location(indexes, found_in)
        for i in missing:
            images[i] = os.path.join(guess_dir, ids[i] + guess_ext)
        searched = [folder for folder, _ in indexes]
        logger.warning(
            "%d of %d images not found in %s; e.g. id %r -> %s",
            len(missing), len(ids), searched, ids[missing[0]], images[missing[0]],
        )
    return images


def _index_folder(folder: str) -> dict[str, str]:
    """``stem -> path`` of the image files directly in `folder` (empty if it does not exist)."""
    rank = {suffix: i for i, suffix in enumerate(_IMAGE_SUFFIXES)}
    best: dict[str, tuple[int, str]] = {}
    try:
        entries = os.scandir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return {}
    with entries:
        for entry in entries:
            stem, suffix = os.path.splitext(entry.name)
            order = rank.get(suffix.lower())
            if order is None or not entry.is_file():
                continue
            if stem not in best or order < best[stem][0]:
                best[stem] = (order, entry.path)
    return {stem: entry_path for stem, (_, entry_path) in best.items()}


def _likely_location(indexes, found_in: Counter) -> tuple[str, str]:
    if found_in:
        folder = found_in.most_common(1)[0][0]
    else:
        existing = [folder for folder, _ in indexes if os.path.isdir(folder)]
        folder = existing[0] if existing else indexes[0][0]
    index = dict(indexes)[folder]
    suffixes = Counter(os.path.splitext(p)[1] for p in index.values())
    suffix = suffixes.most_common(1)[0][0] if suffixes else ".png"  # the official RSNA release is PNG
    return folder, suffix


def _check_ids(manifest: str, ids: list[str], column: str, *, derived: bool) -> None:
    for row, image_id in enumerate(ids, start=1):
        if not image_id:
            raise ManifestError(
                manifest, f"column {column!r}, data row {row}: id is empty", column=column, row=row
            )
    counts = Counter(ids)
    if len(counts) == len(ids):
        return
    rows_of: dict[str, list[int]] = {}
    for row, image_id in enumerate(ids, start=1):
        if counts[image_id] > 1:
            rows_of.setdefault(image_id, []).append(row)
    shown = "; ".join(f"{k!r} (data rows {', '.join(map(str, v))})" for k, v in list(rows_of.items())[:5])
    more = f" and {len(rows_of) - 5} more" if len(rows_of) > 5 else ""
    hint = " (ids are the image file stems; add an 'id' column to tell them apart)" if derived else ""
    raise ManifestError(manifest, f"duplicate ids in column {column!r}: {shown}{more}{hint}", column=column)


def _parse_sex_column(values: pd.Series, column: str, ids: list[str], messages: list) -> list:
    # Few distinct spellings in thousands of rows: parse each once.
    parsed = {}
    for value in values.unique():
        try:
            parsed[value] = (parse_sex(value), None)
        except ValueError as exc:
            parsed[value] = (None, str(exc))
    sex = []
    for i, value in enumerate(values.tolist()):
        code, problem = parsed[value]
        if problem:
            messages[i].append((column, f"column {column!r}, data row {i + 1} (id {ids[i]!r}): {problem}"))
        sex.append(code)
    return sex


def _parse_age_column(values: pd.Series, column: str, ids: list[str], messages: list) -> np.ndarray:
    missing = values.str.lower().isin(_MISSING_TOKENS).to_numpy()
    age = np.array(pd.to_numeric(values.mask(missing), errors="coerce"), dtype=np.float64)
    bad = (~missing & ~np.isfinite(age)) | (age < 0) | (age > MAX_AGE_MONTHS)
    raw = values.tolist()
    for i in np.flatnonzero(bad):
        if not np.isfinite(age[i]):
            problem = f"age {raw[i]!r} is not a finite number"
        elif age[i] < 0:
            problem = f"age {raw[i]!r} is negative"
        else:
            problem = f"age {raw[i]!r} is above the maximum of {MAX_AGE_MONTHS} months"
        messages[i].append((column, f"column {column!r}, data row {i + 1} (id {ids[i]!r}): {problem}"))
        age[i] = np.nan
    return age


def write_atomic(path, write) -> Path:
    """Write a file so that no reader ever sees half of it.

    ``write(tmp_path)`` writes a temporary file beside ``path``, which is then renamed over ``path``
    (atomic on POSIX); the temporary file is removed if ``write`` fails. The file gets the usual
    permissions (0666 less the umask), not mkstemp's private 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def file_sha1(path) -> str:
    """SHA-1 of a file's bytes, read in chunks: the identity of an image for caches and look-ups."""
    digest = hashlib.sha1()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()

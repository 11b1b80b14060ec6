"""Tests of boneage_features.io: reading radiographs in every format and the RSNA label manifests."""

import logging
import os
import pickle
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pydicom
import pytest
import tifffile
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import ExplicitVRLittleEndian, JPEGLSLossless, SecondaryCaptureImageStorage, generate_uid

from boneage_features.io import (
    MIN_IMAGE_SIDE,
    ImageReadError,
    ManifestError,
    parse_sex,
    read_image,
    read_manifest,
)

RSNA_DIR = Path(__file__).resolve().parents[1].parent / "shared/data/rsna-bone-age"


@pytest.fixture
def rsna_dir():
    if not (RSNA_DIR / "train.csv").is_file():
        pytest.skip(f"RSNA data folder not found at {RSNA_DIR}")
    return RSNA_DIR


def _gradient(height=48, width=40, dtype=np.uint8):
    """A ramp that uses the whole range of `dtype`, so scaling errors show."""
    top = np.iinfo(dtype).max
    ramp = np.linspace(0, top, height * width).round().astype(dtype)
    return ramp.reshape(height, width)


def _smooth(height=64, width=48):
    """A smooth 8-bit image that survives JPEG compression nearly unchanged."""
    y, x = np.mgrid[0:height, 0:width]
    return (40 + 150 * (x / width) + 50 * (y / height)).round().astype(np.uint8)


def _assert_read_error(path, *reason_parts):
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    message = str(info.value)
    assert message.startswith(os.fspath(path) + ": ")
    assert Path(path).name in message
    for part in reason_parts:
        assert part in message, message
    assert info.value.path == os.fspath(path)
    return info.value


# --------------------------------------------------------------------------------------------------
# Raster formats
# --------------------------------------------------------------------------------------------------


def test_png_8bit_is_scaled_by_255(tmp_path):
    arr = _gradient()
    path = tmp_path / "gray8.png"
    cv2.imwrite(str(path), arr)
    image = read_image(path)
    assert image.dtype == np.float32 and image.shape == arr.shape
    np.testing.assert_allclose(image, arr / 255.0, atol=1e-6)


def test_png_16bit_keeps_full_precision(tmp_path):
    arr = _gradient(dtype=np.uint16)
    arr[0, 0] = 1000
    path = tmp_path / "gray16.png"
    cv2.imwrite(str(path), arr)
    image = read_image(str(path))
    assert image[0, 0] == pytest.approx(1000 / 65535, abs=1e-7)
    # Truncating to 8 bits would give 3/255 here, 15 steps of 16-bit away.
    assert abs(image[0, 0] - 3 / 255) > 1e-4
    np.testing.assert_allclose(image, arr / 65535.0, atol=1e-6)


def test_png_16bit_rgb_keeps_precision(tmp_path):
    arr = np.full((40, 40, 3), 1000, dtype=np.uint16)
    path = tmp_path / "rgb16.png"
    cv2.imwrite(str(path), arr)
    np.testing.assert_allclose(read_image(path), 1000 / 65535, atol=1e-6)


def test_jpeg(tmp_path):
    arr = _smooth()
    path = tmp_path / "hand.jpg"
    cv2.imwrite(str(path), arr, [cv2.IMWRITE_JPEG_QUALITY, 95])
    image = read_image(path)
    assert image.shape == arr.shape and image.dtype == np.float32
    np.testing.assert_allclose(image, arr / 255.0, atol=0.03)


def test_jpeg_with_zero_padding_after_eoi_is_complete(tmp_path):
    ok, encoded = cv2.imencode(".jpg", _smooth())
    path = tmp_path / "padded.jpg"
    path.write_bytes(encoded.tobytes() + b"\x00" * 64)
    assert read_image(path).shape == (64, 48)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_tiff(tmp_path, dtype):
    arr = _gradient(dtype=dtype)
    path = tmp_path / f"image_{np.dtype(dtype).name}.tif"
    tifffile.imwrite(path, arr)
    np.testing.assert_allclose(read_image(path), arr / float(np.iinfo(dtype).max), atol=1e-6)


def test_bmp(tmp_path):
    arr = _gradient()
    path = tmp_path / "image.bmp"
    Image.fromarray(arr).save(path)
    np.testing.assert_allclose(read_image(path), arr / 255.0, atol=1e-6)


def test_rgb_png_is_folded_to_luminance_in_rgb_order(tmp_path):
    rgb = np.zeros((40, 60, 3), dtype=np.uint8)
    rgb[:, :20, 0] = 255  # red
    rgb[:, 20:40, 1] = 255  # green
    rgb[:, 40:, 2] = 255  # blue
    path = tmp_path / "rgb.png"
    Image.fromarray(rgb, mode="RGB").save(path)
    image = read_image(path)
    assert image.shape == (40, 60)
    np.testing.assert_allclose(image[0, [0, 20, 40]], [0.299, 0.587, 0.114], atol=1e-6)


def test_rgba_png_ignores_alpha(tmp_path):
    gray = _gradient(40, 50)
    rgba = np.dstack([gray, gray, gray, np.linspace(0, 255, 50, dtype=np.uint8)[None, :].repeat(40, 0)])
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba, mode="RGBA").save(path)
    np.testing.assert_allclose(read_image(path), gray / 255.0, atol=1e-6)


def test_constant_image_reads(tmp_path):
    path = tmp_path / "black.png"
    cv2.imwrite(str(path), np.zeros((40, 40), dtype=np.uint8))
    image = read_image(path)
    assert image.shape == (40, 40) and not image.any()


# --------------------------------------------------------------------------------------------------
# Arrays
# --------------------------------------------------------------------------------------------------


def test_array_uint8_uint16_and_unit_float():
    arr8 = _gradient()
    np.testing.assert_allclose(read_image(arr8), arr8 / 255.0, atol=1e-6)
    arr16 = _gradient(dtype=np.uint16)
    np.testing.assert_allclose(read_image(arr16), arr16 / 65535.0, atol=1e-6)
    unit = np.linspace(0.2, 0.6, 48 * 40).reshape(48, 40)
    out = read_image(unit)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, unit, atol=1e-6)  # already in [0, 1]: not stretched


def test_array_float_outside_unit_range_is_min_max_scaled():
    arr = np.linspace(-100.0, 300.0, 48 * 40).reshape(48, 40)
    out = read_image(arr)
    assert out.min() == 0.0 and out.max() == 1.0
    np.testing.assert_allclose(out, (arr + 100) / 400, atol=1e-6)
    assert not read_image(np.full((40, 40), 5.0)).any()  # constant: zeros, no division by zero


def test_array_rgb_is_treated_as_rgb():
    rgb = np.zeros((40, 40, 3), dtype=np.uint8)
    rgb[..., 0] = 255
    np.testing.assert_allclose(read_image(rgb), 0.299, atol=1e-6)


@pytest.mark.parametrize(
    "arr, reason",
    [
        (np.full((40, 40), np.nan), "NaN or infinite"),
        (np.zeros((40, 40, 2), dtype=np.uint8), "got shape (40, 40, 2)"),
        (np.zeros((2, 40, 40, 3), dtype=np.uint8), "got shape"),
        (np.zeros((40, 40), dtype=np.int64), "unsupported pixel type int64"),
        (np.zeros((10, 40), dtype=np.uint8), "image is 40x10 px; need at least 32 px a side"),
    ],
)
def test_bad_arrays(arr, reason):
    with pytest.raises(ImageReadError, match="^<array>: ") as info:
        read_image(arr)
    assert reason in str(info.value)


def test_not_a_path_or_array():
    with pytest.raises(TypeError, match="file path or a numpy array; got int"):
        read_image(42)


# --------------------------------------------------------------------------------------------------
# DICOM
# --------------------------------------------------------------------------------------------------


def _dicom(path, pixels, *, photometric="MONOCHROME2", syntax=ExplicitVRLittleEndian, **elements):
    """Write `pixels` (uint16, 12 bits stored; frames first if 3-D) as a DICOM file at `path`."""
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = syntax
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.Rows, ds.Columns = pixels.shape[-2:]
    if pixels.ndim == 3:
        ds.NumberOfFrames = pixels.shape[0]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    if syntax.is_compressed:
        ds.PixelData = encapsulate([b"\xff\xd8\xff\xf7 not really JPEG-LS \xff\xd9"])
        ds["PixelData"].VR = "OB"
    else:
        ds.PixelData = pixels.astype("<u2").tobytes()
    if int(pydicom.__version__.split(".")[0]) >= 3:
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
    else:
        pydicom.dcmwrite(path, ds, write_like_original=False)
    return path


def _stored_ramp(height=64, width=48):
    """12-bit stored values covering 0-4095."""
    return (np.arange(height * width).reshape(height, width) * 4096 // (height * width)).astype(np.uint16)


def test_dicom_rescale_and_window(tmp_path):
    stored = _stored_ramp()
    path = _dicom(
        tmp_path / "window.dcm", stored,
        RescaleSlope=2, RescaleIntercept=-1000, WindowCenter=1000, WindowWidth=2000,
    )
    image = read_image(path)
    # DICOM PS3.3 C.11.2.1.2.1 linear window on the rescaled values, written out independently.
    values = 2.0 * stored - 1000.0
    expected = np.clip((values - (1000 - 0.5)) / (2000 - 1) + 0.5, 0.0, 1.0)
    assert image.dtype == np.float32 and image.shape == stored.shape
    np.testing.assert_allclose(image, expected, atol=1e-5)
    assert image.min() == 0.0 and image.max() == 1.0  # the window saturates at both ends


def test_dicom_voi_lut_sequence(tmp_path):
    stored = _stored_ramp()
    lut = (np.arange(4096) // 16).astype(np.uint16)  # 12-bit input -> 8-bit output
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 8]
    item.LUTData = lut.tolist()
    item["LUTData"].VR = "US"
    path = _dicom(tmp_path / "lut.dcm", stored, VOILUTSequence=[item])
    np.testing.assert_allclose(read_image(path), lut[stored] / 255.0, atol=1e-6)


def test_dicom_without_window_is_min_max_and_monochrome1_is_inverted(tmp_path):
    stored = _stored_ramp() // 2 + 100
    mono2 = read_image(_dicom(tmp_path / "mono2.dcm", stored))
    mono1 = read_image(_dicom(tmp_path / "mono1.dcm", stored, photometric="MONOCHROME1"))
    assert mono2.min() == 0.0 and mono2.max() == 1.0
    low, high = float(stored.min()), float(stored.max())
    np.testing.assert_allclose(mono2, (stored - low) / (high - low), atol=1e-6)
    np.testing.assert_allclose(mono1, 1.0 - mono2, atol=1e-6)


def test_dicom_constant_image_is_zeros(tmp_path):
    assert not read_image(_dicom(tmp_path / "flat.dcm", np.full((40, 40), 7, np.uint16))).any()


def test_dicom_multiframe_reads_first_frame_with_warning(tmp_path, caplog):
    frames = np.stack([_stored_ramp(), _stored_ramp()[::-1]])
    path = _dicom(tmp_path / "frames.dcm", frames)
    with caplog.at_level(logging.WARNING, logger="boneage_features.io"):
        image = read_image(path)
    np.testing.assert_allclose(image, read_image(_dicom(tmp_path / "one.dcm", frames[0])))
    assert "2 frames" in caplog.text and "frames.dcm" in caplog.text


def test_dicom_detected_by_content_and_by_suffix(tmp_path):
    stored = _stored_ramp()
    by_magic = tmp_path / "no_suffix"
    _dicom(by_magic, stored)
    assert read_image(by_magic).shape == stored.shape
    # A bare dataset (no preamble, no file meta) is recognised only by its suffix.
    bare_ds = Dataset()
    for element in pydicom.dcmread(by_magic):
        bare_ds.add(element)
    bare = tmp_path / "bare.dcm"
    pydicom.dcmwrite(bare, bare_ds, implicit_vr=False, little_endian=True)
    assert bare.read_bytes()[128:132] != b"DICM"
    np.testing.assert_allclose(read_image(bare), read_image(by_magic))


def test_dicom_without_pixel_data(tmp_path):
    path = _dicom(tmp_path / "nopixels.dcm", _stored_ramp())
    ds = pydicom.dcmread(path)
    del ds.PixelData
    ds.save_as(path)
    _assert_read_error(path, "no pixel data")


def test_dicom_compressed_without_decoder(tmp_path):
    path = _dicom(tmp_path / "jpegls.dcm", _stored_ramp(), syntax=JPEGLSLossless)
    err = _assert_read_error(path, "compressed", "JPEG-LS", "decoder")
    assert isinstance(err, ValueError)


# --------------------------------------------------------------------------------------------------
# Unreadable files
# --------------------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    _assert_read_error(tmp_path / "nope.png", "file not found")


def test_directory(tmp_path):
    folder = tmp_path / "folder.png"
    folder.mkdir()
    _assert_read_error(folder, "directory")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.png"
    path.touch()
    _assert_read_error(path, "file is empty (0 bytes)")


def test_text_file_named_png(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("hello, this is not a picture\n")
    _assert_read_error(path, "not a recognised image format", "starts with b'hello, this is n")


def _png_bytes(arr):
    ok, encoded = cv2.imencode(".png", arr)
    assert ok
    return bytearray(encoded.tobytes())


def test_corrupt_png_bad_crc(tmp_path):
    data = _png_bytes(_gradient(64, 64))
    idat = data.find(b"IDAT")
    data[idat + 10] ^= 0xFF
    data[idat + 11] ^= 0xFF
    path = tmp_path / "crc.png"
    path.write_bytes(bytes(data))
    _assert_read_error(path, "corrupt PNG", "CRC", "IDAT")


def test_corrupt_png_with_valid_crc_broken_data(tmp_path):
    # Broken compressed data under a recomputed CRC: only the decoder can notice.
    data = _png_bytes((np.random.default_rng(0).random((64, 64)) * 255).astype(np.uint8))
    idat = data.find(b"IDAT")
    (length,) = struct.unpack_from(">I", data, idat - 4)
    for offset in range(6, 40):
        data[idat + offset] ^= 0x5A
    struct.pack_into(">I", data, idat + 4 + length, zlib.crc32(bytes(data[idat : idat + 4 + length])))
    path = tmp_path / "zlib.png"
    path.write_bytes(bytes(data))
    _assert_read_error(path, "cannot decode PNG data")


def test_truncated_png(tmp_path):
    data = _png_bytes(_gradient(64, 64))
    path = tmp_path / "cut.png"
    path.write_bytes(bytes(data[: len(data) // 2]))
    _assert_read_error(path, "truncated PNG")


def test_truncated_jpeg(tmp_path):
    ok, encoded = cv2.imencode(".jpg", (np.random.default_rng(1).random((300, 200)) * 255).astype(np.uint8))
    data = encoded.tobytes()
    path = tmp_path / "half.jpg"
    path.write_bytes(data[: len(data) // 2])
    _assert_read_error(path, "truncated")


def test_one_pixel_image(tmp_path):
    path = tmp_path / "dot.png"
    cv2.imwrite(str(path), np.zeros((1, 1), dtype=np.uint8))
    _assert_read_error(path, "image is 1x1 px", f"at least {MIN_IMAGE_SIDE} px")


def test_image_read_error_pickles():
    err = pickle.loads(pickle.dumps(ImageReadError("a/b.png", "file not found")))
    assert (err.path, err.reason, str(err)) == ("a/b.png", "file not found", "a/b.png: file not found")
    merr = pickle.loads(pickle.dumps(ManifestError("m.csv", "bad", column="sex", row=3)))
    assert (str(merr), merr.column, merr.row) == ("m.csv: bad", "sex", 3)


# --------------------------------------------------------------------------------------------------
# Real radiographs
# --------------------------------------------------------------------------------------------------


def test_real_training_jpeg(rsna_dir):
    path = next(iter(sorted((rsna_dir / "train").glob("*.jpg"))))
    image = read_image(path)
    assert image.dtype == np.float32 and image.ndim == 2
    assert max(image.shape) == 384
    assert 0.0 <= image.min() < image.max() <= 1.0


def test_real_full_resolution_png(rsna_dir):
    path = sorted((rsna_dir / "originals").glob("*.png"))[0]
    image = read_image(path)
    assert image.ndim == 2 and max(image.shape) >= 620
    assert 0.0 <= image.min() < image.max() <= 1.0


# --------------------------------------------------------------------------------------------------
# Sex values
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, expected",
    [
        ("M", "M"), ("f", "F"), (" male ", "M"), ("FEMALE", "F"), ("True", "M"), ("FALSE", "F"),
        ("true", "M"), ("1", "M"), ("0", "F"), (" 1 ", "M"), (True, "M"), (False, "F"),
        (np.bool_(True), "M"), (1, "M"), (0, "F"), (1.0, "M"), (0.0, "F"),
        (np.int64(1), "M"),
    ],
)
def test_parse_sex(value, expected):
    assert parse_sex(value) == expected


@pytest.mark.parametrize("value", [None, float("nan"), "", "  ", "NaN", pd.NA])
def test_parse_sex_missing(value):
    with pytest.raises(ValueError, match="sex is missing"):
        parse_sex(value)


@pytest.mark.parametrize("value", ["X", "unknown", 2, "mal", 0.5])
def test_parse_sex_unknown(value):
    with pytest.raises(ValueError) as info:
        parse_sex(value)
    assert str(info.value) == (
        f"unknown sex value {value!r}; expected one of M/F, male/female, True/False, 1/0"
    )


# --------------------------------------------------------------------------------------------------
# Manifests
# --------------------------------------------------------------------------------------------------


def _tiny_image(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, encoded = cv2.imencode(path.suffix, _smooth(40, 40))
    path.write_bytes(encoded.tobytes())
    return path


def test_rsna_training_layout(tmp_path):
    for name in ("1377.jpg", "1378.jpg"):
        _tiny_image(tmp_path / "train" / name)
    csv = tmp_path / "train.csv"
    csv.write_text(
        "id,boneage,male,original_width,original_height\n1377,180,False,1514,2044\n1378,12,True,800,900\n"
    )
    X, y = read_manifest(csv)
    assert X.index.name == "id" and list(X.index) == ["1377", "1378"]
    assert list(X.columns) == ["image", "sex"]
    assert list(X["image"]) == [str(tmp_path / "train" / "1377.jpg"), str(tmp_path / "train" / "1378.jpg")]
    assert list(X["sex"]) == ["F", "M"]
    assert y.name == "boneage" and y.dtype == np.float64
    assert y.index.equals(X.index) and list(y) == [180.0, 12.0]
    assert read_image(X.loc["1377", "image"]).shape == (40, 40)


def test_rsna_validation_layout(tmp_path):
    _tiny_image(tmp_path / "images" / "1386.png")
    _tiny_image(tmp_path / "images" / "1392.png")
    csv = tmp_path / "validation.csv"
    csv.write_text("Image ID,male,Bone Age (months)\n1386,FALSE,30\n1392,TRUE,162\n")
    X, y = read_manifest(csv)
    assert list(X["image"]) == [str(tmp_path / "images" / "1386.png"), str(tmp_path / "images" / "1392.png")]
    assert list(X["sex"]) == ["F", "M"] and list(y) == [30.0, 162.0]


def test_rsna_test_layout_images_beside_csv(tmp_path):
    _tiny_image(tmp_path / "4360.png")
    _tiny_image(tmp_path / "4361.png")
    csv = tmp_path / "test.csv"
    csv.write_text("Case ID,Sex,Ground truth bone age (months)\n4360,M,168.934249\n4361,F,169.652678\n")
    X, y = read_manifest(csv)
    assert list(X["image"]) == [str(tmp_path / "4360.png"), str(tmp_path / "4361.png")]
    assert list(X["sex"]) == ["M", "F"]
    np.testing.assert_allclose(y.to_numpy(), [168.934249, 169.652678])


def test_rsna_layout_without_age_gives_no_y(tmp_path):
    _tiny_image(tmp_path / "train" / "7.png")
    csv = tmp_path / "ids.csv"
    csv.write_text("Case ID,Sex\n7,F\n")
    X, y = read_manifest(csv)
    assert y is None and X.loc["7", "sex"] == "F"


def test_column_names_are_matched_loosely(tmp_path):
    _tiny_image(tmp_path / "train" / "5.jpg")
    csv = tmp_path / "loose.csv"
    csv.write_text(" ID , BoneAge ,  MALE \n 5 , 100 , true \n")
    X, y = read_manifest(csv)
    assert list(X.index) == ["5"] and X.loc["5", "sex"] == "M" and y.loc["5"] == 100.0


def test_image_dir_and_extension_preference(tmp_path):
    images = tmp_path / "elsewhere"
    _tiny_image(images / "1.jpg")
    _tiny_image(images / "1.png")  # .png preferred over .jpg for the same id
    _tiny_image(tmp_path / "train" / "1.jpg")  # ignored: image_dir wins
    csv = tmp_path / "labels.csv"
    csv.write_text("id,boneage,male\n1,10,True\n")
    X, _ = read_manifest(csv, image_dir=images)
    assert X.loc["1", "image"] == str(images / "1.png")


def test_missing_rsna_image_gets_most_likely_path(tmp_path, caplog):
    _tiny_image(tmp_path / "train" / "1.jpg")
    csv = tmp_path / "labels.csv"
    csv.write_text("id,boneage,male\n1,10,True\n2,20,False\n")
    with caplog.at_level(logging.WARNING, logger="boneage_features.io"):
        X, _ = read_manifest(csv)
    missing = tmp_path / "train" / "2.jpg"
    assert X.loc["2", "image"] == str(missing)
    assert "1 of 2 images not found" in caplog.text
    with pytest.raises(ImageReadError, match="file not found"):
        read_image(X.loc["2", "image"])


def test_plain_layout_with_relative_paths(tmp_path):
    _tiny_image(tmp_path / "scans" / "a.png")
    _tiny_image(tmp_path / "scans" / "b.jpg")
    csv = tmp_path / "plain.csv"
    csv.write_text("image,sex,boneage\nscans/a.png,male,12.5\nscans/b.jpg,F,\n")
    X, y = read_manifest(csv)
    assert list(X.index) == ["a", "b"]  # ids are the file stems
    assert list(X["image"]) == [str(tmp_path / "scans" / "a.png"), str(tmp_path / "scans" / "b.jpg")]
    assert all(os.path.isabs(p) for p in X["image"])
    assert list(X["sex"]) == ["M", "F"]
    assert y.loc["a"] == 12.5 and np.isnan(y.loc["b"])  # a blank age is unlabelled, not an error


def test_plain_layout_with_id_column_absolute_paths_and_no_age(tmp_path):
    absolute = _tiny_image(tmp_path / "x" / "scan.png")
    csv = tmp_path / "sub" / "plain.csv"
    csv.parent.mkdir()
    csv.write_text(f"id,image,sex\np1,{absolute},0\np2,../x/missing.png,1\n")
    X, y = read_manifest(csv)
    assert y is None
    assert list(X.index) == ["p1", "p2"]
    assert X.loc["p1", "image"] == str(absolute)
    # Not checked for existence, only resolved against the CSV's folder.
    assert X.loc["p2", "image"] == str(tmp_path / "x" / "missing.png")


def test_missing_column_names_column_and_found_columns(tmp_path):
    csv = tmp_path / "nosex.csv"
    csv.write_text("id,boneage\n1,10\n")
    with pytest.raises(ManifestError) as info:
        read_manifest(csv)
    message = str(info.value)
    assert message.startswith(str(csv))
    assert "'sex'" in message and "'male'" in message and "['id', 'boneage']" in message


def test_missing_image_and_id_columns(tmp_path):
    csv = tmp_path / "noid.csv"
    csv.write_text("sex,boneage\nM,10\n")
    with pytest.raises(ManifestError, match="'image'.*'Case ID'"):
        read_manifest(csv)


def test_unknown_sex_raise_names_column_row_and_value(tmp_path):
    csv = tmp_path / "labels.csv"
    csv.write_text("id,boneage,male\n1,10,True\n2,20,X\n3,30,??\n")
    with pytest.raises(ManifestError) as info:
        read_manifest(csv)
    message = str(info.value)
    assert message.startswith(str(csv))
    assert "column 'male'" in message and "data row 2" in message and "'X'" in message
    assert "and 1 more bad row" in message
    assert (info.value.column, info.value.row) == ("male", 2)


def test_unknown_sex_coerce_fills_error_column(tmp_path):
    csv = tmp_path / "labels.csv"
    csv.write_text("id,boneage,male\n1,10,True\n2,20,X\n3,30,\n")
    X, y = read_manifest(csv, errors="coerce")
    assert list(X.columns) == ["image", "sex", "error"]
    assert X.loc["1", "sex"] == "M" and X.loc["2", "sex"] is None and X.loc["3", "sex"] is None
    assert X.loc["1", "error"] == ""
    assert "unknown sex value 'X'" in X.loc["2", "error"] and "data row 2" in X.loc["2", "error"]
    assert "sex is missing" in X.loc["3", "error"]
    assert list(y) == [10.0, 20.0, 30.0]


@pytest.mark.parametrize(
    "age, reason",
    [
        ("abc", "'abc' is not a finite number"),
        ("-1", "'-1' is negative"),
        ("301", "above the maximum of 300"),
    ],
)
def test_bad_age(tmp_path, age, reason):
    csv = tmp_path / "labels.csv"
    csv.write_text(f"image,sex,boneage\na.png,M,10\nb.png,F,{age}\n")
    with pytest.raises(ManifestError) as info:
        read_manifest(csv)
    message = str(info.value)
    assert "column 'boneage'" in message and "data row 2" in message and reason in message
    X, y = read_manifest(csv, errors="coerce")
    assert np.isnan(y.loc["b"]) and y.loc["a"] == 10.0
    assert reason in X.loc["b", "error"] and X.loc["b", "sex"] == "F"


def test_duplicate_ids(tmp_path):
    csv = tmp_path / "dup.csv"
    csv.write_text("id,boneage,male\n1,10,True\n2,20,False\n1,30,True\n")
    with pytest.raises(ManifestError, match=r"duplicate ids in column 'id': '1' \(data rows 1, 3\)"):
        read_manifest(csv)


def test_duplicate_stems_suggest_id_column(tmp_path):
    csv = tmp_path / "dup.csv"
    csv.write_text("image,sex\na/scan.png,M\nb/scan.png,F\n")
    with pytest.raises(ManifestError, match="add an 'id' column"):
        read_manifest(csv)


@pytest.mark.parametrize(
    "content, reason", [("", "manifest is empty"), ("id,boneage,male\n", "no data rows")]
)
def test_empty_manifest(tmp_path, content, reason):
    csv = tmp_path / "empty.csv"
    csv.write_text(content)
    with pytest.raises(ManifestError, match=reason):
        read_manifest(csv)


def test_missing_manifest_and_bad_errors_argument(tmp_path):
    with pytest.raises(ManifestError, match="manifest file not found"):
        read_manifest(tmp_path / "nope.csv")
    with pytest.raises(ValueError, match="errors must be 'raise' or 'coerce'; got 'ignore'"):
        read_manifest(tmp_path / "nope.csv", errors="ignore")


def test_real_train_csv(rsna_dir):
    X, y = read_manifest(rsna_dir / "train.csv")
    assert len(X) == len(y) == 12_611
    assert X.index.is_unique and set(X["sex"]) == {"M", "F"}
    assert y.between(1, 228).all()
    assert all(os.path.isfile(p) for p in X["image"])
    assert X.loc["1377", "image"] == str(rsna_dir / "train" / "1377.jpg")
    assert X.loc["1377", "sex"] == "F" and y.loc["1377"] == 180.0


def test_write_atomic_replaces_whole_files_and_cleans_up(tmp_path):
    import os

    from boneage_features.io import write_atomic

    target = tmp_path / "sub" / "out.txt"
    old_umask = os.umask(0o022)
    try:
        write_atomic(target, lambda tmp: Path(tmp).write_text("first"))
    finally:
        os.umask(old_umask)
    assert target.read_text() == "first"
    assert target.stat().st_mode & 0o777 == 0o644  # not mkstemp's private 0600

    def fail(tmp):
        Path(tmp).write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_atomic(target, fail)
    assert target.read_text() == "first"
    assert [p.name for p in target.parent.iterdir()] == ["out.txt"]

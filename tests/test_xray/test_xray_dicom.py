"""DICOM decoding: pydicom's bundled files (compressed included), files we write in several
transfer syntaxes and both photometric interpretations, the display pipeline, and damage."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from loaders.codecs import decode
from loaders.dicom import DicomOptions, decode_dicom, is_dicom, load_dicom, read_dicom
from loaders.media import CodecError

pydicom = pytest.importorskip("pydicom")
from pydicom.data import get_testdata_file  # noqa: E402

BUNDLED = Path(os.path.dirname(pydicom.data.__file__)) / "test_files"


def bundled(name: str) -> Path:
    """A pydicom test file that ships inside the package; never downloads."""
    if not (BUNDLED / name).is_file():
        pytest.skip(f"{name} is not bundled with this pydicom")
    path = get_testdata_file(name, download=False)
    assert path is not None and Path(path).resolve() == (BUNDLED / name).resolve()
    return Path(path)


def test_get_testdata_file_does_not_download_missing_files():
    # "JPEG-LL.dcm" is in pydicom's download list, not in the package: with download=False it is None
    assert not (BUNDLED / "JPEG-LL.dcm").exists()
    assert get_testdata_file("JPEG-LL.dcm", download=False) is None


# MR_small in five transfer syntaxes: lossless ones must give the same stored values
MR_SMALL_VARIANTS = ["MR_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm", "MR_small_RLE.dcm",
                     "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm"]


@pytest.mark.parametrize("name", MR_SMALL_VARIANTS)
def test_bundled_lossless_variants_decode_identically(name):
    reference = pydicom.dcmread(bundled("MR_small.dcm")).pixel_array
    stored = decode_dicom(bundled(name).read_bytes())
    assert stored.shape == (1, 64, 64) and stored.dtype == torch.int32  # signed 16-bit
    np.testing.assert_array_equal(stored[0].numpy(), reference)
    image, info = load_dicom(bundled(name))
    reference_display, _ = load_dicom(bundled("MR_small.dcm"))
    assert torch.equal(image, reference_display) and info["voi"]["center"] == 600.0


@pytest.mark.filterwarnings("ignore:Expected explicit VR")  # a quirk of SC_rgb_jpeg.dcm itself
@pytest.mark.parametrize("name, shape", [
    ("SC_rgb_jpeg.dcm", (3, 256, 256)),            # JPEG baseline, RGB
    ("SC_rgb_jpeg_dcmtk.dcm", (3, 100, 100)),      # JPEG baseline, YBR_FULL
    ("SC_rgb_jpeg_gdcm.dcm", (3, 100, 100)),       # JPEG lossless, process 14 SV1
    ("JPEG2000.dcm", (1, 1024, 256)),              # JPEG 2000 (lossy), 16-bit signed
    ("JPEGLSNearLossless_16.dcm", (1, 50, 10)),    # JPEG-LS near-lossless, 16-bit
    ("CT_small.dcm", (1, 128, 128)),               # uncompressed with rescale slope/intercept
    ("rtdose_rle_1frame.dcm", (1, 10, 10)),        # RLE, 32-bit
])
def test_bundled_compressed_files_decode_as_pydicom_does(name, shape):
    path = bundled(name)
    expected = pydicom.dcmread(path).pixel_array
    stored = decode_dicom(path.read_bytes())
    assert tuple(stored.shape) == shape
    np.testing.assert_array_equal(stored.numpy(), expected[None] if expected.ndim == 2 else np.moveaxis(expected, -1, 0))
    assert torch.equal(decode("dcm", path.read_bytes()), stored)  # the codec table's dcm entry
    image, info = load_dicom(path)
    assert image.shape == shape and image.dtype in (torch.uint8, torch.uint16)
    assert int(image.int().max()) <= info["maxval"]


def test_truncated_bundled_file_raises_naming_the_file():
    path = bundled("MR_truncated.dcm")
    with pytest.raises(CodecError, match=r"MR_truncated\.dcm.*(less than expected|cannot decode)"):
        load_dicom(path)
    with pytest.raises(CodecError, match="cannot decode pixel data"):
        decode_dicom(path.read_bytes())


def test_damaged_and_foreign_files(tmp_path, xray):
    good = xray.write_dicom(tmp_path / "good.dcm", xray.image_array(1, size=16))
    data = good.read_bytes()
    assert is_dicom(data) and not is_dicom(b"\x89PNG" + data)
    (tmp_path / "cut.dcm").write_bytes(data[: len(data) - 100])
    with pytest.raises(CodecError, match=r"cut\.dcm"):
        load_dicom(tmp_path / "cut.dcm")
    (tmp_path / "noise.dcm").write_bytes(os.urandom(64))
    with pytest.raises(CodecError, match=r"noise\.dcm"):
        load_dicom(tmp_path / "noise.dcm")
    ds = pydicom.dcmread(good)
    del ds.PixelData
    ds.save_as(tmp_path / "nopixels.dcm")
    with pytest.raises(CodecError, match=r"nopixels\.dcm.*no PixelData"):
        read_dicom(tmp_path / "nopixels.dcm")
    with pytest.raises(FileNotFoundError):
        load_dicom(tmp_path / "absent.dcm")


@pytest.mark.parametrize("syntax", ["explicit", "implicit", "rle", "j2k"])
@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
@pytest.mark.parametrize("bits", [8, 12, 16])
def test_written_lossless_dicoms_round_trip(tmp_path, xray, syntax, photometric, bits):
    array = xray.image_array(bits, size=64, high=2**bits - 1)
    path = xray.write_dicom(tmp_path / "x.dcm", array, syntax=syntax, photometric=photometric, bits_stored=bits)
    stored = decode_dicom(path.read_bytes())
    np.testing.assert_array_equal(stored[0].numpy(), array)
    image, info = load_dicom(path)
    maxval = 255 if bits == 8 else 2**bits - 1
    assert info["maxval"] == maxval and info["photometric"] == photometric
    assert image.dtype == (torch.uint8 if bits == 8 else torch.uint16)
    expected = maxval - array.astype(np.int64) if photometric == "MONOCHROME1" else array
    np.testing.assert_array_equal(image[0].numpy(), expected)
    assert info["inverted"] == (photometric == "MONOCHROME1")
    raw, _ = load_dicom(path, DicomOptions(fix_monochrome=False))
    np.testing.assert_array_equal(raw[0].numpy(), array)


def test_written_jpeg_baseline_dicom_matches_its_codestream(tmp_path, xray):
    array = xray.image_array(5, size=32)
    path = xray.write_dicom(tmp_path / "j.dcm", array, syntax="jpeg")
    assert str(pydicom.dcmread(path).file_meta.TransferSyntaxUID) == "1.2.840.10008.1.2.4.50"
    image, _ = load_dicom(path)
    jpeg = xray.write_jpeg(tmp_path / "same.jpg", array)
    from loaders.media import decode_image

    reference = decode_image(jpeg.read_bytes(), suffix="jpg")
    assert image.shape == (1, 32, 32) and image.dtype == torch.uint8
    assert (image.int() - reference.int()).abs().max() <= 2  # same codestream, two IDCTs


def test_window_level_by_hand(tmp_path, xray):
    # 12-bit unsigned, window centre 2048 width 1024, LINEAR (PS3.3 C.11.2.1.2.1):
    # x <= 1536 -> 0, x > 2559 -> 4095, else ((x - 2047.5) / 1023 + 0.5) * 4095, rounded
    values = np.array([[0, 1000, 1536, 1800], [2048, 2300, 2559, 4095]], dtype=np.uint16)
    path = xray.write_dicom(tmp_path / "w.dcm", values, bits_stored=12, window=(2048.0, 1024.0))
    image, info = load_dicom(path)
    expected = [[0, 0, 0, 1057], [2050, 3058, 4095, 4095]]
    np.testing.assert_array_equal(image[0].numpy(), expected)
    assert info["voi"] == {"center": 2048.0, "width": 1024.0, "function": "LINEAR"}
    flat, _ = load_dicom(path, DicomOptions(voi_lut=False))
    np.testing.assert_array_equal(flat[0].numpy(), values)
    inverted = xray.write_dicom(tmp_path / "w1.dcm", values, bits_stored=12, window=(2048.0, 1024.0), photometric="MONOCHROME1")
    np.testing.assert_array_equal(load_dicom(inverted)[0][0].numpy(), 4095 - np.array(expected))


def test_rescale_slope_intercept_by_hand(tmp_path, xray):
    # signed 16-bit stored values with slope 2, intercept -1000, no window: the modality range
    # [-32768*2-1000, 32767*2-1000] maps linearly onto [0, 65535]
    values = np.array([[-32768, -500], [0, 32767]], dtype=np.int16)
    path = xray.write_dicom(tmp_path / "r.dcm", values, signed=True, bits_stored=16, rescale=(2.0, -1000.0))
    image, info = load_dicom(path)
    assert info["rescale"] == [2.0, -1000.0]
    lo, hi = -32768 * 2 - 1000, 32767 * 2 - 1000
    expected = np.rint((values.astype(np.float64) * 2 - 1000 - lo) * 65535 / (hi - lo))
    np.testing.assert_array_equal(image[0].numpy(), expected)
    plain, info = load_dicom(path, DicomOptions(modality_lut=False))
    assert info["rescale"] is None
    np.testing.assert_array_equal(plain[0].numpy(), values.astype(np.int64) + 32768)


def test_options_are_validated():
    with pytest.raises(TypeError, match="voi_lut"):
        DicomOptions(voi_lut="yes")
    with pytest.raises(ValueError, match="window_index"):
        DicomOptions(window_index=-1)
    with pytest.raises(TypeError, match="DicomOptions"):
        load_dicom(b"", options={"voi_lut": False})


def test_voi_lut_sequence_and_sigmoid(tmp_path, xray):
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    from loaders.dicom import dicom_to_display

    values = np.array([[0, 100, 2000, 4095]], dtype=np.uint16)
    ds = pydicom.dcmread(xray.write_dicom(tmp_path / "l.dcm", values, bits_stored=12))
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 16]
    item.add_new(0x00283006, "US", [v // 16 for v in range(4096)])  # LUT Data: 0..255
    ds.VOILUTSequence = Sequence([item])
    image, info = dicom_to_display(ds)
    assert info["voi"] == "lut"  # LUT outputs 0, 6, 125, 255, rescaled from 0..255 to 0..4095
    np.testing.assert_array_equal(image[0], [[0, 96, 2007, 4095]])
    ds = pydicom.dcmread(xray.write_dicom(tmp_path / "s.dcm", values, bits_stored=12, window=(2048.0, 1000.0)))
    ds.VOILUTFunction = "SIGMOID"
    image, info = dicom_to_display(ds)
    assert info["voi"]["function"] == "SIGMOID"
    expected = np.rint(4095 / (1 + np.exp(-4 * (values - 2048.0) / 1000.0)))  # PS3.3 C.11.2.1.3.1
    np.testing.assert_array_equal(image[0], expected)
    assert expected.tolist() == [[1, 2, 1852, 4094]]

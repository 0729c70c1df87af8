"""Hostile DICOM headers (security issue items 9 and 11): files built with pydicom under
``tmp_path`` whose headers lie. Each must raise :class:`CodecError` naming the file -- never
pydicom's own exceptions, a blank image or a tensor of the wrong shape -- and a header that asks
for gigapixels must be refused before the pixel data is decoded (checked in a child process
whose address space may grow by 1 GiB only)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch

from loaders import media
from loaders.dicom import DicomOptions, decode_dicom, load_dicom
from loaders.media import CodecError

pydicom = pytest.importorskip("pydicom")
from pydicom.dataelem import RawDataElement  # noqa: E402
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.datadict import tag_for_keyword  # noqa: E402
from pydicom.encaps import encapsulate  # noqa: E402
from pydicom.tag import Tag  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, RLELossless, SecondaryCaptureImageStorage, generate_uid  # noqa: E402

VALUES = (np.arange(16, dtype=np.uint8) * 16).reshape(4, 4)


def dicom_bytes(*, rows: int = 4, columns: int = 4, bits: int = 8, data: bytes | None = None,
                syntax=ExplicitVRLittleEndian, raw: dict[str, tuple[str, bytes]] | None = None, **elements) -> bytes:
    """A MONOCHROME2 DICOM file; ``raw`` elements are written byte for byte (values pydicom
    itself would refuse to set, e.g. a DS of ``"abc"``)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "CR"
    ds.Rows, ds.Columns = rows, columns
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits, bits - 1, 0
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    for keyword, (vr, value) in (raw or {}).items():
        tag = Tag(tag_for_keyword(keyword))
        value = value + b" " * (len(value) % 2) if vr in ("DS", "IS") else value
        ds[tag] = RawDataElement(tag, vr, len(value), value, 0, False, True)
    ds.PixelData = VALUES.tobytes() if data is None else data
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def _ds(text: str) -> tuple[str, bytes]:
    return "DS", text.encode("ascii")


BAD_VALUES = {
    "WindowWidth 0": ({"WindowCenter": 128, "WindowWidth": 0}, {}, r"WindowWidth 0 is invalid for a LINEAR window"),
    "WindowWidth 0.5 linear": ({"WindowCenter": 128, "WindowWidth": 0.5}, {}, r"WindowWidth 0.5 is invalid"),
    "WindowWidth 0 sigmoid": ({"WindowCenter": 128, "WindowWidth": 0, "VOILUTFunction": "SIGMOID"}, {},
                              r"WindowWidth 0 is invalid for a SIGMOID window \(must be > 0\)"),
    "WindowWidth -10": ({"WindowCenter": 128, "WindowWidth": -10}, {}, r"WindowWidth -10 is invalid"),
    "WindowCenter nan": ({"WindowWidth": 100}, {"WindowCenter": _ds("nan")}, r"WindowCenter must be finite, got nan"),
    "WindowCenter inf": ({"WindowWidth": 100}, {"WindowCenter": _ds("inf")}, r"WindowCenter must be finite"),
    "WindowWidth 1e999": ({"WindowCenter": 100}, {"WindowWidth": _ds("1e999")}, r"WindowWidth must be finite"),
    "WindowCenter abc": ({"WindowWidth": 100}, {"WindowCenter": _ds("abc")}, r"WindowCenter is not a number"),
    "WindowWidth abc": ({"WindowCenter": 100}, {"WindowWidth": _ds("wide")}, r"WindowWidth is not a number"),
    "RescaleSlope abc": ({"RescaleIntercept": 0}, {"RescaleSlope": _ds("abc")}, r"RescaleSlope is not a number"),
    "RescaleSlope nan": ({"RescaleIntercept": 0}, {"RescaleSlope": _ds("nan")}, r"RescaleSlope must be finite"),
    "RescaleIntercept -inf": ({"RescaleSlope": 1}, {"RescaleIntercept": _ds("-inf")}, r"RescaleIntercept must be finite"),
    "RescaleIntercept x": ({"RescaleSlope": 1}, {"RescaleIntercept": _ds("x")}, r"RescaleIntercept is not a number"),
    "RescaleSlope 0": ({"RescaleSlope": 0, "RescaleIntercept": 5}, {}, r"RescaleSlope is 0"),
}


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns about the invalid DS values too
@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_bad_window_and_rescale_values_raise_instead_of_a_blank_image(tmp_path, case):
    elements, raw, message = BAD_VALUES[case]
    path = tmp_path / "bad.dcm"
    path.write_bytes(dicom_bytes(raw=raw, **elements))
    with pytest.raises(CodecError, match=rf"\[dcm\] '.*bad\.dcm': {message}"):
        load_dicom(path)
    with pytest.raises(CodecError, match=message):
        load_dicom(path.read_bytes(), name="other.dcm")
    assert torch.equal(decode_dicom(path.read_bytes())[0], torch.from_numpy(VALUES))  # stored values need no LUT
    if case.startswith("Window"):  # the stage they belong to can be switched off
        assert load_dicom(path, DicomOptions(voi_lut=False))[0].shape == (1, 4, 4)


def test_a_window_index_past_the_windows_raises(tmp_path):
    path = tmp_path / "windows.dcm"
    path.write_bytes(dicom_bytes(WindowCenter=[100, 50, 20], WindowWidth=[80, 60]))
    assert load_dicom(path, DicomOptions(window_index=1))[1]["voi"]["width"] == 60.0
    with pytest.raises(CodecError, match=r"windows\.dcm': WindowWidth has 2 value\(s\), no value number 2"):
        load_dicom(path, DicomOptions(window_index=2))


def test_a_sane_window_still_works(tmp_path):
    path = tmp_path / "ok.dcm"
    path.write_bytes(dicom_bytes(WindowCenter=128, WindowWidth=1, RescaleSlope=1, RescaleIntercept=0))
    image, info = load_dicom(path)
    assert info["voi"]["width"] == 1.0 and set(image.unique().tolist()) == {0, 255}


MISMATCHED = {
    # BitsAllocated 8 over 16-bit data: pydicom read the extra bytes as a second frame
    "BitsAllocated 8, data for 16": (dict(bits=8, data=VALUES.astype(np.uint16).tobytes()), "the header does not match"),
    "BitsAllocated 16, data for 8": (dict(bits=16, data=VALUES.tobytes()), "less than expected"),
    "NumberOfFrames 1, data for 3": (dict(data=VALUES.tobytes() * 3), "the header does not match"),
    "Rows 2, data for 4": (dict(rows=2, data=VALUES.tobytes()), "the header does not match"),
    "NumberOfFrames 2**31-1": (dict(NumberOfFrames=2**31 - 1), "less than expected"),
}


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("case", sorted(MISMATCHED))
def test_bits_allocated_and_sizes_inconsistent_with_the_data_raise(tmp_path, case):
    elements, message = MISMATCHED[case]
    path = tmp_path / "mismatch.dcm"
    path.write_bytes(dicom_bytes(**elements))
    with pytest.raises(CodecError, match=rf"mismatch\.dcm'.*{message}"):
        load_dicom(path)
    with pytest.raises(CodecError, match=message):
        decode_dicom(path.read_bytes())  # the old code returned a [4,2,4] tensor here


def test_pydicom_bytes_length_exception_becomes_a_codec_error(tmp_path):
    path = tmp_path / "rows.dcm"
    good = b"\x28\x00\x10\x00US\x02\x00\x04\x00"  # (0028,0010) Rows, US, length 2, value 4
    data = dicom_bytes()
    assert data.count(good) == 1
    path.write_bytes(data.replace(good, b"\x28\x00\x10\x00US\x03\x00\x04\x00\x00"))  # 3 bytes for a US
    with pytest.raises(CodecError, match=r"rows\.dcm'.*(bytes per value|not a readable)"):
        load_dicom(path)
    with pytest.raises(CodecError, match=r"\[dcm\]"):
        decode_dicom(path.read_bytes())


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_set_max_pixels_applies_to_dicom(tmp_path):
    path = tmp_path / "small.dcm"
    path.write_bytes(dicom_bytes())
    media.set_max_pixels(15)
    with pytest.raises(CodecError, match=r"small\.dcm': a 4x4 DICOM frame with 1 sample\(s\) per pixel has 16 pixels, "
                                         r"more than the limit of 15"):
        load_dicom(path)
    with pytest.raises(CodecError, match="more than the limit of 15"):
        decode_dicom(path.read_bytes())
    media.set_max_pixels(16)
    assert load_dicom(path)[0].shape == (1, 4, 4)


def _rle_claiming(rows: int, columns: int, bits: int, **elements) -> bytes:
    """An RLE DICOM of a few hundred bytes whose header claims ``rows x columns``."""
    header = (1).to_bytes(4, "little") + (64).to_bytes(4, "little") + bytes(56)  # one segment at 64
    return dicom_bytes(rows=rows, columns=columns, bits=bits, syntax=RLELossless,
                       data=encapsulate([header + bytes([0x81, 0]) * 8]), **elements)


def _pixel_length_past_the_end() -> bytes:
    data = dicom_bytes()
    at = data.find(b"\xe0\x7f\x10\x00OB\x00\x00")  # (7FE0,0010) OB, then a 4-byte length
    return data[:at + 8] + (0xFFFFFFF0).to_bytes(4, "little") + data[at + 12:]


HUGE = {
    "RLE 65535x65535 16-bit": lambda: _rle_claiming(65535, 65535, 16),
    "RLE 30000x30000 8-bit": lambda: _rle_claiming(30000, 30000, 8),
    "PixelData length 4 GiB in a 300-byte file": _pixel_length_past_the_end,
}


CHILD_IMPORTS = "from loaders.dicom import decode_dicom, load_dicom"


@pytest.fixture(scope="module")
def huge_outcomes(tmp_path_factory, limited_child) -> dict[str, dict[str, str]]:
    calls = {}
    for case, build in HUGE.items():
        data = build()
        assert len(data) < 4096
        calls[f"{case}/display"] = (data, "load_dicom(path)")
        calls[f"{case}/stored"] = (data, "decode_dicom(open(path, 'rb').read())")
    return limited_child(tmp_path_factory.mktemp("huge"), calls, imports=CHILD_IMPORTS, suffix=".dcm")


@pytest.mark.parametrize("call", ["display", "stored"])
@pytest.mark.parametrize("case", sorted(HUGE))
def test_huge_headers_never_allocate(huge_outcomes, case, call):
    outcome = huge_outcomes[f"{case}/{call}"]
    if case.startswith("RLE"):
        assert outcome["error"] == "CodecError", outcome
        assert "more than the limit of 178,956,970" in outcome["message"]
        if call == "display":
            assert ".dcm'" in outcome["message"]
    else:  # the length claims more than the file has: read what is there, no 4 GiB buffer
        assert outcome["error"] in (None, "CodecError"), outcome

"""DICOM decoding through pydicom 3's ``pixels`` API.

Two levels:

* :func:`decode_dicom` (the codec table's decode-only ``dcm`` entry) returns the *stored* pixel
  values of the first frame as a ``[C,H,W]`` tensor (``uint16`` for unsigned data up to 16 bits),
  untouched.
* :func:`dicom_to_display` / :func:`load_dicom` return the *display* image that the chest X-ray
  adapters use: the grayscale pipeline of DICOM PS3.3 C.11 -- modality LUT (Rescale
  Slope/Intercept or a Modality LUT Sequence) -> VOI LUT (VOI LUT Sequence or Window
  Center/Width with the ``VOILUTFunction``) -> MONOCHROME1 inversion -- rescaled to the native
  unsigned range ``[0, 2**BitsStored - 1]`` (``uint8`` up to 8 bits, ``uint16`` above).

The pipeline is evaluated once per file over every possible stored value (at most 65,536) with
pydicom's own ``apply_modality_lut`` / ``apply_voi_lut`` and then applied to the frame as a single
table lookup, so windowing costs one pass over the pixels. Compressed transfer syntaxes (JPEG
baseline/extended/lossless, JPEG-LS, JPEG 2000, RLE) decode through the pylibjpeg plugins.

Differences from TorchXRayVision's ``read_xray_dcm`` (the reference users compare with): it
ignores Rescale Slope/Intercept and windows only on request; we apply both by default (switch them
off with ``modality_lut=False`` / ``voi_lut=False``). MONOCHROME1 is inverted once; a
``PresentationLUTShape`` of ``INVERSE`` on MONOCHROME2 data inverts too, while ``INVERSE`` on
MONOCHROME1 data is the usual restatement of the same inversion and is not applied twice.

Every failure raises :class:`loaders.media.CodecError` naming the file (``name=``) when known:
pydicom's own exceptions (``BytesLengthException``, ``InvalidDicomError``) and any numpy error on
the way included. Headers are hostile: before pixel data is decoded, ``Rows x Columns x
SamplesPerPixel`` (one frame: only the first frame is ever decoded) is checked against
:func:`loaders.media.get_max_pixels`, uncompressed pixel data must not hold a whole frame more
than ``Rows``, ``Columns``, ``SamplesPerPixel``, ``BitsAllocated`` and ``NumberOfFrames`` say
(``BitsAllocated=8`` over 16-bit data would otherwise decode as a different image), the decoded
frame must have the header's shape, and Rescale Slope/Intercept and Window Center/Width must be
finite numbers (a zero slope or a window width below 1, or 0 for the non-linear functions, is
refused rather than turned into a blank image).
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from loaders.fileio import read_regular
from loaders.media import CodecError, check_max_pixels

__all__ = [
    "DicomOptions",
    "decode_dicom",
    "dicom_to_display",
    "is_dicom",
    "load_dicom",
    "read_dicom",
]

_DECODE_ERRORS = (
    ValueError, RuntimeError, AttributeError, NotImplementedError, EOFError, OSError, KeyError, TypeError, IndexError,
)
_MONOCHROME = ("MONOCHROME1", "MONOCHROME2")


def _errors() -> tuple[type[BaseException], ...]:
    """Everything pydicom or numpy raises for a damaged or hostile file (never MemoryError)."""
    import struct

    from pydicom.errors import BytesLengthException, InvalidDicomError

    return (*_DECODE_ERRORS, BytesLengthException, InvalidDicomError, ArithmeticError, struct.error, LookupError)


@dataclass(frozen=True)
class DicomOptions:
    """How a DICOM frame becomes a display image.

    Attributes:
        modality_lut: apply the modality LUT / Rescale Slope and Intercept (PS3.3 C.11.1).
        voi_lut: apply the VOI LUT Sequence or Window Center/Width (PS3.3 C.11.2) when present.
        window_index: which of several windows (or VOI LUTs) to use.
        fix_monochrome: invert MONOCHROME1 so that larger values are brighter.
    """

    modality_lut: bool = True
    voi_lut: bool = True
    window_index: int = 0
    fix_monochrome: bool = True

    def __post_init__(self) -> None:
        for field in ("modality_lut", "voi_lut", "fix_monochrome"):
            if not isinstance(getattr(self, field), bool):
                raise TypeError(f"DicomOptions.{field} must be a bool, got {getattr(self, field)!r}")
        if isinstance(self.window_index, bool) or not isinstance(self.window_index, int) or self.window_index < 0:
            raise ValueError(f"DicomOptions.window_index must be an int >= 0, got {self.window_index!r}")


def is_dicom(data: bytes) -> bool:
    """``True`` when ``data`` carries the ``DICM`` magic at byte offset 128 (PS3.10 7.1)."""
    return len(data) >= 132 and data[128:132] == b"DICM"


def _label(name: str | os.PathLike | None) -> str:
    return f"{os.fspath(name)!r}: " if name is not None else ""


def read_dicom(data: bytes | str | os.PathLike, *, name: str | os.PathLike | None = None):  # -> pydicom.Dataset
    """Parse a DICOM file (bytes or a path) and check that it has pixel data.

    Files without the 128-byte preamble (allowed by older writers) are read with ``force=True``;
    anything that still lacks a ``PixelData`` element is refused.

    Raises:
        CodecError: the file is not DICOM, is damaged, or has no pixel data (names the file).
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    if not isinstance(data, (bytes, bytearray, memoryview)):
        name = data if name is None else name
        # a path: a FIFO, socket or device is never opened (OSError, like a missing file). The
        # file is read whole: pydicom reading from a file object allocates whatever length an
        # element header claims (4 GiB for a hostile PixelData length) before it reads.
        data = read_regular(data)
    source = io.BytesIO(data)
    try:
        try:
            dataset = pydicom.dcmread(source)
        except InvalidDicomError:
            source.seek(0)
            dataset = pydicom.dcmread(source, force=True)
        has_pixels = "PixelData" in dataset
    except _errors() as error:
        raise CodecError("dcm", f"{_label(name)}not a readable DICOM file: {error}") from None
    if not has_pixels:
        raise CodecError("dcm", f"{_label(name)}the file has no PixelData element")
    return dataset


def _header_int(dataset: Any, keyword: str, default: int) -> int:
    value = dataset.get(keyword, default)
    return default if value is None or value == "" else int(value)


def _check_frame_header(dataset: Any, name: str | os.PathLike | None) -> tuple[int, int, int]:
    """Bound the frame a header asks for before anything is decoded; ``(rows, columns, samples)``."""
    rows, columns = _header_int(dataset, "Rows", 0), _header_int(dataset, "Columns", 0)
    samples = _header_int(dataset, "SamplesPerPixel", 1)
    if rows <= 0 or columns <= 0 or samples <= 0:
        raise CodecError("dcm", f"{_label(name)}invalid image size: Rows={rows}, Columns={columns}, "
                                f"SamplesPerPixel={samples}")
    check_max_pixels(rows * columns * samples, suffix="dcm",
                     what=f"{_label(name)}a {columns}x{rows} DICOM frame with {samples} sample(s) per pixel")
    element = dataset["PixelData"]
    if not getattr(element, "is_undefined_length", False) and isinstance(element.value, (bytes, bytearray)):
        # native (uncompressed) data: a whole frame more than the header describes means that
        # BitsAllocated / NumberOfFrames / Rows / Columns do not describe these bytes
        bits = _header_int(dataset, "BitsAllocated", 0)
        frames = max(_header_int(dataset, "NumberOfFrames", 1), 1)
        if bits > 0:
            frame_bits = rows * columns * samples * bits
            expected = -(-frame_bits * frames // 8)
            if len(element.value) >= expected + -(-frame_bits // 8):
                raise CodecError("dcm", f"{_label(name)}the pixel data holds {len(element.value):,} bytes but "
                                        f"{frames} frame(s) of {rows}x{columns}x{samples} samples at "
                                        f"BitsAllocated={bits} need {expected:,}: the header does not match the data")
    return rows, columns, samples


def _first_frame(dataset: Any, name: str | os.PathLike | None) -> np.ndarray:
    from pydicom.pixels import pixel_array

    try:
        rows, columns, samples = _check_frame_header(dataset, name)
        frame = pixel_array(dataset, index=0)  # one frame only, whatever NumberOfFrames says
    except CodecError:
        raise
    except _errors() as error:
        syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", None)
        what = f" ({syntax.name})" if syntax is not None and hasattr(syntax, "name") else ""
        raise CodecError("dcm", f"{_label(name)}cannot decode pixel data{what}: {error}") from None
    expected = (rows, columns) if samples == 1 else (rows, columns, samples)
    if frame.shape != expected:
        raise CodecError("dcm", f"{_label(name)}decoded a frame of shape {frame.shape}, the header says {expected}")
    return frame


def decode_dicom(data: bytes) -> torch.Tensor:
    """Decode the first frame of a DICOM file's *stored* values into a ``[C,H,W]`` tensor."""
    dataset = read_dicom(data)
    array = _first_frame(dataset, None)
    array = _to_chw(array)
    if array.dtype == np.uint8:
        target = np.uint8
    elif array.dtype.kind == "u" and array.dtype.itemsize <= 2:
        target = np.uint16
    else:  # signed or wider stored values: int32 holds every 16-bit signed/unsigned value
        target = np.int32
    return torch.from_numpy(np.ascontiguousarray(array.astype(target, copy=False)))


def _to_chw(array: np.ndarray) -> np.ndarray:
    if array.ndim == 2:
        return array[None]
    if array.ndim == 3:
        return np.moveaxis(array, -1, 0)
    raise CodecError("dcm", f"unexpected pixel array shape {array.shape}")


def _stored_range(dataset: Any) -> tuple[int, int, int]:
    bits = int(dataset.get("BitsStored", 0) or dataset.get("BitsAllocated", 8) or 8)
    if int(dataset.get("PixelRepresentation", 0) or 0) == 1:
        return bits, -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return bits, 0, 2**bits - 1


def _pick(value: Any, index: int) -> float:
    """One value of a possibly multi-valued DS element (Window Center/Width)."""
    return float(value[index] if getattr(value, "__len__", None) and not isinstance(value, str) else value)


def _number(dataset: Any, keyword: str, index: int, name: str | os.PathLike | None) -> float:
    """A finite float from a (possibly multi-valued) numeric element, else :class:`CodecError`."""
    try:
        value = dataset[keyword].value
        multi = getattr(value, "__len__", None) is not None and not isinstance(value, (str, bytes))
        if multi and index >= len(value):
            raise CodecError("dcm", f"{_label(name)}{keyword} has {len(value)} value(s), no value number {index}")
        number = float(value[index] if multi else value)
    except CodecError:
        raise
    except _errors() as error:
        raise CodecError("dcm", f"{_label(name)}{keyword} is not a number: {error}") from None
    if not math.isfinite(number):
        raise CodecError("dcm", f"{_label(name)}{keyword} must be finite, got {number}")
    return number


def _check_luts(dataset: Any, options: DicomOptions, name: str | os.PathLike | None) -> None:
    """Refuse rescale and window values that would give a blank or NaN image instead of windowing."""
    if options.modality_lut and "ModalityLUTSequence" not in dataset and (
            "RescaleSlope" in dataset and "RescaleIntercept" in dataset):
        _number(dataset, "RescaleIntercept", 0, name)
        if _number(dataset, "RescaleSlope", 0, name) == 0:
            raise CodecError("dcm", f"{_label(name)}RescaleSlope is 0: every pixel would have the same value")
    has_lut = "VOILUTSequence" in dataset and len(dataset.VOILUTSequence) > options.window_index
    if options.voi_lut and not has_lut and "WindowCenter" in dataset and "WindowWidth" in dataset and (
            dataset.WindowCenter is not None):
        _number(dataset, "WindowCenter", options.window_index, name)
        width = _number(dataset, "WindowWidth", options.window_index, name)
        function = str(dataset.get("VOILUTFunction", "LINEAR") or "LINEAR").strip().upper()
        minimum = 1.0 if function == "LINEAR" else 0.0  # PS3.3 C.11.2.1.2: width >= 1 (LINEAR), > 0 otherwise
        if width < minimum or width <= 0:
            raise CodecError("dcm", f"{_label(name)}WindowWidth {width:g} is invalid for a {function} window "
                                    f"(must be {'>= 1' if minimum else '> 0'})")


def _changes_values(dataset: Any, options: DicomOptions) -> bool:
    """Whether the modality or VOI stage would change any stored value."""
    if options.modality_lut:
        if "ModalityLUTSequence" in dataset:
            return True
        if "RescaleSlope" in dataset and "RescaleIntercept" in dataset:
            if float(dataset.RescaleSlope) != 1.0 or float(dataset.RescaleIntercept) != 0.0:
                return True
    if options.voi_lut:
        if "VOILUTSequence" in dataset and len(dataset.VOILUTSequence) > options.window_index:
            return True
        if "WindowCenter" in dataset and "WindowWidth" in dataset and dataset.WindowCenter is not None:
            return True
    return False


def _display_table(dataset: Any, options: DicomOptions, low: int, high: int, maxval: int) -> tuple[np.ndarray, dict[str, Any]]:
    """The display value of every stored value ``low..high`` (float64), plus what was applied."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    stored = np.arange(low, high + 1, dtype=np.int64)
    values = stored.astype(np.float64)
    info: dict[str, Any] = {"rescale": None, "voi": None}
    has_rescale = "RescaleSlope" in dataset and "RescaleIntercept" in dataset
    if options.modality_lut and ("ModalityLUTSequence" in dataset or has_rescale):
        values = np.asarray(apply_modality_lut(stored, dataset), dtype=np.float64)
        if "ModalityLUTSequence" in dataset:
            info["rescale"] = "lut"
        else:
            info["rescale"] = [float(dataset.RescaleSlope), float(dataset.RescaleIntercept)]
    lo, hi = float(values.min()), float(values.max())
    has_lut = "VOILUTSequence" in dataset and len(dataset.VOILUTSequence) > options.window_index
    has_window = "WindowCenter" in dataset and "WindowWidth" in dataset and dataset.WindowCenter is not None
    if options.voi_lut and (has_lut or has_window):
        if has_lut:
            source = stored if info["rescale"] is None else values
            values = np.asarray(apply_voi_lut(source, dataset, index=options.window_index), dtype=np.float64)
            lo, hi = float(values.min()), float(values.max())
            info["voi"] = "lut"
        else:
            source = values
            values = np.asarray(apply_voi_lut(source, dataset, index=options.window_index, prefer_lut=False), dtype=np.float64)
            # the window's output range [y_min, y_max] as pydicom defines it: push extremes through
            with np.errstate(over="ignore"):  # SIGMOID overflows to its asymptotes, as wanted
                bounds = np.asarray(apply_voi_lut(np.array([-1e15, 1e15]), dataset, index=options.window_index, prefer_lut=False))
            lo, hi = float(bounds.min()), float(bounds.max())
            center, width = dataset.WindowCenter, dataset.WindowWidth
            info["voi"] = {"center": _pick(center, options.window_index), "width": _pick(width, options.window_index),
                           "function": str(dataset.get("VOILUTFunction", "LINEAR"))}
    if hi <= lo:
        hi = lo + 1.0
    table = np.clip((values - lo) * (maxval / (hi - lo)), 0, maxval)
    return np.rint(table), info


def dicom_to_display(
    dataset: Any, options: DicomOptions = DicomOptions(), *, name: str | os.PathLike | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """Turn a parsed DICOM dataset into its display image (see the module docstring).

    Returns:
        ``(array, info)``: ``array`` is ``[C,H,W]`` uint8 (``BitsStored <= 8``) or uint16 in
        ``[0, info["maxval"]]``; ``info`` is JSON-serialisable (photometric interpretation, bits
        stored, maxval, rescale and VOI applied, inverted, transfer syntax).

    Raises:
        CodecError: undecodable pixel data, an unsupported photometric interpretation, or a
            header that does not describe its data (see the module docstring).
    """
    try:
        return _dicom_to_display(dataset, options, name)
    except CodecError:
        raise
    except _errors() as error:
        raise CodecError("dcm", f"{_label(name)}cannot compute the display image: {error}") from None


def _dicom_to_display(dataset: Any, options: DicomOptions, name: str | os.PathLike | None) -> tuple[np.ndarray, dict[str, Any]]:
    frame = _first_frame(dataset, name)
    photometric = str(dataset.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", None)
    info: dict[str, Any] = {
        "photometric": photometric,
        "transfer_syntax": str(syntax) if syntax is not None else None,
        "rows": int(dataset.get("Rows", frame.shape[0]) or frame.shape[0]),
        "columns": int(dataset.get("Columns", frame.shape[1]) or frame.shape[1]),
    }
    if photometric not in _MONOCHROME:
        if frame.ndim != 3 or frame.dtype != np.uint8:
            raise CodecError("dcm", f"{_label(name)}unsupported photometric interpretation {photometric!r} "
                                    f"with dtype {frame.dtype}")
        info.update(bits_stored=8, maxval=255, rescale=None, voi=None, inverted=False)
        return np.ascontiguousarray(_to_chw(frame)), info
    if frame.ndim != 2:
        raise CodecError("dcm", f"{_label(name)}a {photometric} frame must be 2-D, got shape {frame.shape}")
    _check_luts(dataset, options, name)
    bits, low, high = _stored_range(dataset)
    maxval = 255 if bits <= 8 else 2 ** min(bits, 16) - 1
    out_dtype = np.uint8 if maxval == 255 else np.uint16
    shape = str(dataset.get("PresentationLUTShape", "IDENTITY")).strip().upper()
    invert = options.fix_monochrome and (photometric == "MONOCHROME1" or shape == "INVERSE")
    if bits > 16:  # 32-bit data (dose maps, not radiographs): no table, plain float pipeline
        table_info: dict[str, Any] = {"rescale": None, "voi": None}
        data = frame.astype(np.float64)
        lo, hi = float(data.min()), float(data.max())
        image = np.rint((data - lo) * (maxval / max(hi - lo, 1.0))).astype(out_dtype)
    elif low == 0 and high == maxval and frame.dtype == out_dtype and not _changes_values(dataset, options) and (
            not invert or (frame.flags.writeable and (high == np.iinfo(frame.dtype).max or int(frame.max()) <= high))):
        # the common radiograph case: no effective rescale, no window -> pass through or invert in place
        rescaled = options.modality_lut and "RescaleSlope" in dataset and "RescaleIntercept" in dataset
        rescale = [float(dataset.RescaleSlope), float(dataset.RescaleIntercept)] if rescaled else None
        table_info = {"rescale": rescale, "voi": None}
        image = np.subtract(out_dtype(maxval), frame, out=frame) if invert else frame
    else:
        table, table_info = _display_table(dataset, options, low, high, maxval)
        if invert:
            table = maxval - table
        table = table.astype(out_dtype)
        if low < 0:
            # index a 65,536-entry table by the int16 bit pattern: no shift pass over the pixels
            full = np.zeros(65536, dtype=out_dtype)
            stored = np.arange(low, high + 1, dtype=np.int64)
            full[stored & 0xFFFF] = table
            image = np.take(full, frame.astype(np.int16, copy=False).view(np.uint16))
        elif frame.dtype == out_dtype and frame.flags.writeable:
            image = np.take(table, frame, out=frame, mode="clip")  # in place: no new pages to fault in
        else:
            image = np.take(table, frame, mode="clip")
    info.update(bits_stored=bits, maxval=maxval, inverted=bool(invert), **table_info)
    return np.ascontiguousarray(image[None]), info


def load_dicom(
    source: bytes | str | os.PathLike,
    options: DicomOptions = DicomOptions(),
    *,
    name: str | os.PathLike | None = None,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Read and decode a DICOM file into its display image tensor ``[C,H,W]`` and info dict.

    Args:
        source: the file's bytes or its path.
        options: the display pipeline (see :class:`DicomOptions`).
        name: the file name to put in error messages (defaults to ``source`` for paths).

    Raises:
        CodecError: naming the file, for truncated, corrupt or unsupported files.
    """
    if not isinstance(options, DicomOptions):
        raise TypeError(f"options must be a DicomOptions, got {type(options).__name__}")
    dataset = read_dicom(source, name=name)
    if name is None and not isinstance(source, (bytes, bytearray, memoryview)):
        name = source
    array, info = dicom_to_display(dataset, options, name=name)
    return torch.from_numpy(array), info

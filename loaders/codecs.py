"""The codec table: shard file suffix -> encoder / decoder.

Every byte that enters or leaves a shard goes through this explicit table. There is no
fallback: an unknown suffix raises :class:`CodecError`, and pickle-based suffixes (``pyd``,
``pickle``, ``pth``, ...) are refused by name. ``npy`` payloads are read with
``allow_pickle=False``, so an object array (which would need pickle) is refused too.

Suffix lookup follows WebDataset's naming: a member ``<key>.mask.png`` has the suffix
``mask.png``. An exact entry wins (``mask.png`` decodes to an integer mask); otherwise the last
dotted component decides (``left.jpg`` decodes as ``jpg``, into a field named ``left.jpg``).

Lossless codecs (``png``, ``mask.png``, ``cls``, ``npy``, ``labels.npy``, ``json``, ``txt``,
``wav``; ``flac`` for 16-bit audio) round-trip bit-exactly. What they refuse instead of changing:

* ``npy``: only numeric dtypes (:data:`NPY_DTYPES`: bool, signed/unsigned ints, floats, complex;
  any byte order, decoded to native order); 0-d arrays keep their shape.
* ``cls``: an int64 written as a plain ASCII decimal (optional ``-``, digits ``0-9``, surrounding
  ASCII whitespace); ``1_0``, ``+1`` or non-ASCII digits are refused.
* ``json``: dict keys must be ``str`` (``json`` would silently turn ``1`` into ``"1"``); NaN and
  infinities are refused both ways; nesting is bounded by :data:`JSON_MAX_DEPTH`. JSON has a
  single array type, so tuples come back as lists.
* ``txt``: strings that are not valid Unicode (lone surrogates) are refused.

Every header is hostile: an ``npy`` header is parsed and checked against :data:`NPY_MAX_ELEMENTS`,
:data:`NPY_MAX_BYTES`, :data:`NPY_MAX_NDIM` and the payload length before anything is
allocated, and JSON nesting is measured before it is parsed. :func:`decode_sample` re-raises
every failure as :class:`CodecError` naming the member suffix and the sample's ``__key__``, so
callers that catch :class:`CodecError` (``on_error="skip"``) see all decode failures.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch

from loaders import media
from loaders.media import AudioClip, CodecError, VideoClip
from loaders.schema import FIELDS, KEY, RESERVED

__all__ = [
    "AudioClip",
    "Codec",
    "CodecError",
    "CODECS",
    "JSON_MAX_DEPTH",
    "NPY_DTYPES",
    "NPY_MAX_BYTES",
    "NPY_MAX_ELEMENTS",
    "NPY_MAX_NDIM",
    "PICKLE_SUFFIXES",
    "VideoClip",
    "decode",
    "decode_sample",
    "encode",
    "encode_sample",
    "get_codec",
]

PICKLE_SUFFIXES = frozenset({"pyd", "pickle", "pkl", "pth", "pt", "ckpt", "joblib"})

#: Most elements an ``npy`` / ``labels.npy`` header may declare (2**31).
NPY_MAX_ELEMENTS = 1 << 31
#: Most data bytes an ``npy`` / ``labels.npy`` header may declare (2 GiB); the declared size must
#: also equal the payload length after the header, checked before anything is allocated.
NPY_MAX_BYTES = 1 << 31
#: Most dimensions an ``npy`` header may declare (numpy itself allows 64).
NPY_MAX_NDIM = 32
#: The dtypes an ``npy`` payload may hold (native order shown; either byte order is accepted):
#: bool, signed and unsigned 8-64 bit ints, 16-64 bit floats, 64/128 bit complex. Object,
#: structured, string, datetime and ``longdouble`` arrays are refused.
NPY_DTYPES = frozenset(
    np.dtype(code) for code in ("?", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8", "c8", "c16")
)
#: Deepest nesting of arrays/objects a ``json`` payload may have (checked before parsing, and at
#: encode time so that whatever is written can be read back).
JSON_MAX_DEPTH = 64
#: int64 bounds for ``cls``.
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


@dataclass(frozen=True)
class Codec:
    """One row of the codec table.

    Attributes:
        suffix: the shard member suffix (``"jpg"``, ``"mask.png"``, ...).
        field: the decoded sample field the suffix maps to (``"image"``, ``"mask"``, ...).
        decode: ``bytes -> value``.
        encode: ``value -> bytes``, or ``None`` for decode-only formats (``dcm``).
        lossless: whether ``decode(encode(x))`` reproduces ``x`` bit-exactly.
    """

    suffix: str
    field: str
    decode: Callable[[bytes], Any]
    encode: Callable[[Any], bytes] | None
    lossless: bool


# --- small lossless codecs ------------------------------------------------------------------


def _encode_cls(value: Any) -> bytes:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, np.integer):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise CodecError("cls", f"expects an int class index, got {type(value).__name__}")
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise CodecError("cls", f"class index {value} does not fit int64")
    return str(value).encode("ascii")


# ASCII whitespace, an optional '-', ASCII digits (a bytes pattern: [0-9] never matches other digits).
_CLS_PATTERN = re.compile(rb"[ \t\r\n]*(-?[0-9]+)[ \t\r\n]*")


def _decode_cls(data: bytes) -> int:
    match = _CLS_PATTERN.fullmatch(data)
    if match is None:
        raise CodecError("cls", f"payload is not a plain ASCII decimal integer: {data[:32]!r}")
    digits = match.group(1)
    if len(digits.lstrip(b"-").lstrip(b"0")) > 19:  # int64 has at most 19 digits; bounds int()'s work
        raise CodecError("cls", f"class index does not fit int64: {digits[:32]!r}")
    value = int(digits)
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise CodecError("cls", f"class index {value} does not fit int64")
    return value


def _encode_npy(value: Any) -> bytes:
    array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    if array.dtype == object:
        raise CodecError("npy", "object arrays are not allowed (they would need pickle)")
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _read_npy_header(data: bytes, suffix: str) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """Parse and bound an ``npy`` header: ``(shape, fortran_order, dtype, data_offset)``."""
    buffer = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(buffer)
    except Exception as error:  # noqa: BLE001 - any failure here is a malformed header
        raise CodecError(suffix, f"not an npy payload (magic): {error}") from None
    readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    if version not in readers:
        raise CodecError(suffix, f"unsupported npy format version {version} (1.0 and 2.0 are read)")
    try:
        shape, fortran_order, dtype = readers[version](buffer)
    except Exception as error:  # noqa: BLE001 - ast/dtype parsing of a hostile header may raise anything
        raise CodecError(suffix, f"malformed npy header: {str(error)[:200]}") from None
    if not isinstance(shape, tuple) or any(isinstance(d, bool) or not isinstance(d, int) or d < 0 for d in shape):
        raise CodecError(suffix, f"header shape {str(shape)[:100]} is not a tuple of non-negative ints")
    if len(shape) > NPY_MAX_NDIM:
        raise CodecError(suffix, f"header shape has {len(shape)} dimensions, more than NPY_MAX_NDIM={NPY_MAX_NDIM}")
    if not isinstance(dtype, np.dtype) or dtype.newbyteorder("=") not in NPY_DTYPES:
        raise CodecError(suffix, f"header dtype {dtype!s:.100} is not numeric (allowed: bool, ints, uints, floats, complex)")
    elements = 1
    for dim in shape:  # Python ints: no overflow; stop early once past the bound
        elements *= dim
        if elements > NPY_MAX_ELEMENTS:
            break
    if elements > NPY_MAX_ELEMENTS or any(dim > NPY_MAX_ELEMENTS for dim in shape):  # (0, 10**30) too
        raise CodecError(suffix, f"header shape {shape} has more than NPY_MAX_ELEMENTS={NPY_MAX_ELEMENTS} elements")
    nbytes = elements * dtype.itemsize
    if nbytes > NPY_MAX_BYTES:
        raise CodecError(suffix, f"header shape {shape} of {dtype} needs {nbytes} bytes, more than NPY_MAX_BYTES={NPY_MAX_BYTES}")
    offset = buffer.tell()
    if len(data) - offset != nbytes:
        raise CodecError(
            suffix, f"payload length: header shape {shape} of {dtype} needs {nbytes} data bytes, the payload has {len(data) - offset}"
        )
    return shape, fortran_order, dtype, offset


def _decode_npy(data: bytes, suffix: str = "npy") -> torch.Tensor:
    shape, fortran_order, dtype, offset = _read_npy_header(data, suffix)
    count = 1
    for dim in shape:
        count *= dim
    flat = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
    array = flat.reshape(shape, order="F" if fortran_order else "C")
    # A fresh, writable, C-ordered, native-endian copy (np.array keeps 0-d shapes, unlike
    # np.ascontiguousarray which makes them 1-d).
    array = np.array(array, dtype=dtype.newbyteorder("="), order="C", copy=True)
    return torch.from_numpy(array)


def _encode_labels(value: Any) -> bytes:
    array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    if array.ndim != 1:
        raise CodecError("labels.npy", f"expects a 1-D label vector, got shape {array.shape}")
    return _encode_npy(array.astype(np.float32, copy=False))


def _decode_labels(data: bytes) -> torch.Tensor:
    tensor = _decode_npy(data, "labels.npy")
    if tensor.ndim != 1:
        raise CodecError("labels.npy", f"expected a 1-D label vector, got shape {tuple(tensor.shape)}")
    if tensor.is_complex():
        raise CodecError("labels.npy", "complex label vectors are refused (float32 would drop the imaginary part)")
    return tensor.to(torch.float32)


# A JSON string literal (escapes included), or an unterminated one running to the end of the
# text: every match attempt succeeds at its first try, so the scan stays linear on hostile input.
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.?[^"\\]*)*(?:"|\Z)', re.DOTALL)
_JSON_DEPTH_STEP = np.zeros(128, dtype=np.int64)
_JSON_DEPTH_STEP[[ord("["), ord("{")]] = 1
_JSON_DEPTH_STEP[[ord("]"), ord("}")]] = -1


def _json_depth(text: str) -> int:
    """Deepest array/object nesting of JSON text, counting brackets outside string literals.

    Linear time and no recursion. On malformed text (an unterminated string) the count may be
    off, which only affects text that :func:`json.loads` refuses anyway.
    """
    structure = _JSON_STRING.sub("", text)
    if "[" not in structure and "{" not in structure:
        return 0
    codes = np.frombuffer(structure.encode("utf-8", "surrogatepass"), dtype=np.uint8)
    steps = _JSON_DEPTH_STEP[np.minimum(codes, 127)]
    return int(np.cumsum(steps).max())


def _check_json_keys(value: Any, suffix: str) -> None:
    """Refuse dict keys that are not ``str`` (``json.dumps`` would turn them into strings)."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > JSON_MAX_DEPTH:
            raise CodecError(suffix, f"value is nested deeper than JSON_MAX_DEPTH={JSON_MAX_DEPTH}")
        if isinstance(item, dict):
            for key, child in item.items():
                if not isinstance(key, str):
                    raise CodecError(suffix, f"dict key {key!r:.60} is a {type(key).__name__}; JSON keys must be str (it would come back as a str)")
                stack.append((child, depth + 1))
        elif isinstance(item, (list, tuple)):
            stack.extend((child, depth + 1) for child in item)


def _encode_json(value: Any, suffix: str = "json") -> bytes:
    _check_json_keys(value, suffix)
    try:
        text = json.dumps(value, sort_keys=True, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as error:
        raise CodecError(suffix, f"value is not strict JSON: {error}") from None
    if _json_depth(text) > JSON_MAX_DEPTH:
        raise CodecError(suffix, f"value is nested deeper than JSON_MAX_DEPTH={JSON_MAX_DEPTH}")
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as error:  # lone surrogates in a str
        raise CodecError(suffix, f"value has a string that is not valid Unicode: {error}") from None


def _decode_json(data: bytes, suffix: str = "json") -> Any:
    def refuse_constant(name: str) -> Any:
        raise ValueError(f"non-standard constant {name}")

    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise CodecError(suffix, f"malformed JSON (not UTF-8): {error}") from None
    depth = _json_depth(text)
    if depth > JSON_MAX_DEPTH:
        raise CodecError(suffix, f"JSON nesting depth {depth} exceeds JSON_MAX_DEPTH={JSON_MAX_DEPTH}")
    try:
        return json.loads(text, parse_constant=refuse_constant)
    except (ValueError, RecursionError) as error:
        raise CodecError(suffix, f"malformed JSON: {error}") from None


def _encode_txt(value: Any) -> bytes:
    if not isinstance(value, str):
        raise CodecError("txt", f"expects a str, got {type(value).__name__}")
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError as error:  # lone surrogates: refuse rather than write invalid UTF-8
        raise CodecError("txt", f"text is not valid Unicode (lone surrogate?): {error}") from None


def _decode_txt(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise CodecError("txt", f"payload is not UTF-8: {error}") from None


def _decode_dcm(data: bytes) -> torch.Tensor:
    from loaders.dicom import decode_dicom  # pydicom is imported only when needed

    return decode_dicom(data)


def _image_codec(suffix: str, fmt: str | None, lossless: bool) -> Codec:
    encoder = None if fmt is None else partial(media.encode_image, fmt=fmt, suffix=suffix)
    return Codec(suffix, "image", partial(media.decode_image, suffix=suffix), encoder, lossless)


def _audio_codec(suffix: str) -> Codec:
    return Codec(suffix, "audio", partial(media.decode_audio, suffix=suffix), partial(media.encode_audio, fmt=suffix), True)


CODECS: Mapping[str, Codec] = {
    c.suffix: c
    for c in (
        _image_codec("jpg", "jpeg", lossless=False),
        _image_codec("jpeg", "jpeg", lossless=False),
        _image_codec("png", "png", lossless=True),
        _image_codec("webp", None, lossless=False),
        Codec("mask.png", "mask", media.decode_mask, media.encode_mask, lossless=True),
        Codec("cls", "label", _decode_cls, _encode_cls, lossless=True),
        Codec("labels.npy", "labels", _decode_labels, _encode_labels, lossless=True),
        Codec("npy", "npy", _decode_npy, _encode_npy, lossless=True),
        Codec("json", "meta", _decode_json, _encode_json, lossless=True),
        Codec("txt", "text", _decode_txt, _encode_txt, lossless=True),
        Codec("text.json", "text", partial(_decode_json, suffix="text.json"), partial(_encode_json, suffix="text.json"), lossless=True),
        _audio_codec("wav"),
        _audio_codec("flac"),
        Codec("mp4", "video", media.decode_video, media.encode_video, lossless=False),
        Codec("dcm", "image", _decode_dcm, None, lossless=True),
    )
}


def get_codec(suffix: str) -> Codec:
    """Return the codec for a member suffix (exact entry first, then the last dotted part).

    Raises:
        CodecError: for pickle-based suffixes and for suffixes not in :data:`CODECS`.
    """
    if not isinstance(suffix, str) or not suffix:
        raise CodecError(str(suffix), "suffix must be a non-empty str")
    lowered = suffix.lower()
    if lowered in CODECS:
        return CODECS[lowered]
    last = lowered.rsplit(".", 1)[-1]
    if last in PICKLE_SUFFIXES:
        raise CodecError(suffix, "pickle-based formats are never decoded")
    if last in CODECS:
        return CODECS[last]
    raise CodecError(suffix, f"unknown suffix; known suffixes: {sorted(CODECS)}")


def _field_of(suffix: str) -> str:
    lowered = suffix.lower()
    return CODECS[lowered].field if lowered in CODECS else suffix


def encode(suffix: str, value: Any) -> bytes:
    """Encode one field value for the shard member suffix ``suffix``."""
    codec = get_codec(suffix)
    if codec.encode is None:
        raise CodecError(suffix, "this format is decode-only; store the decoded image as png")
    return codec.encode(value)


def decode(suffix: str, data: bytes) -> Any:
    """Decode one shard member payload with the codec for ``suffix``.

    Raises:
        CodecError: for every failure; an exception of another type raised by a codec's library
            (``DecompressionBombError``, ``MemoryError``, ``RecursionError``, ...) is re-raised as
            :class:`CodecError` naming ``suffix``, chained to the original.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CodecError(suffix, f"expects bytes, got {type(data).__name__}")
    codec = get_codec(suffix)
    media.get_max_pixels()  # a bad DATAFACTORY_MAX_PIXELS is a configuration error, never a skipped sample
    try:
        return codec.decode(bytes(data))
    except CodecError:
        raise
    except Exception as error:  # noqa: BLE001 - any library failure on hostile bytes is a decode error
        raise CodecError(suffix, f"cannot decode: {type(error).__name__}: {str(error)[:300]}") from error


def _with_key(error: Exception, suffix: str, key: Any) -> CodecError:
    """``error`` as a :class:`CodecError` naming the member ``suffix`` and the sample ``key``."""
    where = "" if key is None else f"key {key!r}: "  # adapters decode without the key and add it themselves
    if isinstance(error, CodecError):
        if error.suffix == suffix and error.reason.startswith(where):
            return error
        reason = error.reason if error.suffix == suffix else str(error)
    else:
        reason = f"{type(error).__name__}: {str(error)[:300]}"
    return CodecError(suffix, f"{where}{reason}")


def decode_sample(encoded: Mapping[str, Any], *, image_mode: str = "unchanged") -> dict[str, Any]:
    """Decode an encoded sample (suffix -> bytes) into schema fields.

    ``__key__``/``__source__`` pass through. Audio and video decoders also report their rate:
    it lands in ``meta["sample_rate"]`` / ``meta["fps"]`` (not overriding a stored value).

    Args:
        image_mode: ``"unchanged"``, ``"RGB"`` or ``"L"`` for image fields (see
            :func:`loaders.media.decode_image`); masks always keep their indices.

    Raises:
        CodecError: for every failure while decoding a member, whatever its original type
            (library errors, ``MemoryError``, ``RecursionError``, ...), naming the member suffix
            and the sample's ``__key__`` and chained to the original, so that callers catching
            :class:`CodecError` (``on_error="skip"``) skip the sample.
    """
    key = encoded.get(KEY) if isinstance(encoded, Mapping) else None
    media.get_max_pixels()  # a bad DATAFACTORY_MAX_PIXELS is a configuration error, never a skipped sample
    try:
        return _decode_sample(encoded, image_mode)
    except Exception as error:  # noqa: BLE001 - see Raises; members are already named by _decode_sample
        wrapped = _with_key(error, error.suffix if isinstance(error, CodecError) else "sample", key)
        if wrapped is error:
            raise
        raise wrapped from error


def _decode_sample(encoded: Mapping[str, Any], image_mode: str) -> dict[str, Any]:
    sample: dict[str, Any] = {}
    rates: dict[str, Any] = {}
    for suffix, data in encoded.items():
        if suffix in RESERVED:
            sample[suffix] = data
            continue
        try:
            field = _field_of(suffix)
            codec = get_codec(suffix)
            if image_mode != "unchanged" and codec.field == "image" and codec.suffix != "dcm":
                if not isinstance(data, (bytes, bytearray, memoryview)):
                    raise CodecError(suffix, f"expects bytes, got {type(data).__name__}")
                value = media.decode_image(bytes(data), suffix=suffix, mode=image_mode)
            else:
                value = decode(suffix, data)
        except Exception as error:  # noqa: BLE001 - decode_sample names the member
            raise _with_key(error, str(suffix), encoded.get(KEY)) from error
        if isinstance(value, AudioClip):
            rates["sample_rate"] = value.sample_rate
            value = value.samples
        elif isinstance(value, VideoClip):
            rates["fps"] = value.fps
            if value.audio is not None and "audio" not in sample and not any(
                _field_of(s) == "audio" for s in encoded if s not in RESERVED
            ):
                sample["audio"] = value.audio
                rates["sample_rate"] = value.sample_rate
            value = value.frames
        sample[field] = value
    if rates:
        meta = sample.setdefault("meta", {})
        if not isinstance(meta, dict):
            raise CodecError("json", f"meta must decode to a JSON object, got {type(meta).__name__}")
        for name, rate in rates.items():
            meta.setdefault(name, rate)
    return sample


def encode_sample(sample: Mapping[str, Any], suffixes: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Encode a decoded sample into ``{suffix: bytes}`` (reserved keys pass through).

    Args:
        sample: a decoded sample (see :mod:`loaders.schema`).
        suffixes: field -> suffix overrides (e.g. ``{"image": "jpg"}``); defaults come from
            :data:`loaders.schema.FIELDS`. Fields outside the table must be named here.
    """
    chosen = {**FIELDS, **(suffixes or {})}
    meta = sample.get("meta") or {}
    out: dict[str, Any] = {}
    for field, value in sample.items():
        if field in RESERVED:
            out[field] = value
            continue
        suffix = chosen.get(field)
        if suffix is None:
            raise CodecError(field, f"no suffix for field {field!r}; pass suffixes={{{field!r}: ...}}")
        if field == "audio" and isinstance(value, torch.Tensor):
            if "sample_rate" not in meta:
                raise CodecError(suffix, "audio needs meta['sample_rate'] to be encoded")
            value = AudioClip(value, int(meta["sample_rate"]))
        elif field == "video" and isinstance(value, torch.Tensor):
            if "fps" not in meta:
                raise CodecError(suffix, "video needs meta['fps'] to be encoded")
            value = VideoClip(value, float(meta["fps"]))
        elif field == "text" and isinstance(value, list):
            suffix = "text.json" if suffix == "txt" else suffix
        out[suffix] = encode(suffix, value)
    return out


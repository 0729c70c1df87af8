"""The codec table: shard file suffix -> encoder / decoder.

Every byte that enters or leaves a shard goes through this explicit table. There is no
fallback: an unknown suffix raises :class:`CodecError`, and pickle-based suffixes (``pyd``,
``pickle``, ``pth``, ...) are refused by name. ``npy`` payloads are read with
``allow_pickle=False``, so an object array (which would need pickle) is refused too.

Suffix lookup follows WebDataset's naming: a member ``<key>.mask.png`` has the suffix
``mask.png``. An exact entry wins (``mask.png`` decodes to an integer mask); otherwise the last
dotted component decides (``left.jpg`` decodes as ``jpg``, into a field named ``left.jpg``).

Lossless codecs (``png``, ``mask.png``, ``cls``, ``npy``, ``labels.npy``, ``json``, ``txt``,
``wav``; ``flac`` for 16-bit audio) round-trip bit-exactly.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch

from loaders import media
from loaders.media import AudioClip, CodecError, VideoClip
from loaders.schema import FIELDS, RESERVED

__all__ = [
    "AudioClip",
    "Codec",
    "CodecError",
    "CODECS",
    "PICKLE_SUFFIXES",
    "VideoClip",
    "decode",
    "decode_sample",
    "encode",
    "encode_sample",
    "get_codec",
]

PICKLE_SUFFIXES = frozenset({"pyd", "pickle", "pkl", "pth", "pt", "ckpt", "joblib"})


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
    return str(value).encode("ascii")


def _decode_cls(data: bytes) -> int:
    try:
        return int(data.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        raise CodecError("cls", f"payload is not a decimal integer: {data[:32]!r}") from None


def _encode_npy(value: Any) -> bytes:
    array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    if array.dtype == object:
        raise CodecError("npy", "object arrays are not allowed (they would need pickle)")
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _decode_npy(data: bytes) -> torch.Tensor:
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as error:  # object arrays, bad headers
        raise CodecError("npy", f"refused or malformed payload: {error}") from None
    except (OSError, EOFError) as error:
        raise CodecError("npy", f"truncated or malformed payload: {error}") from None
    if not isinstance(array, np.ndarray):
        raise CodecError("npy", "payload is not a single array")
    return torch.from_numpy(np.ascontiguousarray(array))


def _encode_labels(value: Any) -> bytes:
    array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    if array.ndim != 1:
        raise CodecError("labels.npy", f"expects a 1-D label vector, got shape {array.shape}")
    return _encode_npy(array.astype(np.float32, copy=False))


def _decode_labels(data: bytes) -> torch.Tensor:
    tensor = _decode_npy(data)
    if tensor.ndim != 1:
        raise CodecError("labels.npy", f"expected a 1-D label vector, got shape {tuple(tensor.shape)}")
    return tensor.to(torch.float32)


def _encode_json(value: Any) -> bytes:
    try:
        return json.dumps(value, sort_keys=True, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as error:
        raise CodecError("json", f"value is not strict JSON: {error}") from None


def _decode_json(data: bytes) -> Any:
    def refuse_constant(name: str) -> Any:
        raise ValueError(f"non-standard constant {name}")

    try:
        return json.loads(data.decode("utf-8"), parse_constant=refuse_constant)
    except (UnicodeDecodeError, ValueError) as error:
        raise CodecError("json", f"malformed JSON: {error}") from None


def _encode_txt(value: Any) -> bytes:
    if not isinstance(value, str):
        raise CodecError("txt", f"expects a str, got {type(value).__name__}")
    return value.encode("utf-8")


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
        Codec("text.json", "text", _decode_json, _encode_json, lossless=True),
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
    """Decode one shard member payload with the codec for ``suffix``."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CodecError(suffix, f"expects bytes, got {type(data).__name__}")
    return get_codec(suffix).decode(bytes(data))


def decode_sample(encoded: Mapping[str, Any], *, image_mode: str = "unchanged") -> dict[str, Any]:
    """Decode an encoded sample (suffix -> bytes) into schema fields.

    ``__key__``/``__source__`` pass through. Audio and video decoders also report their rate:
    it lands in ``meta["sample_rate"]`` / ``meta["fps"]`` (not overriding a stored value).

    Args:
        image_mode: ``"unchanged"``, ``"RGB"`` or ``"L"`` for image fields (see
            :func:`loaders.media.decode_image`); masks always keep their indices.
    """
    sample: dict[str, Any] = {}
    rates: dict[str, Any] = {}
    for suffix, data in encoded.items():
        if suffix in RESERVED:
            sample[suffix] = data
            continue
        field = _field_of(suffix)
        codec = get_codec(suffix)
        if image_mode != "unchanged" and codec.field == "image" and codec.suffix != "dcm":
            value = media.decode_image(bytes(data), suffix=suffix, mode=image_mode)
        else:
            value = decode(suffix, data)
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


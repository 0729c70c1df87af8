"""Build sources and per-sample preparation (checks, optional re-encoding) for shard builds.

A source is a registered adapter described by :class:`SourceSpec` (name, root, split, options:
plain data that any worker process or Ray task can reopen), an :class:`loaders.Adapter`
instance, or any iterable of samples (encoded ``{suffix: bytes}`` or decoded schema fields).

Work is cut into *chunks* of consecutive input positions; :func:`process_chunk` turns a chunk
into tar member blocks (or skip records with a reason). It is a plain top-level function so it
runs the same in-process, in a process pool and as a Ray task: that is what makes every engine
produce the same bytes. Copy mode keeps the original encoded bytes (img2dataset's and
webdataset's ``ShardWriter`` practice); re-encoding happens only when asked.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from loaders import Adapter, CodecError, SampleError, encode_sample, get_codec, open_dataset
from loaders.schema import KEY, RESERVED
from pipelines.tario import sample_blocks

__all__ = [
    "CHECKS",
    "Chunk",
    "Reencode",
    "SourceSpec",
    "check_payload",
    "describe_source",
    "prepare_sample",
    "process_chunk",
]

#: per-sample checks: ``"structure"`` (cheap: known suffix, non-empty, image start/end markers),
#: ``"decode"`` (decode every member through the codec table) or ``"none"``.
CHECKS = ("structure", "decode", "none")
_REENCODE_FORMATS = ("jpg", "png")
_STRUCTURE_TAIL = 4096


@dataclass(frozen=True)
class SourceSpec:
    """A registered dataset to build from: ``open_dataset(name, root, split, **options)``.

    ``options`` must be plain JSON-friendly values (they are recorded in ``index.json``).
    """

    name: str
    root: str | None = None
    split: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    def open(self) -> Adapter:
        options = {k: v for k, v in self.options.items() if k not in ("decode", "on_error")}
        return open_dataset(self.name, self.root, self.split, decode=False, on_error="raise", **options)

    def describe(self) -> dict[str, Any]:
        return {"type": "dataset", **asdict(self), "options": dict(self.options)}


@dataclass(frozen=True)
class Reencode:
    """Re-encode images instead of copying them.

    Attributes:
        image: target format, ``"jpg"`` or ``"png"``.
        quality: JPEG quality (1-100).
        max_side: downscale (antialiased) so that the longer side is at most this many pixels.
    """

    image: str = "jpg"
    quality: int = 90
    max_side: int | None = None

    def __post_init__(self) -> None:
        if self.image not in _REENCODE_FORMATS:
            raise ValueError(f"reencode image must be one of {_REENCODE_FORMATS}, got {self.image!r}")
        if isinstance(self.quality, bool) or not isinstance(self.quality, int) or not 1 <= self.quality <= 100:
            raise ValueError(f"reencode quality must be an int in [1, 100], got {self.quality!r}")
        if self.max_side is not None and (isinstance(self.max_side, bool) or not isinstance(self.max_side, int) or self.max_side < 1):
            raise ValueError(f"reencode max_side must be a positive int or None, got {self.max_side!r}")

    @classmethod
    def parse(cls, value: Reencode | Mapping[str, Any] | str | None) -> Reencode | None:
        """Accept ``None``, a :class:`Reencode`, a dict of its fields, or a format name."""
        if value is None or isinstance(value, Reencode):
            return value
        if isinstance(value, str):
            return cls(image=value)
        if isinstance(value, Mapping):
            unknown = sorted(set(value) - {"image", "quality", "max_side"})
            if unknown:
                raise ValueError(f"reencode got unknown key(s) {unknown}; allowed: ['image', 'max_side', 'quality']")
            return cls(**value)
        raise TypeError(f"reencode must be None, a str, a dict or a Reencode, got {type(value).__name__}")


@dataclass(frozen=True)
class Chunk:
    """Consecutive input positions ``[start, start + len)``: adapter indices or in-line samples."""

    start: int
    stop: int
    samples: Sequence[Mapping[str, Any]] | None = None


def _tail(data: bytes | memoryview) -> bytes:
    return bytes(data[max(0, len(data) - _STRUCTURE_TAIL):])


def check_payload(suffix: str, data: bytes | memoryview, *, mode: str) -> None:
    """Raise :class:`CodecError` when a member payload (bytes-like) fails the ``mode`` check (see :data:`CHECKS`)."""
    codec = get_codec(suffix)  # unknown and pickle suffixes are refused here
    if mode == "none":
        return
    if mode == "decode":
        codec.decode(bytes(data))
        return
    if codec.field in ("image", "mask", "audio", "video") and not data:
        raise CodecError(suffix, "empty payload")
    if codec.field in ("image", "mask"):
        head, end = bytes(data[:8]), bytes(data[-8:])  # data may be a memoryview
        # the marker almost always ends the file (PNG: "IEND" + 4-byte CRC); else search the tail
        if head[:2] == b"\xff\xd8":
            if end[-2:] != b"\xff\xd9" and _tail(data).rfind(b"\xff\xd9") < 0:
                raise CodecError(suffix, "truncated JPEG (no end-of-image marker)")
        elif head == b"\x89PNG\r\n\x1a\n":
            if end[:4] != b"IEND" and _tail(data).rfind(b"IEND") < 0:
                raise CodecError(suffix, "truncated PNG (no IEND chunk)")
        elif codec.suffix not in ("webp", "dcm"):
            raise CodecError(suffix, f"payload is not a JPEG or PNG file (starts with {head!r})")
    elif codec.suffix == "cls":
        codec.decode(bytes(data))


def _reencode_image(suffix: str, data: bytes, spec: Reencode) -> tuple[str, bytes]:
    import torch
    from torchvision.transforms.v2 import functional as F

    from loaders import decode, encode

    image = decode(suffix, data)
    if image.dtype != torch.uint8:
        raise CodecError(suffix, f"cannot re-encode a {image.dtype} image as {spec.image}; keep copy mode")
    if spec.max_side is not None and max(image.shape[-2:]) > spec.max_side:
        height, width = image.shape[-2:]
        scale = spec.max_side / max(height, width)
        size = [max(1, round(height * scale)), max(1, round(width * scale))]
        image = F.resize(image, size, antialias=True)
    if spec.image == "jpg":
        from loaders.media import encode_image

        return "jpg", encode_image(image, "jpeg", suffix="jpg", quality=spec.quality)
    return "png", encode("png", image)


def prepare_sample(sample: Mapping[str, Any], *, check: str, reencode: Reencode | None,
                   suffixes: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Turn one sample into ``{"__key__", suffix: bytes}`` ready for the tar writer.

    Decoded fields are encoded through the codec table (``suffixes`` overrides the default
    suffix of a field); encoded payloads are checked, and images re-encoded when asked.

    Raises:
        CodecError: a payload fails its check or cannot be encoded.
    """
    if any(not isinstance(v, (bytes, bytearray, memoryview)) for k, v in sample.items() if k not in RESERVED):
        sample = encode_sample(sample, suffixes)
    out: dict[str, Any] = {KEY: sample[KEY]}
    for suffix, data in sample.items():
        if suffix in RESERVED:
            continue
        data = data if isinstance(data, bytes) else bytes(data)
        check_payload(suffix, data, mode=check)
        if reencode is not None and get_codec(suffix).field == "image" and suffix != "mask.png":
            new_suffix, data = _reencode_image(suffix, data, reencode)
            if new_suffix != suffix and new_suffix in sample:
                raise CodecError(suffix, f"re-encoding to {new_suffix!r} would overwrite an existing member")
            suffix = new_suffix
        out[suffix] = data
    return out


def _describe_error(error: Exception, key: str | None, adapter: Adapter | None, position: int) -> str:
    if isinstance(error, SampleError):
        return str(error)
    where = None
    if adapter is not None:
        where = adapter._describe_record(adapter.index[position])
    return str(SampleError(str(error), key=key, path=where))


def process_chunk(source: Adapter | None, chunk: Chunk, check: str, reencode: Reencode | None,
                  suffixes: Mapping[str, str] | None = None) -> list[tuple[str, str, Any]]:
    """Load, check and tar-encode the samples of ``chunk``.

    Returns one entry per input position, in order: ``("ok", key, (member_blocks, suffixes))``
    or ``("skip", key, reason)``. Never raises for bad data: the caller applies the error
    policy (so the message always names the sample and its file).
    """
    out: list[tuple[str, str, Any]] = []
    for offset, position in enumerate(range(chunk.start, chunk.stop)):
        key: str | None = None
        try:
            if chunk.samples is not None:
                raw = chunk.samples[offset]
                key = raw.get(KEY) if isinstance(raw, Mapping) else None
                if not isinstance(raw, Mapping) or key is None:
                    raise ValueError(f"sample at position {position} must be a dict with {KEY!r}")
            else:
                assert source is not None
                key = source.key(position)
                raw = source.load(position, decode=False)
            ready = prepare_sample(raw, check=check, reencode=reencode, suffixes=suffixes)
            names = tuple(sorted(k for k in ready if k not in RESERVED))
            out.append(("ok", ready[KEY], (sample_blocks(ready), names)))
        except (SampleError, CodecError, OSError, ValueError, TypeError) as error:
            out.append(("skip", key or f"#{position}", _describe_error(error, key, source if chunk.samples is None else None, position)))
    return out


def describe_source(source: Any) -> dict[str, Any]:
    """A JSON description of a source for ``index.json``."""
    if isinstance(source, SourceSpec):
        return source.describe()
    if isinstance(source, Adapter):
        root = getattr(source, "root", None)
        return {"type": "adapter", "name": source.name or type(source).__name__,
                "root": None if root is None else os.fspath(root), "split": getattr(source, "split", None),
                "class": type(source).__name__}
    return {"type": "iterable", "class": type(source).__name__}


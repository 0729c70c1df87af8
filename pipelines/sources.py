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

import hashlib
import os
from collections.abc import Callable, Mapping, Sequence
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
    "identifies_files",
    "input_identifier",
    "members_identity",
    "sample_identity",
    "prepare_sample",
    "process_chunk",
]

#: per-sample checks: ``"structure"`` (cheap: known suffix, non-empty, image start/end markers),
#: ``"decode"`` (decode every member through the codec table) or ``"none"``.
CHECKS = ("structure", "decode", "none")
_REENCODE_FORMATS = ("jpg", "png")
_STRUCTURE_TAIL = 4096
_INLINE_IDENTITY_BYTES = 32  # in-line members up to this size are recorded as their hex, larger ones by sha256


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



# -- input identities: what a build records about each of its inputs ---------------------------
#
# An identity is a string: the key, then for a file-backed adapter each member as three fields,
# a file as (path relative to the source root, size, mtime_ns) ("-" twice when it cannot be
# stat'ed) and an in-line member as ("", suffix, its bytes as hex or "sha256:..." when long),
# all separated by NUL (no path or key holds one). Content is not hashed: size and mtime are what
# make and rsync trust. A string, built with one f-string per member: this runs per sample.


def root_prefix(adapter: Adapter | None) -> str:
    """The adapter's root folder with a trailing separator ('' when it has none)."""
    root = getattr(adapter, "root", None)
    return "" if root is None else os.path.join(os.fspath(root), "")


def _inline_identity(suffix: Any, data: bytes) -> str:
    value = data.hex() if len(data) <= _INLINE_IDENTITY_BYTES else "sha256:" + hashlib.sha256(data).hexdigest()
    return f"\0{suffix if isinstance(suffix, str) else ''}\0{value}"


def members_identity(key: str, members: Sequence[tuple[Any, Any]], stats: Sequence[os.stat_result | None],
                     prefix: str) -> str:
    """The identity of a sample from its file members and their ``stat`` results (same order)."""
    fields = [key]
    for (suffix, source), info in zip(members, stats):
        if isinstance(source, bytes):
            fields.append(_inline_identity(suffix, source))
            continue
        path = source if type(source) is str else os.fspath(source)
        if prefix and path.startswith(prefix):
            path = path[len(prefix):]
        fields.append(f"{path}\0-\0-" if info is None else f"{path}\0{info.st_size}\0{info.st_mtime_ns}")
    return "\0".join(fields)


def _stat_members(members: Sequence[tuple[Any, Any]]) -> list[os.stat_result | None]:
    stats: list[os.stat_result | None] = []
    for _, source in members:
        if isinstance(source, bytes):
            stats.append(None)
            continue
        try:
            stats.append(os.stat(source))
        except OSError:  # a missing or unreadable file: recorded as such, the sample path reports it
            stats.append(None)
    return stats


def identifies_files(adapter: Adapter | None) -> bool:
    """Whether an adapter's inputs are files (it implements :meth:`loaders.Adapter.file_members`).

    Unlike the direct copy path, this holds for a subclass that loads differently: the files a
    record names are still its inputs.
    """
    return adapter is not None and type(adapter).file_members is not Adapter.file_members


def input_identifier(adapter: Adapter) -> Callable[[int], str]:
    """``position -> identity`` for an adapter: from its files' ``stat`` when it
    :func:`identifies_files`, else its key."""
    if not identifies_files(adapter):
        return adapter.key
    prefix, records = root_prefix(adapter), adapter.index

    def identify(position: int) -> str:
        members = adapter.file_members(records[position])
        if members is None:
            return adapter.key(position)
        return members_identity(adapter.key(position), members, _stat_members(members), prefix)

    return identify


def sample_identity(raw: Any, position: int) -> str:
    """The identity of an in-line sample: its key (``#position`` when it has no string key)."""
    key = raw.get(KEY) if isinstance(raw, Mapping) else None
    return key if isinstance(key, str) and "\0" not in key else f"#{position}"

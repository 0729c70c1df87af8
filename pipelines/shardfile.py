"""Shard files: :class:`ShardError`, and opening a shard for reading -- a plain tar, or a
gzip-compressed one read as a bounded stream.

Compression is recognised by the file's first bytes (RFC 1952's ``1f 8b`` for gzip), never by
its name, as ``tarfile`` and webdataset do: a ``.tgz`` holding a plain tar reads as one. A file
whose block at byte 257 carries the ``ustar`` magic is a plain tar whatever its first bytes.

Gzip shards are decompressed as they are read, in chunks of at most :data:`_CHUNK` bytes (never
the whole file in memory, never an allocation a header asks for). Their decompressed size is
unknown until the end, so the reader bounds it instead of checking members against the file
size: at most :data:`GZIP_MAX_RATIO` times the compressed size, and never less than
:data:`GZIP_MIN_BUDGET`. A member, or the archive, going past the bound is an error naming the
shard (a gzip bomb), as is a stream cut short or failing its CRC. To read a legitimate shard
that decompresses further, decompress it first (``gunzip``): a plain tar's members are bounded
by its size on disk.

Other compressions (bzip2, xz, zstd, lz4) are recognised and refused with that advice.

Everything that makes a file unreadable as a shard raises :class:`ShardError` naming it.
:class:`ShardError` is defined here, the lowest module of the shard reader, and re-exported by
:mod:`pipelines.tario` and :mod:`pipelines`.
"""

from __future__ import annotations

import gzip
import io
import os
import zlib
from dataclasses import dataclass
from typing import Any, BinaryIO

from loaders.fileio import open_regular

__all__ = ["GZIP_MAGIC", "GZIP_MAX_RATIO", "GZIP_MIN_BUDGET", "GzipStream", "OpenShard", "ShardError", "open_shard"]

#: The first two bytes of a gzip stream (RFC 1952).
GZIP_MAGIC = b"\x1f\x8b"
#: A gzip shard may decompress to at most this many times its compressed size (deflate's own
#: limit is about 1032:1; tars of photos compress about 1:1, of small text members 10-30:1) ...
GZIP_MAX_RATIO = 200
#: ... and is always allowed this many decompressed bytes, however small it is.
GZIP_MIN_BUDGET = 256 << 20
#: Largest single read from the decompressor (a member is assembled from such chunks).
_CHUNK = 1 << 20
_USTAR = slice(257, 262)
_REFUSED = {b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz", b"\x28\xb5\x2f\xfd": "zstd", b"\x04\x22\x4d\x18": "lz4"}


class ShardError(ValueError):
    """A shard is malformed or unsafe (bad member name, pickle payload, checksum mismatch...)."""


class GzipStream:
    """A forward-only reader over a gzip file's decompressed bytes, bounded by ``budget``.

    ``read(size)`` returns up to ``size`` bytes (fewer only at the end of the stream), assembled
    from chunks of at most 1 MiB; ``seek(offset, 1)`` skips forward by decompressing and fails
    when the stream ends first (a plain file's ``seek`` would not notice). Every failure is a
    :class:`ShardError` naming ``shard``.
    """

    def __init__(self, raw: BinaryIO, budget: int, shard: str) -> None:
        self._raw = raw
        self.shard = shard
        self._gzip = gzip.GzipFile(fileobj=raw, mode="rb")
        self.budget = budget
        self.position = 0

    def read(self, size: int) -> bytes:
        if size > self.budget - self.position:
            raise self._error(self._past_bound())
        chunks = []
        while size > 0:
            chunk = self._chunk(min(size, _CHUNK))
            if not chunk:
                break
            chunks.append(chunk)
            size -= len(chunk)
        data = b"".join(chunks)
        self.position += len(data)
        return data

    def _chunk(self, size: int) -> bytes:
        try:
            return self._gzip.read(size)
        except EOFError as error:
            raise self._error(f"truncated gzip stream: {error}") from None
        except (OSError, zlib.error) as error:  # BadGzipFile (CRC, length, header) is an OSError
            raise self._error(f"corrupt gzip stream: {error}") from None

    def _error(self, reason: str) -> ShardError:
        return ShardError(f"shard {self.shard!r}: {reason}")

    def _past_bound(self) -> str:
        return (f"decompresses past its bound of {self.budget} bytes (GZIP_MAX_RATIO x its size, at least "
                "GZIP_MIN_BUDGET): a gzip bomb, or a shard to gunzip before reading")

    def seek(self, offset: int, whence: int = io.SEEK_CUR) -> int:
        if whence != io.SEEK_CUR or offset < 0:
            raise io.UnsupportedOperation("a gzip shard is read forward only")
        while offset > 0:
            skipped = len(self.read(min(offset, _CHUNK)))
            if not skipped:
                raise self._error("truncated: the decompressed archive ends inside member data")
            offset -= skipped
        return self.position

    def drain(self) -> None:
        """Read to the end of the gzip stream (within the bound), so that its CRC and length
        are checked even when the tar inside ends before it."""
        while chunk := self._chunk(_CHUNK):
            self.position += len(chunk)
            if self.position > self.budget:
                raise self._error(self._past_bound())

    def close(self) -> None:
        try:
            self._gzip.close()
        finally:
            self._raw.close()

    def __enter__(self) -> GzipStream:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


@dataclass
class OpenShard:
    """An open shard: ``handle`` (``read``/``seek`` forward), ``end`` (the bytes its archive may
    span: the file size, or a gzip shard's decompression bound) and ``compression``."""

    handle: Any
    end: int
    compression: str | None


def open_shard(path: str) -> OpenShard:
    """Open a shard for reading; regular files only (a FIFO would block, a device never end).

    Raises:
        ShardError: the file cannot be opened (or is not a regular file), or is compressed with
            something other than gzip.
    """
    try:
        fd = open_regular(path)
    except OSError as error:
        raise ShardError(f"shard {path!r}: cannot open: {error}") from None
    try:
        size = os.fstat(fd).st_size
        head = os.pread(fd, 512, 0)
        raw = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    if head[_USTAR] == b"ustar" or not head:
        return OpenShard(raw, size, None)
    if head.startswith(GZIP_MAGIC):
        budget = max(GZIP_MIN_BUDGET, GZIP_MAX_RATIO * size)
        return OpenShard(GzipStream(raw, budget, path), budget, "gzip")
    for magic, name in _REFUSED.items():
        if head.startswith(magic):
            raw.close()
            raise ShardError(f"shard {path!r}: compressed with {name}: only plain and gzip-compressed tars are read; decompress it first")
    return OpenShard(raw, size, None)

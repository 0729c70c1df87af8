"""Copy mode straight from files: the fast path of ``build_shards`` for file-backed adapters.

In copy mode a shard member of a file-backed dataset is the file, byte for byte. Instead of
reading each file into a new ``bytes`` (an allocation whose pages fault in, for every image),
checking it, building its tar blocks and copying them into the writer's buffer, this path reads
each file with ``readv`` straight into its place in the writer's reused buffer, behind a header
built there, checks it in place, and commits it (see :meth:`pipelines.writer.UnitWriter.reserve`);
``tar`` itself works the same way, with one record buffer.

It produces exactly the bytes of the generic path (:func:`pipelines.sources.process_chunk`):
same members, same sorted order, same headers (:func:`pipelines.tario.ustar_header`), same
check (:func:`pipelines.sources.check_payload`). It only takes the *happy* case: whenever
anything is unusual (an unreadable, empty, truncated or changing file, a name that needs a pax
header, a sample larger than the writer's buffer may grow) it declines and the generic path handles that sample,
so error messages and skip records come from one place. Tests build the same sets both ways
and compare bytes.

Adapters opt in by implementing :meth:`loaders.Adapter.file_members` (the ``folder`` adapter
does) in the same class as their ``_load_encoded``; :func:`file_members_for` checks that.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from loaders import Adapter, CodecError
from loaders.fileio import open_regular
from pipelines.sources import check_payload
from pipelines.tario import BLOCK, ustar_header
from pipelines.writer import UnitWriter

__all__ = ["MemberSource", "copy_sample", "file_members_for"]

#: one member of a sample: ``(suffix, path of the file to copy | the payload bytes)``; for a file,
#: the suffix may be a function of its first :data:`SNIFF_BYTES` bytes (see ``Adapter.file_members``)
MemberSource = tuple["str | Callable[[bytes], str | None]", "str | bytes"]
SNIFF_BYTES = 16
_ZEROS = bytes(BLOCK)
_DIRECT_CHECKS = ("structure", "none")


def _defined_by(kind: type, name: str) -> type:
    return next(cls for cls in kind.__mro__ if name in cls.__dict__)


def file_members_for(adapter: Adapter | None, check: str) -> Callable[[Mapping[str, Any]], list[MemberSource] | None] | None:
    """A function giving a record's members, or ``None`` when ``adapter`` does not describe its
    members as files copied unchanged (:meth:`loaders.Adapter.file_members`), or ``check`` needs
    more than the payload bytes."""
    if adapter is None or check not in _DIRECT_CHECKS or not (hasattr(os, "readv") and hasattr(os, "pread")):
        return None  # (Windows has neither: the generic path copies there)
    kind = type(adapter)
    if kind.file_members is Adapter.file_members or kind.load is not Adapter.load or kind.key is not Adapter.key:
        return None
    if _defined_by(kind, "file_members") is not _defined_by(kind, "_load_encoded"):
        return None  # a subclass changed how bytes are loaded but not the description of them

    return adapter.file_members


def _read_file(fd: int, view: memoryview, size: int) -> bool:
    """Read exactly ``size`` bytes of ``fd``, from its start, into ``view`` (which has one spare
    byte after them) and make sure the file ends there; ``False`` when it is shorter or longer.

    :func:`copy_sample` first tries one ``readv`` asking for ``size + 1`` bytes: getting exactly
    ``size`` both reads the file and proves it ends there. This slower loop runs only when that
    did not happen (a short read on a network filesystem or after a signal, or a changing file).
    """
    os.lseek(fd, 0, os.SEEK_SET)  # after a first readv that did not return exactly size
    got = os.readv(fd, [view[:size + 1]])
    while got < size:  # a short read (signals, network filesystems): go on until the end
        more = os.readv(fd, [view[got:size + 1]])
        if more == 0:
            return False
        got += more
    return got == size


def copy_sample(writer: UnitWriter, position: int, key: str, members: Sequence[MemberSource], check: str,
                stats: list[os.stat_result | None] | None = None) -> bool:
    """Write one sample straight from its files into ``writer``; ``False`` (nothing written)
    when the generic path must handle it.

    ``stats``, when given, receives the ``fstat`` of each member's file (``None`` for bytes), in
    member order: the build records its inputs' identities from them without a second ``stat``.
    """
    fds: list[int] = []
    try:
        layout = []
        total = 0
        for suffix, source in members:
            if type(source) is bytes:
                fd, size = -1, len(source)
                if stats is not None:
                    stats.append(None)
            else:
                fd = open_regular(source)  # a FIFO, socket or device is never opened: OSError, the generic path reports it
                fds.append(fd)
                info = os.fstat(fd)
                size = info.st_size
                if stats is not None:
                    stats.append(info)
                if callable(suffix):  # named by its content: one small read of its head
                    suffix = suffix(os.pread(fd, SNIFF_BYTES, 0))
                    if suffix is None:
                        return False
            if size == 0:
                return False
            header = ustar_header(f"{key}.{suffix}".encode("utf-8"), size)
            if header is None:
                return False
            layout.append((suffix, source, fd, header, size))
            total += BLOCK + size + (-size) % BLOCK
        layout.sort(key=lambda member: member[0])  # tar members in suffix order, as the generic path
        suffixes = [member[0] for member in layout]
        view = writer.reserve(total + 1)  # one spare byte: see _read_file
        if view is None:
            return False
        offset = 0
        for suffix, source, fd, header, size in layout:
            view[offset:offset + BLOCK] = header
            offset += BLOCK
            if fd < 0:
                view[offset:offset + size] = source
            elif os.readv(fd, [view[offset:offset + size + 1]]) != size and not _read_file(fd, view[offset:], size):
                return False  # shorter or longer than fstat said (changing): the generic path reads it
            check_payload(suffix, view[offset:offset + size], mode=check)
            offset += size
            pad = (-size) % BLOCK
            view[offset:offset + pad] = _ZEROS[:pad]
            offset += pad
        writer.commit(position, key, total, suffixes)
        return True
    except (OSError, CodecError, ValueError):
        return False
    finally:
        for fd in fds:
            os.close(fd)

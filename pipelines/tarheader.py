"""Reading tar member headers safely: ustar, pax and GNU long names, from a plain or gzip shard.

:func:`iter_members` walks an open shard (:func:`pipelines.shardfile.open_shard`) member by
member and trusts nothing it reads: every numeric field must be octal digits (or positive GNU
base-256), a pax ``size`` must be a decimal that agrees with the ustar field unless that field
is 0 or its maximum (how writers store members over 8 GiB), pax and GNU long-name headers are
limited to :data:`MAX_EXTENDED_HEADER`, and every member, padding included, must fit in what is
left of the file or of a gzip shard's decompression bound. Links, devices and FIFOs are refused;
directory entries are passed over and counted in a :class:`ReadStats`.

A small reader of our own because ``tarfile``'s header parsing dominates the cost of streaming
small samples. Format reference: POSIX.1-2001 ``pax``/``ustar`` (the ``tarfile`` module).
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field

from pipelines.shardfile import GzipStream, OpenShard, ShardError

__all__ = ["BLOCK", "MAX_EXTENDED_HEADER", "ReadStats", "iter_members"]

BLOCK = tarfile.BLOCKSIZE
_ZEROS = bytes(BLOCK)

#: Largest pax or GNU long-name header we read (a name or a few records; real ones are < 1 kB).
MAX_EXTENDED_HEADER = 1 << 20
#: Type flags of members read as regular files: ``0``, NUL (old tars) and ``7`` (contiguous).
_REGULAR = (b"0", b"\x00", b"7")
#: The largest size an 11-digit octal field holds; writers put it (or 0) in the ustar field of a
#: member whose real size is in a pax ``size`` record.
_OCTAL_MAX = 8 ** 11 - 1


def _number(field: bytes, shard: str) -> int:
    """A numeric tar header field: octal text (NUL/space padded) or GNU base-256.

    Strict on purpose: ``int()`` alone would accept ``-1``, ``+7`` or ``1_0`` and a negative size
    makes ``read(size)`` read to the end of the file.

    Raises:
        ShardError: a negative base-256 value, or text that is not octal digits.
    """
    if field[:1] and field[0] & 0x80:  # GNU base-256 (sizes >= 8 GiB): 0x80 positive, 0xff negative
        if field[0] != 0x80:
            raise ShardError(f"shard {shard!r}: negative or malformed base-256 tar header field {field!r}")
        return int.from_bytes(field[1:], "big")
    text = field.split(b"\x00", 1)[0].strip(b" ")
    if not text:
        return 0
    try:
        if text.isdigit():  # ASCII digits only: no sign, underscore or inner space
            return int(text, 8)
    except ValueError:  # an 8 or a 9
        pass
    raise ShardError(f"shard {shard!r}: malformed tar header field {field!r} (not octal digits)")


def _pax(data: bytes, shard: str) -> dict[str, str]:
    """Parse pax records (``"<length> <keyword>=<value>\\n"``), each checked to lie inside ``data``."""
    records: dict[str, str] = {}
    position = 0
    while position < len(data):
        space = data.find(b" ", position)
        digits = data[position:space] if space > position else b""
        if not digits.isdigit():
            raise ShardError(f"shard {shard!r}: malformed pax header (bad record length at byte {position})")
        length = int(digits)
        end = position + length
        if end <= space + 1 or end > len(data) or data[end - 1:end] != b"\n":
            raise ShardError(f"shard {shard!r}: malformed pax header (record at byte {position} overruns or lacks its newline)")
        keyword, equals, value = data[space + 1:end - 1].partition(b"=")
        try:
            if not equals:
                raise ValueError
            records[keyword.decode("utf-8")] = value.decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            raise ShardError(f"shard {shard!r}: malformed pax header (record at byte {position})") from None
        position = end
    return records


def _pax_size(value: str, header_size: int, shard: str) -> int:
    """The member size from a pax ``size`` record.

    A real override is only needed when the size does not fit the ustar field, whose value is then
    0 or the octal maximum; any other disagreement would let a member swallow the next one(s).
    """
    if not (value.isascii() and value.isdigit()):
        raise ShardError(f"shard {shard!r}: malformed pax size {value!r} (not a non-negative decimal)")
    size = int(value)
    if size != header_size and header_size not in (0, _OCTAL_MAX):
        raise ShardError(f"shard {shard!r}: pax size {size} disagrees with the header size {header_size}")
    return size


@dataclass
class ReadStats:
    """What reading one or more shards met besides the samples it yielded; pass one to
    :func:`iter_shard_samples` (``stats=``) to fill it. Counts add up: every sample read is in
    ``samples`` or in ``skipped``.

    Attributes:
        samples: samples read whole (yielded, or passed over by ``skip``).
        skipped: ``(key or member name, reason)`` of each sample, or member belonging to no
            sample, left out under ``on_error="skip"``.
        directories: directory entries passed over (``tar`` writes one per folder).
        unterminated: shards that ended without their end-of-archive blocks (accepted with
            ``require_end=False``): complete as far as a tar can tell, but cut short at a member
            boundary looks the same.
    """

    samples: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    directories: int = 0
    unterminated: list[str] = field(default_factory=list)


def _ended(header: bytes, position: int, opened: OpenShard, require_end: bool) -> bool:
    """Whether a short read of ``header`` at ``position`` is where an archive without (all of)
    its end-of-archive blocks stops: at the end of the file (or gzip stream), only zeros read."""
    at_end = opened.compression is not None or position + len(header) == opened.end
    return not require_end and at_end and not header.strip(b"\x00")


def iter_members(opened: OpenShard, shard: str, *, require_end: bool = True,
                  stats: ReadStats | None = None) -> Iterator[tuple[str, int]]:
    """Yield ``(name, size)`` of each regular member of an open shard; directories are counted
    in ``stats`` and passed over.

    The caller reads or seeks over exactly ``size`` bytes plus the padding to 512 before asking
    for the next member. A small reader of our own (ustar, pax and GNU long names) because
    ``tarfile``'s header parsing dominates the cost of streaming small samples. The position is
    tracked as an integer (no ``tell()``) and every size is checked against the bytes left
    (``opened.end``: the file size, or a gzip shard's decompression bound), so a truncated or
    lying archive fails here: ``seek`` past the end of a file does not.

    Args:
        require_end: the archive must end with its two zero blocks (every archive we write has
            them). ``False`` also accepts an archive that stops at a member boundary, after one
            zero block or inside the second (what ``tarfile``, hence webdataset, reads); it is
            listed in ``stats.unterminated``. A stop inside a header or member is an error
            either way.

    Raises:
        ShardError: bad checksum or numeric field, a member or extended header larger than what
            is left, a link, device or other non-regular member, or an archive cut short.
    """
    handle, end = opened.handle, opened.end
    past = "the file" if opened.compression is None else "the decompression bound"
    override: dict[str, str] = {}
    position = 0
    while True:
        header = handle.read(BLOCK)
        if len(header) == BLOCK and header == _ZEROS:
            header = handle.read(BLOCK)  # the second zero block (more records may follow)
            if header == _ZEROS or _ended(header, position + BLOCK, opened, require_end):
                if override:
                    raise ShardError(f"shard {shard!r}: extended header without a member at the end of the archive")
                if header != _ZEROS and stats is not None:
                    stats.unterminated.append(shard)
                if isinstance(handle, GzipStream):
                    handle.drain()  # the gzip CRC and length are checked at the end of the stream
                return
            raise ShardError(f"shard {shard!r}: truncated or corrupt end of archive at byte {position + BLOCK}")
        if len(header) < BLOCK:
            if _ended(header, position, opened, require_end) and not override:
                if stats is not None:
                    stats.unterminated.append(shard)
                return
            what = "ends without the end-of-archive blocks" if not header else "ends inside a tar header"
            raise ShardError(f"shard {shard!r}: truncated at byte {position + len(header)}: {what}")
        position += BLOCK
        try:
            stored = _number(header[148:156], shard)
        except ShardError:  # reported as a bad checksum: what random bytes most likely are
            stored = -1
        if stored != sum(header[:148]) + 256 + sum(header[156:]):
            raise ShardError(f"shard {shard!r}: bad tar header checksum at byte {position - BLOCK} "
                             "(not a tar file, or corrupted)")
        name = header[:100].split(b"\x00", 1)[0]
        if header[257:262] == b"ustar" and header[345]:
            name = header[345:500].split(b"\x00", 1)[0] + b"/" + name
        size, kind = _number(header[124:136], shard), header[156:157]
        if kind in (b"x", b"g", b"L"):
            padded = size + (-size) % BLOCK
            if size > MAX_EXTENDED_HEADER or position + padded > end:
                raise ShardError(f"shard {shard!r}: extended header of {size} bytes at byte {position - BLOCK} "
                                 f"(limit {MAX_EXTENDED_HEADER}, {end - position} bytes left in {past})")
            data = handle.read(size)
            handle.seek(padded - size, 1)
            position += padded
            if kind == b"x":
                override = _pax(data, shard)
            elif kind == b"L":
                override = {"path": data.split(b"\x00", 1)[0].decode("utf-8", "replace")}
            continue
        text = override.get("path") or name.decode("utf-8", "replace")
        if "size" in override:
            size = _pax_size(override["size"], size, shard)
        override = {}
        if kind == b"5" or (kind == b"\x00" and text.endswith("/")):  # a directory (the second: old v7
            # tars); no data blocks follow, whatever the size field says (POSIX; tarfile reads it so)
            if stats is not None:
                stats.directories += 1
            continue
        if kind not in _REGULAR:
            raise ShardError(f"shard {shard!r}: member {text!r} is not a regular file (type {kind!r})")
        padded = size + (-size) % BLOCK
        if position + padded > end:  # padding included: a file cut in the padding is cut too
            raise ShardError(f"shard {shard!r}: member {text!r} needs {padded} bytes at byte {position}, "
                             f"only {end - position} left in {past} (truncated, or a bad size field)")
        yield text, size
        position += padded

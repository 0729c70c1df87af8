"""Deterministic tar writing and safe tar reading for WebDataset shards.

Writing: every member header is built with fixed metadata (mtime, uid/gid 0, empty user and
group names, mode ``0o444``) in POSIX pax format, members of a sample are sorted by name and
samples are written in input order, so the same samples always give the same bytes.

Reading: member names are never trusted. Absolute names, ``..`` components, backslashes,
anything but regular files, and names whose sample key breaks the schema are refused with
:class:`ShardError` naming the shard and the member; WebDataset's grouping rule (the key is the
path up to the first dot of the base name) is applied here, not by webdataset.

Sizes are not trusted either: every numeric field must be octal digits (or positive GNU
base-256), a pax ``size`` must be a decimal that agrees with the ustar field unless that field
is 0 or its maximum (how writers store members over 8 GiB), pax and GNU long-name headers are
limited to :data:`MAX_EXTENDED_HEADER`, and every member, padding included, must fit in what is
left of the file (one ``fstat`` per shard). An archive must end with its two zero blocks: we
always write them (as do tar, ``tarfile`` and libarchive), so a shard without them was cut,
even at a sample boundary. Given the count from ``index.json``, a shard holding fewer or more
samples is an error too.

Format reference: POSIX.1-2001 ``pax``/``ustar`` (``tarfile`` module) and the WebDataset
specification (https://github.com/webdataset/webdataset#the-webdataset-format).
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Iterator, Mapping
from typing import Any

from loaders import CodecError, get_codec
from loaders.fileio import open_regular
from loaders.schema import KEY, RESERVED, validate_key

__all__ = [
    "FIXED_MTIME",
    "ShardError",
    "check_suffixes",
    "encode_member",
    "encode_sample_members",
    "member_blocks",
    "sample_blocks",
    "iter_shard_samples",
    "split_member_name",
    "END_OF_ARCHIVE",
    "MAX_EXTENDED_HEADER",
    "ustar_header",
]

#: 2000-01-01T00:00:00Z, the mtime of every member we write.
FIXED_MTIME = 946684800
BLOCK = tarfile.BLOCKSIZE
#: Two zero blocks end a tar archive.
END_OF_ARCHIVE = bytes(2 * BLOCK)
_ZEROS = bytes(BLOCK)


class ShardError(ValueError):
    """A shard is malformed or unsafe (bad member name, pickle payload, checksum mismatch...)."""


_MODE_UID_GID = b"0000444\x000000000\x000000000\x00"  # mode, uid, gid (fields at 100..124)
_MTIME_FIELD = b"%011o\x00" % FIXED_MTIME
_LINK_TO_MAGIC = b"0" + bytes(100) + b"ustar\x0000" + bytes(64)  # typeflag, linkname, magic, version, uname, gname
_DEVICES = bytes(16)  # devmajor, devminor (329..345)
# checksum of the fixed fields, with the checksum field itself counted as eight spaces
_FIXED_SUM = sum(_MODE_UID_GID) + sum(_MTIME_FIELD) + 8 * 32 + sum(_LINK_TO_MAGIC)


def ustar_header(name: bytes, size: int) -> bytes | None:
    """A ustar header with our fixed metadata, or ``None`` when the name needs pax.

    Built from precomputed pieces (the checksum of the fixed fields is a constant), since this
    runs once per member: the same 512 bytes ``tarfile`` writes for these fields in ustar form.
    """
    prefix = b""
    if len(name) > 100:  # split at the first "/" that makes the rest fit, as tarfile does
        cut = name.find(b"/")
        while cut > 0 and len(name) - cut - 1 > 100:
            cut = name.find(b"/", cut + 1)
        if cut <= 0 or cut > 155:
            return None
        prefix, name = name[:cut], name[cut + 1:]
    if size >= 8 ** 11:
        return None
    size_field = b"%011o\x00" % size
    checksum = b"%06o\x00 " % (_FIXED_SUM + sum(name) + sum(size_field) + sum(prefix))
    return b"".join((name, bytes(100 - len(name)), _MODE_UID_GID, size_field, _MTIME_FIELD, checksum,
                     _LINK_TO_MAGIC, _DEVICES, prefix, bytes(167 - len(prefix))))


def member_blocks(name: str, data: bytes) -> tuple[bytes, ...]:
    """One tar member as ``(header, data[, zero padding to 512 bytes])``, with fixed metadata.

    ustar when the name fits (the common case, built directly: ``tarfile``'s generic header
    code costs more than copying a 100 kB JPEG), pax otherwise; same bytes for the same input.
    The payload is not copied.
    """
    header = ustar_header(name.encode("utf-8"), len(data))
    if header is None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mtime = FIXED_MTIME
        info.mode = 0o444
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        header = info.tobuf(format=tarfile.PAX_FORMAT, encoding="utf-8", errors="strict")
    pad = (-len(data)) % BLOCK
    return (header, data, _ZEROS[:pad]) if pad else (header, data)


def encode_member(name: str, data: bytes) -> bytes:
    """One tar member (header, data, padding) as a single ``bytes``."""
    return b"".join(member_blocks(name, data))


def sample_blocks(sample: Mapping[str, Any]) -> tuple[bytes, ...]:
    """The member blocks of an encoded sample (``{"__key__", suffix: bytes}``), sorted by name.

    Raises:
        ValueError: invalid key or suffix; TypeError: a payload that is not bytes.
    """
    key = validate_key(sample[KEY])
    blocks: list[bytes] = []
    for suffix in sorted(s for s in sample if s not in RESERVED):
        data = sample[suffix]
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"sample {key!r}: member {suffix!r} must be bytes, got {type(data).__name__}")
        if not suffix or suffix.startswith(".") or suffix.endswith(".") or "/" in suffix or "\\" in suffix or ".." in suffix:
            raise ValueError(f"sample {key!r}: suffix {suffix!r} is not a valid member suffix")
        blocks.extend(member_blocks(f"{key}.{suffix}", data if isinstance(data, bytes) else bytes(data)))
    if not blocks:
        raise ValueError(f"sample {key!r} has no members")
    return tuple(blocks)


def encode_sample_members(sample: Mapping[str, Any]) -> bytes:
    """All members of an encoded sample as one ``bytes`` (see :func:`sample_blocks`)."""
    return b"".join(sample_blocks(sample))


def split_member_name(name: str, *, shard: str = "?") -> tuple[str, str]:
    """Split a member name into ``(key, suffix)`` after checking it is safe.

    Raises:
        ShardError: absolute path, ``..`` or empty components, backslashes, no suffix, or a key
            outside the schema's character set.
    """
    if not name or name.startswith("/") or "\\" in name or "\x00" in name:
        raise ShardError(f"shard {shard!r}: unsafe member name {name!r} (absolute path or bad characters)")
    parts = name.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise ShardError(f"shard {shard!r}: unsafe member name {name!r} ('..', '.' or empty path components)")
    directory, base = parts[:-1], parts[-1]
    if "." not in base or base.startswith("."):
        raise ShardError(f"shard {shard!r}: member {name!r} has no key.suffix form")
    stem, suffix = base.split(".", 1)
    key = "/".join([*directory, stem])
    try:
        validate_key(key)
    except ValueError as error:
        raise ShardError(f"shard {shard!r}: member {name!r}: {error}") from None
    return key, suffix


#: Largest pax or GNU long-name header we read (a name or a few records; real ones are < 1 kB).
MAX_EXTENDED_HEADER = 1 << 20
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


def _iter_members(handle: Any, shard: str, end: int) -> Iterator[tuple[str, int]]:
    """Yield ``(name, size)`` of each regular member of an archive of ``end`` bytes.

    The caller reads or seeks over exactly ``size`` bytes plus the padding to 512 before asking
    for the next member. A small reader of our own (ustar, pax and GNU long names) because
    ``tarfile``'s header parsing dominates the cost of streaming small samples. The position is
    tracked as an integer (no ``tell()``) and every size is checked against the bytes left, so a
    truncated or lying archive fails here: ``seek`` past the end of a file does not.

    Raises:
        ShardError: bad checksum or numeric field, a member or extended header larger than what
            is left of the file, a non-regular member, or an archive that ends without its two
            zero blocks (every archive we write has them; a missing one means a cut file).
    """
    override: dict[str, str] = {}
    position = 0
    while True:
        header = handle.read(BLOCK)
        if len(header) < BLOCK:
            what = "ends without the end-of-archive blocks" if not header else "ends inside a tar header"
            raise ShardError(f"shard {shard!r}: truncated at byte {position + len(header)}: {what}")
        position += BLOCK
        if header == _ZEROS:
            if handle.read(BLOCK) != _ZEROS:  # the second zero block (more records may follow)
                raise ShardError(f"shard {shard!r}: truncated or corrupt end of archive at byte {position}")
            if override:
                raise ShardError(f"shard {shard!r}: extended header without a member at the end of the archive")
            return
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
                                 f"(limit {MAX_EXTENDED_HEADER}, {end - position} bytes left)")
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
        if kind not in (b"0", b"\x00"):
            raise ShardError(f"shard {shard!r}: member {text!r} is not a regular file (type {kind!r})")
        padded = size + (-size) % BLOCK
        if position + padded > end:  # padding included: a file cut in the padding is cut too
            raise ShardError(f"shard {shard!r}: member {text!r} needs {padded} bytes at byte {position}, "
                             f"only {end - position} left (truncated, or a bad size field)")
        yield text, size
        position += padded


def _open_shard(shard: str) -> tuple[Any, int]:
    """Open a shard for reading: ``(handle, size in bytes)``; regular files only (a FIFO would
    block, a device never end), the size from one ``fstat`` of the open descriptor."""
    try:
        fd = open_regular(shard)
    except OSError as error:
        raise ShardError(f"shard {shard!r}: cannot open: {error}") from None
    try:
        size = os.fstat(fd).st_size
        return os.fdopen(fd, "rb"), size
    except BaseException:
        os.close(fd)
        raise


def iter_shard_samples(
    path: str | os.PathLike,
    *,
    skip: int = 0,
    limit: int | None = None,
    read_data: bool = True,
    count: int | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield the encoded samples of one shard, in order, as ``{"__key__", suffix: bytes}``.

    Args:
        path: the ``.tar`` file.
        skip: leave out the first ``skip`` samples (their data is seeked over, not read).
        limit: stop after this many samples (after ``skip``).
        read_data: ``False`` yields ``{suffix: None}`` placeholders (names only, still checked).
        count: the number of samples the shard is known to hold (``index.json``). The shard
            ending before it, or a sample past it, is an error. Without ``limit`` (or when
            ``skip + limit`` reaches ``count``) the whole shard is checked; a shorter read stops
            at ``skip + limit`` as usual.

    Raises:
        ShardError: unsafe or malformed members, a key repeated non-contiguously, a truncated
            archive, or a sample count other than ``count``.
    """
    shard = os.fspath(path)
    stop = None if limit is None else skip + limit
    if count is not None and stop is not None and stop >= count:
        stop = None  # read to the end, so that a shard holding more than ``count`` is seen
    if stop is not None and stop <= skip:
        return
    seen: set[str] = set()
    current: dict[str, Any] | None = None
    index = 0
    handle, end = _open_shard(shard)
    with handle:
        for name, size in _iter_members(handle, shard, end):
            key, suffix = split_member_name(name, shard=shard)
            if current is None or current[KEY] != key:
                if current is not None:
                    if index >= skip:
                        yield current
                    index += 1
                    if stop is not None and index >= stop:
                        return
                if count is not None and index >= count:
                    raise ShardError(f"shard {shard!r}: holds more samples than the {count} index.json lists "
                                     f"(sample {index + 1} is {key!r})")
                if key in seen:
                    raise ShardError(f"shard {shard!r}: members of sample {key!r} are not contiguous")
                seen.add(key)
                current = {KEY: key}
            if suffix in current:
                raise ShardError(f"shard {shard!r}: duplicate member {name!r}")
            if index >= skip and read_data:
                data = handle.read(size)
                if len(data) < size:  # the file shrank since it was opened
                    raise ShardError(f"shard {shard!r}: member {name!r} is truncated")
                current[suffix] = data
                handle.seek((-size) % BLOCK, 1)
            else:
                current[suffix] = None
                handle.seek(size + (-size) % BLOCK, 1)
        if current is not None:
            if index >= skip:
                yield current
            index += 1
        if count is not None and index != count:
            raise ShardError(f"shard {shard!r}: index.json lists {count} samples, the shard holds {index} "
                             "(truncated or replaced)")


def check_suffixes(sample: Mapping[str, Any], shard: str) -> None:
    """Refuse members whose suffix is not in the codec table (pickle formats included).

    Raises:
        ShardError: naming the shard, the member and the codec table's reason.
    """
    for suffix in sample:
        if suffix == KEY:
            continue
        try:
            get_codec(suffix)
        except CodecError as error:
            raise ShardError(f"shard {shard!r}: member {sample[KEY]}.{suffix} refused: {error}") from None

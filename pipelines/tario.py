"""Deterministic tar writing and safe tar reading for WebDataset shards.

Writing: every member header is built with fixed metadata (mtime, uid/gid 0, empty user and
group names, mode ``0o444``) in POSIX pax format, members of a sample are sorted by name and
samples are written in input order, so the same samples always give the same bytes.

Reading: plain and gzip-compressed tars (recognised by their first bytes; decompression is
streamed and bounded, see :mod:`pipelines.shardfile`). Members are grouped into samples by
WebDataset's rule (the key is the path up to the first dot of the base name), applied here, not
by webdataset; directory entries are passed over and counted (:class:`ReadStats`).

Member names are never trusted. Absolute names, ``..`` components, backslashes, links, devices
and anything else but regular files and directories are refused for the whole shard with
:class:`ShardError` naming the shard and the member. A member our schema cannot hold -- a key
with a dot or a space (``v1.0/s5.txt`` is key ``v1.0/s5``), a duplicate, no ``key.suffix``
form, a suffix the caller refuses -- concerns its sample only, under the error policy
(``on_error``).

Sizes are not trusted either: every numeric field must be octal digits (or positive GNU
base-256), a pax ``size`` must be a decimal that agrees with the ustar field unless that field
is 0 or its maximum (how writers store members over 8 GiB), pax and GNU long-name headers are
limited to :data:`MAX_EXTENDED_HEADER`, and every member, padding included, must fit in what is
left of the file (one ``fstat`` per shard) or of a gzip shard's decompression bound.

The end of an archive: tar, ``tarfile``, libarchive and webdataset's ``TarWriter`` all write two
zero blocks (then pad to a 10 kB record), so a shard of our own set without them was cut, even
at a sample boundary, and ``require_end=True`` (the default) refuses it. ``tarfile``, hence
webdataset, also reads an archive that stops at a member boundary or inside its zero blocks;
``require_end=False`` accepts that too (for tars that come with no manifest) and lists the
shard in :attr:`ReadStats.unterminated`. A stop inside a header, member data or padding is an
error either way. Given the count from ``index.json``, a shard holding fewer or more samples is
an error too.

Format reference: POSIX.1-2001 ``pax``/``ustar`` (``tarfile`` module) and the WebDataset
specification (https://github.com/webdataset/webdataset#the-webdataset-format).
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from loaders import check_on_error, get_codec
from loaders.codecs import PICKLE_SUFFIXES
from loaders.schema import KEY, RESERVED, validate_key
from pipelines.shardfile import GzipStream, OpenShard, ShardFileError, open_shard

__all__ = [
    "FIXED_MTIME",
    "ReadStats",
    "ShardError",
    "SuffixCheck",
    "check_suffixes",
    "encode_member",
    "encode_sample_members",
    "member_blocks",
    "sample_blocks",
    "iter_shard_samples",
    "member_key",
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


def member_key(name: str, *, shard: str = "?") -> tuple[str | None, str, str | None]:
    """``(key, suffix, problem)`` of a member name, by WebDataset's rule; unsafe names raise.

    The key is the path up to the first dot of the base name, the suffix the rest (webdataset's
    ``base_plus_ext``): ``v1.0/s5.txt`` is key ``v1.0/s5``, suffix ``txt``. A leading ``./`` (as
    ``tar -C dir -cf x.tar .`` writes) is dropped. ``problem`` is ``None``, or why the member
    cannot be read into a sample of our schema: it has no ``key.suffix`` form (``key`` is then
    ``None``: it belongs to no sample), or its key has characters the schema does not allow
    (a dot, a space...). Such problems concern one sample and go through the error policy.

    Raises:
        ShardError: an unsafe name: absolute, ``..``, ``.`` or empty path components, a
            backslash or a NUL. Such a shard is hostile and refused as a whole.
    """
    if not name or name.startswith("/") or "\\" in name or "\x00" in name:
        raise ShardError(f"shard {shard!r}: unsafe member name {name!r} (absolute path or bad characters)")
    relative = name
    while relative.startswith("./"):
        relative = relative[2:]
    parts = relative.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise ShardError(f"shard {shard!r}: unsafe member name {name!r} ('..', '.' or empty path components)")
    base = parts[-1]
    stem, dot, suffix = base.partition(".")
    if not stem or not suffix:
        return None, "", f"member {name!r} has no key.suffix form"
    key = stem if len(parts) == 1 else "/".join([*parts[:-1], stem])
    try:
        validate_key(key)
    except ValueError as error:
        return key, suffix, f"member {name!r}: {error}"
    return key, suffix, None


def split_member_name(name: str, *, shard: str = "?") -> tuple[str, str]:
    """Split a member name into ``(key, suffix)`` after checking it is safe (:func:`member_key`).

    Raises:
        ShardError: absolute path, ``..`` or empty components, backslashes, no suffix, or a key
            outside the schema's character set.
    """
    key, suffix, problem = member_key(name, shard=shard)
    if problem is not None:
        raise ShardError(f"shard {shard!r}: {problem}")
    return key, suffix  # type: ignore[return-value]  # a key whenever there is no problem


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


def _iter_members(opened: OpenShard, shard: str, *, require_end: bool = True,
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


def _open(shard: str) -> OpenShard:
    try:
        return open_shard(shard)
    except ShardFileError as error:
        raise ShardError(f"shard {shard!r}: {error}") from None
    except OSError as error:
        raise ShardError(f"shard {shard!r}: cannot open: {error}") from None


def iter_shard_samples(
    path: str | os.PathLike,
    *,
    skip: int = 0,
    limit: int | None = None,
    read_data: bool = True,
    count: int | None = None,
    on_error: str = "raise",
    stats: ReadStats | None = None,
    require_end: bool = True,
    check_suffix: Callable[[str], object] | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield the encoded samples of one shard, in order, as ``{"__key__", suffix: bytes}``.

    Plain and gzip-compressed tars are read (:mod:`pipelines.shardfile`); members are grouped
    into samples by WebDataset's rule (:func:`member_key`) and directory entries passed over.

    Args:
        path: the ``.tar`` (or ``.tar.gz``/``.tgz``) file.
        skip: leave out the first ``skip`` samples (their data is seeked over, not read).
        limit: stop after this many samples (after ``skip``).
        read_data: ``False`` yields ``{suffix: None}`` placeholders (names only, still checked).
        count: the number of samples the shard is known to hold (``index.json``). The shard
            ending before it, or a sample past it, is an error. Without ``limit`` (or when
            ``skip + limit`` reaches ``count``) the whole shard is checked; a shorter read stops
            at ``skip + limit`` as usual.
        on_error: what to do with a sample our schema cannot hold -- a key with a dot or a
            space, a duplicate member, a suffix ``check_suffix`` refuses -- or a member with no
            ``key.suffix`` form: ``"raise"`` a :class:`ShardError` naming shard and member, or
            ``"skip"`` it, recorded in ``stats.skipped``. Skipped samples take no position
            (``skip``, ``limit`` and ``count`` count the others). Decided from member names
            alone, so ``read_data=False`` gives the same samples.
        stats: a :class:`ReadStats` to add this read's counts to.
        require_end: see :func:`_iter_members` (``False``: accept an archive without its
            end-of-archive blocks, as webdataset does).
        check_suffix: called with every member suffix; a ``ValueError`` it raises (a
            ``CodecError``, say) refuses the member's sample, under ``on_error``.

    Raises:
        ShardError: unsafe or malformed members, a key repeated non-contiguously, a truncated
            archive, a sample count other than ``count``, or (``on_error="raise"``) a sample
            our schema cannot hold.
    """
    shard = os.fspath(path)
    check_on_error(on_error)
    stats = ReadStats() if stats is None else stats
    skipped_before = len(stats.skipped)
    stop = None if limit is None else skip + limit
    if count is not None and stop is not None and stop >= count:
        stop = None  # read to the end, so that a shard holding more than ``count`` is seen
    if stop is not None and stop <= skip:
        return
    seen: set[str] = set()
    current: dict[str, Any] | None = None
    problem: str | None = None  # why the current sample cannot be read (skipped at its end)
    index = 0  # samples read whole so far: the current one's position, if it is read whole

    def refuse(what: str, reason: str) -> None:
        if on_error == "raise":
            raise ShardError(f"shard {shard!r}: {reason}")
        stats.skipped.append((what, f"shard {shard!r}: {reason}"))

    def finish() -> bool:
        """Close the current sample; whether it is one to yield."""
        nonlocal index
        if problem is not None:
            refuse(current[KEY], problem)
            return False
        if count is not None and index >= count:
            raise ShardError(f"shard {shard!r}: holds more samples than the {count} index.json lists "
                             f"(sample {index + 1} is {current[KEY]!r})")
        index += 1
        stats.samples += 1
        return index > skip

    opened = _open(shard)
    with opened.handle as handle:
        try:
            for name, size in _iter_members(opened, shard, require_end=require_end, stats=stats):
                key, suffix, trouble = member_key(name, shard=shard)
                if key is None:  # belongs to no sample
                    refuse(name, trouble)
                    handle.seek(size + (-size) % BLOCK, 1)
                    continue
                if current is None or current[KEY] != key:
                    if current is not None:
                        if finish():
                            yield current
                        if stop is not None and index >= stop:
                            return
                    if key in seen:
                        raise ShardError(f"shard {shard!r}: members of sample {key!r} are not contiguous (webdataset "
                                         "would read them as two samples; `tar --sort=name` keeps a sample's files together)")
                    seen.add(key)
                    current, problem = {KEY: key}, None
                if trouble is None and suffix in current:
                    trouble = f"duplicate member {name!r}"
                if trouble is None and check_suffix is not None:
                    try:
                        check_suffix(suffix)
                    except ValueError as error:
                        trouble = f"member {key}.{suffix} refused: {error}"  # check_suffixes' words
                if trouble is not None and problem is None:
                    problem = trouble
                    if on_error == "raise":
                        refuse(key, trouble)
                if problem is None and index >= skip and read_data:
                    data = handle.read(size)
                    if len(data) < size:  # the file shrank since it was opened
                        raise ShardError(f"shard {shard!r}: member {name!r} is truncated")
                    current[suffix] = data
                    handle.seek((-size) % BLOCK, 1)
                else:
                    current[suffix] = None
                    handle.seek(size + (-size) % BLOCK, 1)
            if current is not None and finish():
                yield current
        except ShardFileError as error:
            raise ShardError(f"shard {shard!r}: {error}") from None
    if count is not None and index != count:
        left_out = stats.skipped[skipped_before:]
        refused = f", and {len(left_out)} it cannot read (first: {left_out[0][1]})" if left_out else ""
        raise ShardError(f"shard {shard!r}: index.json lists {count} samples, the shard holds {index}{refused} "
                         "(truncated or replaced)")


class SuffixCheck:
    """The member-suffix check of every reader: the codec table (:func:`loaders.get_codec`), plus
    the suffixes a caller names a decoder for (``extra``). Pickle-based suffixes are refused
    always, named or not. Picklable (it travels to loader worker processes).

    Raises:
        ValueError: ``extra`` names a pickle-based suffix, or is not a collection of non-empty strings.
    """

    def __init__(self, extra: Iterable[str] = ()) -> None:
        names = list(extra)
        if not all(isinstance(name, str) and name for name in names):
            raise ValueError(f"suffixes with a decoder of your own must be non-empty strings, got {names!r}")
        for name in names:
            if name.lower().rsplit(".", 1)[-1] in PICKLE_SUFFIXES:
                raise ValueError(f"suffix {name!r}: pickle-based formats are never decoded, not even by a decoder of your own")
        self.extra = frozenset(name.lower() for name in names)

    def __call__(self, suffix: str) -> None:
        """Raise :class:`loaders.CodecError` (a ``ValueError``) for a refused suffix."""
        if suffix.lower() not in self.extra:
            get_codec(suffix)

    def __repr__(self) -> str:
        return f"SuffixCheck({sorted(self.extra)!r})"


def check_suffixes(sample: Mapping[str, Any], shard: str, check: Callable[[str], object] = SuffixCheck()) -> None:
    """Refuse members whose suffix is not in the codec table (pickle formats included).

    Args:
        check: the suffix check (a :class:`SuffixCheck` naming extra suffixes, say).

    Raises:
        ShardError: naming the shard, the member and the codec table's reason.
    """
    for suffix in sample:
        if suffix == KEY:
            continue
        try:
            check(suffix)
        except ValueError as error:
            raise ShardError(f"shard {shard!r}: member {sample[KEY]}.{suffix} refused: {error}") from None

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

Sizes are not trusted either: headers are parsed by :mod:`pipelines.tarheader` (strict numeric
fields, bounded extended headers, every member checked against what is left of the file or of a
gzip shard's decompression bound).

The end of an archive: GNU tar, ``tarfile`` and webdataset's ``TarWriter`` write two zero
blocks (then pad to a 10 kB record), as does our writer (without the padding), so a shard of our
own set without them was cut, even at a sample boundary, and ``require_end=True`` (the default)
refuses it. ``tarfile``, hence webdataset, also reads an archive that stops at a member boundary
or inside its zero blocks; ``require_end=False`` accepts that too (for tars that come with no
manifest) and lists the shard in :attr:`ReadStats.unterminated`. A stop inside member data or
padding is an error either way, as in webdataset; so is a stop inside a header, which
``tarfile`` takes for the end of the archive. Given the count from ``index.json``, a shard
holding fewer or more samples is an error too.

Format reference: POSIX.1-2001 ``pax``/``ustar`` (``tarfile`` module) and the WebDataset
specification (https://github.com/webdataset/webdataset#the-webdataset-format).
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from loaders import check_on_error, get_codec
from loaders.codecs import PICKLE_SUFFIXES
from loaders.schema import KEY, RESERVED, validate_key
from pipelines.shardfile import ShardError, open_shard
from pipelines.tarheader import BLOCK, MAX_EXTENDED_HEADER, ReadStats, iter_members

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
#: Two zero blocks end a tar archive.
END_OF_ARCHIVE = bytes(2 * BLOCK)
_ZEROS = bytes(BLOCK)


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
        require_end: see :func:`pipelines.tarheader.iter_members` (``False``: accept an archive
            without its end-of-archive blocks, as webdataset does).
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

    opened = open_shard(shard)
    with opened.handle as handle:
        for name, size in iter_members(opened, shard, require_end=require_end, stats=stats):
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
                if len(data) < size:  # the file shrank since it was opened, or a gzip stream ended
                    raise ShardError(f"shard {shard!r}: member {name!r} is truncated")
                current[suffix] = data
                handle.seek((-size) % BLOCK, 1)
            else:
                current[suffix] = None
                handle.seek(size + (-size) % BLOCK, 1)
        if current is not None and finish():
            yield current
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

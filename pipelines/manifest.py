"""The manifest of a shard set: its names, ``index.json`` and sidecars, read and written.

A shard set is ``NNNNNN.tar`` shards, a ``NNNNNN.stats.json`` sidecar per shard and an
``index.json`` listing them (:data:`INDEX_FORMAT`; the writer's side is :mod:`pipelines.writer`).
This module holds what both sides share: the names (:func:`shard_name`, :func:`stats_name`,
:func:`sidecar_name`), the schema record (:func:`schema_of`), JSON reading and writing
(:func:`read_json`, :func:`write_json`) and the checks readers apply.

``index.json`` is as untrusted as the shards: :func:`read_index` (used by every reader of shard
sets: the loader, verify, inspect, preview and the Hugging Face export) refuses shard names that
are not plain ``.tar`` file names in the folder, symbolic links out of it, and mistyped counts.
JSON files of a shard set are read as regular files only (:func:`read_json`), and written under
a temporary name created exclusively, then renamed over a regular file or nothing
(:func:`write_json`). :func:`input_problems` compares shards with the inputs their sidecars
record. This module imports neither the writer nor the loader, so both sides share it.
"""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loaders import get_codec
from loaders.fileio import read_regular
from pipelines.tario import ShardError, iter_shard_samples

__all__ = [
    "INDEX_FORMAT",
    "IndexedShard",
    "SHARD_FILE",
    "ShardIndex",
    "create_temporary",
    "input_problems",
    "is_regular",
    "new_run_id",
    "place",
    "read_index",
    "read_json",
    "read_json_file",
    "schema_of",
    "shard_file",
    "shard_name",
    "sidecar_name",
    "stats_name",
    "write_all",
    "write_atomic",
    "write_json",
]

INDEX_FORMAT = "datafactory-shards/1"
_SHARD_DIGITS = 6
#: a shard or its sidecar, as the builder names them (``000042.tar``, ``000042.stats.json``)
SHARD_FILE = re.compile(r"(\d{6})\.(?:tar|stats\.json)")
#: created exclusively, never through a link: a planted file or symlink at the name fails the open
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


# -- names --------------------------------------------------------------------------------------


def shard_name(number: int) -> str:
    """``000042.tar`` for shard 42."""
    return f"{number:0{_SHARD_DIGITS}d}.tar"


def stats_name(number: int) -> str:
    """``000042.stats.json`` for shard 42."""
    return f"{number:0{_SHARD_DIGITS}d}.stats.json"


def schema_of(suffixes: Sequence[str]) -> dict[str, Any]:
    """The schema of a shard set: member suffixes and the decoded field each maps to."""
    return {"suffixes": sorted(suffixes), "fields": {s: get_codec(s).field for s in sorted(suffixes)}}


# -- writing files into a folder that may be hostile -----------------------------------------------


def new_run_id() -> str:
    """A random token for temporary names: no two runs (or a stale file) ever share one."""
    return secrets.token_hex(8)


def is_regular(path: Path | str) -> bool:
    """Whether ``path`` is a regular file itself (not a symbolic link to one)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _check_replaceable(path: Path) -> None:
    """Refuse to replace anything but a regular file (a symlink, folder, FIFO... planted at one of
    our names is someone else's: ``os.replace`` would not write through it, but would destroy it)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(info.st_mode):
        raise FileExistsError(errno.EEXIST, "refusing to replace an entry that is not a regular file (a symlink or folder?)", str(path))


def place(temporary: Path | str, path: Path) -> None:
    """Rename a finished temporary file to its final name (see :func:`_check_replaceable`)."""
    _check_replaceable(path)
    os.replace(temporary, path)


def create_temporary(path: Path) -> int:
    """Open a new file at ``path`` exclusively for writing (never an existing file or a link)."""
    return os.open(path, _CREATE_FLAGS, 0o644)


def write_all(fd: int, data: Any, path: Path | str) -> None:
    """Write ``data`` in full; an ``OSError`` (a full disk...) names ``path``."""
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view):]
    except OSError as error:
        raise OSError(error.errno, error.strerror or str(error), str(path)) from None


def write_atomic(path: str | os.PathLike, data: bytes, *, sync: bool = False) -> Path:
    """Write ``data`` under a new temporary name (created exclusively), then rename it over
    ``path`` unless that is a symlink or not a regular file (``sync``: fsync before the rename)."""
    target = Path(path)
    temporary = target.with_name(f".{target.name}.{new_run_id()}.tmp")
    fd = create_temporary(temporary)
    try:
        try:
            write_all(fd, data, target)
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)
        place(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return target


def write_json(path: Path, value: Any) -> None:
    """Write JSON deterministically (sorted keys) with :func:`write_atomic`."""
    text = json.dumps(value, sort_keys=True, indent=1, ensure_ascii=False)
    write_atomic(path, (text + "\n").encode("utf-8"))


# -- reading --------------------------------------------------------------------------------------


def read_json(path: str | os.PathLike) -> Any:
    """Parse a JSON file of a shard set (``index.json``, a sidecar); regular files only.

    Raises:
        FileNotFoundError: no such file.
        ShardError: not a regular file, unreadable, or not valid UTF-8 JSON (naming the file).
    """
    try:
        text = read_regular(path)
    except FileNotFoundError:
        raise
    except OSError as error:
        raise ShardError(f"{os.fspath(path)!r}: cannot read: {error}") from None
    try:
        return json.loads(text.decode("utf-8"))
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise ShardError(f"{os.fspath(path)!r}: not valid JSON: {error}") from None


def shard_file(folder: Path, name: Any, *, where: str) -> Path:
    """The path of a shard listed in ``index.json``, confined to the shard folder.

    The one check every reader of a shard set relies on: ``index.json`` is as untrusted as the
    shards, and a name like ``../../secret.tar`` or ``/etc/x.tar`` would otherwise be read.

    Args:
        folder: the shard folder.
        name: the listed name.
        where: the entry, for messages (``"'/data/index.json': shards[3]"``).

    Raises:
        ShardError: ``name`` is not a plain printable file name ending in ``.tar`` (no ``/``,
            ``\\``, ``:``, NUL, ``..``), or names a symbolic link that leads out of the folder.
    """
    if (not isinstance(name, str) or len(name) <= len(".tar") or not name.endswith(".tar") or not name.isprintable()
            or any(bad in name for bad in ("/", "\\", ":", "\x00", "..")) or name.strip() != name):
        raise ShardError(f"{where}: shard name {name!r} is not a plain .tar file name in the shard folder")
    path = folder / name
    if path.is_symlink():  # links are allowed inside the folder only (resolved once, here)
        real_folder = Path(os.path.realpath(folder))
        if not Path(os.path.realpath(path)).is_relative_to(real_folder):
            raise ShardError(f"{where}: shard {name!r} is a symbolic link leading out of the shard folder")
    return path


def sidecar_name(shard: str) -> str:
    """``NNNNNN.stats.json`` for ``NNNNNN.tar`` (a name :func:`shard_file` accepted)."""
    return shard[: -len(".tar")] + ".stats.json"


def _count(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ShardError(f"{where} must be an int >= 0, got {value!r}")
    return value


@dataclass(frozen=True)
class IndexedShard:
    """One ``index.json`` entry after its checks: ``path`` is inside the shard folder."""

    name: str
    path: Path
    count: int
    entry: Mapping[str, Any]


@dataclass(frozen=True)
class ShardIndex:
    """A shard set's ``index.json``: the folder, the raw document and the checked entries."""

    folder: Path
    index: Mapping[str, Any]
    shards: list[IndexedShard]


def read_index(path: str | os.PathLike) -> ShardIndex:
    """Read and check the ``index.json`` of a shard folder (``path`` is the folder or the file).

    Every shard name goes through :func:`shard_file`; ``shards`` must be a list of objects with
    a unique name and a ``count``; ``count``, ``skipped`` and ``bytes`` are ints >= 0 wherever
    present, ``sha256`` a string and ``schema.suffixes`` a list of strings. Used by every reader of shard sets (loader, verify,
    inspect, preview, Hugging Face export), so they refuse the same manifests.

    Raises:
        FileNotFoundError: no ``index.json``.
        ShardError: a malformed or hostile ``index.json``, naming the file and the entry.
    """
    folder = Path(path)
    if folder.name == "index.json":
        folder = folder.parent
    index_file = folder / "index.json"
    if not index_file.exists():
        raise FileNotFoundError(f"no index.json in {str(folder)!r}: not a finished shard set "
                                "(build it with build_shards, or rerun the build to resume it)")
    index = read_json(index_file)
    where = repr(str(index_file))
    if not isinstance(index, dict):
        raise ShardError(f"{where}: must be a JSON object, got {type(index).__name__}")
    for field in ("count", "skipped"):
        if field in index:
            _count(index[field], f"{where}: {field!r}")
    schema = index.get("schema", {})
    if not isinstance(schema, dict) or not isinstance(schema.get("suffixes", []), list) or not all(
            isinstance(x, str) for x in schema.get("suffixes", [])):
        raise ShardError(f"{where}: 'schema' must be an object whose 'suffixes' is a list of strings")
    entries = index.get("shards")
    if not isinstance(entries, list):
        raise ShardError(f"{where}: 'shards' must be a list, got {type(entries).__name__}")
    shards: list[IndexedShard] = []
    names: set[str] = set()
    for position, entry in enumerate(entries):
        at = f"{where}: shards[{position}]"
        if not isinstance(entry, dict):
            raise ShardError(f"{at} must be an object, got {type(entry).__name__}")
        shard = shard_file(folder, entry.get("shard"), where=at)
        if shard.name in names:
            raise ShardError(f"{at}: shard {shard.name!r} is listed twice")
        names.add(shard.name)
        count = _count(entry.get("count"), f"{at} ({shard.name}): 'count'")
        if "bytes" in entry:
            _count(entry["bytes"], f"{at} ({shard.name}): 'bytes'")
        if "sha256" in entry and not isinstance(entry["sha256"], str):
            raise ShardError(f"{at} ({shard.name}): 'sha256' must be a string, got {entry['sha256']!r}")
        shards.append(IndexedShard(shard.name, shard, count, entry))
    return ShardIndex(folder, index, shards)


#: the name the readers used first
read_json_file = read_json


# -- checking shards against the inputs their sidecars record --------------------------------------


def _tar_keys(tar: Path) -> list[str]:
    return [sample["__key__"] for sample in iter_shard_samples(tar, read_data=False)]


def _shard_input_problems(tar: Path, stats: Mapping[str, Any]) -> list[str]:
    """Compare one shard's samples with the inputs its sidecar records: in order, every sample is
    the next recorded input, and the inputs left out are exactly the skipped ones."""
    name, inputs = tar.name, stats["inputs"]
    if not isinstance(inputs, list) or len(inputs) != stats.get("end", 0) - stats.get("start", 0):
        return [f"{name}: the sidecar records {len(inputs) if isinstance(inputs, list) else 'no'} inputs for "
                f"positions {stats.get('start')}..{stats.get('end')}"]
    keys = _tar_keys(tar)
    matched = 0
    for recorded in inputs:
        if matched < len(keys) and recorded == keys[matched]:
            matched += 1
    problems = []
    if matched != len(keys):
        problems.append(f"{name}: sample {keys[matched]!r} is not the recorded input at its place "
                        f"(inputs {stats['start']}..{stats['end']} in {name.replace('.tar', '.stats.json')})")
    elif len(inputs) - matched != len(stats.get("skipped", ())):
        problems.append(f"{name}: {len(inputs) - matched} recorded inputs are not in the tar, "
                        f"but the sidecar lists {len(stats.get('skipped', ()))} skipped")
    return problems


def input_problems(folder: str | os.PathLike, shards: Sequence[str]) -> list[str]:
    """Check the shards named ``shards`` (plain file names in ``folder``, as listed by a checked
    ``index.json``) against the inputs their sidecars record, when they record them (older sets
    and other writers' sets are not checked)."""
    problems: list[str] = []
    for name in shards:
        if SHARD_FILE.fullmatch(name) is None or not name.endswith(".tar"):
            continue  # not one of our names: nothing of ours was recorded for it
        tar = Path(folder) / name
        sidecar = tar.with_name(stats_name(int(name[:_SHARD_DIGITS])))
        if not (is_regular(tar) and is_regular(sidecar)):
            continue  # reported as missing by the caller
        try:
            stats = read_json(sidecar)
            if isinstance(stats, dict) and "inputs" in stats:
                problems.extend(_shard_input_problems(tar, stats))
        except (OSError, ValueError) as error:
            problems.append(f"{name}: cannot check the recorded inputs: {error}")
    return problems

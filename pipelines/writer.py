"""The rolling shard writer, publishing its parts with their sidecars, and resume scanning.

The names of a shard set, its ``index.json`` format and JSON reading and writing are shared with
the readers and live in :mod:`pipelines.manifest` (re-exported here for older imports).

Layout of a shard set::

    out/000000.tar          WebDataset tar (written under a hidden temporary name, renamed when whole)
    out/000000.stats.json   count, bytes, sha256, input range, skipped keys with reasons, and the
                            keys of the inputs of the range (``inputs``)
    out/index.json          every shard, the schema, the source, the resolved build config
    out/.build.json         the build's source and config, and each published shard's input
                            fingerprint (lets a rerun resume safely; see "Inputs" below)

The unit of work is a run of ``max_count`` consecutive input positions, aligned at multiples
of ``max_count`` (img2dataset's "the shard is the unit of work"; see docs/architecture.md): one worker
writes it, rolling to a new part when ``max_bytes`` would be exceeded; the driver only renames
finished parts to ``NNNNNN.tar`` in input order and writes their sidecars. Shard boundaries
therefore depend only on the input (unit boundaries and sample sizes), never on scheduling.

A shard is *complete* when its tar and its stats sidecar both exist and agree on the size (the
sidecar is written last, as img2dataset's ``_stats.json`` and lhotse's ``.completed`` markers
are). A rerun keeps the longest run of complete shards and restarts at the input position after
the last one; that position is always a part boundary, where rolling starts afresh, so the
result is byte-identical to an uninterrupted build.

Inputs: every input position has an *identity* (:mod:`pipelines.sources`): for file-backed
adapters the key and each file's path relative to the source root, size and ``st_mtime_ns``
(taken from the ``fstat`` the copy does anyway), for other sources the key. A shard's
*fingerprint* is the sha256 of the identities of its range and, when the part was cut by size
inside a unit, of the input that did not fit (its size decided the cut). The sidecar records the
range's keys (source-independent: the same set built from a folder or from a Hugging Face copy
of it has byte-identical sidecars); ``.build.json`` records the fingerprints, written after the
tar is renamed and before its sidecar. A rerun keeps a complete shard only while its fingerprint
still matches the input, so a file added, removed or modified since the first attempt rebuilds
from the first shard it affects.

The folder is treated as hostile: only the names this module defines (:func:`is_our_name`) are
ever removed or replaced, and only when they are regular files (never through a symlink);
temporary files are created exclusively (``O_CREAT | O_EXCL | O_NOFOLLOW``) under names that
carry a random per-run token, and a final name is replaced only when it is absent or a regular file.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pipelines.manifest import (
    INDEX_FORMAT,
    SHARD_FILE,
    create_temporary,
    input_problems,
    is_regular,
    new_run_id,
    place,
    read_json,
    schema_of,
    shard_name,
    stats_name,
    write_all,
    write_json,
)
from pipelines.tario import END_OF_ARCHIVE

# INDEX_FORMAT, read_json, write_json, schema_of, shard_name and input_problems live in
# pipelines.manifest (shared with the readers); they stay importable from here.
__all__ = [
    "INDEX_FORMAT",
    "UnitWriter",
    "publish_part",
    "complete_shards",
    "input_fingerprint",
    "input_problems",
    "is_our_name",
    "new_run_id",
    "read_json",
    "remove_stale",
    "scan_out_dir",
    "schema_of",
    "shard_name",
    "write_json",
]

_BUFFER_BYTES = 1 << 20  # tar bytes gathered before one hash update and one write (about an L2 cache)
_MAX_BUFFER_BYTES = 64 << 20  # the buffer grows for samples up to this size; larger ones bypass it
#: our temporaries: a dot, one of our names (or a unit part), an optional run token (older builds
#: used none, or the pid for unit parts), ``.tmp``; ``draft.tmp`` or ``.hidden.tmp`` never match
_TEMPORARY_FILE = re.compile(
    r"\.(?:\d{6}\.tar|\d{6}\.stats\.json|index\.json|\.build\.json|unit\d{12}-\d{4}(?:-\d+)?\.tar)(?:\.[0-9a-f]{16})?\.tmp"
)
_FIXED_NAMES = ("index.json", ".build.json")


def is_our_name(name: str) -> bool:
    """Whether ``name`` is one the builder writes: ``NNNNNN.tar``, ``NNNNNN.stats.json``,
    ``index.json``, ``.build.json`` or one of its temporaries."""
    return name in _FIXED_NAMES or SHARD_FILE.fullmatch(name) is not None or _TEMPORARY_FILE.fullmatch(name) is not None


def scan_out_dir(out_dir: Path) -> tuple[dict[str, os.DirEntry], list[str]]:
    """Sort the entries of ``out_dir`` into ours (regular files with our names, by name) and
    foreign ones (anything else, including a symlink or folder that carries one of our names)."""
    ours: dict[str, os.DirEntry] = {}
    foreign: list[str] = []
    with os.scandir(out_dir) as entries:
        for entry in entries:
            if is_our_name(entry.name) and entry.is_file(follow_symlinks=False):
                ours[entry.name] = entry
            else:
                foreign.append(entry.name)
    foreign.sort()
    return ours, foreign


def input_fingerprint(identities: Sequence[Any], after: Any) -> str:
    """The sha256 of a shard's input identities and of the input its part was cut before."""
    text = json.dumps([list(identities), after], sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


Event = Callable[[str, Mapping[str, Any]], None]


class UnitWriter:
    """Writes the samples of one work unit into temporary part files, rolled by bytes.

    A unit covers ``max_count`` consecutive input positions (fewer for the last one, or for a
    unit resumed at a shard boundary); a part is opened at the unit's first position and a new
    one before a sample that would push the tar past ``max_bytes``. Parts are published (renamed
    to ``NNNNNN.tar`` with their sidecar) by the driver, in input order.

    Tar bytes are copied into one reused buffer of ``_BUFFER_BYTES`` (headers, payloads and
    padding side by side, as ``tar`` does with its record buffer); a full buffer is hashed and
    written in one call each. The buffer is small enough to stay in cache between the copy in,
    the hash and the write (1 MiB: measured best among 256 KiB to 4 MiB), and grows for samples
    that do not fit. Everything stays on the calling thread: with a fresh ``bytes`` per
    flush or a helper thread, allocation page faults and GIL hand-offs cost more than the
    overlap gains on a busy machine (measured in ``docs/pipelines.md``), and parallelism comes
    from worker processes instead. Samples larger than the buffer are written straight through.

    Args:
        out_dir: the output folder (temporary parts live there, hidden).
        start: the unit's first input position (names its temporary files).
        max_bytes: tar size limit (a single larger sample gets a part of its own).
        on_event: called with ``("sample"|"skip", info)`` as samples are written.
        run_id: the build's random token, part of every temporary name (:func:`new_run_id`).

    The caller gives every input position's identity, in order, with :meth:`note`; each part
    records those of its range (see the module docstring).
    """

    def __init__(self, out_dir: Path, *, start: int, max_bytes: int, on_event: Event | None = None,
                 run_id: str | None = None) -> None:
        self.out_dir, self.unit, self.max_bytes = Path(out_dir), start, max_bytes
        self.on_event = on_event
        self.run_id = run_id or new_run_id()
        self.parts: list[dict[str, Any]] = []
        self._inputs: list[str] = []
        self.note = self._inputs.append  # bound once: called per sample
        self._fd: int | None = None
        self._buffer = bytearray(_BUFFER_BYTES)
        self._view = memoryview(self._buffer)
        self._used = 0
        self._open(start)

    def _open(self, position: int) -> None:
        # the run token keeps a worker orphaned by a killed build from ever sharing a file with a
        # rerun, and the exclusive open refuses a file or symlink planted at the name
        self._temporary = self.out_dir / f".unit{self.unit:012d}-{len(self.parts):04d}.tar.{self.run_id}.tmp"
        self._fd = create_temporary(self._temporary)
        self._hash = hashlib.sha256()
        self._used = 0
        self._part = {"start": position, "count": 0, "bytes": 0, "skipped": [], "suffixes": set(),
                      "first_key": None, "last_key": None, "temporary": str(self._temporary)}

    def _emit(self, data: Any) -> None:
        """Hash and write ``data`` (bytes or a memoryview) in full."""
        self._hash.update(data)
        write_all(self._fd, data, self._temporary)  # a full disk names the file

    def _flush(self) -> None:
        if self._used:
            self._emit(self._view[:self._used])
            self._used = 0

    def _append(self, blocks: Sequence[bytes], size: int) -> None:
        used = self._used
        if used + size > len(self._buffer):
            self._flush()
            used = 0
            if size > len(self._buffer):
                for block in blocks:
                    self._emit(block)
                return
        view = self._view
        for block in blocks:
            end = used + len(block)
            view[used:end] = block
            used = end
        self._used = used

    def _close(self, end: int) -> None:
        self._append((END_OF_ARCHIVE,), len(END_OF_ARCHIVE))
        self._part["bytes"] += len(END_OF_ARCHIVE)
        self._flush()
        os.close(self._fd)  # type: ignore[arg-type]
        self._fd = None
        part = self._part
        part.update(end=end, read=end - part["start"], sha256=self._hash.hexdigest(), suffixes=sorted(part["suffixes"]))
        if part["read"] != part["count"] + len(part["skipped"]):
            raise AssertionError(f"part at {part['start']}: read {part['read']} != written + skipped")
        self.parts.append(part)

    def add(self, position: int, key: str, blocks: Sequence[bytes], suffixes: Sequence[str]) -> None:
        """Append one sample (its tar member blocks) read at input ``position``."""
        size = sum(map(len, blocks))
        self._roll_before(position, size)
        self._append(blocks, size)
        self._counted(position, key, size, suffixes)

    def reserve(self, size: int) -> memoryview | None:
        """Room for a sample of ``size`` tar bytes in the buffer, to fill in place (headers,
        payloads read straight from files, padding) and then :meth:`commit`; ``None`` when it
        can never fit (use :meth:`add`). Nothing is recorded until the commit, so a caller may
        give up on the reservation."""
        if self._used + size > len(self._buffer):
            self._flush()  # these bytes belong to the open part whatever the next sample does
            if size + len(END_OF_ARCHIVE) > len(self._buffer):  # a large sample: grow, within reason
                if size + len(END_OF_ARCHIVE) > _MAX_BUFFER_BYTES:
                    return None
                self._buffer = bytearray(min(_MAX_BUFFER_BYTES, max(2 * len(self._buffer), size + len(END_OF_ARCHIVE))))
                self._view = memoryview(self._buffer)
        return self._view[self._used:self._used + size]

    def commit(self, position: int, key: str, size: int, suffixes: Sequence[str]) -> None:
        """Accept the sample filled into the last :meth:`reserve` (same bytes as :meth:`add`)."""
        if self._must_roll(size):  # rare: once per part; move the sample to the next part
            sample = bytes(self._view[self._used:self._used + size])
            self._roll_before(position, size)
            self._append((sample,), size)
        else:
            self._used += size
        self._counted(position, key, size, suffixes)

    def _must_roll(self, size: int) -> bool:
        part = self._part
        return part["count"] > 0 and part["bytes"] + size + len(END_OF_ARCHIVE) > self.max_bytes

    def _roll_before(self, position: int, size: int) -> None:
        if self._must_roll(size):
            self._close(position)
            self._open(position)

    def _counted(self, position: int, key: str, size: int, suffixes: Sequence[str]) -> None:
        part = self._part
        part["bytes"] += size
        part["count"] += 1
        part["suffixes"].update(suffixes)
        part["first_key"] = part["first_key"] or key
        part["last_key"] = key
        if self.on_event is not None:
            self.on_event("sample", {"position": position, "key": key, "in_part": part["count"]})

    def skip(self, position: int, key: str, reason: str) -> None:
        """Record a skipped sample in the open part's sidecar."""
        self._part["skipped"].append({"key": key, "reason": reason})
        if self.on_event is not None:
            self.on_event("skip", {"position": position, "key": key, "reason": reason})

    def finish(self, end: int) -> list[dict[str, Any]]:
        """Close the last part (a unit whose samples were all skipped gives one empty part) and
        give each part the identities of its inputs (and of the input it was cut before)."""
        if self._fd is not None:
            self._close(end)
        inputs = self._inputs
        if len(inputs) != end - self.unit:
            raise AssertionError(f"unit at {self.unit}: {len(inputs)} input identities for {end - self.unit} positions")
        for part in self.parts:
            first, stop = part["start"] - self.unit, part["end"] - self.unit
            part["inputs"] = [identity.partition("\0")[0] for identity in inputs[first:stop]]  # the keys
            part["fingerprint"] = input_fingerprint(inputs[first:stop], inputs[stop] if stop < len(inputs) else None)
        return self.parts

    def abort(self) -> None:
        """Remove this unit's temporary files (after an error)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        for path in [self._temporary] + [Path(p["temporary"]) for p in self.parts]:
            path.unlink(missing_ok=True)


def publish_part(out_dir: Path, part: Mapping[str, Any], number: int, on_event: Event | None = None,
                 journal: Callable[[Mapping[str, Any]], None] | None = None) -> dict[str, Any]:
    """Rename a finished part to ``NNNNNN.tar``, call ``journal(part)`` (the build records the
    part's fingerprint), then write its ``NNNNNN.stats.json`` sidecar, which completes the shard."""
    name = shard_name(number)
    place(part["temporary"], Path(out_dir) / name)
    if journal is not None:
        journal(part)
    if on_event is not None:
        on_event("tar", {"shard": name})
    stats = {k: v for k, v in part.items() if k not in ("temporary", "fingerprint")}
    stats["shard"] = name
    write_json(Path(out_dir) / stats_name(number), stats)
    if on_event is not None:
        on_event("shard", stats)
    return stats


def complete_shards(out_dir: Path, still_valid: Callable[[int, Mapping[str, Any]], bool] | None = None, *,
                    remove: bool = True) -> list[dict[str, Any]]:
    """The stats of shards ``0, 1, ...`` that are complete, stopping at the first that is not.

    A shard is complete when its tar and sidecar are regular files that agree on the size, its
    range starts where the previous one ended, and ``still_valid(number, stats)`` (when given:
    the recorded inputs still match) holds. With ``remove``, everything of ours after that point
    (later shards, sidecars, temporary files) is removed (:func:`remove_stale`), since a resumed
    build rewrites it.
    """
    out_dir = Path(out_dir)
    done: list[dict[str, Any]] = []
    number = 0
    position = 0
    while True:
        tar, stats = out_dir / shard_name(number), out_dir / stats_name(number)
        if not (is_regular(tar) and is_regular(stats)):
            break
        try:
            record = read_json(stats)
        except (OSError, ValueError):
            break
        if not isinstance(record, dict) or record.get("bytes") != os.lstat(tar).st_size or record.get("start") != position:
            break
        if still_valid is not None and not still_valid(number, record):
            break
        done.append(record)
        position = record["end"]
        number += 1
    if remove:
        remove_stale(out_dir, number)
    return done


def remove_stale(out_dir: Path, first: int) -> None:
    """Remove our shards and sidecars numbered ``first`` and up, and our temporary files: regular
    files with our names only (a symlink is never followed, a foreign file never touched)."""
    ours, _ = scan_out_dir(Path(out_dir))
    for name, entry in ours.items():
        shard = SHARD_FILE.fullmatch(name)
        if (shard is not None and int(shard.group(1)) >= first) or _TEMPORARY_FILE.fullmatch(name):
            os.unlink(entry.path)

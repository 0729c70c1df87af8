"""The rolling shard writer, its sidecars, the ``index.json`` manifest and resume scanning.

Layout of a shard set::

    out/000000.tar          WebDataset tar (written as .000000.tar.tmp, renamed when whole)
    out/000000.stats.json   count, bytes, sha256, input range, skipped keys with reasons
    out/index.json          every shard, the schema, the source, the resolved build config
    out/.build.json         the build's source and config (lets a rerun resume safely)

The unit of work is a run of ``max_count`` consecutive input positions, aligned at multiples
of ``max_count`` (img2dataset's and style.md's "the shard is the unit of work"): one worker
writes it, rolling to a new part when ``max_bytes`` would be exceeded; the driver only renames
finished parts to ``NNNNNN.tar`` in input order and writes their sidecars. Shard boundaries
therefore depend only on the input (unit boundaries and sample sizes), never on scheduling.

A shard is *complete* when its tar and its stats sidecar both exist and agree on the size (the
sidecar is written last, as img2dataset's ``_stats.json`` and lhotse's ``.completed`` markers
are). A rerun keeps the longest run of complete shards and restarts at the input position after
the last one; that position is always a part boundary, where rolling starts afresh, so the
result is byte-identical to an uninterrupted build.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from loaders import get_codec
from pipelines.tario import END_OF_ARCHIVE

__all__ = [
    "INDEX_FORMAT",
    "UnitWriter",
    "publish_part",
    "complete_shards",
    "read_json",
    "schema_of",
    "shard_name",
    "write_json",
]

INDEX_FORMAT = "datafactory-shards/1"
_SHARD_DIGITS = 6
_BUFFER_BYTES = 1 << 20  # tar bytes gathered before one hash update and one write (about an L2 cache)
_MAX_BUFFER_BYTES = 64 << 20  # the buffer grows for samples up to this size; larger ones bypass it


def shard_name(number: int) -> str:
    """``000042.tar`` for shard 42."""
    return f"{number:0{_SHARD_DIGITS}d}.tar"


def stats_name(number: int) -> str:
    return f"{number:0{_SHARD_DIGITS}d}.stats.json"


def write_json(path: Path, value: Any) -> None:
    """Write JSON deterministically (sorted keys) under a temporary name, then rename."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(value, sort_keys=True, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def schema_of(suffixes: Sequence[str]) -> dict[str, Any]:
    """The schema of a shard set: member suffixes and the decoded field each maps to."""
    return {"suffixes": sorted(suffixes), "fields": {s: get_codec(s).field for s in sorted(suffixes)}}


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
    """

    def __init__(self, out_dir: Path, *, start: int, max_bytes: int, on_event: Event | None = None) -> None:
        self.out_dir, self.unit, self.max_bytes = Path(out_dir), start, max_bytes
        self.on_event = on_event
        self.parts: list[dict[str, Any]] = []
        self._fd: int | None = None
        self._buffer = bytearray(_BUFFER_BYTES)
        self._view = memoryview(self._buffer)
        self._used = 0
        self._open(start)

    def _open(self, position: int) -> None:
        # the pid keeps a worker orphaned by a killed build from ever sharing a file with a rerun
        self._temporary = self.out_dir / f".unit{self.unit:012d}-{len(self.parts):04d}-{os.getpid()}.tar.tmp"
        self._fd = os.open(self._temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o644)
        self._hash = hashlib.sha256()
        self._used = 0
        self._part = {"start": position, "count": 0, "bytes": 0, "skipped": [], "suffixes": set(),
                      "first_key": None, "last_key": None, "temporary": str(self._temporary)}

    def _emit(self, data: Any) -> None:
        """Hash and write ``data`` (bytes or a memoryview) in full."""
        self._hash.update(data)
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]  # type: ignore[arg-type]

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
        """Close the last part (a unit whose samples were all skipped gives one empty part)."""
        if self._fd is not None:
            self._close(end)
        return self.parts

    def abort(self) -> None:
        """Remove this unit's temporary files (after an error)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        for path in [self._temporary] + [Path(p["temporary"]) for p in self.parts]:
            path.unlink(missing_ok=True)


def publish_part(out_dir: Path, part: Mapping[str, Any], number: int, on_event: Event | None = None) -> dict[str, Any]:
    """Rename a finished part to ``NNNNNN.tar``, then write its ``NNNNNN.stats.json`` sidecar."""
    name = shard_name(number)
    os.replace(part["temporary"], Path(out_dir) / name)
    if on_event is not None:
        on_event("tar", {"shard": name})
    stats = {k: v for k, v in part.items() if k != "temporary"}
    stats["shard"] = name
    write_json(Path(out_dir) / stats_name(number), stats)
    if on_event is not None:
        on_event("shard", stats)
    return stats


def complete_shards(out_dir: Path) -> list[dict[str, Any]]:
    """The stats of shards ``0, 1, ...`` that are complete, stopping at the first that is not.

    Everything after that point (later shards, sidecars, temporary files) is removed, since a
    resumed build rewrites it.
    """
    out_dir = Path(out_dir)
    done: list[dict[str, Any]] = []
    number = 0
    position = 0
    while True:
        tar, stats = out_dir / shard_name(number), out_dir / stats_name(number)
        if not (tar.is_file() and stats.is_file()):
            break
        try:
            record = read_json(stats)
        except (OSError, ValueError):
            break
        if record.get("bytes") != tar.stat().st_size or record.get("start") != position:
            break
        done.append(record)
        position = record["end"]
        number += 1
    for entry in out_dir.iterdir():
        name = entry.name
        stem = name.lstrip(".").split(".", 1)[0]
        if name.endswith(".tmp") or (stem.isdigit() and len(stem) == _SHARD_DIGITS and int(stem) >= number):
            entry.unlink()
    return done

"""``build_shards``: resumable, deterministic WebDataset shard builds, locally or on Ray.

The input is cut into units of ``max_count`` consecutive positions (aligned at multiples of
``max_count``). A worker loads, checks and writes a whole unit as one or more temporary tar parts
(:mod:`pipelines.unit`; a new part when ``max_bytes`` would be exceeded); an engine
(:mod:`pipelines.engines`: local threads or processes, or Ray tasks) schedules the units, and
this driver publishes finished parts as ``NNNNNN.tar`` *in input order*. Shard boundaries
therefore depend only on the input, never on scheduling: any worker count and either engine give
byte-identical shards, and a resumed build matches an uninterrupted one (see
:mod:`pipelines.writer`). Workers write and hash in parallel; the driver only renames.

The output folder holds only what the build writes (see :mod:`pipelines.writer` for the names).
A fresh build needs an empty folder; a rerun resumes a build of the same source and config, and
refuses a folder holding anything else. ``overwrite=True`` removes the shard set's own files
(regular files with its names) and builds next to foreign entries, which it never removes or
replaces. A rerun, finished or not, keeps complete shards only while the inputs they recorded
are unchanged (key, and for files the path, size and mtime): the first shard an added, removed
or modified input affects is rebuilt, with everything after it.

The arguments are checked into two frozen dataclasses (:mod:`pipelines.build_config`):
:class:`BuildConfig` (what decides the bytes, recorded in ``index.json``) and
:class:`EngineConfig` (how the build runs).
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loaders import Adapter, SampleError
from pipelines.build_config import BuildConfig, EngineConfig
from pipelines.engines import ENGINES, RAY_INSTALL_HINT, local_results, ray_results, require_engine, use_threads
from pipelines.filecopy import file_members_for
from pipelines.manifest import INDEX_FORMAT, new_run_id, read_json, schema_of, write_json
from pipelines.sources import Reencode, SourceSpec, describe_source, identifies_files, input_identifier, sample_identity
from pipelines.unit import build_unit, units
from pipelines.writer import complete_shards, input_fingerprint, is_our_name, publish_part, remove_stale, scan_out_dir

# ENGINES and RAY_INSTALL_HINT live in pipelines.engines, build_unit in pipelines.unit
__all__ = ["ENGINES", "RAY_INSTALL_HINT", "BuildConfig", "BuildReport", "EngineConfig", "build_shards", "build_unit"]

_BUILD_FILE = ".build.json"
_LISTED = 5  # foreign entries named in an error message


@dataclass(frozen=True)
class BuildReport:
    """What a build did. ``read == written + skipped`` always holds.

    Attributes:
        out_dir: the shard folder. index: the ``index.json`` content.
        read, written, skipped: sample counts over the whole set.
        resumed_shards: complete shards kept from an earlier, interrupted run.
        seconds: wall time of this call.
    """

    out_dir: Path
    index: dict[str, Any]
    read: int
    written: int
    skipped: int
    resumed_shards: int
    seconds: float


def _resolve_source(source: Any, root: Any, split: str | None, options: Mapping[str, Any] | None) -> tuple[Any, Adapter | None]:
    if isinstance(source, str):
        source = SourceSpec(source, None if root is None else os.fspath(root), split, dict(options or {}))
    elif root is not None or split is not None or options:
        raise ValueError("root=, split= and options= only apply when source is a registered dataset name")
    if isinstance(source, SourceSpec):
        return source, source.open()
    if isinstance(source, Adapter):
        return source, source
    if isinstance(source, (bytes, Mapping)) or not isinstance(source, Iterable):
        raise TypeError(f"source must be a dataset name, a SourceSpec, an Adapter or an iterable of samples, got {type(source).__name__}")
    return source, None


# -- the build ----------------------------------------------------------------------------------


def _listed(names: list[str]) -> str:
    shown = ", ".join(repr(name) for name in names[:_LISTED])
    return shown + (f" and {len(names) - _LISTED} more" if len(names) > _LISTED else "")


def _open_out_dir(out: Path) -> None:
    """Create ``out`` (a symlink the user names as ``out_dir`` is followed; links inside are not)."""
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"out_dir {str(out)!r} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)


def _read_build_record(path: Path) -> dict[str, Any]:
    try:
        record = read_json(path)
    except ValueError as error:
        raise ValueError(f"{str(path)!r} is not a build record ({error}); pass overwrite=True or choose another out_dir") from None
    if not isinstance(record, dict):
        raise ValueError(f"{str(path)!r} is not a build record (a JSON object); pass overwrite=True or choose another out_dir")
    return record


def _same_build(previous: Mapping[str, Any], record: Mapping[str, Any]) -> bool:
    # the inputs are compared shard by shard (fingerprints), not here
    ignored = ("inputs", "shards")
    return {k: v for k, v in previous.items() if k not in ignored} == {k: v for k, v in record.items() if k not in ignored}


def _prepare_out_dir(out: Path, record: dict[str, Any], overwrite: bool) -> tuple[bool, list[Any]]:
    """Check (and with ``overwrite`` clear) ``out``.

    Returns:
        Whether it holds a finished build with this source and config (its inputs are checked by
        the caller), and the shard fingerprints its ``.build.json`` records.

    Raises:
        NotADirectoryError: ``out`` is a file.
        ValueError: ``out`` holds entries the build did not write (without ``overwrite``), a
            symlink or folder carrying one of the build's names, or another build.
    """
    _open_out_dir(out)
    ours, foreign = scan_out_dir(out)
    blocking = [name for name in foreign if is_our_name(name)]
    if blocking:
        raise ValueError(f"out_dir {str(out)!r}: {_listed(blocking)} carry shard-set names but are not regular files "
                         "(symlinks or folders?); the build never writes through or removes them: move them away")
    if overwrite:  # only what a build writes; anything else in the folder stays
        for entry in ours.values():
            os.unlink(entry.path)  # a regular file (scan_out_dir): the name goes, nothing is followed
        return False, []
    if foreign:
        raise ValueError(f"out_dir {str(out)!r} holds {len(foreign)} {'entry' if len(foreign) == 1 else 'entries'} "
                         f"this build did not write: {_listed(foreign)}; "
                         "build into an empty folder, move them away, or pass overwrite=True (--overwrite) to "
                         "build next to them (they are never removed)")
    if _BUILD_FILE in ours:
        previous = _read_build_record(out / _BUILD_FILE)
        if not _same_build(previous, record):
            raise ValueError(
                f"out_dir {str(out)!r} holds a build with another source or config ({previous.get('config')}); "
                "pass overwrite=True (--overwrite) or choose another out_dir"
            )
        fingerprints = previous.get("shards")
        return "index.json" in ours, fingerprints if isinstance(fingerprints, list) else []
    if ours:
        raise ValueError(f"out_dir {str(out)!r} holds shards that this build did not write ({_listed(sorted(ours))}); "
                         "pass overwrite=True or use another folder")
    return False, []


# -- the inputs as they are now, to compare with what complete shards recorded -------------------


class _Inputs:
    """The current identity of each input position (``None`` past the end).

    For an iterable source the samples are read once, in order: those of the shard being
    checked are kept, so that the build can start again from that shard (:meth:`rest`).
    """

    def __init__(self, adapter: Adapter | None, samples: Iterable[Any] | None) -> None:
        self._identify = None if adapter is None else input_identifier(adapter)
        self._total = None if adapter is None else len(adapter)
        self._iterator = None if samples is None else iter(samples)
        self._base = 0  # position of self._kept[0]
        self._kept: list[Any] = []

    def identity(self, position: int) -> str | None:
        if self._identify is not None:
            return self._identify(position) if position < self._total else None  # type: ignore[operator]
        while self._base + len(self._kept) <= position:
            sample = next(self._iterator, _END)  # type: ignore[arg-type]
            if sample is _END:
                return None
            self._kept.append(sample)
        return sample_identity(self._kept[position - self._base], position)

    def forget_before(self, position: int) -> None:
        """Drop kept samples before ``position`` (the start of the shard about to be checked)."""
        drop = min(position - self._base, len(self._kept))
        if drop > 0:
            del self._kept[:drop]
            self._base += drop

    def rest(self, start: int) -> Iterator[Any] | None:
        """In-line samples from ``start`` on (``None`` for an adapter)."""
        if self._iterator is None:
            return None
        self.forget_before(start)
        if self._base < start:  # nothing was kept there: skip unread samples
            return itertools.islice(self._iterator, start - self._base - len(self._kept), None)
        return itertools.chain(self._kept[start - self._base:], self._iterator)


_END = object()


def _still_valid(number: int, stats: Mapping[str, Any], inputs: _Inputs, max_count: int, fingerprints: list[Any]) -> bool:
    """Whether complete shard ``number`` still matches the input: the fingerprint ``.build.json``
    recorded for it, over its range and the input it was cut before (see :mod:`pipelines.writer`)."""
    start, end = stats.get("start"), stats.get("end")
    if number >= len(fingerprints) or not (isinstance(start, int) and isinstance(end, int) and start <= end):
        return False  # an older build's record, or a damaged one: rebuilt
    inputs.forget_before(start)
    identities = [inputs.identity(position) for position in range(start, end)]
    if None in identities:
        return False  # inputs were removed from the end
    after = None if end % max_count == 0 else inputs.identity(end)  # a unit boundary: nothing was cut
    return input_fingerprint(identities, after) == fingerprints[number]


def _finished_index(out: Path, kept: list[dict[str, Any]], inputs: _Inputs) -> dict[str, Any] | None:
    """The stored index when the kept shards are exactly the finished set and no input follows."""
    try:
        index = read_json(out / "index.json")
        listed = [shard["sha256"] for shard in index["shards"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    end = kept[-1]["end"] if kept else 0
    if listed != [shard.get("sha256") for shard in kept] or inputs.identity(end) is not None:
        return None
    return index


def _remove_run_temporaries(out: Path, run_id: str) -> None:
    ours, _ = scan_out_dir(out)
    for name, entry in ours.items():
        if name.endswith(f".{run_id}.tmp"):
            os.unlink(entry.path)


def build_shards(
    source: Any,
    out_dir: str | os.PathLike,
    *,
    root: str | os.PathLike | None = None,
    split: str | None = None,
    options: Mapping[str, Any] | None = None,
    max_count: int = 10_000,
    max_bytes: int = 1 << 30,
    workers: int = 1,
    engine: str = "local",
    reencode: Reencode | Mapping[str, Any] | str | None = None,
    on_error: str = "raise",
    check: str = "structure",
    suffixes: Mapping[str, str] | None = None,
    ray_address: str | None = None,
    overwrite: bool = False,
    progress: bool = False,
    on_event: Callable[[str, Mapping[str, Any]], None] | None = None,
) -> BuildReport:
    """Build (or resume) a WebDataset shard set.

    Args:
        source: a registered dataset name (with ``root``/``split``/``options``), a
            :class:`SourceSpec`, an :class:`loaders.Adapter`, or any iterable of samples
            (encoded ``{"__key__", suffix: bytes}`` or decoded schema fields).
        out_dir: the output folder (created). A rerun with the same source and config resumes.
        max_count, max_bytes: a shard covers at most ``max_count`` input positions (samples
            written + skipped; shards start at multiples of ``max_count``) and starts anew
            before a sample that would push it past ``max_bytes``.
        workers: local workers (``engine="local"``: forked processes, or threads for small jobs
            of direct file copies, see :func:`pipelines.engines.use_threads`) or the minimum
            in-flight Ray tasks / 2.
        engine: ``"local"`` or ``"ray"``.
        reencode: ``None`` copies original bytes; a :class:`Reencode` (or dict / format name)
            re-encodes images.
        on_error: ``"raise"`` stops at the first bad sample, naming it and its file; ``"skip"``
            records it with the reason in the shard's stats sidecar.
        check: per-sample check, one of :data:`pipelines.sources.CHECKS`.
        suffixes: field -> suffix overrides for decoded samples (e.g. ``{"image": "jpg"}``).
        ray_address: passed to ``ray.init`` when Ray is not initialised (``"auto"`` on a cluster).
        overwrite: remove an existing shard set in ``out_dir`` first (only its own files: entries
            the build did not write are kept, and without ``overwrite`` they are refused).
        progress: show a tqdm bar with samples/s.
        on_event: callback ``(kind, info)`` for ``"sample"``, ``"skip"``, ``"tar"``, ``"shard"``.

    Returns:
        A :class:`BuildReport`.

    Raises:
        SampleError: a bad sample with ``on_error="raise"``.
        RuntimeError: ``engine="ray"`` without Ray installed (the message says how to install it).
        ValueError / TypeError: bad arguments, or ``out_dir`` holds a different build or
            entries the build did not write.
        NotADirectoryError: ``out_dir`` is a file.
        OSError: writing failed (a full disk...); the message names the file.
    """
    began = time.perf_counter()
    settings = BuildConfig(max_count, max_bytes, reencode, on_error, check, suffixes)
    run = EngineConfig(engine, workers, ray_address)
    require_engine(engine)
    source, adapter = _resolve_source(source, root, split, options)
    config = settings.record()
    described = describe_source(source)
    out = Path(out_dir)
    record = {"format": INDEX_FORMAT, "source": described, "config": config,
              "inputs": "key, path, size, mtime_ns" if identifies_files(adapter) else "key"}
    finished, fingerprints = _prepare_out_dir(out, record, overwrite)
    inputs = _Inputs(adapter, None if adapter is not None else source)
    kept = complete_shards(out, lambda number, stats: _still_valid(number, stats, inputs, max_count, fingerprints),
                           remove=False)
    start = kept[-1]["end"] if kept else 0
    if finished:
        index = _finished_index(out, kept, inputs)
        if index is not None:
            return BuildReport(out, index, index["read"], index["count"], index["skipped"], len(index["shards"]),
                               time.perf_counter() - began)
    record["shards"] = fingerprints[:len(kept)]
    write_json(out / _BUILD_FILE, record)
    if finished:
        os.unlink(out / "index.json")  # a regular file of ours (_prepare_out_dir)
    remove_stale(out, len(kept))

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(adapter) if adapter is not None else None, initial=start, unit="sample",
                   desc=f"shards -> {out}", dynamic_ncols=True)

    def event(kind: str, info: Mapping[str, Any]) -> None:
        if bar is not None and kind in ("sample", "skip"):
            bar.update(1)
        if on_event is not None:
            on_event(kind, info)

    run_id = new_run_id()
    args = (str(out), max_bytes, settings.job, on_error, run_id)
    todo = units(adapter, inputs.rest(start), start, max_count)
    if engine == "local":
        direct = settings.reencode is None and file_members_for(adapter, check) is not None
        threads = use_threads(direct, len(adapter) - start if adapter is not None else 0, workers)
        results = local_results(adapter, todo, workers=workers, args=args, on_event=event if workers == 1 else None,
                                 threads=threads)
    else:
        results = ray_results(adapter, todo, workers=workers, args=args, address=ray_address)
    shards = list(kept)

    def journal(part: Mapping[str, Any]) -> None:
        record["shards"].append(part["fingerprint"])
        write_json(out / _BUILD_FILE, record)

    try:
        for unit, result in results:
            if result["error"] is not None:
                raise SampleError(result["error"])
            for part in result["parts"]:
                shards.append(publish_part(out, part, len(shards), on_event, journal))
            if bar is not None and not (engine == "local" and workers == 1):
                bar.update(unit.stop - unit.start)
    finally:
        results.close()  # stops the pool (running units finish) before temporary files go
        if bar is not None:
            bar.close()
        _remove_run_temporaries(out, run_id)
    skipped = [s for shard in shards for s in shard["skipped"]]
    written = sum(s["count"] for s in shards)
    index = {
        "format": INDEX_FORMAT,
        "shards": [{k: s[k] for k in ("shard", "count", "bytes", "sha256", "start", "end")} for s in shards],
        "count": written,
        "read": written + len(skipped),
        "skipped": len(skipped),
        "schema": schema_of(sorted({x for s in shards for x in s["suffixes"]})),
        "source": described,
        "config": config,
        "run": run.record(),
    }
    write_json(out / "index.json", index)
    return BuildReport(out, index, index["read"], written, len(skipped), len(kept), time.perf_counter() - began)

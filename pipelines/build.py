"""``build_shards``: resumable, deterministic WebDataset shard builds, locally or on Ray.

The input is cut into units of ``max_count`` consecutive positions (aligned at multiples of
``max_count``). A worker (local thread or process, or Ray task) loads, checks and writes a whole unit as
one or more temporary tar parts (:func:`build_unit`; a new part when ``max_bytes`` would be
exceeded); the driver publishes finished parts as ``NNNNNN.tar`` *in input order*. Shard
boundaries therefore depend only on the input, never on scheduling: any worker count and either
engine give byte-identical shards, and a resumed build matches an uninterrupted one (see
:mod:`pipelines.writer`). Workers write and hash in parallel; the driver only renames.

Local workers are threads when every sample is a whole-file copy (:mod:`pipelines.filecopy`:
the work is ``open``/``readv``/``sha256``/``write``, all of which release the GIL, and a thread
starts in microseconds where a forked process costs ~10 ms to start and ~10 ms to exit in a
process that has imported torch), and forked processes otherwise (re-encoding, decoded or
in-line samples, other adapters), where Python work dominates.

Ray (https://docs.ray.io) is the distributed engine; it is an optional extra
(``pip install "datafactory-toolkit[ray]"``) and imported only when ``engine="ray"``.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from loaders import Adapter, SampleError, check_on_error
from loaders.schema import KEY
from pipelines.filecopy import copy_sample, file_members_for
from pipelines.sources import CHECKS, Chunk, Reencode, SourceSpec, describe_source, process_chunk
from pipelines.writer import INDEX_FORMAT, UnitWriter, complete_shards, publish_part, read_json, schema_of, write_json

__all__ = ["ENGINES", "RAY_INSTALL_HINT", "BuildReport", "build_shards"]

ENGINES = ("local", "ray")
RAY_INSTALL_HINT = 'engine="ray" needs Ray: pip install "datafactory-toolkit[ray]" (or pip install "ray[default]")'
_BUILD_FILE = ".build.json"
_OUR_FILE = re.compile(r"\d{6}\.(tar|stats\.json)|\..*\.tmp")
_BATCH = 64  # samples loaded at a time inside a unit (bounds memory, never changes the output)


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


def _positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


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


# -- units and engines: each engine yields (unit, result) in input order -----------------------


def _units(adapter: Adapter | None, samples: Iterable[Any] | None, start: int, size: int) -> Iterator[Chunk]:
    """Units of ``size`` input positions aligned at multiples of ``size`` (the first one may
    start later, at a resumed shard boundary)."""
    if adapter is not None:
        total = len(adapter)
        first = start
        while first < total:
            stop = min((first // size + 1) * size, total)
            yield Chunk(first, stop)
            first = stop
        return
    iterator = itertools.islice(iter(samples), start, None)  # type: ignore[arg-type]
    first = start
    while True:
        block = list(itertools.islice(iterator, (first // size + 1) * size - first))
        if not block:
            return
        yield Chunk(first, first + len(block), block)
        first += len(block)


def build_unit(adapter: Adapter | None, unit: Chunk, out_dir: str, max_bytes: int, job: tuple, on_error: str,
               on_event: Callable[[str, Mapping[str, Any]], None] | None = None) -> dict[str, Any]:
    """Write one unit's parts (temporary files in ``out_dir``); runs in a worker or a Ray task.

    Returns ``{"parts": [...], "error": None}``, or ``{"parts": [], "error": message}`` when a
    bad sample meets ``on_error="raise"`` (its temporary files are removed).
    """
    writer = UnitWriter(Path(out_dir), start=unit.start, max_bytes=max_bytes, on_event=on_event)
    check, spec = job[0], job[1]
    members = file_members_for(adapter, check) if unit.samples is None and spec is None else None
    records = adapter.index if members is not None else ()  # type: ignore[union-attr]
    try:
        position = unit.start
        while position < unit.stop:
            if members is not None:  # copy whole files straight into the tar buffer
                record = records[position]
                chosen = members(record)
                if chosen is not None and copy_sample(writer, position, record[KEY], chosen, check):
                    position += 1
                    continue
                stop = position + 1  # this one sample through the generic path
            else:
                stop = min(position + _BATCH, unit.stop)
            rows = None if unit.samples is None else unit.samples[position - unit.start:stop - unit.start]
            for offset, (status, key, payload) in enumerate(process_chunk(adapter, Chunk(position, stop, rows), *job)):
                if status == "ok":
                    writer.add(position + offset, key, *payload)
                elif on_error == "raise":
                    writer.abort()
                    return {"parts": [], "error": payload if payload.startswith("key ") else f"key {key!r}: {payload}"}
                else:
                    writer.skip(position + offset, key, payload)
            position = stop
        return {"parts": writer.finish(unit.stop), "error": None}
    except BaseException:
        writer.abort()
        raise


_WORKER_SOURCE: dict[str, Adapter | None] = {}


def _exit_with_parent(parent: int) -> None:
    # A SIGKILLed driver cannot stop its pool: each worker leaves on its own when orphaned.
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os._exit(1)


def _init_worker(adapter: Adapter | None, parent: int) -> None:
    _WORKER_SOURCE["adapter"] = adapter
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()


def _worker_unit(unit: Chunk, out_dir: str, max_bytes: int, job: tuple, on_error: str) -> dict[str, Any]:
    return build_unit(_WORKER_SOURCE.get("adapter"), unit, out_dir, max_bytes, job, on_error)


def _ordered(submit: Callable[[Chunk], Any], wait: Callable[[Any], Any], units: Iterator[Chunk], depth: int) -> Iterator[tuple[Chunk, Any]]:
    pending: deque = deque()
    for unit in units:
        pending.append((unit, submit(unit)))
        if len(pending) >= depth:
            first, handle = pending.popleft()
            yield first, wait(handle)
    while pending:
        first, handle = pending.popleft()
        yield first, wait(handle)


def _local_results(adapter, units, *, workers, args, on_event, threads) -> Iterator[tuple[Chunk, dict]]:
    if workers == 1:
        for unit in units:
            yield unit, build_unit(adapter, unit, *args, on_event=on_event)
        return
    if threads:  # direct file copy: syscalls and hashing release the GIL, threads start in microseconds
        pool: Any = ThreadPoolExecutor(workers, thread_name_prefix="shards")
        submit = lambda u: pool.submit(build_unit, adapter, u, *args)  # noqa: E731
    else:
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method),
                                   initializer=_init_worker, initargs=(adapter, os.getpid()))
        submit = lambda u: pool.submit(_worker_unit, u, *args)  # noqa: E731
    try:
        yield from _ordered(submit, lambda f: f.result(), units, workers + 1)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _ray_unit(adapter: Adapter | None, unit: Chunk, out_dir: str, max_bytes: int, job: tuple, on_error: str) -> dict:
    return build_unit(adapter, unit, out_dir, max_bytes, job, on_error)


def _ray_results(adapter, units, *, workers, args, address) -> Iterator[tuple[Chunk, dict]]:
    try:
        import ray
    except ImportError:
        raise RuntimeError(RAY_INSTALL_HINT) from None
    if not ray.is_initialized():
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
    task = ray.remote(_ray_unit)
    source_ref = ray.put(adapter)
    depth = max(workers, int(ray.cluster_resources().get("CPU", 1))) + 1
    yield from _ordered(lambda u: task.remote(source_ref, u, *args), ray.get, units, depth)


# -- the build ----------------------------------------------------------------------------------


def _prepare_out_dir(out: Path, record: dict[str, Any], overwrite: bool) -> bool:
    """Returns True when ``out`` already holds this exact, finished build."""
    out.mkdir(parents=True, exist_ok=True)
    build_file = out / _BUILD_FILE
    ours = build_file.is_file()
    if overwrite:  # only what a build writes; anything else in the folder stays
        for entry in out.iterdir():
            if entry.is_file() and (entry.name in (_BUILD_FILE, "index.json") or _OUR_FILE.fullmatch(entry.name)):
                entry.unlink()
        return False
    if ours:
        previous = read_json(build_file)
        if previous != record:
            raise ValueError(
                f"out_dir {str(out)!r} holds a build with another source or config ({previous.get('config')}); "
                "pass overwrite=True (--overwrite) or choose another out_dir"
            )
        return (out / "index.json").is_file()
    if any(out.glob("*.tar")) or (out / "index.json").exists():
        raise ValueError(f"out_dir {str(out)!r} holds shards that this build did not write; pass overwrite=True or use another folder")
    return False


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
        workers: local workers (``engine="local"``: threads for direct file copies, processes
            otherwise) or the minimum in-flight Ray tasks / 2.
        engine: ``"local"`` or ``"ray"``.
        reencode: ``None`` copies original bytes; a :class:`Reencode` (or dict / format name)
            re-encodes images.
        on_error: ``"raise"`` stops at the first bad sample, naming it and its file; ``"skip"``
            records it with the reason in the shard's stats sidecar.
        check: per-sample check, one of :data:`pipelines.sources.CHECKS`.
        suffixes: field -> suffix overrides for decoded samples (e.g. ``{"image": "jpg"}``).
        ray_address: passed to ``ray.init`` when Ray is not initialised (``"auto"`` on a cluster).
        overwrite: remove an existing shard set in ``out_dir`` first.
        progress: show a tqdm bar with samples/s.
        on_event: callback ``(kind, info)`` for ``"sample"``, ``"skip"``, ``"tar"``, ``"shard"``.

    Returns:
        A :class:`BuildReport`.

    Raises:
        SampleError: a bad sample with ``on_error="raise"``.
        RuntimeError: ``engine="ray"`` without Ray installed (the message says how to install it).
        ValueError / TypeError: bad arguments, or ``out_dir`` holds a different build.
    """
    began = time.perf_counter()
    _positive("max_count", max_count), _positive("max_bytes", max_bytes)
    _positive("workers", workers)
    check_on_error(on_error)
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if check not in CHECKS:
        raise ValueError(f"check must be one of {CHECKS}, got {check!r}")
    if engine == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise RuntimeError(RAY_INSTALL_HINT) from None
    spec = Reencode.parse(reencode)
    source, adapter = _resolve_source(source, root, split, options)
    config = {"max_count": max_count, "max_bytes": max_bytes, "reencode": None if spec is None else asdict(spec),
              "on_error": on_error, "check": check, "suffixes": dict(suffixes or {})}
    described = describe_source(source)
    out = Path(out_dir)
    record = {"format": INDEX_FORMAT, "source": described, "config": config}
    if _prepare_out_dir(out, record, overwrite):
        index = read_json(out / "index.json")
        return BuildReport(out, index, index["read"], index["count"], index["skipped"], len(index["shards"]), time.perf_counter() - began)
    write_json(out / _BUILD_FILE, record)
    (out / "index.json").unlink(missing_ok=True)
    kept = complete_shards(out)
    start = kept[-1]["end"] if kept else 0

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

    args = (str(out), max_bytes, (check, spec, dict(suffixes) if suffixes else None), on_error)
    units = _units(adapter, None if adapter is not None else source, start, max_count)
    if engine == "local":
        threads = spec is None and file_members_for(adapter, check) is not None
        results = _local_results(adapter, units, workers=workers, args=args, on_event=event if workers == 1 else None,
                                 threads=threads)
    else:
        results = _ray_results(adapter, units, workers=workers, args=args, address=ray_address)
    shards = list(kept)
    try:
        for unit, result in results:
            if result["error"] is not None:
                raise SampleError(result["error"])
            for part in result["parts"]:
                shards.append(publish_part(out, part, len(shards), on_event))
            if bar is not None and not (engine == "local" and workers == 1):
                bar.update(unit.stop - unit.start)
    finally:
        results.close()  # stops the pool (running units finish) before temporary files go
        if bar is not None:
            bar.close()
        for leftover in out.glob(".unit*.tar.tmp"):
            leftover.unlink(missing_ok=True)
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
        "run": {"engine": engine, "workers": workers, "ray_address": ray_address},
    }
    write_json(out / "index.json", index)
    return BuildReport(out, index, index["read"], written, len(skipped), len(kept), time.perf_counter() - began)

"""The unit of work of a shard build: a run of consecutive input positions, written by one worker.

The input is cut into units of ``max_count`` consecutive positions, aligned at multiples of
``max_count`` (:func:`units`; the first may start later, at a resumed shard boundary).
:func:`build_unit` loads, checks and writes one unit as one or more temporary tar parts (a new
part when ``max_bytes`` would be exceeded; :class:`pipelines.writer.UnitWriter`) and returns
their records; the driver (:mod:`pipelines.build`) publishes them in input order. It is a plain
top-level function of picklable arguments, so it runs the same on the calling thread, on a
worker thread or process and as a Ray task (:mod:`pipelines.engines`), which is what makes every
engine produce the same bytes. This is img2dataset's split of a per-shard *worker* from the
*distributor* that schedules it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from loaders import Adapter
from loaders.schema import KEY
from pipelines.filecopy import copy_sample, file_members_for
from pipelines.sources import (
    Chunk,
    input_identifier,
    members_identity,
    process_chunk,
    root_prefix,
    sample_identity,
)
from pipelines.writer import UnitWriter

__all__ = ["BATCH", "build_unit", "units"]

BATCH = 64  # samples loaded at a time inside a unit (bounds memory, never changes the output)


def units(adapter: Adapter | None, samples: Iterator[Any] | None, start: int, size: int) -> Iterator[Chunk]:
    """Units of ``size`` input positions aligned at multiples of ``size`` (the first one may
    start later, at a resumed shard boundary); ``samples`` yields in-line samples from ``start``."""
    if adapter is not None:
        total = len(adapter)
        first = start
        while first < total:
            stop = min((first // size + 1) * size, total)
            yield Chunk(first, stop)
            first = stop
        return
    iterator = samples
    first = start
    while True:
        block = list(itertools.islice(iterator, (first // size + 1) * size - first))  # type: ignore[arg-type]
        if not block:
            return
        yield Chunk(first, first + len(block), block)
        first += len(block)


def build_unit(adapter: Adapter | None, unit: Chunk, out_dir: str, max_bytes: int, job: tuple, on_error: str,
               run_id: str | None = None, on_event: Callable[[str, Mapping[str, Any]], None] | None = None) -> dict[str, Any]:
    """Write one unit's parts (temporary files in ``out_dir``); runs in a worker or a Ray task.

    Every position's input identity is noted in order (see :mod:`pipelines.writer`): from the
    copy's own ``fstat`` on the direct path, else from the source.

    Args:
        adapter: the source adapter (``None`` for in-line samples, carried by ``unit``).
        unit: the positions to write.
        out_dir: the output folder (the parts are hidden temporaries there).
        max_bytes: tar size limit of a part.
        job: ``(check, reencode, suffixes)`` for :func:`pipelines.sources.process_chunk`.
        on_error: ``"raise"`` or ``"skip"``.
        run_id: the build's token in temporary names.
        on_event: per-sample callback (in-process builds only).

    Returns ``{"parts": [...], "error": None}``, or ``{"parts": [], "error": message}`` when a
    bad sample meets ``on_error="raise"`` (its temporary files are removed).
    """
    writer = UnitWriter(Path(out_dir), start=unit.start, max_bytes=max_bytes, on_event=on_event, run_id=run_id)
    check, spec = job[0], job[1]
    members = file_members_for(adapter, check) if unit.samples is None and spec is None else None
    records = adapter.index if members is not None else ()  # type: ignore[union-attr]
    identify = None if unit.samples is not None else input_identifier(adapter)  # type: ignore[arg-type]
    prefix = root_prefix(adapter)
    try:
        position = unit.start
        while position < unit.stop:
            if members is not None:  # copy whole files straight into the tar buffer
                record = records[position]
                chosen = members(record)
                stats: list = []
                if chosen is not None and copy_sample(writer, position, record[KEY], chosen, check, stats):
                    writer.note(members_identity(record[KEY], chosen, stats, prefix))
                    position += 1
                    continue
                stop = position + 1  # this one sample through the generic path
            else:
                stop = min(position + BATCH, unit.stop)
            rows = None if unit.samples is None else unit.samples[position - unit.start:stop - unit.start]
            for offset, (status, key, payload) in enumerate(process_chunk(adapter, Chunk(position, stop, rows), *job)):
                if status == "ok":
                    writer.add(position + offset, key, *payload)
                elif on_error == "raise":
                    writer.abort()
                    return {"parts": [], "error": payload if payload.startswith("key ") else f"key {key!r}: {payload}"}
                else:
                    writer.skip(position + offset, key, payload)
                writer.note(identify(position + offset) if identify is not None else sample_identity(rows[offset], position + offset))
            position = stop
        return {"parts": writer.finish(unit.stop), "error": None}
    except BaseException:
        writer.abort()
        raise

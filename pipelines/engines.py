"""Engines of a shard build: who runs the units (:func:`pipelines.unit.build_unit`), and where.

Each engine takes the units in input order and yields ``(unit, result)`` in that same order,
keeping a bounded number in flight; the driver (:mod:`pipelines.build`) publishes the results
as they come. Engines only schedule: every byte is written by :func:`~pipelines.unit.build_unit`,
so all engines and worker counts give the same shards (img2dataset's *distributors*).

* ``"local"``: the calling thread for one worker; for more, forked processes, or threads for
  small jobs of whole-file copies (:func:`use_threads`).
* ``"ray"``: Ray tasks (https://docs.ray.io), an optional extra
  (``pip install "datafactory-toolkit[ray]"``) imported only when used.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

from loaders import Adapter
from pipelines.sources import Chunk
from pipelines.unit import build_unit

__all__ = ["ENGINES", "RAY_INSTALL_HINT", "THREAD_INPUTS_PER_WORKER", "local_results", "ray_results", "require_engine",
           "use_threads"]

ENGINES = ("local", "ray")
RAY_INSTALL_HINT = 'engine="ray" needs Ray: pip install "datafactory-toolkit[ray]" (or pip install "ray[default]")'
#: whole-file copies run on threads up to this many inputs per worker, on forked processes beyond
THREAD_INPUTS_PER_WORKER = 1000


def require_engine(engine: str) -> None:
    """Fail early, before any output is touched, when ``engine`` cannot run here.

    Raises:
        RuntimeError: ``engine="ray"`` without Ray installed (the message says how to install it).
    """
    if engine == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise RuntimeError(RAY_INSTALL_HINT) from None


def _ordered(submit: Callable[[Chunk], Any], wait: Callable[[Any], Any], units: Iterator[Chunk], depth: int) -> Iterator[tuple[Chunk, Any]]:
    """Submit units ``depth`` ahead of the one waited for; yield results in input order."""
    pending: deque = deque()
    for unit in units:
        pending.append((unit, submit(unit)))
        if len(pending) >= depth:
            first, handle = pending.popleft()
            yield first, wait(handle)
    while pending:
        first, handle = pending.popleft()
        yield first, wait(handle)


# -- local: the calling thread, a thread pool or a forked process pool ---------------------------


def use_threads(direct: bool, inputs: int, workers: int) -> bool:
    """Whether local workers should be threads rather than forked processes.

    Only whole-file copies (``direct``, :mod:`pipelines.filecopy`) can use threads: their work is
    ``open``/``readv``/``sha256``/``write``, which release the GIL, where re-encoding, decoded or
    in-line samples and other adapters spend their time in Python. Even then, two copying threads
    hand the GIL to each other at every system call (about seven per file), and every hand-off
    wakes the other core: on 6,000 photos (2 cores), two threads used 15-40% more CPU than one and
    reached 1.33-1.53x one worker, against 1.66-1.74x for two forked processes, whose cost is fixed
    (~30 ms of CPU each to fork and exit a process that has imported torch). So threads serve
    small jobs only, up to :data:`THREAD_INPUTS_PER_WORKER` inputs per worker, where that fixed
    cost would dominate (a thread starts in microseconds).

    Args:
        direct: every sample is a whole-file copy.
        inputs: input positions left to build.
        workers: local workers (more than one).
    """
    return direct and inputs <= workers * THREAD_INPUTS_PER_WORKER


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


def _worker_unit(unit: Chunk, out_dir: str, max_bytes: int, job: tuple, on_error: str, run_id: str) -> dict[str, Any]:
    return build_unit(_WORKER_SOURCE.get("adapter"), unit, out_dir, max_bytes, job, on_error, run_id)


def local_results(adapter: Adapter | None, units: Iterator[Chunk], *, workers: int, args: tuple,
                  on_event: Callable | None, threads: bool) -> Iterator[tuple[Chunk, dict]]:
    """Run the units on this machine: in this thread (``workers == 1``), on ``workers`` threads
    (``threads``, see :func:`use_threads`) or on ``workers`` forked processes.

    Args:
        adapter: the source (copied into each process once, by the fork or the pool's initializer).
        units: the units, in input order.
        workers: how many run at once.
        args: ``(out_dir, max_bytes, job, on_error, run_id)`` for :func:`~pipelines.unit.build_unit`.
        on_event: per-sample callback, used with one worker only.
        threads: whether to use threads rather than processes.
    """
    if workers == 1:
        for unit in units:
            yield unit, build_unit(adapter, unit, *args, on_event=on_event)
        return
    if threads:  # a small job of direct file copies (use_threads)
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


# -- Ray -----------------------------------------------------------------------------------------


def _ray_unit(adapter: Adapter | None, unit: Chunk, out_dir: str, max_bytes: int, job: tuple, on_error: str,
              run_id: str) -> dict:
    return build_unit(adapter, unit, out_dir, max_bytes, job, on_error, run_id)


def ray_results(adapter: Adapter | None, units: Iterator[Chunk], *, workers: int, args: tuple,
                address: str | None) -> Iterator[tuple[Chunk, dict]]:
    """Run the units as Ray tasks (at least ``workers`` in flight, or one per cluster CPU).

    ``ray.init(address=address)`` is called when Ray is not initialised. The adapter is put in
    the object store once; ``args`` as for :func:`local_results`.
    """
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

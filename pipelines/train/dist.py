"""Multi-process data parallelism launched by ``torchrun``: setup, rank queries and reductions.

``torchrun --nproc_per_node N -m datafactory train ...`` sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK`` and the rendezvous variables; :func:`setup` then joins the process group with
``nccl`` on CUDA and ``gloo`` on the CPU. Without those variables everything runs in one process.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

__all__ = [
    "DistContext",
    "all_gather_json",
    "all_reduce_mean",
    "barrier",
    "is_main",
    "launched_by_torchrun",
    "rank_and_world",
    "resolve_device",
    "setup",
    "teardown",
    "unwrap",
]


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: ``rank`` of ``world_size``, its ``device``, and whether
    :func:`setup` created the process group (and so :func:`teardown` destroys it)."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    owns_group: bool


def launched_by_torchrun() -> bool:
    """Whether ``torchrun`` (or an equivalent launcher) set this process's rank variables."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    """``"auto"`` -> CUDA when available else CPU; ``"cuda"`` without CUDA raises."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("config key 'device' is 'cuda' but no CUDA device is available; use device=cpu or auto")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    if device == "cpu":
        return torch.device("cpu")
    raise ValueError(f"config key 'device' must be auto, cpu or cuda, got {device!r}")


def setup(device: str = "auto") -> DistContext:
    """Join the ``torchrun`` process group if launched by it (``nccl`` on CUDA, ``gloo`` on CPU)."""
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
        local = int(os.environ.get("LOCAL_RANK", rank))
        return DistContext(rank, world, local, resolve_device(device, local), False)
    if not launched_by_torchrun():
        return DistContext(0, 1, 0, resolve_device(device), False)
    if not dist.is_available():
        raise RuntimeError("launched by torchrun, but this torch build has no torch.distributed")
    local = int(os.environ.get("LOCAL_RANK", 0))
    target = resolve_device(device, local)
    if target.type == "cuda":
        torch.cuda.set_device(target)
    dist.init_process_group(backend="nccl" if target.type == "cuda" else "gloo",
                            device_id=target if target.type == "cuda" else None)
    return DistContext(dist.get_rank(), dist.get_world_size(), local, target, True)


def teardown(ctx: DistContext) -> None:
    """Destroy the process group if :func:`setup` created it."""
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def is_main() -> bool:
    """Rank 0, or the only process."""
    return not _active() or dist.get_rank() == 0


def rank_and_world(rank: int | None = None, world_size: int | None = None) -> tuple[int, int]:
    """Given values, else the process group's, else ``RANK``/``WORLD_SIZE`` (torchrun), else 0/1."""
    if rank is None or world_size is None:
        if dist.is_available() and dist.is_initialized():
            rank = dist.get_rank() if rank is None else rank
            world_size = dist.get_world_size() if world_size is None else world_size
        else:
            rank = int(os.environ.get("RANK", 0)) if rank is None else rank
            world_size = int(os.environ.get("WORLD_SIZE", 1)) if world_size is None else world_size
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, world_size) and world_size >= 1, got rank={rank}, world_size={world_size}")
    return rank, world_size


def barrier() -> None:
    if _active():
        dist.barrier()


def all_reduce_mean(values: dict[str, float], device: torch.device | str = "cpu") -> dict[str, float]:
    """The mean of each value over the ranks (the values themselves in one process).

    Every rank must pass the same keys (sorted here, so insertion order does not matter).
    """
    if not _active() or not values:
        return dict(values)
    keys = sorted(values)
    tensor = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    tensor /= dist.get_world_size()
    return dict(zip(keys, tensor.tolist()))


def all_gather_json(value: Any, device: torch.device | str = "cpu") -> list[Any]:
    """``value`` of every rank, in rank order, sent as JSON text (never pickled)."""
    if not _active():
        return [value]
    data = torch.tensor(list(json.dumps(value).encode("utf-8")), dtype=torch.uint8, device=device)
    size = torch.tensor([data.numel()], dtype=torch.int64, device=device)
    sizes = [torch.zeros_like(size) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, size)
    longest = int(max(s.item() for s in sizes))
    padded = torch.zeros(longest, dtype=torch.uint8, device=device)
    padded[:data.numel()] = data
    gathered = [torch.zeros_like(padded) for _ in sizes]
    dist.all_gather(gathered, padded)
    return [json.loads(bytes(g[:int(s.item())].cpu().tolist()).decode("utf-8")) for g, s in zip(gathered, sizes)]


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside a ``DistributedDataParallel`` and/or ``torch.compile`` wrapper."""
    while True:
        if isinstance(model, torch.nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, torch.nn.Module):
            model = model._orig_mod
        else:
            return model

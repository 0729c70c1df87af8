"""Checkpoints: plain ``state_dict`` data written atomically, read with ``torch.load(weights_only=True)``.

A checkpoint holds only tensors, dicts, lists, tuples, numbers, strings and ``None`` (the config
travels as a JSON string), so the restricted unpickler of ``weights_only=True`` loads it and a
hostile file cannot run code. :func:`save_checkpoint` checks that before writing, naming the
offending entry. RNG states (torch CPU and CUDA, numpy's and Python's global generators) are
captured as lists of ints, so that each DDP rank's state can be gathered and stored too.
"""

from __future__ import annotations

import io
import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["capture_rng", "load_checkpoint", "restore_rng", "save_checkpoint", "seed_everything"]

_PLAIN = (int, float, bool, str, type(None), torch.Size)


def _check_plain(value: Any, where: str) -> None:
    if isinstance(value, (torch.Tensor, *_PLAIN)):
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, (str, int)):
                raise TypeError(f"checkpoint entry {where} has a key of type {type(key).__name__} (str or int only)")
            _check_plain(item, f"{where}[{key!r}]")
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
        return
    raise TypeError(f"checkpoint entry {where} is a {type(value).__name__}: only tensors, dicts, lists, numbers and "
                    "strings can be stored (weights_only loading)")


def save_checkpoint(path: str | os.PathLike, state: Mapping[str, Any]) -> Path:
    """Write ``state`` to ``path`` under a new temporary name, then rename it into place.

    Raises:
        TypeError: an entry that ``torch.load(weights_only=True)`` could not read back (named).
        FileExistsError: ``path`` exists and is not a regular file (a link is never written through).
    """
    from pipelines.train.files import write_bytes_atomic

    _check_plain(dict(state), "state")
    buffer = io.BytesIO()
    torch.save(dict(state), buffer)
    target = write_bytes_atomic(path, buffer.getbuffer(), sync=True)
    return target


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``torch.load(weights_only=True)`` (no code runs while loading).

    Raises:
        FileNotFoundError: no file. ValueError: the file is not a checkpoint we can read (named).
    """
    from loaders.fileio import read_regular

    target = Path(path)
    data = read_regular(target)  # a regular file only: never a FIFO or device
    try:
        state = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as error:  # the restricted unpickler refuses anything but plain data
        raise ValueError(f"checkpoint {str(target)!r} cannot be loaded with weights_only=True: {error}") from None
    if not isinstance(state, dict):
        raise ValueError(f"checkpoint {str(target)!r} must hold a dict, got {type(state).__name__}")
    return state


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), numpy's and Python's global generators from ``seed``."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def capture_rng() -> dict[str, Any]:
    """The global RNG states as plain lists of ints (JSON-able)."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state().tolist(),
        "numpy": [str(np_state[0]), np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python": [int(py_state[0]), list(py_state[1]), py_state[2]],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return state


def _bytes_tensor(values: Any, what: str) -> torch.Tensor:
    if not isinstance(values, list) or not all(isinstance(v, int) and 0 <= v < 256 for v in values):
        raise ValueError(f"checkpoint RNG state {what!r} must be a list of byte values")
    return torch.tensor(values, dtype=torch.uint8)


def restore_rng(state: Mapping[str, Any]) -> None:
    """Restore the states captured by :func:`capture_rng` (CUDA ones when the device count matches)."""
    if not isinstance(state, Mapping) or not {"torch", "numpy", "python"} <= set(state):
        raise ValueError("checkpoint RNG state must hold 'torch', 'numpy' and 'python'")
    torch.set_rng_state(_bytes_tensor(state["torch"], "torch"))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), int(pos), int(has_gauss), float(cached)))
    version, internal, gauss = state["python"]
    random.setstate((int(version), tuple(int(v) for v in internal), gauss))
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([_bytes_tensor(s, "cuda") for s in cuda])

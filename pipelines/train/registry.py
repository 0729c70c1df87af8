"""The trainer table: name -> ``"module:attr"`` of its :class:`~pipelines.train.task.Task`, imported lazily.

A literal table rather than a registration hook: the trainers are ours, and a lazy import means
one trainer whose module fails to import (a missing optional dependency) never breaks the others.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["TRAINERS", "get_task", "trainer_names"]

TRAINERS: dict[str, str] = {
    "segment": "pipelines.train.segment:TASK",
    "vit": "pipelines.train.vit:TASK",
    "mae": "pipelines.train.mae:TASK",
    "cxr": "pipelines.train.cxr:TASK",
    "vatt": "pipelines.train.vatt:TASK",
}


def trainer_names() -> list[str]:
    """The trainer names, in table order."""
    return list(TRAINERS)


def get_task(name: str) -> Any:
    """Import and return the ``Task`` of trainer ``name``.

    Raises:
        KeyError: an unknown name (the message lists the known ones).
        ImportError: the trainer's module (or one of its dependencies) cannot be imported.
    """
    if not isinstance(name, str) or name not in TRAINERS:
        raise KeyError(f"unknown trainer {name!r}; known trainers: {', '.join(TRAINERS)}")
    module_name, attr = TRAINERS[name].split(":")
    module = importlib.import_module(module_name)
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ImportError(f"trainer {name!r}: module {module_name!r} has no {attr!r}") from None

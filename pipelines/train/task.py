"""The ``Task`` protocol: what a trainer module provides to the core loop (:mod:`pipelines.train.loop`).

A trainer module (``segment``, ``vit``, ``mae``, ``cxr``) holds only its model wiring, loss and
evaluation, and exposes one instance named ``TASK``. The core does everything else: seeding,
devices, DDP, AMP, the optimizer, scheduler, EMA, checkpoints, logging and resume.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterable
from typing import Any, Protocol, runtime_checkable

import torch

from pipelines.train.config import TrainConfig

__all__ = ["Batch", "Task"]

#: a collated batch: field name -> tensor (stacked), tensor of numbers, or list (keys, text...)
Batch = dict[str, Any]


@runtime_checkable
class Task(Protocol):
    """One trainer, as the core loop sees it.

    Attributes:
        name: the trainer's registry name.
        config_class: its :class:`TrainConfig` subclass.
    """

    name: str
    config_class: type[TrainConfig]

    def build_model(self, cfg: TrainConfig) -> torch.nn.Module:
        """A fresh model (the core seeds the RNG from ``cfg.seed`` before calling this)."""
        ...

    def train_loader(self, cfg: TrainConfig, *, rank: int, world_size: int, epoch: int) -> Iterable[Batch]:
        """This rank's batches of ``epoch`` (``cfg.batch_size // world_size`` samples each).

        Must have ``state_dict()``/``load_state_dict()`` for mid-epoch resume and the same
        ``len()`` on every rank; :func:`pipelines.train.data.shard_loader` gives both.
        """
        ...

    def eval_loader(self, cfg: TrainConfig) -> Iterable[Batch] | None:
        """The evaluation batches (read whole, on the main rank), or ``None`` for none."""
        ...

    def training_step(self, model: torch.nn.Module, batch: Batch, cfg: TrainConfig) -> tuple[torch.Tensor, dict[str, float]]:
        """``(loss, extra metrics)`` for one batch, already on the device.

        Under DDP ``model`` is the ``DistributedDataParallel`` wrapper: compute outputs by calling
        ``model(...)`` (which synchronises gradients); :func:`pipelines.train.dist.unwrap` gives
        the module itself for reading attributes.
        """
        ...

    def evaluate(self, model: torch.nn.Module, loader: Iterable[Batch], cfg: TrainConfig,
                 out_dir: pathlib.Path) -> dict[str, float]:
        """Metrics over ``loader`` (batches on the CPU: move them to the model's device);
        may write files (prediction PNGs...) into ``out_dir``. Called in eval mode, no grad."""
        ...

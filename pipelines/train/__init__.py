"""pipelines.train: one small training core shared by the bundled trainers.

The core (one file per concern): :mod:`~pipelines.train.config` (strict config dataclasses),
:mod:`~pipelines.train.task` (the ``Task`` protocol a trainer implements),
:mod:`~pipelines.train.registry` (trainer names), :mod:`~pipelines.train.data` (shard and
adapter loaders), :mod:`~pipelines.train.loop` (``fit`` / ``evaluate_run``),
:mod:`~pipelines.train.checkpoint`, :mod:`~pipelines.train.ema`, :mod:`~pipelines.train.dist`
(DDP via ``torchrun``), :mod:`~pipelines.train.logging`, :mod:`~pipelines.train.optim` and
:mod:`~pipelines.train.precision`. Trainers: ``segment``, ``vit``, ``mae``, ``cxr`` and ``vatt``, each in its
own module, imported lazily through :func:`get_task`::

    from pipelines.train import fit, get_task, load_config

    task = get_task("segment")
    cfg = load_config(task.config_class, overrides=["shards=shards/", "out=runs/seg", "epochs=5"])
    result = fit(task, cfg)   # resumes from runs/seg/ckpt.pt if present
"""

from pipelines.train.checkpoint import capture_rng, load_checkpoint, restore_rng, save_checkpoint, seed_everything
from pipelines.train.config import TrainConfig, config_from_dict, config_help, config_to_dict, load_config, save_config
from pipelines.train.data import adapter_loader, eval_loader, has_eval_data, move_to, shard_loader
from pipelines.train.dist import is_main, unwrap
from pipelines.train.ema import ModelEMA
from pipelines.train.loop import RunResult, evaluate_model, evaluate_run, fit
from pipelines.train.registry import TRAINERS, get_task, trainer_names
from pipelines.train.task import Batch, Task

__all__ = [
    "Batch",
    "ModelEMA",
    "RunResult",
    "TRAINERS",
    "Task",
    "TrainConfig",
    "adapter_loader",
    "capture_rng",
    "config_from_dict",
    "config_help",
    "config_to_dict",
    "eval_loader",
    "evaluate_model",
    "evaluate_run",
    "fit",
    "get_task",
    "has_eval_data",
    "is_main",
    "load_checkpoint",
    "load_config",
    "move_to",
    "restore_rng",
    "save_checkpoint",
    "save_config",
    "seed_everything",
    "shard_loader",
    "trainer_names",
    "unwrap",
]

"""Optimizer and learning-rate schedule from a :class:`~pipelines.train.config.TrainConfig`.

AdamW (Loshchilov & Hutter, 2019) or SGD with momentum; weight decay applies to weight matrices
and kernels only -- biases and normalisation scales (1-D parameters) are not decayed, as in the
ViT/DeiT and timm recipes. Schedule: ``warmup_steps`` of linear warm-up, then cosine decay to
zero at the last step (Loshchilov & Hutter, 2017, SGDR, without restarts) or a constant rate.
"""

from __future__ import annotations

import math

import torch

from pipelines.train.config import TrainConfig

__all__ = ["LRSchedule", "build_optimizer", "build_scheduler"]


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """``cfg.optimizer`` over the trainable parameters (two groups: decayed and not)."""
    decay, no_decay = [], []
    for parameter in model.parameters():
        if parameter.requires_grad:
            (decay if parameter.ndim >= 2 else no_decay).append(parameter)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    if not groups:
        raise ValueError("the model has no trainable parameters")
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    raise ValueError(f"config key 'optimizer' must be adamw or sgd, got {cfg.optimizer!r}")


class LRSchedule:
    """The learning-rate factor at a step (0-based): linear warm-up, then cosine or constant.

    A class rather than a closure so that ``LambdaLR.state_dict`` stores its plain fields.
    """

    def __init__(self, kind: str, warmup_steps: int, total_steps: int) -> None:
        if kind not in ("cosine", "constant"):
            raise ValueError(f"config key 'scheduler' must be cosine or constant, got {kind!r}")
        self.kind, self.warmup_steps, self.total_steps = kind, int(warmup_steps), int(total_steps)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.kind == "constant":
            return 1.0
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        return 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` over :class:`LRSchedule` (stepped once per optimizer step)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, LRSchedule(cfg.scheduler, cfg.warmup_steps, total_steps))

"""An exponential moving average of a model's weights, updated once per optimizer step.

Rebuffi et al., 2021, "Data augmentation can improve robustness" (arXiv 2103.01946): heavy
augmentation improves robust accuracy only together with weight averaging -- an EMA of the
weights with a decay of about 0.999 per step -- and the averaged model is the one evaluated. The
core evaluates both the raw and the EMA weights (metrics of the latter are prefixed ``ema_``).

After ``n`` updates, ``ema = decay * ema + (1 - decay) * weights`` for floating-point parameters
and buffers; integer buffers (BatchNorm's ``num_batches_tracked``) are copied.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch

__all__ = ["ModelEMA"]


class ModelEMA:
    """EMA of ``model``'s parameters and buffers, kept in a frozen copy (``.module``).

    Args:
        model: the model being trained (its current weights start the average).
        decay: per-step decay in ``[0, 1)``.
    """

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be a number in [0, 1), got {decay!r}")
        self.decay = float(decay)
        self.updates = 0
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        """Fold the current weights of ``model`` (same architecture, unwrapped) into the average."""
        self.updates += 1
        mine = self.module.state_dict()
        for name, value in model.state_dict().items():
            target = mine[name]
            if target.is_floating_point():
                target.lerp_(value.to(target.dtype), 1.0 - self.decay)
            else:
                target.copy_(value)

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "updates": self.updates, "model": self.module.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if not isinstance(state, Mapping) or not {"decay", "updates", "model"} <= set(state):
            raise ValueError("EMA state must hold 'decay', 'updates' and 'model'")
        self.decay, self.updates = float(state["decay"]), int(state["updates"])
        self.module.load_state_dict(state["model"])

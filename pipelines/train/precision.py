"""Mixed precision and ``torch.compile``: used where supported, refused with a clear message elsewhere.

* ``amp="bf16"``: ``torch.autocast`` to bfloat16, on CUDA (GPUs that support it) and on the CPU.
* ``amp="fp16"``: float16 autocast with a ``GradScaler`` (Micikevicius et al., 2018, "Mixed
  precision training": loss scaling keeps small gradients representable); CUDA only.
* ``compile=True``: ``torch.compile`` (TorchInductor, which generates Triton kernels) on CUDA only.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from pipelines.train.config import TrainConfig

__all__ = ["autocast", "check_precision", "grad_scaler"]

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(cfg: TrainConfig, device: torch.device, *, compile_model: bool = True) -> None:
    """Raise ``ValueError`` naming the config key when ``amp``/``compile`` cannot run on ``device``."""
    if cfg.amp == "fp16" and device.type != "cuda":
        raise ValueError(f"config key 'amp' is 'fp16', which needs a CUDA device (float16 with loss scaling); this run "
                         f"is on {device.type}: use amp=bf16 (supported on the CPU) or amp=none")
    if cfg.amp == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError("config key 'amp' is 'bf16', which this GPU does not support: use amp=fp16 or amp=none")
    if cfg.compile and compile_model:
        if device.type != "cuda":
            raise ValueError(f"config key 'compile' is true, but torch.compile is used on CUDA only and this run is on "
                             f"{device.type}: set compile=false")
        import torch._dynamo

        if not torch._dynamo.is_dynamo_supported():
            raise ValueError("config key 'compile' is true, but torch.compile does not support this Python/torch "
                             "build: set compile=false")
        from torch.utils._triton import has_triton

        if not has_triton():
            raise ValueError("config key 'compile' is true, but Triton (needed by torch.compile on CUDA) is not "
                             "installed: set compile=false or install triton")


def autocast(cfg: TrainConfig, device: torch.device) -> Any:
    """The autocast context for ``cfg.amp`` (a no-op context for ``"none"``)."""
    if cfg.amp == "none":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=_DTYPES[cfg.amp])


def grad_scaler(cfg: TrainConfig, device: torch.device) -> torch.amp.GradScaler:
    """A ``GradScaler``, enabled for fp16 only (a pass-through otherwise)."""
    return torch.amp.GradScaler(device.type, enabled=cfg.amp == "fp16")

"""Training one pixel classifier of the DatasetGAN interpreter on sampled annotated pixels.

Zhang et al., "DatasetGAN: Efficient Labeled Data Factory with Minimal Human Effort", CVPR 2021,
arXiv:2104.06490: each interpreter member is an MLP trained with cross-entropy and Adam on
batches of annotated pixels, with early stopping. Here the pixels' features come from a
:class:`~datafactory.gan.pixelfeatures.PixelFeatureBank` (gathered per batch from the native
feature maps), so a step costs ``O(batch * D)`` memory whatever the image size.

Early stopping: a fixed random fraction of the annotated pixels is held out; after every epoch
the mean held-out cross-entropy is measured, the weights of the best epoch are kept, and training
stops after ``patience`` epochs without a strictly lower held-out loss.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from datafactory.gan.pixelfeatures import PixelFeatureBank, check_levels

__all__ = ["MemberHistory", "check_annotations", "evaluate_pixels", "train_member"]

_EVAL_BUDGET = 2**22  # values of one validation chunk of gathered pixel features (16 MB float32)


@dataclass(frozen=True)
class MemberHistory:
    """How one member trained: per-epoch mean training loss, held-out loss and accuracy.

    ``best_epoch`` (0-based) is the epoch whose weights were kept; ``stopped_early`` is true when
    training ended before ``max_epochs``.
    """

    member: int
    epochs: int
    best_epoch: int
    stopped_early: bool
    train_loss: tuple[float, ...]
    val_loss: tuple[float, ...]
    val_accuracy: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"member": self.member, "epochs": self.epochs, "best_epoch": self.best_epoch,
                "stopped_early": self.stopped_early, "train_loss": list(self.train_loss),
                "val_loss": list(self.val_loss), "val_accuracy": list(self.val_accuracy)}

    @classmethod
    def from_dict(cls, data: Any) -> MemberHistory:
        """Inverse of :meth:`to_dict` (``TypeError``/``ValueError`` on a malformed entry)."""
        if not isinstance(data, dict):
            raise TypeError(f"a history entry must be an object, got {type(data).__name__}")
        lists = ("train_loss", "val_loss", "val_accuracy")
        if set(data) != {"member", "epochs", "best_epoch", "stopped_early", *lists}:
            raise ValueError(f"history entry keys {sorted(data)} are not the expected ones")
        if not all(isinstance(data[k], list) and all(isinstance(v, (int, float)) for v in data[k]) for k in lists):
            raise ValueError("history losses and accuracies must be lists of numbers")
        return cls(**{**data, **{k: tuple(float(v) for v in data[k]) for k in lists}})


def check_annotations(features: Any, masks: Any, num_classes: int,
                      ignore_index: int | None = None) -> tuple[list[int], tuple[int, int]]:
    """Validate annotated images for training; return ``(channels, (H, W))``.

    Args:
        features: per image, a list of levels ``(1, C_l, h_l, w_l)``, the same shapes for all.
        masks: ``(K, H, W)`` integer tensor, values in ``0 .. num_classes - 1`` (or ``ignore_index``).
        num_classes: number of classes.
        ignore_index: a mask value that marks unlabelled pixels (None: every pixel is labelled).

    Raises:
        TypeError / ValueError: naming ``features[k][l]`` or ``masks`` and the problem.
    """
    if not isinstance(masks, torch.Tensor):
        raise TypeError(f"masks must be a torch.Tensor (K, H, W) of class indices, got {type(masks).__name__}")
    if masks.dtype == torch.bool or masks.is_floating_point() or masks.is_complex():
        raise TypeError(f"masks must hold integer class indices, got {masks.dtype}")
    if masks.ndim != 3 or 0 in masks.shape:
        raise ValueError(f"masks must have shape (K, H, W) with no empty dimension, got {tuple(masks.shape)}")
    if isinstance(features, torch.Tensor) or not isinstance(features, Sequence):
        raise TypeError(f"features must be a sequence with one feature list per annotated image, "
                        f"got {type(features).__name__}")
    if len(features) != masks.shape[0]:
        raise ValueError(f"features holds {len(features)} images but masks holds {masks.shape[0]} masks; "
                         "one mask per image")
    labelled = masks if ignore_index is None else masks[masks != ignore_index]
    if labelled.numel() == 0:
        raise ValueError(f"masks holds no labelled pixel (every pixel is ignore_index={ignore_index})")
    low, high = int(labelled.min()), int(labelled.max())
    if low < 0 or high >= num_classes:
        extra = "" if ignore_index is None else f", ignore_index={ignore_index}"
        raise ValueError(f"masks contains class {low if low < 0 else high}, outside 0..{num_classes - 1} "
                         f"(num_classes={num_classes}{extra})")
    check_levels(features[0], None, "features[0]", batch=1)
    shapes = [tuple(level.shape) for level in features[0]]
    channels = [shape[1] for shape in shapes]
    for k, levels in enumerate(features):
        check_levels(levels, channels, f"features[{k}]", batch=1)
        for index, (level, shape) in enumerate(zip(levels, shapes)):
            if tuple(level.shape) != shape:
                raise ValueError(f"features[{k}][{index}] has shape {tuple(level.shape)} but features[0][{index}] "
                                 f"has {shape}; all annotated images need the same feature shapes")
    return channels, (int(masks.shape[1]), int(masks.shape[2]))


def evaluate_pixels(member: nn.Module, bank: PixelFeatureBank, labels: torch.Tensor,
                    pixels: torch.Tensor) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``member`` (eval mode) on flat ``pixels`` of ``bank``,
    in chunks of at most ``2**22`` gathered values."""
    member.eval()
    step = max(64, _EVAL_BUDGET // bank.dim)
    total_loss = torch.zeros((), dtype=torch.float64, device=bank.device)
    correct = torch.zeros((), dtype=torch.int64, device=bank.device)
    with torch.no_grad():
        for start in range(0, len(pixels), step):
            batch = pixels[start:start + step].to(bank.device)
            logits = member(bank.gather_flat(batch))
            target = labels[batch]
            total_loss += F.cross_entropy(logits, target, reduction="sum").double()
            correct += (logits.argmax(dim=1) == target).sum()
    return float(total_loss) / len(pixels), int(correct) / len(pixels)


def train_member(member: nn.Module, bank: PixelFeatureBank, labels: torch.Tensor, *, generator: torch.Generator,
                 lr: float, batch_pixels: int, max_epochs: int, patience: int, val_fraction: float,
                 pixels_per_epoch: int | None = None, index: int = 0, labelled: torch.Tensor | None = None,
                 on_epoch: Callable[[int, float | None], None] | None = None) -> MemberHistory:
    """Train ``member`` in place on the pixels of ``bank`` with flat ``labels``; keep the best epoch.

    Args:
        member: the MLP (input ``bank.dim``), on ``bank.device``.
        bank: features of the annotated images.
        labels: ``(K * H * W,)`` int64 class of every pixel, on ``bank.device``.
        generator: CPU generator for the held-out split and the batch order.
        lr, batch_pixels, max_epochs, patience, val_fraction, pixels_per_epoch: see
            :class:`~datafactory.gan.interpreter.InterpreterConfig`.
        index: the member's index (recorded in the history).
        labelled: flat indices (CPU, int64) of the pixels to learn from (default: all).
        on_epoch: called with ``(epoch, held-out loss or None)`` after each epoch (progress bars).
    """
    if labelled is None:
        labelled = torch.arange(labels.numel())
    total = len(labelled)
    order = labelled[torch.randperm(total, generator=generator)]
    n_val = 0 if val_fraction == 0 else max(1, round(val_fraction * total))
    val_pixels, train_pixels = order[:n_val], order[n_val:]
    if len(train_pixels) < 2:
        raise ValueError(f"masks hold {total} labelled pixels; with val_fraction={val_fraction} fewer than 2 remain for training")
    params = list(member.parameters())
    # the fused kernel: one call per step instead of one per tensor (x1.5 per CPU step on the tiny MLPs)
    fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
    optimizer = torch.optim.Adam(params, lr=lr, fused=fused or None)
    train_loss: list[float] = []
    val_loss: list[float] = []
    val_accuracy: list[float] = []
    best, best_epoch, best_state, waited = math.inf, 0, None, 0
    for epoch in range(max_epochs):
        member.train()
        shuffled = train_pixels[torch.randperm(len(train_pixels), generator=generator)]
        if pixels_per_epoch is not None:
            shuffled = shuffled[:pixels_per_epoch]
        loss_sum = torch.zeros((), dtype=torch.float64, device=bank.device)  # summed on the device: no sync per step
        seen = 0
        for start in range(0, len(shuffled), batch_pixels):
            batch = shuffled[start:start + batch_pixels]
            if len(batch) < 2:  # BatchNorm cannot normalise a single pixel
                break
            batch = batch.to(bank.device)
            loss = F.cross_entropy(member(bank.gather_flat(batch)), labels[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach().double() * len(batch)
            seen += len(batch)
        train_loss.append(float(loss_sum) / seen)
        if n_val:
            loss_value, accuracy = evaluate_pixels(member, bank, labels, val_pixels)
            val_loss.append(loss_value)
            val_accuracy.append(accuracy)
            if loss_value < best:
                best, best_epoch, waited = loss_value, epoch, 0
                best_state = {k: v.detach().clone() for k, v in member.state_dict().items()}
            else:
                waited += 1
        else:
            best_epoch = epoch
        if on_epoch is not None:
            on_epoch(epoch, val_loss[-1] if n_val else None)
        if n_val and waited >= patience:
            break
    if best_state is not None:
        member.load_state_dict(best_state)
    member.eval()
    return MemberHistory(member=index, epochs=len(train_loss), best_epoch=best_epoch,
                         stopped_early=len(train_loss) < max_epochs, train_loss=tuple(train_loss),
                         val_loss=tuple(val_loss), val_accuracy=tuple(val_accuracy))

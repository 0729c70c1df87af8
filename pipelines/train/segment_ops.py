"""Segmentation losses and metrics as pure functions over batched tensors.

* Soft Dice loss (Milletari et al., 2016, "V-Net", arXiv 1606.04797), multi-class: ``1 -``
  the mean over classes of ``2 |P * G| / (|P| + |G|)`` with softmax probabilities ``P`` and
  one-hot targets ``G``, ignored pixels left out.
* Confusion matrix, per-class IoU ``TP / (TP + FP + FN)`` and mIoU, the mean over the classes
  that occur in the ground truth or the prediction (as in the PASCAL VOC and Cityscapes
  evaluations, a class absent from both has no IoU rather than 0 or 1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["PALETTE", "colorize", "confusion_matrix", "dice_loss", "iou_scores"]


def dice_loss(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = 255, eps: float = 1.0) -> torch.Tensor:
    """Soft multi-class Dice loss of ``logits [B,C,H,W]`` against ``target [B,H,W]`` (class ids)."""
    num_classes = logits.shape[1]
    valid = (target != ignore_index).unsqueeze(1).to(logits.dtype)
    probs = logits.softmax(dim=1) * valid
    onehot = F.one_hot(target.clamp(0, num_classes - 1) * (target != ignore_index), num_classes)
    onehot = onehot.permute(0, 3, 1, 2).to(logits.dtype) * valid
    dims = (0, 2, 3)
    intersection = (probs * onehot).sum(dims)
    denominator = probs.sum(dims) + onehot.sum(dims)
    return 1.0 - ((2 * intersection + eps) / (denominator + eps)).mean()


def confusion_matrix(prediction: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int = 255) -> torch.Tensor:
    """``[num_classes, num_classes]`` int64 counts, rows = ground truth, columns = prediction."""
    valid = target != ignore_index
    t, p = target[valid].long(), prediction[valid].long()
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= num_classes):
        raise ValueError(f"mask values must be in [0, {num_classes}) or {ignore_index} (ignored), "
                         f"got values from {int(t.min())} to {int(t.max())}")
    return torch.bincount(t * num_classes + p, minlength=num_classes**2).reshape(num_classes, num_classes)


def iou_scores(confusion: torch.Tensor) -> tuple[torch.Tensor, float, float]:
    """``(per-class IoU with NaN where a class is absent from truth and prediction, mIoU, pixel accuracy)``."""
    confusion = confusion.double()
    tp = confusion.diag()
    union = confusion.sum(0) + confusion.sum(1) - tp
    iou = torch.where(union > 0, tp / union.clamp_min(1), torch.full_like(tp, float("nan")))
    present = ~iou.isnan()
    miou = float(iou[present].mean()) if present.any() else float("nan")
    total = float(confusion.sum())
    accuracy = float(tp.sum()) / total if total else float("nan")
    return iou, miou, accuracy


#: distinct colours for class ids (background black), cycled for more classes
PALETTE = torch.tensor([[0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
                        [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212],
                        [0, 128, 128], [220, 190, 255], [170, 110, 40], [255, 250, 200], [128, 0, 0]], dtype=torch.uint8)


def colorize(mask: torch.Tensor) -> torch.Tensor:
    """``[H,W]`` class ids -> uint8 ``[3,H,W]`` colours (ignored/out-of-range ids wrap around the palette)."""
    return PALETTE[mask.long().cpu() % len(PALETTE)].permute(2, 0, 1).contiguous()

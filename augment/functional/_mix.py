"""MixUp (Zhang et al., 2018) and CutMix (Yun et al., 2019) kernels, timm's conventions.

``lam`` is always the weight of a sample's *own* image and target; ``partner[i]`` is the sample it
is mixed with. Targets are one-hot with label smoothing ``s`` (``off = s/K``,
``on = 1 - s + off``), or multi-hot / soft ``[B,K]`` vectors smoothed the same way
(``y * (1 - s) + s/K``), and are mixed with the same ``lam`` as the pixels. No randomness here:
``lam``, partners and box centres come in as arguments (the transforms draw them).
"""

from __future__ import annotations

import torch

from augment.functional._alloc import empty_like

__all__ = [
    "check_cutmix_minmax",
    "cutmix",
    "cutmix_boxes",
    "cutmix_boxes_minmax",
    "mix_targets",
    "mixup",
    "smooth_targets",
]


def smooth_targets(target: torch.Tensor, num_classes: int | None, smoothing: float = 0.0) -> torch.Tensor:
    """Class indices ``[B]`` -> smoothed one-hot ``[B,K]``; ``[B,K]`` multi-hot -> smoothed float32.

    Raises:
        ValueError: ``num_classes`` missing for index targets, labels out of range, or a bad shape.
    """
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"label smoothing must be in [0, 1), got {smoothing!r}")
    if target.ndim == 1 and not target.is_floating_point():
        if num_classes is None:
            raise ValueError("num_classes is required when targets are class indices [B]")
        if target.numel() and (int(target.min()) < 0 or int(target.max()) >= num_classes):
            raise ValueError(f"class indices must be in [0, {num_classes}), got range [{int(target.min())}, {int(target.max())}]")
        onehot = torch.nn.functional.one_hot(target.long(), num_classes).to(torch.float32)
    elif target.ndim == 2:
        if num_classes is not None and target.shape[1] != num_classes:
            raise ValueError(f"targets [B,K] must have K = num_classes = {num_classes}, got {target.shape[1]}")
        onehot = target.to(torch.float32)
        num_classes = target.shape[1]
    else:
        raise ValueError(f"targets must be class indices [B] or multi-hot / soft [B,K], got {tuple(target.shape)} {target.dtype}")
    if smoothing == 0.0:
        return onehot
    return onehot * (1.0 - smoothing) + smoothing / num_classes


def _weights(lam: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return lam.to(device=like.device, dtype=torch.float32).view(-1, *([1] * (like.ndim - 1)))


def mixup(x: torch.Tensor, source: torch.Tensor, lam: torch.Tensor, partner: torch.Tensor | None = None) -> torch.Tensor:
    """``lam[i] * x[i] + (1 - lam[i]) * source[partner[i]]`` (``partner`` defaults to ``i``).

    Computed as ``other.lerp_(x, lam)`` on the gathered partners (one gather, one in-place pass).
    uint8 inputs are mixed in float32 and rounded back; float inputs keep their dtype.
    """
    if partner is None:
        other = empty_like(source).copy_(source)
    else:
        other = torch.index_select(source, 0, partner.to(source.device), out=empty_like(source))
    if not x.is_floating_point():
        other, x = other.to(torch.float32), x.to(torch.float32)
    weights = lam.to(torch.float64).cpu()
    if bool((weights == weights[0]).all()):  # one weight (batch mode): a scalar lerp
        other.lerp_(x, float(weights[0]))
    else:
        other.lerp_(x, _weights(lam, other).to(other.dtype))
    if source.is_floating_point():
        return other
    return other.round_().clamp_(0, 255).to(source.dtype)


def mix_targets(target: torch.Tensor, lam: torch.Tensor, partner: torch.Tensor) -> torch.Tensor:
    """Mix ``[B,K]`` float targets: ``lam[i] * y[i] + (1 - lam[i]) * y[partner[i]]``."""
    return torch.lerp(target.index_select(0, partner.to(target.device)), target, _weights(lam, target))


def _copy_outside(out: torch.Tensor, x: torch.Tensor, top: int, left: int, bottom: int, right: int) -> None:
    """Copy ``x`` into ``out`` everywhere but the box (at most four rectangles)."""
    out[..., :top, :].copy_(x[..., :top, :])
    out[..., bottom:, :].copy_(x[..., bottom:, :])
    out[..., top:bottom, :left].copy_(x[..., top:bottom, :left])
    out[..., top:bottom, right:].copy_(x[..., top:bottom, right:])


def cutmix(x: torch.Tensor, source: torch.Tensor, boxes: torch.Tensor, partner: torch.Tensor | None = None) -> torch.Tensor:
    """Paste ``source[partner[i]]``'s box ``boxes[i] = (top, left, bottom, right)`` into ``x[i]``.

    Works on images ``[B,C,H,W]`` and masks ``[B,H,W]`` alike (the box indexes the last two dims).
    Every output element is written once: outside the box from ``x``, inside from the partner.
    """
    out = empty_like(x)
    index = list(range(x.shape[0])) if partner is None else partner.cpu().tolist()
    rows = boxes.cpu().tolist()
    if rows and all(row == rows[0] for row in rows):  # one box for the batch: copy its outside at once
        top, left, bottom, right = rows[0]
        if not (bottom > top and right > left):
            out.copy_(x)
            return out
        _copy_outside(out, x, top, left, bottom, right)
        for i, p in enumerate(index):
            out[i, ..., top:bottom, left:right].copy_(source[p, ..., top:bottom, left:right])
        return out
    for i, (top, left, bottom, right) in enumerate(rows):
        if bottom > top and right > left:
            _copy_outside(out[i], x[i], top, left, bottom, right)
            out[i, ..., top:bottom, left:right].copy_(source[index[i], ..., top:bottom, left:right])
        else:
            out[i].copy_(x[i])
    return out


def cutmix_boxes(lam: torch.Tensor, height: int, width: int, centers: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Boxes of area ``~(1 - lam) * H * W`` around ``centers``, clipped: exactly timm's ``rand_bbox``.

    With ``cut = int(size * sqrt(1 - lam))`` per side and the centre ``c`` in pixels, the box is
    ``[c - cut // 2, c + (cut + 1) // 2)`` clipped to the image (so an unclipped box is ``cut``
    pixels wide, odd cuts included), as ``timm.data.mixup.rand_bbox`` computes it.

    Args:
        lam: ``[N]`` float mixing weights.
        centers: ``[N, 2]`` float in ``[0, 1)``: the box centre as a fraction of ``(H, W)``; the
            pixel is ``floor(fraction * size)`` (timm draws it with ``randint(0, size)``).

    Returns:
        ``(boxes, corrected_lam)``: int64 ``[N, 4]`` ``(top, left, bottom, right)`` and the weight
        recomputed from the clipped area, ``1 - area / (H*W)`` (float64, timm's ``correct_lam``).
    """
    ratio = torch.sqrt(1.0 - lam.to(torch.float64).cpu())
    cut_h = (height * ratio).long()
    cut_w = (width * ratio).long()
    cy = (centers[:, 0].cpu().to(torch.float64) * height).long().clamp_(0, height - 1)
    cx = (centers[:, 1].cpu().to(torch.float64) * width).long().clamp_(0, width - 1)
    top = (cy - cut_h // 2).clamp(0, height)
    bottom = (cy + (cut_h + 1) // 2).clamp(0, height)
    left = (cx - cut_w // 2).clamp(0, width)
    right = (cx + (cut_w + 1) // 2).clamp(0, width)
    return _with_lam(top, left, bottom, right, height, width)


def _with_lam(top: torch.Tensor, left: torch.Tensor, bottom: torch.Tensor, right: torch.Tensor, height: int,
              width: int) -> tuple[torch.Tensor, torch.Tensor]:
    boxes = torch.stack([top, left, bottom, right], dim=1)
    corrected = 1.0 - ((bottom - top) * (right - left)).to(torch.float64) / float(height * width)
    return boxes, corrected


def check_cutmix_minmax(minmax: object) -> tuple[float, float]:
    """Validate timm's ``cutmix_minmax``: ``(low, high)`` side fractions, ``0 <= low < high <= 1``."""
    if (not isinstance(minmax, (list, tuple)) or len(minmax) != 2
            or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in minmax)
            or not 0.0 <= minmax[0] < minmax[1] <= 1.0):
        raise ValueError(f"cutmix_minmax must be (low, high) side fractions with 0 <= low < high <= 1, got {minmax!r}")
    return float(minmax[0]), float(minmax[1])


def _int_draw(low: torch.Tensor | int, high: torch.Tensor | int, uniform: torch.Tensor) -> torch.Tensor:
    """``numpy.random.randint(low, high)`` from a uniform in ``[0, 1)``: ``low + floor(u * (high - low))``."""
    span = torch.as_tensor(high) - torch.as_tensor(low)
    return torch.as_tensor(low) + torch.minimum((uniform * span).long(), span - 1)


def cutmix_boxes_minmax(height: int, width: int, minmax: tuple[float, float],
                        uniform: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Boxes with sides drawn in ``minmax`` fractions of the image: exactly timm's ``rand_bbox_minmax``.

    timm draws ``cut_h = randint(int(H * low), int(H * high))``, ``cut_w`` likewise, then the
    top-left corner ``randint(0, H - cut_h + 1)``, ``randint(0, W - cut_w + 1)``; each
    ``randint(a, b)`` here is ``a + floor(u * (b - a))`` with the four uniforms of a row.

    Args:
        minmax: ``(low, high)`` (:func:`check_cutmix_minmax`).
        uniform: float ``[N, 4]`` in ``[0, 1)``: ``(cut_h, cut_w, top, left)`` draws.

    Returns:
        ``(boxes, lam)``: int64 ``[N, 4]`` ``(top, left, bottom, right)`` and ``1 - area / (H*W)``
        (timm always corrects ``lam`` with ``cutmix_minmax``).

    Raises:
        ValueError: ``int(size * low) == int(size * high)`` for a side (no size to draw; timm's
            ``randint`` fails there too).
    """
    low, high = check_cutmix_minmax(minmax)
    bounds = [(int(height * low), int(height * high)), (int(width * low), int(width * high))]
    for (a, b), name, size in zip(bounds, ("height", "width"), (height, width)):
        if a >= b:
            raise ValueError(f"cutmix_minmax {minmax!r} leaves no box size to draw for the image {name} {size} "
                             f"(int({size} * {low}) = {a}, int({size} * {high}) = {b})")
    u = uniform.cpu().to(torch.float64)
    cut_h = _int_draw(*bounds[0], u[:, 0])
    cut_w = _int_draw(*bounds[1], u[:, 1])
    top = _int_draw(0, height - cut_h + 1, u[:, 2])
    left = _int_draw(0, width - cut_w + 1, u[:, 3])
    return _with_lam(top, left, top + cut_h, left + cut_w, height, width)

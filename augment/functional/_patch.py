"""Patch-based negative views (Qin et al., 2021, "Understanding and Improving Robustness of Vision
Transformers through Patch-based Negative Augmentation", arXiv 2110.07858): pure kernels.

* P-Shuffle permutes the positions of the non-overlapping ``ps x ps`` patches;
* P-Rotate rotates every patch in place by a multiple of 90 degrees (0 included);
* P-Infill replaces the patches of a central region with patches taken from outside it.

All three move whole patches, and speed comes from the layout of the move (``docs/augment.md``).

* **CPU** (:mod:`augment.functional._staged`, OpenCV present): the batch is staged through cache-sized
  chunks in *block layout*, where one patch of one channel (a ``ps x ps`` block) is contiguous. A
  transpose whose elements are patch rows (``ps * itemsize`` bytes) gets a chunk there and back;
  in between a patch gather is one gather of whole blocks, and rotations are whole-block flips
  and transposes of stacked blocks, all SIMD (OpenCV ``transpose`` / ``flip`` / ``rotate``).
* **Elsewhere** (CUDA): the image is viewed with the widest element that tiles a patch row (up to
  16 bytes: ``complex128``) and moved with ``index_select``, indices built as ``offset within a
  patch + offset of the source patch``; rotations go through a patch-major buffer, one
  element-level pass per angle.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from augment.functional._alloc import empty, empty_like
from augment.functional._staged import (
    _gather_blocks,
    _gather_plan,
    _opencv,
    _rotate_blocks,
    _rotate_plan,
    _staged,
    _staged_eligible,
)

__all__ = [
    "MIN_INFILL_GRID",
    "check_infill_grid",
    "check_patch_size",
    "infill_region",
    "infill_regions",
    "infill_sources",
    "patch_gather",
    "patch_infill",
    "patch_rotate",
    "patch_shuffle",
]

_WIDTHS = ((16, torch.complex128), (8, torch.int64), (4, torch.int32), (2, torch.int16), (1, torch.uint8))
_CHUNK_BYTES = 1 << 20  # target size of one chunk's index (measured best: 256 KiB-1 MiB, L2-sized)
_ROTATE_GROUP = np.array([3, 2, 0, 1], dtype=np.uint8)  # quarter turns -> processing group (180, 270, 90, 0)


def check_patch_size(height: int, width: int, patch_size: int, model_patch_size: int | None = None) -> tuple[int, int]:
    """Validate ``patch_size`` against an image and an optional model patch size.

    Returns:
        ``(rows, cols)`` of the patch grid.

    Raises:
        ValueError: ``patch_size`` is not a positive int, does not divide both ``height`` and
            ``width``, or is not a multiple of ``model_patch_size``; or the image has no pixels.
    """
    if isinstance(patch_size, bool) or not isinstance(patch_size, int) or patch_size < 1:
        raise ValueError(f"patch_size must be a positive int, got {patch_size!r}")
    if height < 1 or width < 1:
        raise ValueError(f"the image size {height}x{width} has no pixels: height and width must be >= 1")
    if model_patch_size is not None:
        if isinstance(model_patch_size, bool) or not isinstance(model_patch_size, int) or model_patch_size < 1:
            raise ValueError(f"model_patch_size must be a positive int or None, got {model_patch_size!r}")
        if patch_size % model_patch_size:
            raise ValueError(
                f"patch_size {patch_size} must be a multiple of model_patch_size {model_patch_size} "
                f"(e.g. {[model_patch_size * m for m in (1, 2, 3)]})"
            )
    if height % patch_size or width % patch_size:
        divisors = [d for d in range(1, math.gcd(height, width) + 1) if height % d == 0 and width % d == 0]
        raise ValueError(f"patch_size {patch_size} must divide the image size {height}x{width}; allowed: {divisors}")
    return height // patch_size, width // patch_size


def _as_4d(x: torch.Tensor) -> torch.Tensor:
    if x.ndim == 3:  # a mask batch [B,H,W]
        return x[:, None]
    if x.ndim != 4:
        raise ValueError(f"expected [B,C,H,W] (or a mask batch [B,H,W]), got {tuple(x.shape)}")
    return x


def _wide_view(x: torch.Tensor, row_bytes: int) -> tuple[torch.Tensor, int]:
    """View contiguous ``x`` with the widest element that tiles a patch row; returns (view, width)."""
    for width, dtype in _WIDTHS:
        if row_bytes % width == 0 and (x.shape[-1] * x.element_size()) % width == 0:
            try:
                return x.view(torch.uint8).view(dtype), width
            except RuntimeError:  # storage offset not aligned for this width
                continue
    raise AssertionError("unreachable: width 1 always works")


def _check_out(out: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    if out is None:
        return empty_like(like)
    if out.shape != like.shape or out.dtype != like.dtype or out.device != like.device or not out.is_contiguous():
        raise ValueError(f"out must be a contiguous {like.dtype} tensor of shape {tuple(like.shape)} on {like.device}")
    if out.data_ptr() == like.data_ptr():
        raise ValueError("out must not be the input (patches are read while the output is written)")
    return out


def _gather_patches(source: torch.Tensor, start: torch.Tensor, inner: torch.Tensor, rows: int, cols: int,
                    out: torch.Tensor) -> None:
    """Fill ``out`` (``[B,C,H,W]`` in wide elements, flat) patch by patch.

    ``start[b, p]`` is the flat offset in ``source`` of the first element of the patch that lands
    at position ``p``; ``inner`` ``[C, ps, units]`` the offsets of a patch's elements relative to
    it. Indices are built a few samples at a time so each chunk stays in cache (one chunk on
    accelerators, where a single launch is best).
    """
    batch = start.shape[0]
    c, ps, units = inner.shape
    per_sample = c * rows * ps * cols * units
    inner = inner.view(1, c, 1, ps, 1, units)
    chunk = batch if source.device.type != "cpu" else max(1, _CHUNK_BYTES // (per_sample * 8))
    for first in range(0, batch, chunk):
        last = min(batch, first + chunk)
        index = (start[first:last].view(last - first, 1, rows, 1, cols, 1) + inner).view(-1)
        torch.index_select(source, 0, index, out=out[first * per_sample:last * per_sample])


def _inner_chw(c: int, h: int, row_units: int, patch_size: int, units: int, device: torch.device) -> torch.Tensor:
    """Offsets of a patch's wide elements relative to its first one, in ``[C,H,W]`` layout."""
    return (torch.arange(c, device=device).view(c, 1, 1) * (h * row_units)
            + torch.arange(patch_size, device=device).view(1, patch_size, 1) * row_units
            + torch.arange(units, device=device).view(1, 1, units))


def patch_gather(x: torch.Tensor, source: torch.Tensor, patch_size: int, out: torch.Tensor | None = None) -> torch.Tensor:
    """Output patch ``p`` of sample ``b`` is input patch ``source[b, p]`` (row-major patch order).

    Args:
        x: ``[B,C,H,W]`` (or a mask batch ``[B,H,W]``), any dtype and device.
        source: int64 ``[B, rows*cols]`` with values in ``[0, rows*cols)``.
        patch_size: patch side; must divide ``H`` and ``W``.
        out: optional preallocated contiguous output shaped like ``x`` (saves the allocation,
            whose first-touch page faults cost more than the gather itself for large batches).

    Returns:
        A new tensor shaped like ``x`` (or ``out``).
    """
    x4 = _as_4d(x)
    b, c, h, w = x4.shape
    rows, cols = check_patch_size(h, w, patch_size)
    if source.shape != (b, rows * cols):
        raise ValueError(f"source must have shape {(b, rows * cols)}, got {tuple(source.shape)}")
    result = _check_out(out, x)
    low, high = (int(v) for v in torch.aminmax(source)) if source.numel() else (0, 0)
    if low < 0 or high >= rows * cols:
        raise ValueError(f"source values must lie in [0, {rows * cols}) (patch indices), got [{low}, {high}]")
    if result.numel() == 0:  # an empty batch
        return result
    cv2 = _opencv() if _staged_eligible(x4) else None
    if cv2 is not None:
        plan = functools.partial(_gather_plan, source.cpu().to(torch.int32).numpy().reshape(b, rows, cols), c)
        _staged(cv2, x4.detach().resolve_conj().resolve_neg().contiguous(), _as_4d(result), patch_size, 0, plan,
                _gather_blocks)
        return result
    x4 = x4.contiguous()
    wide, width = _wide_view(x4, patch_size * x4.element_size())
    units = patch_size * x4.element_size() // width  # wide elements per patch row
    row_units = wide.shape[-1]
    device = x.device
    source = source.to(device=device, dtype=torch.int64)
    start = ((source // cols) * (patch_size * row_units) + (source % cols) * units
             + torch.arange(b, device=device).view(b, 1) * (c * h * row_units))
    out_wide = result.view(torch.uint8).view(wide.dtype).view(-1)
    _gather_patches(wide.reshape(-1), start, _inner_chw(c, h, row_units, patch_size, units, device), rows, cols, out_wide)
    return result


def _patch_major(x: torch.Tensor, patch_size: int, out: torch.Tensor) -> None:
    """Copy ``[B,C,H,W]`` into ``out`` as ``[B,rows,cols,C,ps,ps]`` blocks (a wide-element gather)."""
    b, c, h, w = x.shape
    rows, cols = h // patch_size, w // patch_size
    wide, width = _wide_view(x, patch_size * x.element_size())
    units = patch_size * x.element_size() // width
    row_units = cols * units
    ar = lambda n: torch.arange(n, device=x.device)  # noqa: E731
    pattern = (ar(rows).view(rows, 1, 1, 1, 1) * (patch_size * row_units) + ar(cols).view(1, cols, 1, 1, 1) * units
               + ar(c).view(1, 1, c, 1, 1) * (h * row_units) + ar(patch_size).view(1, 1, 1, patch_size, 1) * row_units
               + ar(units).view(1, 1, 1, 1, units)).view(-1)
    flat, size, stride = wide.reshape(-1), pattern.numel(), c * h * row_units
    target = out.view(torch.uint8).view(wide.dtype).view(-1)
    chunk = b if x.device.type != "cpu" else max(1, _CHUNK_BYTES // (size * 8))
    for first in range(0, b, chunk):
        last = min(b, first + chunk)
        index = (torch.arange(first, last, device=x.device).view(-1, 1) * stride + pattern.view(1, -1)).view(-1)
        torch.index_select(flat, 0, index, out=target[first * size:last * size])


def patch_shuffle(x: torch.Tensor, permutation: torch.Tensor, patch_size: int, out: torch.Tensor | None = None) -> torch.Tensor:
    """P-Shuffle: output patch ``p`` is input patch ``permutation[b, p]``.

    Args:
        x: ``[B,C,H,W]`` or a mask batch ``[B,H,W]``.
        permutation: int64 ``[B, rows*cols]``, a permutation of the patch indices per sample.
        patch_size: patch side (divides ``H`` and ``W``).
        out: optional preallocated output (see :func:`patch_gather`).
    """
    return patch_gather(x, permutation, patch_size, out)


def patch_infill(x: torch.Tensor, source: torch.Tensor, patch_size: int, out: torch.Tensor | None = None) -> torch.Tensor:
    """P-Infill: like :func:`patch_gather`; ``source`` is the identity outside the central region
    and points at patches outside the region inside it (see :func:`infill_sources`)."""
    return patch_gather(x, source, patch_size, out)


def patch_rotate(x: torch.Tensor, quarter_turns: torch.Tensor, patch_size: int, out: torch.Tensor | None = None) -> torch.Tensor:
    """P-Rotate: rotate patch ``p`` of sample ``b`` in place by ``quarter_turns[b, p] * 90`` degrees
    counter-clockwise (``torch.rot90`` convention).

    On CPU (with OpenCV, a dependency of albumentations) the batch goes through cache-sized
    chunks in block layout, where every patch of every channel is contiguous (:func:`_staged`,
    :func:`_rotate_blocks`); elsewhere (CUDA, 16-byte elements) a torch path moves patch rows as
    wide elements (:func:`_rotate_torch`). Both give the same bits.

    Args:
        x: ``[B,C,H,W]`` or a mask batch ``[B,H,W]``.
        quarter_turns: integer ``[B, rows*cols]`` (row-major patch order); taken modulo 4.
        patch_size: patch side (divides ``H`` and ``W``).
        out: optional preallocated output (see :func:`patch_gather`).
    """
    x4 = _as_4d(x)
    b, c, h, w = x4.shape
    rows, cols = check_patch_size(h, w, patch_size)
    if quarter_turns.shape != (b, rows * cols):
        raise ValueError(f"quarter_turns must have shape {(b, rows * cols)}, got {tuple(quarter_turns.shape)}")
    result = _check_out(out, x)
    if result.numel() == 0:  # an empty batch
        return result
    cv2 = _opencv() if _staged_eligible(x4) else None
    if cv2 is None:
        return _rotate_torch(x4, quarter_turns.to(x.device).remainder(4), patch_size, result)
    # integers reach uint8 modulo 256 and are reduced modulo 4 there; floats are reduced first
    turns = quarter_turns.remainder(4) if quarter_turns.is_floating_point() else quarter_turns
    codes = _ROTATE_GROUP[turns.cpu().to(torch.uint8).numpy().reshape(b, rows, cols) & 3]
    _staged(cv2, x4.detach().resolve_conj().resolve_neg().contiguous(), _as_4d(result), patch_size, 1,
            functools.partial(_rotate_plan, codes, c), functools.partial(_rotate_blocks, cv2, patch_size))
    return result


def _rotate_torch(x4: torch.Tensor, turns: torch.Tensor, patch_size: int, result: torch.Tensor) -> torch.Tensor:
    """P-Rotate with torch ops only (any device).

    The batch is copied into a patch-major buffer (a wide-element gather); the patches to rotate
    are taken out as contiguous blocks, transformed with one element-level pass each (a transpose
    and/or a whole-block reversal; no wide element can express a transpose) and appended to the
    buffer; a final wide-element gather assembles the output from the buffer, reading each patch
    from its rotated copy or from the original, bottom-up where a row flip is still owed.
    """
    b, c, h, w = x4.shape
    rows, cols = h // patch_size, w // patch_size
    x, device, total = x4.contiguous(), x4.device, b * rows * cols
    turns = turns.view(-1)
    chosen = [(turns == k).nonzero().view(-1) for k in (1, 2, 3)]
    extra = sum(index.numel() for index in chosen)
    buffer = empty((total + extra, c, patch_size, patch_size), x.dtype, device)
    _patch_major(x, patch_size, buffer[:total])
    blocks, _ = _wide_view(buffer.view(total + extra, -1), c * patch_size * patch_size * x.element_size())
    slot = torch.arange(total, device=device)
    reverse = torch.zeros(total, dtype=torch.bool, device=device)  # rows read bottom-up by the final gather
    offset = total
    for k, index in zip((1, 2, 3), chosen):
        if index.numel() == 0:
            continue
        picked = blocks[:total].index_select(0, index).view(torch.uint8).view(x.dtype).view(-1, c, patch_size, patch_size)
        target = buffer[offset:offset + index.numel()]
        # one element-level pass each, the row flips left to the final (wide) gather:
        # rot90 = flipRows(P^T); rot180 = reversing the whole block; rot270 = flipRows(rot180(P)^T)
        if k == 1:
            target.copy_(picked.transpose(-2, -1))
        elif k == 2:
            target.copy_(torch.flip(picked, dims=(-2, -1)))
        else:
            target.copy_(torch.flip(picked, dims=(-2, -1)).transpose(-2, -1))
        slot[index] = torch.arange(offset, offset + index.numel(), device=device)
        reverse[index] = k != 2
        offset += index.numel()
    rows_view, width = _wide_view(buffer.view(-1, patch_size), patch_size * x.element_size())  # patch rows
    units = patch_size * x.element_size() // width
    block_units = c * patch_size * units
    # element (c, r, t) of a block: c * ps * units + r * units + t; reversed rows read row ps-1-r
    step = torch.where(reverse, -units, units).view(b, 1, rows, 1, cols, 1)
    start = (slot * block_units + reverse * ((patch_size - 1) * units)).view(b, 1, rows, 1, cols, 1)
    inner = (torch.arange(c, device=device).view(1, c, 1, 1, 1, 1) * (patch_size * units)
             + torch.arange(units, device=device).view(1, 1, 1, 1, 1, units))
    r = torch.arange(patch_size, device=device).view(1, 1, 1, patch_size, 1, 1)
    source, target = rows_view.reshape(-1), result.view(torch.uint8).view(rows_view.dtype).view(-1)
    per_sample = c * h * (w // patch_size) * units
    chunk = b if device.type != "cpu" else max(1, _CHUNK_BYTES // (per_sample * 8))
    for first in range(0, b, chunk):
        last = min(b, first + chunk)
        index = (start[first:last] + step[first:last] * r + inner).view(-1)
        torch.index_select(source, 0, index, out=target[first * per_sample:last * per_sample])
    return result


#: the smallest P-Infill grid side: a central region needs a border of patches all around it
MIN_INFILL_GRID = 3


def check_infill_grid(rows: int, cols: int) -> None:
    """Raise ``ValueError`` unless a ``rows x cols`` patch grid leaves room for a central region
    with a border of at least one patch on every side (``rows, cols >= 3``)."""
    if rows < MIN_INFILL_GRID or cols < MIN_INFILL_GRID:
        raise ValueError(
            f"P-Infill needs a patch grid of at least {MIN_INFILL_GRID}x{MIN_INFILL_GRID} (a central region with a "
            f"border of patches on every side), got a {rows}x{cols} grid"
        )


@functools.lru_cache(maxsize=64)
def _infill_candidates(rows: int, cols: int) -> tuple[tuple[int, int, int], ...]:
    """``(area, height, width)`` per reachable area, sorted, with the shape closest to the grid's
    aspect (then the lower height) for each area; shapes whose scaled sides differ by more than one
    patch are left out. Regions leave a border of at least one patch on every side (the grid has
    3+ patches per side: :func:`check_infill_grid`)."""
    check_infill_grid(rows, cols)
    best: dict[int, tuple[float, int, int]] = {}
    for height in range(1, rows - 1):
        for width in range(1, cols - 1):
            area = height * width
            if abs(height / rows - width / cols) > 1.0 / min(rows, cols) + 1e-9:
                continue  # not near the grid's aspect (sides differ by more than one patch)
            key = (abs(height / rows - width / cols), height, width)
            if area not in best or key < best[area]:
                best[area] = key
    return ((0, 0, 0),) + tuple((area, h, w) for area, (_, h, w) in sorted(best.items()))


def infill_regions(rows: int, cols: int, replace_rate: torch.Tensor) -> torch.Tensor:
    """Vectorised :func:`infill_region`: ``[B]`` rates -> int64 ``[B, 4]`` ``(top, left, height, width)``."""
    table = torch.tensor(_infill_candidates(rows, cols), dtype=torch.int64)
    areas = table[:, 0].to(torch.float64)
    target = replace_rate.to(torch.float64).cpu() * (rows * cols)
    upper = torch.searchsorted(areas, target).clamp_(max=len(areas) - 1)
    lower = (upper - 1).clamp_(min=0)
    pick = torch.where((target - areas[lower]) <= (areas[upper] - target), lower, upper)  # ties: the smaller area
    height, width = table[pick, 1], table[pick, 2]
    return torch.stack([(rows - height) // 2, (cols - width) // 2, height, width], dim=1)


def infill_region(rows: int, cols: int, replace_rate: float) -> tuple[int, int, int, int]:
    """The central region of a ``rows x cols`` patch grid whose area is closest to ``replace_rate``.

    The region is a centred rectangle ``[top, top+height) x [left, left+width)`` of patches, shaped
    as close to the grid's aspect as its area allows, inside a border of at least one patch on
    every side (there must be boundary patches to copy from). Rates beyond the largest such
    region give that region; equal distances go to the smaller area.

    Returns:
        ``(top, left, height, width)`` in patches (height and width 0 when the rate rounds to 0).

    Raises:
        ValueError: ``replace_rate`` outside ``[0, 1)``, or a grid smaller than 3x3 (no room for
            a central region: :func:`check_infill_grid`).
    """
    if not 0.0 <= replace_rate < 1.0:
        raise ValueError(f"replace_rate must be in [0, 1), got {replace_rate!r}")
    top, left, height, width = infill_regions(rows, cols, torch.tensor([float(replace_rate)]))[0].tolist()
    return top, left, height, width


def infill_sources(rows: int, cols: int, regions: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
    """P-Infill source patch per position: identity outside each sample's region; inside, the
    outside patch number ``floor(uniform * count)`` (so uniform over the patches outside).

    Args:
        regions: int64 ``[B, 4]`` from :func:`infill_regions`.
        uniform: ``[B, rows*cols]`` in ``[0, 1)``.
    """
    batch, total = regions.shape[0], rows * cols
    r = torch.arange(rows).view(1, rows, 1)
    c = torch.arange(cols).view(1, 1, cols)
    top, left, height, width = (regions[:, i].view(-1, 1, 1) for i in range(4))
    inside = ((r >= top) & (r < top + height) & (c >= left) & (c < left + width)).view(batch, total)
    outside_first = torch.argsort(inside.to(torch.int8), dim=1, stable=True)  # outside patches, in order, first
    count = (total - inside.sum(dim=1, keepdim=True)).clamp_(min=1)
    rank = (uniform.cpu().to(torch.float64) * count).long().clamp_(max=total - 1)
    rank = torch.minimum(rank, count - 1)
    chosen = outside_first.gather(1, rank)
    return torch.where(inside, chosen, torch.arange(total).view(1, total))

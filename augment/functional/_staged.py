"""The staged CPU path of the patch kernels (see :mod:`augment.functional._patch`).

The batch goes through cache-sized chunks in *block layout*, where one ``ps x ps`` patch of one
channel is contiguous. A transpose whose elements are patch rows (``ps * itemsize`` bytes) gets
a chunk there and back; in between, a patch gather is one gather of whole blocks, and a rotation
is whole-block flips and transposes of stacked blocks, all SIMD through OpenCV (``transpose`` /
``flip`` / ``rotate``; OpenCV is a dependency). Work buffers come from
:func:`augment.functional._alloc.scratch`.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from augment.functional._alloc import scratch

_STAGE_BYTES = 1 << 21  # input bytes per chunk of the staged CPU path (measured best: 1-2 MiB)
_CV2_TRANSPOSE_SIZES = frozenset((1, 2, 3, 4, 6, 8, 12, 16, 24, 32))  # element sizes cv2.transpose handles


@functools.lru_cache(maxsize=1)
def _opencv():  # noqa: ANN202 - the cv2 module, or None
    try:
        import cv2
    except ImportError:  # pragma: no cover - installed with albumentations
        return None
    return cv2


def _staged_eligible(x: torch.Tensor) -> bool:
    return x.device.type == "cpu" and x.element_size() in (1, 2, 4, 8) and x.numel() > 0


def _cv_into(fn, dst: np.ndarray, *args) -> None:  # noqa: ANN001
    """Call an OpenCV function that writes into ``dst``; fail loudly if it allocated instead."""
    if fn(*args, dst) is not dst:
        raise RuntimeError(f"OpenCV {fn.__name__} did not write into the given buffer")


def _transpose_rows(cv2, src: np.ndarray, dst: np.ndarray) -> None:  # noqa: ANN001
    """``dst[j, i] = src[i, j]`` for uint8 ``[rows, cols, n]`` arrays whose elements are ``n`` bytes."""
    if src.shape[2] in _CV2_TRANSPOSE_SIZES:
        _cv_into(cv2.transpose, dst, src)
    else:  # wide rows (e.g. float32 patches of 16): torch's strided copy is ~3x numpy's here
        torch.from_numpy(dst).copy_(torch.from_numpy(src).transpose(0, 1))


def _staged(cv2, x: torch.Tensor, out: torch.Tensor, ps: int, spare: int, plan, work) -> None:  # noqa: ANN001
    """Run ``work`` on cache-sized chunks of contiguous CPU ``x`` in block layout; write ``out``.

    A chunk of ``count`` images holds ``nb = count * C * rows * cols`` blocks (one ``ps x ps``
    patch of one channel each, contiguous), ordered ``(col, image, channel, row)``: its patch
    rows, copied into cache, go through one transpose of ``[lines, cols]`` row elements; the
    inverse transpose writes the result back. ``plan(images, chunks)`` prepares the parameters of
    a run of equal chunks (the images in the slice ``images``) at once, vectorised;
    ``work(plan, index, nb, blocks, blocks_t, stage, stage_t)`` gets chunk ``index`` of the run,
    its blocks at the start of ``blocks`` (``1 + spare`` chunks long) and a chunk-sized ``stage``
    (uint8 numpy ``[n, block]`` arrays and their torch views), and returns the one of the two
    that holds the result. Work buffers come from :func:`~augment.functional._alloc.scratch`.
    """
    b, c, h, w = x.shape
    cols = w // ps
    row_bytes, block = ps * x.element_size(), ps * ps * x.element_size()
    source = x.view(torch.uint8).numpy().reshape(b, c * h, cols, row_bytes)
    target = out.view(torch.uint8).numpy().reshape(b, c * h, cols, row_bytes)
    per_image = c * (h // ps) * cols
    step = max(1, min(b, _STAGE_BYTES // (per_image * block)))
    buffer = scratch((2 + spare) * step * per_image * block).reshape(-1, block)
    blocks, stage = buffer[:(1 + spare) * step * per_image], buffer[(1 + spare) * step * per_image:]
    views = (blocks, torch.from_numpy(blocks), stage, torch.from_numpy(stage))
    full = b - b % step
    plans = [plan(slice(0, full), full // step)] if full else []
    if full < b:
        plans.append(plan(slice(full, b), 1))
    for first in range(0, b, step):
        count = min(step, b - first)
        lines, nb = count * c * h, count * per_image
        rows_in = stage[:nb].reshape(lines, cols, row_bytes)
        np.copyto(rows_in, source[first:first + count].reshape(lines, cols, row_bytes))  # into cache first
        _transpose_rows(cv2, rows_in, blocks[:nb].reshape(cols, lines, row_bytes))
        done = work(plans[first >= full], first // step if first < full else 0, nb, *views)
        _transpose_rows(cv2, done[:nb].reshape(cols, lines, row_bytes), target[first:first + count].reshape(lines, cols, row_bytes))


def _gather_plan(source: np.ndarray, channels: int, part: slice, chunks: int) -> np.ndarray:
    """``[chunks, nb]`` int32: the block each output block of a chunk reads, for the images in
    ``part`` of ``source`` (int32 ``[B, rows, cols]``, the source patch of every patch)."""
    count, rows, cols = (part.stop - part.start) // chunks, source.shape[1], source.shape[2]
    src = source[part].reshape(chunks, count, rows, cols).transpose(0, 3, 1, 2)  # output order (col, image, row)
    image = np.arange(count, dtype=np.int32)[:, None]
    mapping = np.empty((chunks, cols, count, channels, rows), np.int32)
    np.copyto(mapping[:, :, :, 0], ((src % cols) * count + image) * (channels * rows) + src // cols)
    for k in range(1, channels):  # channel k of a block is `rows` blocks further on
        np.add(mapping[:, :, :, k - 1], rows, out=mapping[:, :, :, k])
    return mapping.reshape(chunks, -1)


def _gather_blocks(plan: np.ndarray, index: int, nb: int, blocks, blocks_t, stage, stage_t):  # noqa: ANN001, ANN202
    """Patch gather of one staged chunk: one gather of whole blocks (see :func:`_staged`)."""
    torch.index_select(blocks_t[:nb], 0, torch.from_numpy(plan[index]), out=stage_t[:nb])
    return stage


def _rotate_plan(codes: np.ndarray, channels: int, part: slice, chunks: int) -> tuple[np.ndarray, list, np.ndarray]:
    """For each chunk of images: the ids of its turned blocks grouped 180, 270, 90 degrees, the
    group sizes (0 degrees last), and where the assembled chunk reads each block from (itself,
    or its slot in the turned blocks that follow the chunk's blocks).

    ``codes[part]`` is ``[chunks * count, rows, cols]`` (group of each patch). Blocks are numbered
    in the staging layout ``(col, image, channel, row)``; sorting happens per patch, not per
    block. Per-channel loops write strided slices: numpy is slow on a trailing dimension of 3.
    """
    count, rows, cols = (part.stop - part.start) // chunks, codes.shape[1], codes.shape[2]
    code = np.ascontiguousarray(codes[part].reshape(chunks, count, rows, cols).transpose(0, 3, 1, 2)).reshape(chunks, -1)
    patches, nb = code.shape[1], code.shape[1] * channels  # patch p = (col * count + image) * rows + row
    order = np.argsort(code, axis=1, kind="stable")
    sizes = np.bincount((code + np.arange(0, 4 * chunks, 4, dtype=np.int32)[:, None]).reshape(-1),
                        minlength=4 * chunks).reshape(chunks, 4) * channels
    patch = np.arange(patches, dtype=np.int32)
    home = patch // rows * (channels * rows) + patch % rows  # block id of each patch's channel 0
    first = home[order]
    rank = np.empty((chunks, patches), np.int32)  # slot of each patch's channel 0 in the turned blocks
    rank.reshape(-1)[(order + np.arange(0, chunks * patches, patches)[:, None]).reshape(-1)] = \
        np.tile(np.arange(nb, 2 * nb, channels, dtype=np.int32), chunks)
    keep = code == 3  # 0 degrees: read the block where it is (channel stride rows), else its slot (stride 1)
    start = np.where(keep, home, rank).reshape(chunks, cols * count, rows)
    stride = np.where(keep, np.int32(rows), np.int32(1)).reshape(chunks, cols * count, rows)
    blocks = np.empty((chunks, patches, channels), np.int32)
    mapping = np.empty((chunks, cols * count, channels, rows), np.int32)
    np.copyto(blocks[:, :, 0], first)
    np.copyto(mapping[:, :, 0], start)
    for k in range(1, channels):
        np.add(blocks[:, :, k - 1], rows, out=blocks[:, :, k])
        np.add(mapping[:, :, k - 1], stride, out=mapping[:, :, k])
    return blocks.reshape(chunks, nb), sizes.tolist(), mapping.reshape(chunks, nb)


def _rotate_blocks(cv2, ps: int, plan, index: int, nb: int, blocks, blocks_t, stage, stage_t):  # noqa: ANN001, ANN202
    """P-Rotate of one staged chunk (see :func:`_staged`) with OpenCV's SIMD flip, rotate, transpose.

    (1) One gather of whole blocks puts the 180, 270 and 90 degree blocks after the chunk's
    blocks, in that order; (2) reversing a whole block turns it by 180 degrees: done to the 180
    and 270 degree blocks (rot270 = rot90 o rot180); (3) the 270 and 90 degree blocks, stacked as
    one ``[m*ps, ps]`` matrix, are rotated by 90 degrees as a whole (``[ps, m*ps]``: row ``i``
    holds row ``i`` of every rotated block) and a transpose of patch rows makes them blocks
    again; (4) a gather of whole blocks assembles the chunk.
    """
    order, sizes, mapping = plan
    n180, n270, n90, n0 = sizes[index]
    n, size = nb - n0, blocks.shape[1] // (ps * ps)
    if not n:
        return blocks
    torch.index_select(blocks_t[:nb], 0, torch.from_numpy(order[index, :n]), out=blocks_t[nb:nb + n])
    turned = blocks[nb:nb + n]
    if n180 + n270:
        half = turned[:n180 + n270].reshape(n180 + n270, ps * ps, size)
        _cv_into(cv2.flip, half, half, 1)
    m = n270 + n90
    if m:
        quarter, rotated = turned[n180:], stage[:m]
        _cv_into(cv2.rotate, rotated.reshape(ps, m * ps, size), quarter.reshape(m * ps, ps, size),
                 cv2.ROTATE_90_COUNTERCLOCKWISE)
        _transpose_rows(cv2, rotated.reshape(ps, m, ps * size), quarter.reshape(m, ps, ps * size))
    torch.index_select(blocks_t[:nb + n], 0, torch.from_numpy(mapping[index]), out=stage_t[:nb])
    return stage

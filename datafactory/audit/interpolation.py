"""``interpolation_rate``: the share of test samples inside the training hull, per number of dimensions.

The experiment of Balestriero, Pesenti and LeCun (2021, arXiv 2110.09485, Figure 3): keep only
``d`` dimensions of every image and measure the proportion of test images whose ``d``-dimensional
version lies in the convex hull of the training images' (:mod:`datafactory.audit.hull`). The
paper reduces dimension two ways, both here:

* ``"crop"``: the central pixels -- the ``s x s`` window at the image centre with
  ``s = ceil(sqrt(ceil(d / C)))``, flattened pixel by pixel (all ``C`` channels of a pixel
  together, rows top to bottom), first ``d`` values kept; exactly ``d`` dimensions;
* ``"resize"``: smoothing and subsampling -- an area (box-filter) resize of the whole image to
  ``s x s`` with ``s = round(sqrt(d / C))``, so ``C * s * s`` dimensions (the nearest to ``d``
  this method can give; the result records the dimension actually used).

Vectors (``[N, D]``, e.g. model embeddings from :class:`datafactory.audit.embed.Embedder`) use
``"first"``: the first ``d`` coordinates. With ``embedder=...`` images are embedded first.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from datafactory.audit.hull import hull_membership

__all__ = ["REDUCTIONS", "InterpolationResult", "central_crop", "interpolation_rate", "reduce_dims", "smooth_subsample"]

#: dimension reductions: images (``[N, C, H, W]``) take ``"crop"`` / ``"resize"``, vectors ``"first"``
REDUCTIONS = ("crop", "resize", "first")


def _image_batch(value: Any, name: str) -> torch.Tensor:
    tensor = value if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value))
    if tensor.ndim != 4 or tensor.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty [N, C, H, W] batch of images, got shape {tuple(tensor.shape)}")
    return tensor


def _images(value: Any, name: str) -> torch.Tensor:
    return _image_batch(value, name).to(torch.float64)


def central_crop(images: Any, d: int) -> np.ndarray:
    """``[N, d]``: the central ``d`` values of each image (see the module docstring)."""
    batch = _images(images, "images")
    _, channels, height, width = batch.shape
    side = math.ceil(math.sqrt(math.ceil(d / channels)))
    if side > min(height, width):
        raise ValueError(f"a central crop of d={d} values needs a {side}x{side} window, but the images are {height}x{width}")
    top, left = (height - side) // 2, (width - side) // 2
    window = batch[:, :, top : top + side, left : left + side].permute(0, 2, 3, 1).reshape(len(batch), -1)
    return window[:, :d].numpy()


def smooth_subsample(images: Any, d: int) -> np.ndarray:
    """``[N, C*s*s]``: each image area-resized to ``s x s``, ``s = round(sqrt(d / C))`` (at least 1)."""
    batch = _images(images, "images")
    _, channels, height, width = batch.shape
    side = max(1, round(math.sqrt(d / channels)))
    if side > min(height, width):
        raise ValueError(f"smoothing-subsampling to d={d} needs {side}x{side} pixels, but the images are {height}x{width}")
    return torch.nn.functional.adaptive_avg_pool2d(batch, (side, side)).reshape(len(batch), -1).numpy()


def reduce_dims(data: Any, d: int, reduce: str) -> np.ndarray:
    """Reduce images ``[N, C, H, W]`` or vectors ``[N, D]`` to about ``d`` dimensions with ``reduce``."""
    if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1:
        raise ValueError(f"each entry of dims must be an int >= 1, got {d!r}")
    if reduce == "crop":
        return central_crop(data, int(d))
    if reduce == "resize":
        return smooth_subsample(data, int(d))
    if reduce == "first":
        array = data.detach().cpu().numpy() if isinstance(data, torch.Tensor) else np.asarray(data)
        if array.ndim != 2:
            raise ValueError(f'reduce="first" takes [N, D] vectors, got shape {array.shape}')
        if d > array.shape[1]:
            raise ValueError(f"d={d} exceeds the vectors' dimension {array.shape[1]}")
        return array[:, : int(d)].astype(np.float64)
    raise ValueError(f"reduce must be one of {REDUCTIONS}, got {reduce!r}")


@dataclass
class InterpolationResult:
    """Proportion of test samples in the interpolation regime, per number of dimensions.

    Attributes:
        dims: the dimensions asked for.
        actual_dims: the dimensions used (differ from ``dims`` only for ``"resize"``).
        rates: proportion of test samples inside the training hull, per entry of ``dims``.
        inside: how many test samples were inside, per entry.
        n_train, n_test: the sample counts.
        reduce: the reduction used; ``embedder``: the embedding model, if any.
        decided_by: per entry, how each test sample was decided (see :class:`datafactory.audit.HullResult`).
        seconds: wall time per entry.
    """

    dims: list[int]
    actual_dims: list[int]
    rates: list[float]
    inside: list[int]
    n_train: int
    n_test: int
    reduce: str
    embedder: str | None = None
    decided_by: list[dict[str, int]] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def plot(self, path: Any) -> None:
        """Write the curve (proportion in interpolation vs dimensions) as a PNG."""
        from datafactory.audit.plots import interpolation_figure, save_figure

        save_figure(interpolation_figure([self.to_dict()]), path)


def _count(value: Any) -> int:
    return int(value.shape[0]) if hasattr(value, "shape") else len(value)


def interpolation_rate(
    train: Any,
    test: Any,
    dims: Sequence[int] | None = None,
    *,
    reduce: str | None = None,
    embedder: Any = None,
    progress: bool = False,
) -> InterpolationResult:
    """For each number of dimensions, the proportion of ``test`` inside the convex hull of ``train``.

    Args:
        train, test: images ``[N, C, H, W]`` (tensor or array, any real dtype) or vectors ``[N, D]``.
        dims: numbers of dimensions to test (default: all of them, ``[D]``, for vectors; required
            for images).
        reduce: ``"crop"`` (default for images) or ``"resize"`` for images, ``"first"`` (default)
            for vectors; see the module docstring.
        embedder: an :class:`datafactory.audit.embed.Embedder`: images are embedded first and
            treated as vectors.
        progress: tqdm bars over the test samples.

    Each test sample costs one LP per entry of ``dims`` unless a shortcut decides it (see
    :mod:`datafactory.audit.hull`); keep ``train`` to a few thousand samples.

    Raises:
        ValueError: mismatched shapes, an unknown ``reduce``, a ``d`` the data cannot give.
    """
    if embedder is not None:
        train = embedder.embed(list(_image_batch(train, "train")))
        test = embedder.embed(list(_image_batch(test, "test")))
    is_images = (train.ndim if isinstance(train, torch.Tensor) else np.ndim(train)) == 4
    if reduce is None:
        reduce = "crop" if is_images else "first"
    if reduce not in REDUCTIONS:
        raise ValueError(f"reduce must be one of {REDUCTIONS}, got {reduce!r}")
    if (reduce == "first") == is_images:
        raise ValueError(f'reduce={reduce!r} does not apply to {"images" if is_images else "vectors"}: '
                         f'use {"crop or resize" if is_images else "first"}')
    if dims is None:
        if is_images:
            raise ValueError("dims is required for images (e.g. dims=[2, 4, 8, 16, 32, 64])")
        dims = [np.asarray(train).shape[1]]
    if isinstance(dims, (int, np.integer)):
        dims = [int(dims)]
    dims = list(dims)
    if not dims or any(isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1 for d in dims):
        raise ValueError(f"dims must list at least one number of dimensions (ints >= 1), got {dims!r}")
    result = InterpolationResult(dims=[int(d) for d in dims], actual_dims=[], rates=[], inside=[],
                                 n_train=_count(train), n_test=_count(test), reduce=reduce,
                                 embedder=None if embedder is None else repr(embedder))
    for d in dims:
        began = time.perf_counter()
        a, b = reduce_dims(train, d, reduce), reduce_dims(test, d, reduce)
        membership = hull_membership(a, b, progress=progress)
        result.actual_dims.append(int(a.shape[1]))
        result.rates.append(membership.rate)
        result.inside.append(int(membership.inside.sum()))
        result.decided_by.append(membership.decided_by)
        result.seconds.append(time.perf_counter() - began)
    return result

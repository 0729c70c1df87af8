"""Training images for the GAN trainer, held in memory at the training resolution.

GAN training sets for DatasetGAN are small (hundreds to tens of thousands of images at 32-256
px), and random minibatches drawn from one seeded generator make training exactly resumable, so
the whole set is read once into a ``uint8`` tensor ``(N, 3, R, R)``: each image is converted to
RGB (grey repeated, alpha dropped, 16 bit scaled), centre-cropped to a square and resized with
antialiasing. ``max_images`` bounds the memory before anything is read.

Sources: a shard folder (``pipelines.make_loader``), a registered dataset name
(``loaders.open_dataset``), or a map-style dataset / :class:`loaders.Adapter` yielding sample
dicts with an ``"image"`` tensor ``[C, H, W]``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F

__all__ = ["load_training_images", "to_training_image", "describe_source"]

# 16-bit images (medical PNGs) may arrive as uint16 or widened to int32
_SIXTEEN_BIT = tuple(t for t in (getattr(torch, "uint16", None), torch.int16, torch.int32) if t is not None)


def to_training_image(image: Any, resolution: int, key: str = "?") -> torch.Tensor:
    """One image ``[C, H, W]`` (uint8/uint16/float in [0, 1]) -> uint8 ``[3, R, R]``."""
    if not isinstance(image, torch.Tensor) or image.ndim != 3:
        got = getattr(image, "shape", type(image).__name__)
        raise ValueError(f"sample {key!r}: 'image' must be a [C, H, W] tensor, got {got}")
    c = image.shape[0]
    if c == 1:
        image = image.expand(3, -1, -1)
    elif c == 4:
        image = image[:3]
    elif c != 3:
        raise ValueError(f"sample {key!r}: image has {c} channels; 1, 3 or 4 are supported")
    if image.dtype == torch.uint8:
        x = image.float() / 255.0
    elif image.dtype in _SIXTEEN_BIT:
        x = image.float().clamp(0, 65535) / 65535.0
    elif image.is_floating_point():
        x = image.float().clamp(0.0, 1.0)
    else:
        raise ValueError(f"sample {key!r}: unsupported image dtype {image.dtype}")
    h, w = x.shape[-2:]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    x = x[:, top : top + side, left : left + side]
    if side != resolution:
        x = F.interpolate(x[None], size=(resolution, resolution), mode="bilinear", antialias=True,
                          align_corners=False)[0]
    return (x * 255.0).round_().clamp_(0, 255).to(torch.uint8)


def _is_shard_folder(path: Path) -> bool:
    return path.is_dir() and ((path / "index.json").is_file() or any(path.glob("*.tar")))


def describe_source(source: Any) -> dict[str, Any]:
    """A JSON-able description of a data source (recorded in ``generator.json``)."""
    if isinstance(source, (str, os.PathLike)):
        text = os.fspath(source)
        return {"kind": "shards" if _is_shard_folder(Path(text)) else "dataset", "name": text}
    return {"kind": "dataset_object", "name": getattr(source, "name", "") or type(source).__name__}


def _collect(samples, resolution: int, max_images: int, what: str) -> torch.Tensor:
    images: list[torch.Tensor] = []
    for sample in samples:
        if sample is None:  # an adapter with on_error="skip" left it out (it records why)
            continue
        if not isinstance(sample, Mapping) or "image" not in sample:
            raise KeyError(f"{what}: samples must be dicts with an 'image' field")
        if len(images) >= max_images:
            raise ValueError(f"{what} holds more than max_images={max_images} images; raise max_images or use a subset")
        images.append(to_training_image(sample["image"], resolution, str(sample.get("__key__", len(images)))))
    if not images:
        raise ValueError(f"{what} yielded no images")
    return torch.stack(images)


def load_training_images(source: Any, resolution: int, *, split: str = "train", max_images: int = 100_000,
                         options: Mapping[str, Any] | None = None, on_error: str = "raise") -> torch.Tensor:
    """All images of ``source`` as uint8 ``(N, 3, resolution, resolution)``.

    Args:
        source: a shard folder (with ``index.json`` or ``.tar`` files), a registered dataset name,
            or a map-style dataset of sample dicts (e.g. a :class:`loaders.Adapter`).
        resolution: output height and width.
        split: the split of a registered dataset.
        max_images: at most this many images are kept in memory (more raise ``ValueError``).
        options: options for ``open_dataset`` (e.g. ``{"root": ..., "size": 500}``); a dataset
            that accepts ``resolution`` is rendered at the training resolution unless set here.
        on_error: ``"raise"`` or ``"skip"`` for unreadable samples.
    """
    from loaders import list_datasets, open_dataset

    options = dict(options or {})
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        name = os.fspath(source)
        # a shard manifest wins; then a registered name; then a folder of bare .tar shards
        if (path / "index.json").is_file() or (_is_shard_folder(path) and name not in list_datasets()):
            from pipelines import make_loader

            loader = make_loader(path, batch_size=64, decode="RGB", shuffle=False, collate=list,
                                 on_error=on_error)
            return _collect((s for batch in loader for s in batch), resolution, max_images, f"shards {str(path)!r}")
        if name not in list_datasets():
            raise FileNotFoundError(
                f"source {name!r} is neither a shard folder (index.json or .tar files) nor a registered dataset; "
                f"known datasets: {', '.join(list_datasets())}"
            )
        import inspect

        from loaders.registry import dataset_factory

        try:
            accepted = inspect.signature(dataset_factory(name)).parameters
        except (TypeError, ValueError):
            accepted = {}
        if "resolution" in accepted and "resolution" not in options:
            options["resolution"] = resolution
        if "on_error" in accepted:
            options.setdefault("on_error", on_error)
        root = options.pop("root", None)
        dataset = open_dataset(name, root, split=split, **options)
        return _collect((dataset[i] for i in range(len(dataset))), resolution, max_images, f"dataset {name!r}")
    if hasattr(source, "__len__") and hasattr(source, "__getitem__"):
        what = f"dataset {getattr(source, 'name', '') or type(source).__name__}"
        if len(source) > max_images:
            raise ValueError(f"{what} holds {len(source)} images, more than max_images={max_images}")
        return _collect((source[i] for i in range(len(source))), resolution, max_images, what)
    raise TypeError(
        f"source must be a shard folder, a registered dataset name or a map-style dataset, got {type(source).__name__}"
    )

"""``datafactory augment preview``: originals and augmented / negative views side by side.

Thin layer: open a dataset (``loaders.open_dataset``), build the spec (``augment.build``), call
``augment.preview_grid`` and write the PNG plus the resolved configuration next to it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

__all__ = ["preview", "register"]


def preview(spec: str, out: str | Path, dataset: str = "shapes", root: str | None = None, split: str | None = None,
            count: int = 6, views: int = 4, seed: int = 0, scale: int = 2, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write ``out`` (PNG) and ``out`` with ``.json`` (the resolved config); returns that config."""
    import loaders
    from torchvision.transforms.v2 import functional as TF

    import augment

    parsed = augment.parse_spec(spec)
    if count < 1:
        raise ValueError(f"--count must be >= 1, got {count}")
    data = loaders.open_dataset(dataset, root, split, **(options or {}))
    if len(data) == 0:
        raise ValueError(f"dataset {dataset!r} has no samples")
    images = []
    for index in range(min(count, len(data))):
        image = data[index]["image"]
        if image.dtype != torch.uint8:  # e.g. 16-bit medical images: scale to 8 bits for viewing
            image = (image.float() / max(float(image.max()), 1.0) * 255).round().to(torch.uint8)
        if image.shape[0] == 1:
            image = image.expand(3, -1, -1)
        if images and image.shape[-2:] != images[0].shape[-2:]:
            image = TF.resize(image, list(images[0].shape[-2:]), antialias=True)
        images.append(image[:3].contiguous())
    generator = torch.Generator().manual_seed(seed)
    grid = augment.preview_grid(torch.stack(images), parsed.build(), views, generator=generator, scale=scale)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(loaders.encode("png", grid))
    config = {"spec": augment.format_spec(parsed), "spec_json": json.loads(parsed.to_json()), "dataset": dataset,
              "root": root, "split": split, "count": len(images), "views": views, "seed": seed, "scale": scale,
              "options": options or {}, "image_size": list(images[0].shape[-2:]), "grid": str(out)}
    out.with_suffix(".json").write_text(json.dumps(config, indent=2))
    return config


def _preview(args: argparse.Namespace) -> int:
    from datafactory.cli.datasets import parse_options

    config = preview(args.spec, args.out, args.dataset, args.root, args.split, args.count, args.views, args.seed,
                     args.scale, parse_options(args.option))
    print(f"wrote {config['grid']}: {config['count']} images x (original + {config['views']} views) of {config['spec']}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``augment preview``."""
    parser = subparsers.add_parser("augment", help="preview augmentation pipelines")
    commands = parser.add_subparsers(title="augment commands", metavar="COMMAND", required=True)
    show = commands.add_parser("preview", help="a grid of originals and augmented / negative views")
    show.add_argument("--spec", required=True, help='pipeline spec, e.g. "patch_rotate:patch_size=16 | randaugment"')
    show.add_argument("--dataset", default="shapes", help="a registered dataset (default: %(default)s)")
    show.add_argument("--root", default=None, help="the dataset folder (omit for shapes)")
    show.add_argument("--split", default=None, help="split (default: the adapter's)")
    show.add_argument("-o", "--option", action="append", metavar="KEY=VALUE", help="adapter option; repeatable")
    show.add_argument("--count", type=int, default=6, help="images (rows) (default: %(default)s)")
    show.add_argument("--views", type=int, default=4, help="augmented views per image (default: %(default)s)")
    show.add_argument("--seed", type=int, default=0)
    show.add_argument("--scale", type=int, default=2, help="upscaling factor for small images")
    show.add_argument("--out", required=True, help="output PNG (a .json with the resolved config goes next to it)")
    show.set_defaults(func=_preview)

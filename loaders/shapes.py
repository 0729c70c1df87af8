"""``shapes``: the embedded, procedurally rendered demo dataset (no downloads).

Each image shows 1-3 objects from :data:`SHAPE_CLASSES` over a textured, noisy background under a
smooth lighting gradient. Every object has three parts -- a saturated *body*, a dark *outline*
and a near-white *marking* (a stripe or a dot) -- so the integer part mask uses
:data:`PART_CLASSES` (0 = background). The class label is the shape of the object with the
largest visible area. Sample ``i`` of a split depends only on ``(seed, split, i)``, so random
access, any worker count and any ``size`` give the same pixels.

Colours are drawn from disjoint HSV ranges (background: low saturation, mid value; body:
saturation >= 0.65; outline: value <= 0.1; marking: saturation <= 0.1, value >= 0.88, all before
a +-10% lighting gain and 2% noise). :func:`annotate_parts` exploits that to label the parts of
*any* image of this domain from its pixel colours. It stands in for the human annotator of the
DatasetGAN workflow (Zhang et al., 2021), which labels a handful of generated images by hand.

With ``root=None`` samples are rendered in memory on access; with a ``root`` the split is
rendered once to ``root/<split>/images/<class>/<key>.png`` + ``masks/...`` (the ``folder``
adapter's segmentation layout) and read back from disk.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from loaders.base import Adapter
from loaders.codecs import encode
from loaders.fileio import read_regular
from loaders.registry import register_dataset
from loaders.schema import KEY

__all__ = ["PART_CLASSES", "SHAPE_CLASSES", "ShapesDataset", "annotate_parts", "render_shapes_sample"]

SHAPE_CLASSES = ("circle", "triangle", "square", "hexagon", "star", "cross")
PART_CLASSES = ("background", "body", "outline", "marking")
_SPLITS = {"train": 0, "val": 1, "test": 2}
_DEFAULT_SIZE = {"train": 1000, "val": 200, "test": 200}
_FORMAT_VERSION = 1


def _unit_polygon(kind: str) -> np.ndarray:
    """Vertices of the polygonal shapes (counter-clockwise), before area normalisation."""
    if kind in ("triangle", "square", "hexagon"):
        sides = {"triangle": 3, "square": 4, "hexagon": 6}[kind]
        angles = np.pi / 2 + 2 * np.pi * np.arange(sides) / sides + (np.pi / 4 if sides == 4 else 0.0)
        return np.stack([np.cos(angles), np.sin(angles)], 1)
    if kind == "star":
        angles = np.pi / 2 + np.pi * np.arange(10) / 5
        radii = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
        return np.stack([radii * np.cos(angles), radii * np.sin(angles)], 1)
    if kind == "cross":
        a, b = 1.0, 0.36
        return np.array([[b, a], [-b, a], [-b, b], [-a, b], [-a, -b], [-b, -b], [-b, -a], [b, -a], [b, -b], [a, -b], [a, b], [b, b]])
    raise ValueError(f"unknown polygon {kind!r}")


def _polygon(kind: str) -> np.ndarray:
    """Vertices scaled so that every shape has the unit circle's area (pi): no class is favoured
    by the largest-visible-object label rule just because of its geometry."""
    vertices = _unit_polygon(kind)
    x, y = vertices[:, 0], vertices[:, 1]
    area = 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))
    return vertices * math.sqrt(math.pi / area)


def _signed_distance(kind: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Signed distance (negative inside) to a unit shape, in shape units."""
    if kind == "circle":
        return np.hypot(x, y) - 1.0
    vertices = _polygon(kind)
    inside = np.zeros(x.shape, dtype=bool)
    distance = np.full(x.shape, np.inf)
    for (x0, y0), (x1, y1) in zip(vertices, np.roll(vertices, -1, axis=0)):
        dx, dy = x1 - x0, y1 - y0
        t = np.clip(((x - x0) * dx + (y - y0) * dy) / (dx * dx + dy * dy), 0.0, 1.0)
        distance = np.minimum(distance, np.hypot(x - x0 - t * dx, y - y0 - t * dy))
        crosses = ((y0 > y) != (y1 > y)) & (x < x0 + (y - y0) * dx / (dy if dy else 1e-12))
        inside ^= crosses
    return np.where(inside, -distance, distance)


def _smooth_noise(rng: np.random.Generator, gx: np.ndarray, gy: np.ndarray, cells: int) -> np.ndarray:
    """Value noise: N(0, 1) on a ``(cells+1)^2`` lattice, bilinearly interpolated at ``(gx, gy)``."""
    lattice = rng.normal(size=(cells + 1, cells + 1))
    u, v = gx * cells, gy * cells
    i, j = np.minimum(u.astype(int), cells - 1), np.minimum(v.astype(int), cells - 1)
    fu, fv = u - i, v - j
    top = lattice[j, i] * (1 - fu) + lattice[j, i + 1] * fu
    bottom = lattice[j + 1, i] * (1 - fu) + lattice[j + 1, i + 1] * fu
    return top * (1 - fv) + bottom * fv


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    i = int(h * 6) % 6
    f = h * 6 - math.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i])


def render_shapes_sample(rng: np.random.Generator, resolution: int = 64, max_objects: int = 3) -> dict[str, Any]:
    """Render one scene with the random numbers drawn from ``rng``.

    Returns:
        ``{"image": uint8 [3,R,R], "mask": int64 [R,R], "label": int, "meta": {...}}``.
    """
    r = resolution
    coords = (np.arange(r) + 0.5) / r
    gx, gy = np.meshgrid(coords, coords)  # x to the right, y down, in [0, 1]

    # textured background: low-saturation tone, a few sinusoids and smooth noise
    tone = _hsv_to_rgb(rng.random(), rng.uniform(0.04, 0.18), rng.uniform(0.42, 0.52))
    texture = np.zeros((r, r))
    for _ in range(3):
        fx, fy, phase = rng.uniform(-12, 12), rng.uniform(-12, 12), rng.uniform(0, 2 * np.pi)
        texture += np.sin(2 * np.pi * (fx * gx + fy * gy) / 2 + phase)
    texture = texture / 3 * 0.035 + _smooth_noise(rng, gx, gy, cells=4) * 0.02
    rgb = tone[None, None, :] + texture[..., None]

    mask = np.zeros((r, r), dtype=np.int64)
    owner = np.full((r, r), -1, dtype=np.int64)
    objects = []
    outline = max(1.0, r / 32) / r  # outline width in image units
    for index in range(int(rng.integers(1, max_objects + 1))):
        kind = SHAPE_CLASSES[int(rng.integers(len(SHAPE_CLASSES)))]
        size = rng.uniform(0.14, 0.3)
        cx, cy = rng.uniform(size * 0.6, 1 - size * 0.6, size=2)
        angle = rng.uniform(0, 2 * np.pi)
        cos, sin = math.cos(angle), math.sin(angle)
        ux, uy = ((gx - cx) * cos + (gy - cy) * sin) / size, (-(gx - cx) * sin + (gy - cy) * cos) / size
        distance = _signed_distance(kind, ux, uy) * size
        shape = distance <= 0
        body = distance <= -outline
        stripe = rng.random() < 0.5
        if stripe:
            marking = np.abs(uy) < 0.16
        else:
            ox, oy = rng.uniform(-0.2, 0.2, size=2)
            marking = np.hypot(ux - ox, uy - oy) < 0.3
        marking &= distance <= -2 * outline
        hue = rng.random()
        body_rgb = _hsv_to_rgb(hue, rng.uniform(0.7, 1.0), rng.uniform(0.62, 0.92))
        rgb[shape] = np.array([0.06, 0.06, 0.07]) * rng.uniform(0.6, 1.4)
        rgb[body] = body_rgb
        rgb[marking] = np.full(3, rng.uniform(0.97, 1.0))
        mask[shape] = 2
        mask[body] = 1
        mask[marking] = 3
        owner[shape] = index
        objects.append(
            {"shape": kind, "center": [round(float(cx), 4), round(float(cy), 4)], "size": round(float(size), 4),
             "angle": round(float(angle), 4), "hue": round(float(hue), 4), "marking": "stripe" if stripe else "dot"}
        )

    # smooth lighting: a linear gradient of +-10%, applied to every surface
    light_angle, gain = rng.uniform(0, 2 * np.pi), rng.uniform(0.0, 0.1)
    lighting = 1 + gain * ((gx - 0.5) * math.cos(light_angle) + (gy - 0.5) * math.sin(light_angle)) * 2
    rgb = rgb * lighting[..., None] + rng.normal(0, 0.02, size=rgb.shape)
    image = np.clip(np.round(rgb * 255), 0, 255).astype(np.uint8)

    visible = np.bincount(owner[owner >= 0], minlength=len(objects))
    for obj, pixels in zip(objects, visible):
        obj["visible_pixels"] = int(pixels)
    largest = int(np.argmax(visible)) if visible.any() else 0
    return {
        "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
        "mask": torch.from_numpy(mask),
        "label": SHAPE_CLASSES.index(objects[largest]["shape"]),
        "meta": {"objects": objects},
    }


def annotate_parts(image: torch.Tensor) -> torch.Tensor:
    """Label the parts of ``shapes``-domain images from pixel colours (a stand-in annotator).

    Rules, in order, on HSV value ``v`` and saturation ``s``: ``v < 0.25`` -> outline,
    ``s >= 0.5`` -> body, ``v >= 0.78`` -> marking, otherwise background.

    Args:
        image: ``[3,H,W]`` or ``[B,3,H,W]``, uint8 or float in [0, 1], any device.

    Returns:
        int64 part mask ``[H,W]`` / ``[B,H,W]`` with values indexing :data:`PART_CLASSES`.
    """
    if not isinstance(image, torch.Tensor) or image.ndim not in (3, 4) or image.shape[-3] != 3:
        raise ValueError(f"image must be a [3,H,W] or [B,3,H,W] tensor, got {getattr(image, 'shape', type(image))}")
    x = image.float() / 255.0 if image.dtype == torch.uint8 else image.float()
    value = x.amax(dim=-3)
    saturation = (value - x.amin(dim=-3)) / value.clamp_min(1e-6)
    parts = torch.zeros(value.shape, dtype=torch.int64, device=image.device)
    parts[value >= 0.78] = 3
    parts[saturation >= 0.5] = 1
    parts[value < 0.25] = 2
    return parts


@register_dataset("shapes")
class ShapesDataset(Adapter):
    """The embedded demo: rendered scenes of 6 shape classes with part masks (no download).

    Args:
        root: ``None`` renders in memory; a folder renders the split there once and reads it back.
        split: ``"train"``, ``"val"`` or ``"test"`` (independent random streams).
        size: number of samples (default 1000 / 200 / 200).
        resolution: image height and width in pixels (>= 16).
        seed: the dataset seed.
        max_objects: at most this many objects per image (1-3).
        decode, on_error, transform: see :class:`loaders.base.Adapter`.
    """

    name = "shapes"
    classes = SHAPE_CLASSES
    parts = PART_CLASSES

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        split: str = "train",
        *,
        size: int | None = None,
        resolution: int = 64,
        seed: int = 0,
        max_objects: int = 3,
        decode: bool = True,
        on_error: str = "raise",
        transform: Callable[[dict[str, Any]], Any] | None = None,
    ) -> None:
        super().__init__(decode=decode, on_error=on_error, transform=transform)
        if split not in _SPLITS:
            raise ValueError(f"split must be one of {sorted(_SPLITS)}, got {split!r}")
        size = _DEFAULT_SIZE[split] if size is None else size
        for argument, value, low in (("size", size, 1), ("resolution", resolution, 16), ("seed", seed, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{argument} must be an int >= {low}, got {value!r}")
        if max_objects not in (1, 2, 3):
            raise ValueError(f"max_objects must be 1, 2 or 3, got {max_objects!r}")
        self.split, self.size, self.resolution, self.seed, self.max_objects = split, size, resolution, seed, max_objects
        self.root = None if root is None else Path(root)
        if self.root is not None:
            self._render_to_disk()

    @property
    def config(self) -> dict[str, Any]:
        return {"format": _FORMAT_VERSION, "split": self.split, "size": self.size, "resolution": self.resolution,
                "seed": self.seed, "max_objects": self.max_objects}

    def render(self, index: int) -> dict[str, Any]:
        """Render sample ``index`` in memory (deterministic in ``(seed, split, index)``)."""
        rng = np.random.default_rng([self.seed, _SPLITS[self.split], index])
        return render_shapes_sample(rng, self.resolution, self.max_objects)

    def _key(self, index: int) -> str:
        return f"{self.split}_{index:06d}"

    def _build_index(self) -> list[dict[str, Any]]:
        if self.root is None:
            return [{KEY: self._key(i), "index": i} for i in range(self.size)]
        listing = json.loads(read_regular(self.root / self.split / "shapes.json"))
        return [{KEY: row["key"], "index": row["index"], "label": row["label"],
                 "path": str(self.root / self.split / "images" / row["file"]),
                 "mask_path": str(self.root / self.split / "masks" / row["file"]), "meta": row["meta"]}
                for row in listing["samples"]]

    def _load_decoded(self, record: Mapping[str, Any]) -> dict[str, Any]:
        if self.root is not None:
            return super()._load_decoded(record)
        sample = self.render(record["index"])
        sample["meta"] = {**sample["meta"], "seed": self.seed, "split": self.split, "index": record["index"]}
        return sample

    def _load_encoded(self, record: Mapping[str, Any]) -> dict[str, bytes]:
        if self.root is None:
            sample = self._load_decoded(record)
            return {"png": encode("png", sample["image"]), "mask.png": encode("mask.png", sample["mask"]),
                    "cls": encode("cls", sample["label"]), "json": encode("json", sample["meta"])}
        return {"png": read_regular(record["path"]), "mask.png": read_regular(record["mask_path"]),
                "cls": encode("cls", record["label"]), "json": encode("json", record["meta"])}

    def _render_to_disk(self) -> None:
        from tqdm.auto import tqdm

        folder = self.root / self.split
        manifest = folder / "shapes.json"
        if manifest.exists():
            stored = json.loads(read_regular(manifest))
            if stored.get("config") != self.config:
                raise ValueError(
                    f"{str(manifest)!r} was rendered with {stored.get('config')}, not {self.config}; use another root"
                )
            return
        rows = []
        memory = ShapesDataset(None, self.split, size=self.size, resolution=self.resolution, seed=self.seed,
                               max_objects=self.max_objects)
        for index in tqdm(range(self.size), desc=f"rendering shapes/{self.split}", unit="img", leave=False):
            sample = memory._load_decoded({"index": index})
            name = f"{SHAPE_CLASSES[sample['label']]}/{self._key(index)}.png"
            for sub, data in (("images", encode("png", sample["image"])), ("masks", encode("mask.png", sample["mask"]))):
                target = folder / sub / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            rows.append({"key": self._key(index), "index": index, "label": sample["label"], "file": name, "meta": sample["meta"]})
        partial = manifest.with_suffix(".json.tmp")
        partial.write_text(json.dumps({"config": self.config, "samples": rows}))
        os.replace(partial, manifest)  # the manifest appears only once every file is written

"""A tiny synthetic chest X-ray set in NIH ChestX-ray14's distributed layout, for the ``cxr`` demo
and its small-scale result (no download).

Each image is a rendered caricature: a bright body, two dark lung fields, a heart, and grain.
Four findings are drawn independently (probability ``prevalence`` each): **Cardiomegaly** widens
the heart, **Effusion** fills the base of a lung with fluid brightness, **Nodule** adds a small
bright disc in a lung, **Pneumothorax** makes one lung darker and flatter. The files are what the
``nih`` adapter reads (``Data_Entry_2017_v2020.csv`` with its verbatim header, ``images/*.png``,
``train_val_list.txt`` / ``test_list.txt``), so the set goes through the real adapter, shard
builder and loader. It measures that the trainer learns image evidence -- not anything about
real radiographs.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["FINDINGS", "NIH_HEADER", "render_chest", "write_synthetic_nih"]

FINDINGS = ("Cardiomegaly", "Effusion", "Nodule", "Pneumothorax")
NIH_HEADER = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
              "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]")


def _disc(yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def render_chest(findings: set[str], size: int, rng: np.random.Generator) -> np.ndarray:
    """One ``size x size`` uint8 image with ``findings`` (a subset of :data:`FINDINGS`) drawn in."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    s = float(size)
    image = np.full((size, size), 60.0)
    image[_disc(yy, xx, 0.55 * s, 0.5 * s, 0.45 * s, 0.42 * s)] = 150.0  # body
    lungs = []
    for side in (-1, 1):
        cx = 0.5 * s + side * 0.19 * s + rng.normal(0, 0.01 * s)
        lung = _disc(yy, xx, 0.5 * s, cx, 0.3 * s, 0.13 * s)
        lungs.append((lung, cx))
        image[lung] = 55.0
    pneumo = int(rng.integers(2))
    if "Pneumothorax" in findings:
        image[lungs[pneumo][0]] = 20.0
    if "Effusion" in findings:
        lung, cx = lungs[int(rng.integers(2))]
        image[lung & (yy > 0.62 * s)] = 135.0
    if "Nodule" in findings:
        lung, cx = lungs[int(rng.integers(2))]
        cy = 0.45 * s + rng.uniform(-0.1, 0.1) * s
        image[_disc(yy, xx, cy, cx, 0.05 * s, 0.05 * s)] = 200.0
    heart = 0.17 * s if "Cardiomegaly" in findings else 0.09 * s
    image[_disc(yy, xx, 0.62 * s, 0.47 * s, heart * 0.9, heart)] = 175.0
    image += rng.normal(0, 10.0, size=image.shape)
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def write_synthetic_nih(root: str | os.PathLike, *, train: int, test: int, size: int = 32, seed: int = 0,
                        prevalence: float = 0.35) -> Path:
    """Write ``train + test`` images and the NIH metadata under ``root`` (created); returns ``root``.

    Raises:
        ValueError: a count below 1, ``size`` below 16, or ``prevalence`` outside (0, 1).
        FileExistsError: ``root`` already holds an NIH metadata file (nothing is overwritten).
    """
    if train < 1 or test < 1 or size < 16 or not 0.0 < prevalence < 1.0:
        raise ValueError(f"need train >= 1, test >= 1, size >= 16 and 0 < prevalence < 1; got {train}, {test}, {size}, {prevalence}")
    from PIL import Image

    out = Path(root)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows, names = [], []
    for i in range(train + test):
        findings = {name for name in FINDINGS if rng.random() < prevalence}
        name = f"{i + 1:08d}_000.png"
        Image.fromarray(render_chest(findings, size, rng)).save(out / "images" / name, format="PNG")
        labels = "|".join(sorted(findings)) or "No Finding"
        view = ("PA", "AP")[i % 2]
        rows.append(f"{name},{labels},0,{i + 1},{40 + i % 40},{'MF'[i % 2]},{view},{size},{size},0.143,0.143")
        names.append(name)
    files = {"Data_Entry_2017_v2020.csv": "\n".join([NIH_HEADER, *rows]),
             "train_val_list.txt": "\n".join(names[:train]), "test_list.txt": "\n".join(names[train:])}
    for file, text in files.items():
        with open(out / file, "x", encoding="utf-8") as handle:  # "x": never overwrite
            handle.write(text + "\n")
    return out

"""Fixtures for the training tests: small real shard sets built by the real builder.

``seg_shards``: ``shapes`` demo samples (32 px RGB PNG + part-mask PNG + class) in shards --
train 16 samples in 2 shards, val 4, and an 8-sample set whose epoch is one batch of 8 (the DDP
comparison); ``folder_seg_shards``: a ``folder`` images+masks tree (JPEG images, PNG masks
written with PIL) built into shards.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipelines import build_shards


@pytest.fixture(scope="session")
def seg_shards(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("seg_shards")
    built = {}
    for name, split, size, per_shard in (("train", "train", 16, 8), ("val", "val", 4, 4), ("one_batch", "train", 8, 4)):
        build_shards("shapes", base / name, split=split, options={"size": size, "resolution": 32, "seed": 0},
                     max_count=per_shard)
        built[name] = base / name
    return built


@pytest.fixture(scope="session")
def folder_seg_shards(tmp_path_factory) -> Path:
    """A folder images+masks set: 6 JPEG images (40x40, a bright square on a dark ground) and
    PNG masks (1 inside the square, 0 outside), as a user's own data would be laid out."""
    base = tmp_path_factory.mktemp("folder_seg")
    root = base / "data"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        mask = np.zeros((40, 40), np.uint8)
        y, x = rng.integers(4, 20, size=2)
        mask[y:y + 16, x:x + 16] = 1
        image = np.where(mask[..., None] == 1, 200, 40) + rng.integers(0, 20, size=(40, 40, 3))
        Image.fromarray(image.astype(np.uint8)).save(root / "images" / f"img{i}.jpg", quality=95)
        Image.fromarray(mask).save(root / "masks" / f"img{i}.png")
    build_shards("folder", base / "shards", root=root)
    return base / "shards"


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a test module: tiny models on a shared 2-core CI machine
    run many times faster without OpenMP threads waiting on each other."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

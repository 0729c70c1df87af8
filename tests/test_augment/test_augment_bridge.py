"""The albumentations bridge: per-sample seeding from torch, masks moved with their image."""

from __future__ import annotations

import albumentations as albu
import numpy as np
import pytest
import torch
from torchvision import tv_tensors

import augment as A


def test_bridge_runs_albumentations_per_sample(image_factory, mask_factory):
    x, m = image_factory(6), mask_factory(6)
    bridge = A.Albumentations(albu.Compose([albu.HorizontalFlip(p=0.5)]))
    out, out_mask = bridge(x, tv_tensors.Mask(m), generator=torch.Generator().manual_seed(0))
    flipped = [torch.equal(out[i], x[i].flip(-1)) for i in range(6)]
    kept = [torch.equal(out[i], x[i]) for i in range(6)]
    assert all(f or k for f, k in zip(flipped, kept)) and any(flipped) and any(kept)
    for i in range(6):
        assert torch.equal(out_mask[i], m[i].flip(-1) if flipped[i] else m[i]), "the mask follows its image"


def test_bridge_matches_albumentations_with_the_same_seed(image_factory):
    x = image_factory(2)
    compose = albu.Compose([albu.RandomBrightnessContrast(p=1.0)])
    bridge = A.Albumentations(compose)
    params = bridge.make_params(x, torch.Generator().manual_seed(1))
    out = bridge.apply(x, params)
    for i, seed in enumerate(params["seed"].tolist()):
        compose.set_random_seed(seed)
        expected = compose(image=np.ascontiguousarray(x[i].permute(1, 2, 0).numpy()))["image"]
        assert torch.equal(out[i], torch.from_numpy(expected).permute(2, 0, 1))


def test_bridge_errors():
    with pytest.raises(TypeError, match="albumentations Compose"):
        A.Albumentations(lambda image: image)
    resize = A.Albumentations(albu.Resize(8, 8))
    with pytest.raises(ValueError, match="changed the image size"):
        resize(torch.zeros(3, 16, 16, dtype=torch.uint8))

"""Fixtures for the augment tests: structured images (so ops visibly act), masks, and the list
of every public per-sample transform the contract test runs over."""

from __future__ import annotations

import pytest
import torch


def make_images(batch: int = 4, size: tuple[int, int] = (32, 48), seed: int = 0) -> torch.Tensor:
    """uint8 ``[B,3,H,W]``: gradients + noise + a bright square, different per image."""
    g = torch.Generator().manual_seed(seed)
    h, w = size
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    images = []
    for b in range(batch):
        base = torch.stack([xx * 255 // max(w - 1, 1), yy * 255 // max(h - 1, 1), (xx + yy + 40 * b) % 256]).float()
        noise = torch.randint(-20, 21, (3, h, w), generator=g).float()
        image = (base + noise).clamp(0, 255)
        top, left = int(torch.randint(0, h // 2, (1,), generator=g)), int(torch.randint(0, w // 2, (1,), generator=g))
        image[:, top:top + h // 4, left:left + w // 4] = torch.tensor([250.0, 240.0, 30.0]).view(3, 1, 1)
        images.append(image)
    return torch.stack(images).round().to(torch.uint8)


def make_masks(batch: int = 4, size: tuple[int, int] = (32, 48)) -> torch.Tensor:
    """int64 ``[B,H,W]`` label maps with 4 classes in blocks."""
    h, w = size
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return torch.stack([((yy * 4 // h) + (xx * 3 // w) + b) % 4 for b in range(batch)]).long()


def per_sample_transforms() -> dict:
    """name -> factory of every public per-sample transform (and compositions of them)."""
    import albumentations as albu

    import augment as A

    return {
        "PatchShuffle": lambda: A.PatchShuffle(16),
        "PatchShuffle-8-model4": lambda: A.PatchShuffle(8, model_patch_size=4),
        "PatchRotate": lambda: A.PatchRotate(8),
        "PatchInfill": lambda: A.PatchInfill(8, 0.25),
        "PatchInfill-range": lambda: A.PatchInfill(8, (0.2, 0.4)),
        "AutoAugment-imagenet": lambda: A.AutoAugment("imagenet"),
        "AutoAugment-cifar10": lambda: A.AutoAugment("cifar10"),
        "AutoAugment-svhn": lambda: A.AutoAugment("svhn"),
        "RandAugment": lambda: A.RandAugment(2, 9),
        "RandAugment-bilinear": lambda: A.RandAugment(3, 15, interpolation="bilinear"),
        "TrivialAugmentWide": lambda: A.TrivialAugmentWide(),
        "AugMix": lambda: A.AugMix(),
        "Compose": lambda: A.Compose([A.PatchRotate(16), A.RandAugment()]),
        "OneOf": lambda: A.OneOf([A.PatchShuffle(16), A.PatchInfill(8, 0.25), A.TrivialAugmentWide()]),
        "RandomApply": lambda: A.RandomApply(A.PatchRotate(8), p=0.5),
        "spec": lambda: A.build("patch_shuffle:patch_size=8,p=0.7 | randaugment:num_ops=1 / augmix:severity=2"),
        "RandomResizedCrop-nearest": lambda: A.RandomResizedCrop((32, 48), interpolation="nearest"),
        "RandomResizedCrop-bilinear-in-Compose": lambda: A.Compose([A.RandomResizedCrop((32, 48)), A.RandomHorizontalFlip()]),
        "RandomHorizontalFlip": lambda: A.RandomHorizontalFlip(),
        "Albumentations": lambda: A.Albumentations(albu.Compose([albu.HorizontalFlip(p=0.5), albu.RandomBrightnessContrast(p=0.5)])),
    }


@pytest.fixture
def images() -> torch.Tensor:
    return make_images()


@pytest.fixture
def masks() -> torch.Tensor:
    return make_masks()


@pytest.fixture(params=sorted(per_sample_transforms()))
def transform_factory(request: pytest.FixtureRequest):
    return per_sample_transforms()[request.param]


@pytest.fixture
def all_transforms() -> dict:
    """name -> factory of every public per-sample transform, for tests that loop over them all."""
    return per_sample_transforms()


@pytest.fixture
def image_factory():
    return make_images


@pytest.fixture
def mask_factory():
    return make_masks


@pytest.fixture
def transform_table() -> dict:
    return per_sample_transforms()

"""RandomResizedCrop / RandomHorizontalFlip: bit-identical to torchvision v2 with the same seed,
masks and boxes follow, one crop per sample in a batch, clear errors."""

from __future__ import annotations

import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

import augment as A
from augment import functional as AF


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic", "nearest"])
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
@pytest.mark.parametrize("shape", [(3, 375, 500), (1, 64, 40), (3, 12, 200)])
def test_random_resized_crop_equals_torchvision_v2_with_the_same_seed(interpolation, dtype, shape):
    image = torch.randint(0, 256, shape, generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    image = image if dtype == torch.uint8 else image.float() / 255
    ours = A.RandomResizedCrop(56, interpolation=interpolation)
    theirs = v2.RandomResizedCrop(56, interpolation=v2.InterpolationMode(interpolation), antialias=True)
    for seed in range(12):
        torch.manual_seed(seed)
        expected = theirs(image)
        torch.manual_seed(seed)
        out = ours(image)
        assert out.dtype == dtype and out.shape == (shape[0], 56, 56)
        assert torch.equal(out, expected), (seed, interpolation)


def test_fallback_central_crop_equals_torchvision(image_factory):
    """A 12x200 strip can never hold a box with area >= 90% and ratio 1: the central fallback."""
    image = image_factory(1, (12, 200))[0]
    ours = A.RandomResizedCrop((8, 8), scale=(0.9, 1.0), ratio=(1.0, 1.0))
    theirs = v2.RandomResizedCrop((8, 8), scale=(0.9, 1.0), ratio=(1.0, 1.0))
    torch.manual_seed(3)
    expected = theirs(image)
    torch.manual_seed(3)
    assert torch.equal(ours(image), expected)
    assert ours.make_params(image[None])["boxes"].tolist() == [[0, 94, 12, 12]]


def test_flip_equals_torchvision_v2_and_flips_about_half(image_factory):
    images = image_factory(1, (16, 24))
    flips = 0
    for seed in range(40):
        torch.manual_seed(seed)
        expected = v2.RandomHorizontalFlip()(images[0])
        torch.manual_seed(seed)
        out = A.RandomHorizontalFlip()(images[0])
        assert torch.equal(out, expected)
        flips += not torch.equal(out, images[0])
    assert 10 <= flips <= 30
    assert torch.equal(A.RandomHorizontalFlip(1.0)(images), images.flip(-1))
    assert torch.equal(A.RandomHorizontalFlip(0.0)(images), images)


def test_masks_and_boxes_follow_like_torchvision(image_factory, mask_factory):
    image = image_factory(1, (40, 60))[0]
    mask = tv_tensors.Mask(mask_factory(1, (40, 60)))
    boxes = tv_tensors.BoundingBoxes([[5, 4, 30, 20], [40, 10, 58, 39]], format="XYXY", canvas_size=(40, 60))
    for seed in range(6):
        for ours, theirs in ((A.RandomResizedCrop((20, 30)), v2.RandomResizedCrop((20, 30))),
                             (A.RandomHorizontalFlip(), v2.RandomHorizontalFlip())):
            torch.manual_seed(seed)
            expected = theirs(image, mask, boxes)
            torch.manual_seed(seed)
            out = ours(image, mask, boxes)
            for a, b in zip(out, expected):
                assert type(a) is type(b) and torch.equal(a, b), (seed, type(ours).__name__)
            assert out[2].canvas_size == expected[2].canvas_size


def test_one_crop_per_sample_in_a_batch_and_generator_seeding(image_factory, mask_factory):
    images = image_factory(6, (48, 64))
    t = A.RandomResizedCrop((24, 32))
    params = t.make_params(images, torch.Generator().manual_seed(1))
    assert params["boxes"].shape == (6, 4) and len({tuple(b) for b in params["boxes"].tolist()}) == 6
    out = t(images, generator=torch.Generator().manual_seed(1))
    assert out.shape == (6, 3, 24, 32)
    for i, (top, left, h, w) in enumerate(params["boxes"].tolist()):
        single = v2.functional.resized_crop(images[i], top, left, h, w, [24, 32], antialias=True)
        assert torch.equal(out[i], single)
    masks = AF.resized_crop_masks(mask_factory(6, (48, 64)), params["boxes"], (24, 32))
    assert masks.shape == (6, 24, 32) and masks.dtype == torch.int64


def test_bad_arguments_name_themselves(image_factory):
    for kwargs, name in (({"size": 0}, "size"), ({"size": (3, 4, 5)}, "size"), ({"size": 8, "scale": (0.9, 0.1)}, "scale"),
                         ({"size": 8, "ratio": (0.0, 1.0)}, "ratio"), ({"size": 8, "scale": 0.5}, "scale")):
        with pytest.raises(ValueError, match=name):
            A.RandomResizedCrop(**kwargs)
    with pytest.raises(ValueError, match="p must be"):
        A.RandomHorizontalFlip(1.5)
    with pytest.raises(ValueError, match="not inside"):
        AF.resized_crop(image_factory(1, (8, 8)), torch.tensor([[0, 4, 8, 8]]), (4, 4))
    with pytest.raises(ValueError, match="flags must be"):
        AF.hflip(image_factory(2, (8, 8)), torch.tensor([True]))

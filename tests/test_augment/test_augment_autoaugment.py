"""AutoAugment family: every op and magnitude bin gives exactly torchvision v2's result, for one
image and for groups; the classes' per-sample draws reproduce torchvision applied op by op."""

from __future__ import annotations

import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

import augment as A
from augment import functional as FA
from augment.functional import OPS, apply_op

# (torchvision class, our space, number of bins, interpolation)
FAMILIES = {
    "RandAugment": (v2.RandAugment, FA.RANDAUGMENT_SPACE, 31),
    "TrivialAugmentWide": (v2.TrivialAugmentWide, FA.TRIVIALAUGMENT_SPACE, 31),
    "AutoAugment": (v2.AutoAugment, FA.AUTOAUGMENT_SPACE, 10),
    "AugMix": (v2.AugMix, FA.AUGMIX_SPACE[True], 10),
}


def _reference(tv, image: torch.Tensor, op: str, magnitude: float) -> torch.Tensor:
    # torchvision's own op dispatch (the definition we promise to match)
    return tv._apply_image_or_video_transform(image, op, magnitude, interpolation=tv.interpolation, fill=tv._fill)


def _test_images(image_factory) -> torch.Tensor:
    x = image_factory(5, (40, 56))
    x[1] = 77  # a flat image (equalize / autocontrast edge cases)
    x[2, :, :20] = 0
    x[3] = x[3] // 4 + 100  # low contrast
    return x


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_spaces_match_torchvision(family):
    cls, space, bins = FAMILIES[family]
    reference = cls._AUGMENTATION_SPACE
    assert list(space) == list(reference)
    for op, (fn, signed) in reference.items():
        ours, our_signed = space[op]
        assert our_signed == signed
        a, b = fn(bins, 40, 56), ours(bins, 40, 56)
        assert (a is None and b is None) or torch.equal(a, b), op
    assert list(FA.AUGMIX_SPACE[False]) == list(v2.AugMix._PARTIAL_AUGMENTATION_SPACE)


def test_policies_match_torchvision():
    for name, policy in (("imagenet", v2.AutoAugmentPolicy.IMAGENET), ("cifar10", v2.AutoAugmentPolicy.CIFAR10),
                         ("svhn", v2.AutoAugmentPolicy.SVHN)):
        assert tuple(v2.AutoAugment(policy)._policies) == FA.AUTOAUGMENT_POLICIES[name]


@pytest.mark.parametrize(("family", "dtype"), [(family, torch.uint8) for family in sorted(FAMILIES)]
                         + [("RandAugment", torch.float32), ("AugMix", torch.float32)],
                         ids=lambda value: str(value).replace("torch.", ""))
def test_every_op_and_bin_equals_torchvision(image_factory, family, dtype):
    cls, space, bins = FAMILIES[family]
    tv = cls()
    x = _test_images(image_factory)
    x = x if dtype == torch.uint8 else x.float() / 255
    table = FA.magnitude_bins(space, bins, 40, 56)
    interpolation = v2.InterpolationMode(tv.interpolation) if isinstance(tv.interpolation, str) else tv.interpolation
    for op, (values, signed) in table.items():
        for magnitude in ([0.0] if values is None else values[:: max(1, len(values) // 3)] + values[-1:]):
            for sign in ((1, -1) if signed else (1,)):
                ours = apply_op(x, op, sign * magnitude, interpolation)  # the whole group at once
                for i in range(x.shape[0]):
                    assert torch.equal(ours[i], _reference(tv, x[i], op, sign * magnitude)), (op, sign * magnitude, i)


@pytest.mark.parametrize("name", ["RandAugment", "TrivialAugmentWide", "AutoAugment"])
def test_classes_reproduce_torchvision_op_by_op(image_factory, name):
    ours = {"RandAugment": A.RandAugment(3, 12), "TrivialAugmentWide": A.TrivialAugmentWide(),
            "AutoAugment": A.AutoAugment("svhn")}[name]
    tv = FAMILIES[name][0]()
    x = _test_images(image_factory)
    params = ours.make_params(x, torch.Generator().manual_seed(0))
    out = ours.apply(x, params)
    for i in range(x.shape[0]):
        expected = x[i]
        for op, magnitude in zip(params["ops"][i].tolist(), params["magnitudes"][i].tolist()):
            if op >= 0:
                expected = _reference(tv, expected, OPS[op], magnitude)
        assert torch.equal(out[i], expected)


def test_augmix_reproduces_torchvision_formula(image_factory):
    ours, tv = A.AugMix(), v2.AugMix()
    x = _test_images(image_factory)
    params = ours.make_params(x, torch.Generator().manual_seed(1))
    out = ours.apply(x, params)
    for i in range(x.shape[0]):
        batch = x[i:i + 1]
        m, weights = params["mix"][i:i + 1], params["weights"][i:i + 1]
        combined = weights * m[:, 1].reshape(1, -1)
        mix = m[:, 0].reshape(1, 1, 1, 1) * batch
        for chain in range(weights.shape[1]):
            aug = batch
            for op, magnitude in zip(params["ops"][i, chain].tolist(), params["magnitudes"][i, chain].tolist()):
                if op >= 0:
                    aug = _reference(tv, aug, OPS[op], magnitude)
            mix.add_(combined[:, chain].reshape(1, 1, 1, 1) * aug)
        assert torch.equal(out[i:i + 1], mix.to(x.dtype))
    depths = (params["ops"] >= 0).sum(dim=2)
    assert depths.min() >= 1 and depths.max() <= 3
    assert torch.allclose(params["weights"].sum(dim=1), torch.ones(x.shape[0]), atol=1e-5)


def test_draws_are_per_sample_and_cover_the_space(image_factory):
    x = image_factory(64, (16, 16))
    params = A.RandAugment(2, 9).make_params(x, torch.Generator().manual_seed(2))
    used = {OPS[i] for i in params["ops"].unique().tolist()}
    assert used == set(FA.RANDAUGMENT_SPACE)  # 14 ops, 128 draws
    assert (params["magnitudes"] < 0).any() and (params["magnitudes"] > 0).any()


def test_boxes_follow_geometric_ops(image_factory):
    x = image_factory(1, (40, 56))[0]
    boxes = tv_tensors.BoundingBoxes([[10, 10, 20, 30]], format="XYXY", canvas_size=(40, 56))
    t = A.TrivialAugmentWide()
    for seed in range(30):
        out, moved = t(x, boxes, generator=torch.Generator().manual_seed(seed))
        params = t.make_params(x[None], torch.Generator().manual_seed(seed))
        op = OPS[int(params["ops"][0, 0])]
        expected = boxes if op not in {"ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate"} else None
        if expected is not None:
            assert torch.equal(moved, boxes)
        else:
            assert isinstance(moved, tv_tensors.BoundingBoxes)


def test_argument_errors():
    with pytest.raises(ValueError, match="policy must be one of"):
        A.AutoAugment("imagenet21k")
    with pytest.raises(ValueError, match=r"magnitude must be an int in \[0, 30\]"):
        A.RandAugment(magnitude=31)
    with pytest.raises(ValueError, match="interpolation must be one of"):
        A.RandAugment(interpolation="bicubic")
    with pytest.raises(ValueError, match="severity"):
        A.AugMix(severity=11)
    with pytest.raises(TypeError, match="AugMix cannot carry masks"):
        A.AugMix()(torch.zeros(3, 8, 8, dtype=torch.uint8), tv_tensors.Mask(torch.zeros(8, 8, dtype=torch.long)))

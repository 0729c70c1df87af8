"""Exact against torchvision and timm where the docs say so (fidelity issue, item 4).

* Nearest geometric ops on uint8 equal torchvision's at any image size: the pixel-index map is
  exact above 2**24 pixels (a 4096x4097 image), where a float32 linear index is not.
* Per-channel ``fill=[r, g, b]`` works in every geometric op and equals torchvision's output.
* Sharpness and Contrast on float images: a group equals the same images one by one, and each
  equals torchvision's kernel bit for bit (the documented tolerance is 0).
* CutMix boxes equal timm's ``rand_bbox`` for the same ``lam`` and centre, and
  ``rand_bbox_minmax`` for the same integer draws; ``lam`` is corrected as timm corrects it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

import augment as A
from augment import functional as F
from augment.functional import GEOMETRIC_OPS, OPS, apply_op

timm_mixup = pytest.importorskip("timm.data.mixup")

# -- index maps above 2**24 pixels -----------------------------------------------------------------


def test_nearest_geometric_ops_are_exact_above_2_to_the_24_pixels():
    height, width = 4096, 4097  # 16,781,312 pixels > 2**24 = 16,777,216
    x = torch.randint(0, 256, (1, 1, height, width), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    nearest = InterpolationMode.NEAREST
    translate = float(torch.linspace(0.0, 150.0 / 331.0 * width, 31)[9])  # RandAugment's bin 9
    ours = apply_op(x, "TranslateX", translate, nearest)
    expected = TF.affine(x, angle=0.0, translate=[int(translate), 0], scale=1.0, shear=[0.0, 0.0], interpolation=nearest)
    assert torch.equal(ours, expected)
    del ours, expected
    ours = apply_op(x, "Rotate", -27.0, nearest)
    assert torch.equal(ours, TF.rotate(x, -27.0, interpolation=nearest))


# -- per-channel fill ------------------------------------------------------------------------------

FILL = [12.0, 201.0, 37.6]  # 37.6: torchvision rounds the fill of uint8 images


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32], ids=["uint8", "float32"])
def test_per_channel_fill_equals_torchvision_for_every_geometric_op(image_factory, interpolation, dtype):
    x = image_factory(3, (40, 56))
    x = x if dtype == torch.uint8 else x.float() / 255
    fill = FILL if dtype == torch.uint8 else [v / 255 for v in FILL]
    mode = InterpolationMode(interpolation)
    tv = v2.RandAugment(interpolation=mode, fill=fill)
    for op in sorted(GEOMETRIC_OPS):
        for magnitude in ((0.3, -0.2) if op.startswith("Shear") else (17.0, -9.0) if op.startswith("Translate") else (30.0, -135.0)):
            ours = apply_op(x, op, magnitude, mode, fill)
            for i in range(x.shape[0]):
                expected = tv._apply_image_or_video_transform(x[i], op, magnitude, interpolation=mode, fill=tv._fill)
                assert torch.equal(ours[i], expected), (op, magnitude, i)
            assert not torch.equal(ours, apply_op(x, op, magnitude, mode, None)), "the fill shows"


@pytest.mark.parametrize("name", ["RandAugment", "TrivialAugmentWide", "AutoAugment"])
def test_classes_take_a_per_channel_fill(image_factory, name):
    ours = {"RandAugment": A.RandAugment(3, 20, fill=FILL), "TrivialAugmentWide": A.TrivialAugmentWide(fill=FILL),
            "AutoAugment": A.AutoAugment("svhn", fill=FILL)}[name]
    tv = {"RandAugment": v2.RandAugment, "TrivialAugmentWide": v2.TrivialAugmentWide, "AutoAugment": v2.AutoAugment}[name](fill=FILL)
    x = image_factory(8, (40, 56))
    params = ours.make_params(x, torch.Generator().manual_seed(0))
    out = ours.apply(x, params)
    geometric = 0
    for i in range(x.shape[0]):
        expected = x[i]
        for op, magnitude in zip(params["ops"][i].tolist(), params["magnitudes"][i].tolist()):
            if op >= 0:
                geometric += OPS[op] in GEOMETRIC_OPS
                expected = tv._apply_image_or_video_transform(expected, OPS[op], magnitude, interpolation=tv.interpolation,
                                                              fill=tv._fill)
        assert torch.equal(out[i], expected)
    assert geometric > 0
    assert ours.fill == tuple(FILL)


def test_augmix_takes_a_per_channel_fill(image_factory):
    x = image_factory(4, (40, 56))
    out = A.AugMix(fill=FILL)(x, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert not torch.equal(out, A.AugMix()(x, generator=torch.Generator().manual_seed(0)))


def test_fill_is_checked(image_factory):
    with pytest.raises(ValueError, match="one per channel"):
        A.RandAugment(fill=[1.0, math.nan, 2.0])
    with pytest.raises(ValueError, match="fill"):
        A.RandAugment(fill=[])
    with pytest.raises(ValueError, match=r"fill must be one value or one per channel \(3\)"):
        A.RandAugment(num_ops=1, fill=[1, 2])(image_factory(2, (16, 16)))
    with pytest.raises(ValueError, match="fill"):
        apply_op(image_factory(2, (16, 16)), "Rotate", 10.0, InterpolationMode.NEAREST, [1, 2])


# -- Sharpness / Contrast on float images: a group equals its images one by one ---------------------


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_float_sharpness_and_contrast_do_not_depend_on_the_group(channels, dtype):
    failures = []
    for size in ((32, 48), (7, 5), (224, 224)):
        x = torch.rand((8, channels, *size), generator=torch.Generator().manual_seed(channels), dtype=dtype)
        for magnitude in (0.3, -0.7, 0.99):
            for op, reference in (("Sharpness", lambda image, f: TF.adjust_sharpness(image, sharpness_factor=f)),
                                  ("Contrast", lambda image, f: TF.adjust_contrast(image, contrast_factor=f))):
                group = apply_op(x, op, magnitude)
                for i in range(x.shape[0]):
                    single = apply_op(x[i:i + 1], op, magnitude)[0]
                    tv = reference(x[i], 1.0 + magnitude)  # tolerance 0: torchvision's own bits
                    if not (torch.equal(group[i], single) and torch.equal(single, tv)):
                        failures.append((size, op, magnitude, i, float((group[i] - tv).abs().max())))
    assert not failures, failures


def test_randaugment_on_one_channel_float_batches_equals_per_sample():
    x = torch.rand((64, 1, 32, 48), generator=torch.Generator().manual_seed(3))
    t = A.RandAugment(num_ops=1, magnitude=15)
    params = t.make_params(x, torch.Generator().manual_seed(4))
    drawn = [(OPS[o], m) for o, m in zip(params["ops"][:, 0].tolist(), params["magnitudes"][:, 0].tolist())]
    for op in ("Sharpness", "Contrast"):  # groups of several images with one op and magnitude
        assert max(drawn.count((op, m)) for m in {m for o, m in drawn if o == op}) >= 2
    out = t.apply(x, params)
    for i in range(x.shape[0]):
        assert torch.equal(out[i:i + 1], t.apply(x[i:i + 1], t.select(params, i)))


# -- CutMix boxes against timm ---------------------------------------------------------------------


class _Randint:
    """Stands in for ``numpy.random.randint`` inside timm: returns chosen values in order and
    records the ``(low, high)`` timm asked for."""

    def __init__(self, values):
        self.values, self.calls = list(values), []

    def __call__(self, low, high=None, size=None, dtype=int):
        assert size is None
        value = self.values.pop(0)
        value = value(low, high) if callable(value) else value
        self.calls.append((low, high))
        assert low <= value < high, (low, high, value)
        return value


SIZES = [(224, 224), (32, 48), (31, 17), (7, 9), (1, 5), (64, 3)]


def test_cutmix_boxes_equal_timm_rand_bbox(monkeypatch):
    lams = torch.linspace(0.0, 0.999, 50, dtype=torch.float64)
    compared = odd = 0
    for height, width in SIZES:
        gen = torch.Generator().manual_seed(height * 1000 + width)
        cy = torch.randint(0, height, (lams.numel(), 5), generator=gen)
        cx = torch.randint(0, width, (lams.numel(), 5), generator=gen)
        cy[:, 0], cx[:, 0] = 0, width - 1  # edges: boxes clipped
        lam = lams.view(-1, 1).expand(-1, 5).reshape(-1)
        # centres as fractions whose floor(fraction * size) is the pixel, as the transforms draw them
        centers = torch.stack([(cy.reshape(-1) + 0.5) / height, (cx.reshape(-1) + 0.5) / width], dim=1).double()
        boxes, corrected = F.cutmix_boxes(lam, height, width, centers)
        for k in range(lam.numel()):
            fake = _Randint([int(cy.reshape(-1)[k]), int(cx.reshape(-1)[k])])
            monkeypatch.setattr(np.random, "randint", fake)
            (yl, yh, xl, xh), timm_lam = timm_mixup.cutmix_bbox_and_lam((3, height, width), float(lam[k]), correct_lam=True)
            assert fake.calls == [(0, height), (0, width)]
            assert boxes[k].tolist() == [int(yl), int(xl), int(yh), int(xh)], (height, width, float(lam[k]))
            assert float(corrected[k]) == float(timm_lam)
            cut = int(height * math.sqrt(1 - float(lam[k])))
            odd += cut % 2
            compared += 1
    assert compared >= 1500 and odd > 300


def test_cutmix_minmax_boxes_equal_timm_rand_bbox_minmax(monkeypatch):
    compared = 0
    for height, width in SIZES[:4]:
        for minmax in ((0.2, 0.8), (0.0, 1.0), (0.3, 0.35), (0.25, 1.0)):
            if int(height * minmax[0]) >= int(height * minmax[1]) or int(width * minmax[0]) >= int(width * minmax[1]):
                with pytest.raises(ValueError, match="cutmix_minmax"):
                    F.cutmix_boxes_minmax(height, width, minmax, torch.rand(1, 4, dtype=torch.float64))
                continue
            uniform = torch.rand((100, 4), generator=torch.Generator().manual_seed(height + width), dtype=torch.float64)
            uniform[0], uniform[1] = 0.0, 1.0 - 2.0**-53  # the ends of every draw
            boxes, lam = F.cutmix_boxes_minmax(height, width, minmax, uniform)
            for k in range(uniform.shape[0]):
                u = uniform[k].tolist()
                fake = _Randint([lambda lo, hi, u=v: lo + min(int(u * (hi - lo)), hi - lo - 1) for v in u])
                monkeypatch.setattr(np.random, "randint", fake)
                (yl, yu, xl, xu), timm_lam = timm_mixup.cutmix_bbox_and_lam(
                    (3, height, width), 0.5, ratio_minmax=minmax, correct_lam=False)  # minmax always corrects
                assert boxes[k].tolist() == [int(yl), int(xl), int(yu), int(xu)]
                assert float(lam[k]) == float(timm_lam)
                compared += 1
    assert compared >= 1000


def test_cutmix_minmax_option(image_factory):
    x = image_factory(6, (32, 48)).float()
    y = torch.arange(6)
    t = A.CutMix(num_classes=6, correct_lam=False, cutmix_minmax=(0.2, 0.8), mode="elem")
    params = t.make_params(x, torch.Generator().manual_seed(0))
    top, left, bottom, right = params["boxes"].unbind(1)
    assert ((bottom - top) >= int(32 * 0.2)).all() and ((bottom - top) < int(32 * 0.8)).all()
    assert ((right - left) >= int(48 * 0.2)).all() and ((right - left) < int(48 * 0.8)).all()
    area = ((bottom - top) * (right - left)).double()
    assert torch.equal(params["lam"], 1.0 - area / (32 * 48)), "lam comes from the box, as in timm"
    out, target = t(x, y, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(target.sum(dim=1), torch.ones(6))
    both = A.MixUpCutMix(mixup_alpha=1.0, cutmix_alpha=0.0, cutmix_minmax=(0.2, 0.8), switch_prob=1.0, num_classes=6)
    assert both.cutmix_alpha == 1.0 and bool(both.make_params(x, torch.Generator().manual_seed(1))["cutmix"].all())
    with pytest.raises(ValueError, match="cutmix_minmax"):
        A.CutMix(cutmix_minmax=(0.8, 0.2))

"""Bad arguments and degenerate inputs are refused clearly (security issue, item 15).

* ``MixUp`` / ``CutMix`` refuse ``alpha`` = nan, inf or <= 0 (timm reads 0 as "disabled");
  ``MixUpCutMix`` refuses nan / inf (0 disables one of the two there).
* ``PatchInfill`` on a patch grid smaller than 3x3 (no room for a central region with a border)
  raises ``ValueError`` naming the grid and the patch size.
* Every transform passes an empty batch (``B = 0``) through with its shape and dtype, and raises
  ``ValueError`` naming the shape on images with ``H = 0`` or ``W = 0`` (never
  ``ZeroDivisionError`` or a reshape error).
* Spec numbers are ASCII decimals: no Unicode digits, ``_``, Unicode spaces, ``inf`` or ``nan``.
"""

from __future__ import annotations

import math

import pytest
import torch
from torchvision import tv_tensors

import augment as A
from augment import functional as F

# -- MixUp / CutMix alpha --------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [math.nan, math.inf])
@pytest.mark.parametrize("cls", [A.MixUp, A.CutMix])
def test_mix_alpha_must_be_finite_and_positive(cls, alpha):
    with pytest.raises(ValueError, match="alpha"):
        cls(alpha)
    for bad in (0, 0.0, -1.0, -math.inf):  # 0 is timm's "disabled": a disabled op is refused here
        with pytest.raises(ValueError, match="alpha"):
            cls(bad)
    cls(0.2)


@pytest.mark.parametrize("key", ["mixup_alpha", "cutmix_alpha"])
@pytest.mark.parametrize("alpha", [math.nan, math.inf])
def test_mixupcutmix_alphas_must_be_finite(key, alpha):
    with pytest.raises(ValueError, match=key):
        A.MixUpCutMix(**{key: alpha})
    A.MixUpCutMix(**{key: 0.0})  # 0 disables one of the two, as in timm


# -- P-Infill grid ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("size", "patch_size", "grid"), [((32, 32), 16, "2x2"), ((16, 80), 16, "1x5"),
                                                          ((48, 32), 16, "3x2"), ((16, 16), 16, "1x1")])
def test_infill_grid_without_a_central_region_is_refused(image_factory, size, patch_size, grid):
    x = image_factory(2, size)
    t = A.PatchInfill(patch_size, 0.25)
    with pytest.raises(ValueError, match=rf"patch_size {patch_size} gives a {grid} patch grid.*at least 3x3"):
        t(x)
    with pytest.raises(ValueError, match=rf"{grid} grid"):
        F.infill_region(*(int(v) for v in grid.split("x")), 0.25)


def test_infill_error_lists_patch_sizes_that_fit(image_factory):
    x = image_factory(1, (32, 32))
    with pytest.raises(ValueError, match=r"patch sizes that fit: \[4, 8\]"):
        A.PatchInfill(16, 0.25, model_patch_size=4)(x)
    A.PatchInfill(8, 0.25, model_patch_size=4)(x)  # a 4x4 grid: fine


# -- empty batches and zero-size images ------------------------------------------------------------


def _expected_empty_shape(name: str, x: torch.Tensor) -> tuple[int, ...]:
    return (0, x.shape[1], 32, 48) if name.startswith("RandomResizedCrop") else tuple(x.shape)


def test_every_transform_passes_an_empty_batch_through(all_transforms):
    failures = []
    for name, factory in sorted(all_transforms.items()):
        for dtype in (torch.uint8, torch.float32):
            x = torch.zeros((0, 3, 32, 48), dtype=dtype)
            try:
                out = factory()(x, generator=torch.Generator().manual_seed(0))
                if out.dtype != dtype or tuple(out.shape) != _expected_empty_shape(name, x):
                    failures.append(f"{name} {dtype}: {out.dtype} {tuple(out.shape)}")
                if name not in ("AugMix", "Albumentations", "spec", "Compose"):  # those carry no masks
                    mask = tv_tensors.Mask(torch.zeros((0, 32, 48), dtype=torch.int64))
                    _, out_mask = factory()(x, mask)
                    if out_mask.shape[0] != 0:
                        failures.append(f"{name} mask: {tuple(out_mask.shape)}")
            except Exception as error:  # noqa: BLE001 -- collect every failure
                failures.append(f"{name} {dtype}: {type(error).__name__}: {error}")
    assert not failures, "\n".join(failures)


def test_kernels_pass_an_empty_batch_through():
    x = torch.zeros((0, 3, 32, 48), dtype=torch.uint8)
    assert F.patch_rotate(x, torch.zeros((0, 6), dtype=torch.int64), 16).shape == x.shape
    assert F.patch_shuffle(x, torch.zeros((0, 6), dtype=torch.int64), 16).shape == x.shape
    ops = torch.zeros((0, 3, 2), dtype=torch.int64)
    out = F.augmix(x, ops, ops.double(), torch.zeros((0, 2)), torch.zeros((0, 3)))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert F.resized_crop(x, torch.zeros((0, 4), dtype=torch.int64), (8, 8)).shape == (0, 3, 8, 8)
    assert F.resized_crop_masks(x[:, 0], torch.zeros((0, 4), dtype=torch.int64), (8, 8)).shape == (0, 8, 8)


def test_mix_passes_an_empty_batch_through():
    x, y = torch.zeros((0, 3, 8, 8)), torch.zeros(0, dtype=torch.int64)
    for mix in (A.MixUpCutMix(num_classes=5), A.MixUp(num_classes=5, mode="elem"), A.CutMix(num_classes=5, mode="pair")):
        out, target = mix(x, y)
        assert out.shape == x.shape and out.dtype == x.dtype and target.shape == (0, 5)
    out, target, mask = A.CutMix(num_classes=5)(x, y, torch.zeros((0, 8, 8), dtype=torch.int64))
    assert mask.shape == (0, 8, 8)
    with pytest.raises(ValueError, match="B >= 2"):
        A.MixUp(num_classes=5)(torch.zeros((1, 3, 8, 8)), torch.zeros(1, dtype=torch.int64))


@pytest.mark.parametrize("shape", [(2, 3, 0, 32), (2, 3, 32, 0), (2, 3, 0, 0), (3, 0, 32), (3, 32, 0)])
def test_every_transform_refuses_zero_size_images(all_transforms, shape):
    failures = []
    for name, factory in sorted(all_transforms.items()):
        for dtype in (torch.uint8, torch.float32):
            try:
                factory()(torch.zeros(shape, dtype=dtype), generator=torch.Generator().manual_seed(0))
                failures.append(f"{name} {dtype}: no error")
            except ValueError as error:
                if str(shape) not in str(error):
                    failures.append(f"{name} {dtype}: the message does not name the shape: {error}")
            except Exception as error:  # noqa: BLE001
                failures.append(f"{name} {dtype}: {type(error).__name__}: {error}")
    assert not failures, "\n".join(failures)


def test_mix_and_kernels_refuse_zero_size_images():
    y = torch.zeros(4, dtype=torch.int64)
    for mix in (A.MixUp(num_classes=3), A.CutMix(num_classes=3), A.MixUpCutMix(num_classes=3)):
        with pytest.raises(ValueError, match=r"\(4, 3, 0, 8\)"):
            mix(torch.zeros((4, 3, 0, 8)), y)
    with pytest.raises(ValueError, match="0x32 has no pixels"):
        F.check_patch_size(0, 32, 16)
    with pytest.raises(ValueError, match="32x0 has no pixels"):
        F.patch_rotate(torch.zeros((2, 3, 32, 0)), torch.zeros((2, 0), dtype=torch.int64), 16)
    with pytest.raises(ValueError, match=r"\(2, 3, 0, 8\)"):
        A.NegativeViews(A.PatchRotate(4))(torch.zeros((2, 3, 0, 8)))


# -- other non-finite arguments --------------------------------------------------------------------


@pytest.mark.parametrize("make", [
    lambda: A.AugMix(alpha=math.nan),
    lambda: A.AugMix(alpha=math.inf),
    lambda: A.RandomResizedCrop(8, scale=(0.5, math.inf)),
    lambda: A.RandomResizedCrop(8, ratio=(0.5, math.inf)),
    lambda: A.OneOf([A.PatchRotate(4), A.PatchShuffle(4)], p=[math.nan, 1.0]),
    lambda: A.OneOf([A.PatchRotate(4), A.PatchShuffle(4)], p=[math.inf, 1.0]),
], ids=["augmix-nan", "augmix-inf", "crop-scale-inf", "crop-ratio-inf", "oneof-nan", "oneof-inf"])
def test_non_finite_arguments_are_refused(make):
    with pytest.raises(ValueError):
        make()


# -- the spec language -----------------------------------------------------------------------------

_BAD_NUMBERS = [
    "\u0663",  # ARABIC-INDIC DIGIT THREE: int() reads 3
    "\uff11\uff16",  # fullwidth "16"
    "1_6",  # int() reads 16
    "\u00a016",  # NO-BREAK SPACE + 16: str.strip() and int() drop it
    "\u200316",  # EM SPACE + 16
    "16\u2003",
    "inf", "Infinity", "nan", "NaN", "1e999",
    "0x10",
]


@pytest.mark.parametrize("text", _BAD_NUMBERS, ids=[ascii(t) for t in _BAD_NUMBERS])
def test_spec_numbers_are_ascii_decimals(text):
    with pytest.raises(ValueError, match="patch_size"):
        A.parse_spec(f"patch_rotate:patch_size={text}")
    with pytest.raises(ValueError, match="replace_rate"):
        A.parse_spec(f"patch_infill:patch_size=8,replace_rate=0.1~{text}")
    with pytest.raises(ValueError, match="p"):
        A.parse_spec(f"patch_rotate:patch_size=8,p={text}")
    for also_bad in ("1 6", "-inf", "+inf", "1.2.3"):  # refused before too
        with pytest.raises(ValueError, match="patch_size"):
            A.parse_spec(f"patch_rotate:patch_size={also_bad}")
    # explicitly valid: ASCII spaces / tabs around separators, signs, exponents
    spec = A.parse_spec("patch_rotate: patch_size = 16 ,\tp=5e-1 | randaugment:magnitude=+9")
    assert A.format_spec(spec) == "patch_rotate:patch_size=16,p=0.5 | randaugment:magnitude=9"
    assert A.parse_spec("augmix:alpha=1e3").sections[0][0].args == (("alpha", 1000.0),)
    assert A.parse_spec("augmix:alpha=.5").sections[0][0].args == (("alpha", 0.5),)


@pytest.mark.parametrize(("text", "value"), [("NaN", math.nan), ("Infinity", math.inf), ("-Infinity", -math.inf),
                                             ("1e999", math.inf)])
def test_json_spec_numbers_are_finite(text, value):
    with pytest.raises(ValueError, match="finite"):
        A.AugmentSpec.from_json('[[{"op": "augmix", "alpha": %s}]]' % text)
    with pytest.raises(ValueError, match="finite"):
        A.AugmentSpec.from_json([[{"op": "patch_infill", "patch_size": 8, "replace_rate": [0.1, value]}]])

"""MixUp / CutMix: label mass is conserved, labels follow the pixels, odd batches, modes, masks,
multi-hot targets, smoothing, and the transform contract."""

from __future__ import annotations

import pickle

import pytest
import torch

import augment as A
from augment import functional as F

ALL = {
    "MixUp": lambda **kw: A.MixUp(0.8, num_classes=5, **kw),
    "CutMix": lambda **kw: A.CutMix(1.0, num_classes=5, **kw),
    "MixUpCutMix": lambda **kw: A.MixUpCutMix(num_classes=5, **kw),
}


def _g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("mode", A.mix.MIX_MODES)
@pytest.mark.parametrize("name", sorted(ALL))
@pytest.mark.parametrize("batch", [2, 5, 8])
def test_label_mass_is_conserved(image_factory, name, mode, batch):
    x = image_factory(batch)
    target = torch.arange(batch) % 5
    mix = ALL[name](mode=mode, label_smoothing=0.1)
    out, mixed = mix(x, target, generator=_g(batch))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert mixed.shape == (batch, 5) and mixed.dtype == torch.float32
    assert torch.allclose(mixed.sum(dim=1), torch.ones(batch), atol=1e-6)  # every row stays a distribution
    assert (mixed >= 0.1 / 5 - 1e-6).all()  # the smoothing floor
    if mode == "pair" and batch % 2 == 0:
        # mutual pairs exchange equal amounts: the batch's total per class is conserved exactly
        onehot = F.smooth_targets(target, 5, 0.1)
        assert torch.allclose(mixed.sum(dim=0), onehot.sum(dim=0), atol=1e-5)


def test_cutmix_label_equals_pixel_share():
    """With correct_lam, a sample's own label weight is exactly its share of own pixels."""
    batch = 7  # odd
    x = torch.arange(batch, dtype=torch.uint8).view(batch, 1, 1, 1).expand(batch, 3, 20, 30).contiguous()
    target = torch.arange(batch)
    mix = A.CutMix(1.0, mode="elem", label_smoothing=0.0, num_classes=batch)
    out, mixed = mix(x, target, generator=_g(0))
    for i in range(batch):
        share = (out[i, 0] == i).float().mean().item()
        assert mixed[i, i].item() == pytest.approx(share, abs=1e-6)
        assert mixed[i].sum().item() == pytest.approx(1.0, abs=1e-6)
        others = set(out[i, 0].unique().tolist()) - {i}
        assert len(others) <= 1  # pasted from one partner only


def test_mixup_pixels_and_labels_use_the_same_lambda():
    batch = 5
    x = torch.full((batch, 3, 4, 4), 0.0)
    x[torch.arange(batch), :, :, :] = torch.arange(batch, dtype=torch.float32).view(batch, 1, 1, 1) * 10
    mix = A.MixUp(1.0, mode="elem", label_smoothing=0.0, num_classes=batch)
    params = mix.make_params(x, _g(1))
    out = mix.apply(x, params)
    mixed = mix.apply_target(torch.arange(batch), params)
    for i in range(batch):
        lam, p = params["lam"][i].item(), int(params["partner"][i])
        assert p != i, "every sample has a partner, odd batch included"
        assert out[i, 0, 0, 0].item() == pytest.approx(10 * (lam * i + (1 - lam) * p), abs=1e-4)
        assert mixed[i, i].item() == pytest.approx(lam, abs=1e-6)


def test_multi_hot_targets_are_mixed():
    x = torch.rand(4, 3, 8, 8)
    target = torch.tensor([[1, 0, 1], [0, 1, 0], [1, 1, 1], [0, 0, 0]], dtype=torch.float32)
    mix = A.MixUp(1.0, mode="elem", label_smoothing=0.0)
    params = mix.make_params(x, _g(2))
    mixed = mix.apply_target(target, params)
    lam, partner = params["lam"].float().view(-1, 1), params["partner"]
    assert torch.allclose(mixed, lam * target + (1 - lam) * target[partner], atol=1e-6)
    smoothed = A.MixUp(1.0, label_smoothing=0.3).apply_target(target, params)
    assert torch.allclose(smoothed, (target * 0.7 + 0.1).lerp(target[partner] * 0.7 + 0.1, 1 - lam) , atol=1e-6)


def test_smoothing_values():
    out = F.smooth_targets(torch.tensor([2]), 4, 0.2)
    assert torch.allclose(out, torch.tensor([[0.05, 0.05, 0.85, 0.05]]))


def test_cutmix_carries_masks(image_factory, mask_factory):
    x, m = image_factory(5), mask_factory(5)
    x_marked = x.clone()
    x_marked[:, 0] = m.to(torch.uint8)
    out, _, out_mask = A.CutMix(1.0, mode="elem", num_classes=5)(x_marked, torch.arange(5), m, generator=_g(3))
    assert torch.equal(out[:, 0].long(), out_mask)
    with pytest.raises(ValueError, match="masks can only follow CutMix"):
        A.MixUpCutMix(num_classes=5)(x, torch.arange(5), m)


def test_flags_say_which_mixes_blend_and_carry_masks(image_factory, mask_factory):
    x, m = image_factory(4), mask_factory(4)
    for mix in (A.MixUp(), A.CutMix(), A.MixUpCutMix(), A.MixUpCutMix(mixup_alpha=0.0), A.MixUpCutMix(cutmix_alpha=0.0)):
        assert mix.blends == (mix.mixup_alpha > 0) and mix.carries_masks == (not mix.blends), mix
        if mix.carries_masks:
            assert mix(x, torch.eye(4), m, generator=_g(1))[2].shape == m.shape
        else:
            with pytest.raises(ValueError, match="masks can only follow CutMix"):
                mix(x, torch.eye(4), m, generator=_g(1))
        if not mix.blends:  # pasting only: every output pixel is a pixel of the batch at that place
            out = mix(x, torch.eye(4), generator=_g(2))[0]
            assert bool(((out[:, None] == x[None]).all(dim=2)).any(dim=1).all())


@pytest.mark.parametrize("name", sorted(ALL))
def test_contract(image_factory, name):
    mix = ALL[name](mode="elem")
    x = image_factory(6)
    before = x.clone()
    a = mix(x, torch.arange(6) % 5, generator=_g(4))
    b = mix(x, torch.arange(6) % 5, generator=_g(4))
    assert torch.equal(x, before) and torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    clone = pickle.loads(pickle.dumps(mix))
    assert torch.equal(clone(x, torch.arange(6) % 5, generator=_g(4))[0], a[0])
    xf = x.float() / 255
    out, _ = mix(xf, torch.arange(6) % 5, generator=_g(4))
    assert out.dtype == torch.float32
    # batch equals per sample: sample i is the kernel applied to x[i] and its partner
    params = mix.make_params(x, _g(5))
    batched = mix.apply(x, params)
    for i in range(6):
        p = int(params["partner"][i])
        if params["cutmix"][i]:
            single = F.cutmix(x[i:i + 1], x[p:p + 1], params["boxes"][i:i + 1])
        else:
            single = F.mixup(x[i:i + 1], x[p:p + 1], params["lam"][i:i + 1])
        assert torch.equal(batched[i:i + 1], single)


def test_errors_name_the_argument(image_factory):
    x = image_factory(4)
    with pytest.raises(ValueError, match="mode must be one of"):
        A.MixUp(mode="pairs")
    with pytest.raises(ValueError, match="alpha"):
        A.CutMix(0.0)
    with pytest.raises(ValueError, match="num_classes is required"):
        A.MixUp()(x, torch.arange(4))
    with pytest.raises(ValueError, match="B >= 2"):
        A.MixUp(num_classes=3)(x[:1], torch.tensor([0]))
    with pytest.raises(ValueError, match="needs a batch"):
        A.MixUp(num_classes=3)(x[0], torch.tensor([0]))
    with pytest.raises(ValueError, match=r"class indices must be in \[0, 3\)"):
        A.MixUp(num_classes=3)(x, torch.tensor([0, 1, 2, 3]))

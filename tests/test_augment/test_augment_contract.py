"""The contract every public augment transform meets (after torchvision's ``check_transform``):
pickle round trip, dtype and device kept, input unmodified, same seed -> same output, batch equals
per-sample with the same parameters, single images, and masks that follow geometric ops. What a
transform may do (move pixels, change or blend values, carry masks) comes from its flags
(``geometric``, ``photometric``, ``blends``, ``carries_masks``), whose values are tested here too."""

from __future__ import annotations

import pickle

import pytest
import torch
from torchvision import tv_tensors

import augment as A

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]


def _seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_dtype_device_unmodified_and_seeded(transform_factory, images, dtype, device):
    t = transform_factory()
    x = images.to(device) if dtype == torch.uint8 else (images.float() / 255).to(device)
    before = x.clone()
    out = t(x, generator=_seeded(1))
    assert out.dtype == x.dtype and out.device == x.device and out.shape == x.shape
    assert torch.equal(x, before), "the input was modified"
    again = t(x, generator=_seeded(1))
    assert torch.equal(out, again), "same seed, different output"
    others = [t(x, generator=_seeded(s)) for s in (2, 3, 4)]
    assert any(not torch.equal(out, o) for o in others), "the transform ignores its generator"


def test_pickle_round_trip(transform_factory, images):
    t = transform_factory()
    clone = pickle.loads(pickle.dumps(t))  # our own object: this is what DataLoader workers do
    assert type(clone) is type(t)
    assert torch.equal(t(images, generator=_seeded(5)), clone(images, generator=_seeded(5)))


def test_batch_equals_per_sample(transform_factory, images):
    t = transform_factory()
    params = t.make_params(images, _seeded(7))
    batched = t.apply(images, params)
    for i in range(images.shape[0]):
        single = t.apply(images[i:i + 1], t.select(params, i))
        assert torch.equal(batched[i:i + 1], single), f"sample {i} differs from the batch"


def test_parameters_are_per_sample(transform_factory, image_factory):
    """Identical images in one batch must not all get identical outputs (one draw per sample)."""
    t = transform_factory()
    x = image_factory(1).repeat(12, 1, 1, 1)
    out = t(x, generator=_seeded(3))
    assert any(not torch.equal(out[0], out[i]) for i in range(1, 12))


def test_single_image_matches_batch_of_one(transform_factory, images):
    t = transform_factory()
    single = t(images[0], generator=_seeded(9))
    batch = t(images[:1], generator=_seeded(9))
    assert single.shape == images[0].shape and torch.equal(single, batch[0])


def test_masks_follow_geometric_ops(transform_factory, images, masks):
    t = transform_factory()
    if not t.carries_masks:  # AugMix, or a composition that may draw it: a mask raises when it does
        raised = 0
        for seed in range(4):
            try:
                t(images, tv_tensors.Mask(masks), generator=_seeded(seed))
            except (TypeError, ValueError):
                raised += 1
        assert raised, "carries_masks is False, yet every mask went through"
        return
    out, out_mask = t(images, tv_tensors.Mask(masks), generator=_seeded(11))
    assert isinstance(out_mask, tv_tensors.Mask) and out_mask.shape == masks.shape and out_mask.dtype == masks.dtype
    assert set(out_mask.unique().tolist()) <= set(masks.unique().tolist()) | {0}
    # an op that only moves pixels (geometric, neither photometric nor blending: no value change,
    # no interpolation) must keep a mask equal to the image's first channel equal to it
    t_img = images[:, :1].repeat(1, 3, 1, 1)
    label = tv_tensors.Mask(images[:, 0].long())
    if t.geometric and not t.photometric and not t.blends:
        moved, moved_mask = t(t_img, label, generator=_seeded(12))
        assert torch.equal(moved[:, 0].long(), moved_mask)


def test_dict_samples(transform_factory, images, masks):
    t = transform_factory()
    if t.carries_masks:
        sample = {"image": images[0], "mask": masks[0], "label": 3}
    else:
        sample = {"image": images[0], "label": 3}
    out = t(sample, generator=_seeded(2))
    assert out["label"] == 3 and out["image"].shape == images[0].shape
    assert torch.equal(out["image"], t(images[0], generator=_seeded(2)))
    if "mask" in sample:
        assert out["mask"].shape == masks[0].shape and out["mask"].dtype == masks[0].dtype


def _flags(t) -> tuple[bool, bool, bool, bool]:
    return t.geometric, t.photometric, t.blends, t.carries_masks


@pytest.mark.parametrize("wrap", [lambda t: A.Compose([t]), lambda t: A.OneOf([t]), lambda t: A.RandomApply(t, p=1.0),
                                  lambda t: A.Compose([A.OneOf([t])])], ids=["Compose", "OneOf", "RandomApply", "nested"])
def test_compositions_combine_their_childrens_flags(wrap, images, masks):
    import albumentations as albu

    flip, crop = A.RandomHorizontalFlip(), A.RandomResizedCrop((32, 48))
    assert _flags(wrap(flip)) == _flags(flip) == (True, False, False, True)
    assert _flags(wrap(crop)) == _flags(crop) == (True, False, True, True)  # bilinear resizing blends
    assert _flags(A.RandomResizedCrop((32, 48), interpolation="nearest")) == (True, False, False, True)
    assert _flags(wrap(A.AugMix())) == _flags(A.AugMix()) == (False, True, True, False)
    assert _flags(A.Compose([flip, A.RandAugment()])) == (True, True, True, True)
    assert _flags(A.Compose([])) == (False, False, False, True)
    with pytest.raises(TypeError, match="AugMix cannot carry masks"):
        wrap(A.AugMix())(images, tv_tensors.Mask(masks), generator=_seeded(0))
    # the bridge carries a mask by running its pipeline on the image, which a composition lacks
    bridge = A.Albumentations(albu.Compose([albu.HorizontalFlip(p=1.0)]))
    assert bridge.carries_masks and not wrap(bridge).carries_masks
    assert torch.equal(bridge(images, tv_tensors.Mask(masks), generator=_seeded(0))[1], masks.flip(-1))
    with pytest.raises(ValueError, match="needs the image to move a mask"):
        wrap(bridge)(images, tv_tensors.Mask(masks), generator=_seeded(0))


def test_rejects_bad_inputs(transform_factory):
    t = transform_factory()
    with pytest.raises((TypeError, ValueError)):
        t(torch.zeros(2, 2, dtype=torch.uint8))
    with pytest.raises(TypeError):
        t(torch.zeros(3, 32, 48, dtype=torch.int32))
    with pytest.raises(TypeError):
        t(torch.zeros(3, 32, 48, dtype=torch.uint8), generator=0)


def test_negative_views_contract(images):
    views = A.NegativeViews(A.PatchInfill(8, (0.2, 0.4)))
    before = images.clone()
    x, negative = views(images, generator=_seeded(0))
    assert torch.equal(images, before) and x is images
    clone = pickle.loads(pickle.dumps(views))
    assert torch.equal(clone(images, generator=_seeded(0))[1], negative)
    assert negative.dtype == images.dtype and negative.shape == images.shape


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["PatchShuffle", "PatchShuffle-8-model4", "PatchRotate", "PatchInfill-range"])
def test_cuda_matches_cpu(name, images, transform_table):
    """Patch ops are pure gathers: CUDA must give the very same bytes as the CPU."""
    t = transform_table[name]()
    on_cpu = t(images, generator=_seeded(3))
    on_gpu = t(images.cuda(), generator=_seeded(3))
    assert on_gpu.is_cuda and torch.equal(on_cpu, on_gpu.cpu())

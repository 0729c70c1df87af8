"""Properties of the patch-based negatives (Qin et al., 2021): P-Shuffle permutes patches,
P-Rotate rotates each patch in place, P-Infill changes only the central region, by the requested
rate, with patches copied from outside it; plus validation and NegativeViews."""

from __future__ import annotations

import pytest
import torch
from torchvision import tv_tensors

import augment as A
from augment import functional as F


def patches(x: torch.Tensor, ps: int) -> torch.Tensor:
    """``[B,C,H,W]`` -> ``[B, rows*cols, C, ps, ps]`` (row-major patch order), the obvious way."""
    b, c, h, w = x.shape
    return x.reshape(b, c, h // ps, ps, w // ps, ps).permute(0, 2, 4, 1, 3, 5).reshape(b, -1, c, ps, ps)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.int64, torch.float16])
@pytest.mark.parametrize("ps", [1, 2, 4, 8, 16])
def test_shuffle_is_a_permutation_of_patches(image_factory, dtype, ps):
    x = image_factory(3, (16, 32)).to(dtype)
    t = A.PatchShuffle(ps)
    params = t.make_params(x, torch.Generator().manual_seed(0))
    out = t.apply(x, params)
    src, dst = patches(x, ps), patches(out, ps)
    perm = params["permutation"]
    assert sorted(perm[0].tolist()) == list(range(perm.shape[1]))
    for b in range(x.shape[0]):
        assert torch.equal(dst[b], src[b][perm[b]])
    # and, independently of the parameters, the multiset of patches is unchanged
    key = lambda p: sorted(map(tuple, p.reshape(p.shape[0], -1).tolist()))  # noqa: E731
    assert key(src[0]) == key(dst[0])
    if ps < 16:
        assert not torch.equal(out, x)


@pytest.mark.parametrize("ps", [2, 8, 16])
def test_rotate_rotates_each_patch_in_place(image_factory, ps):
    x = image_factory(3, (16, 32))
    t = A.PatchRotate(ps)
    params = t.make_params(x, torch.Generator().manual_seed(1))
    out = t.apply(x, params)
    turns = params["quarter_turns"]
    assert set(turns.unique().tolist()) <= {0, 1, 2, 3}
    src, dst = patches(x, ps), patches(out, ps)
    for b in range(x.shape[0]):
        for p in range(src.shape[1]):
            assert torch.equal(dst[b, p], torch.rot90(src[b, p], int(turns[b, p]), dims=(-2, -1)))
    assert (turns == 0).any(), "0 degrees belongs to the choices"


def rotate_by_hand(x: torch.Tensor, turns: torch.Tensor, ps: int) -> torch.Tensor:
    """P-Rotate the obvious way: ``torch.rot90`` on each patch, one at a time."""
    x4 = x if x.ndim == 4 else x[:, None]
    out = x4.clone()
    cols = x4.shape[-1] // ps
    for b in range(x4.shape[0]):
        for p, k in enumerate(turns[b].tolist()):
            r, c = divmod(p, cols)
            window = (b, slice(None), slice(r * ps, (r + 1) * ps), slice(c * ps, (c + 1) * ps))
            out[window] = torch.rot90(x4[window], k % 4, dims=(-2, -1))
    return out.view_as(x)


def gather_by_hand(x: torch.Tensor, source: torch.Tensor, ps: int) -> torch.Tensor:
    """Patch gather the obvious way: copy each source patch, one at a time."""
    x4 = x if x.ndim == 4 else x[:, None]
    out = x4.clone()
    cols = x4.shape[-1] // ps
    for b in range(x4.shape[0]):
        for p, s in enumerate(source[b].tolist()):
            (r, c), (sr, sc) = divmod(p, cols), divmod(s, cols)
            out[b, :, r * ps:(r + 1) * ps, c * ps:(c + 1) * ps] = x4[b, :, sr * ps:(sr + 1) * ps, sc * ps:(sc + 1) * ps]
    return out.view_as(x)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.int16, torch.float64, torch.bool])
@pytest.mark.parametrize("ps,size", [(16, (32, 48)), (32, (64, 32)), (8, (16, 40)), (48, (48, 96)), (2, (4, 6)), (1, (3, 2))])
def test_staged_cpu_path_equals_torch_path_and_by_hand(dtype, ps, size, monkeypatch):
    """The staged OpenCV CPU path, the torch path (CUDA's) and per-patch rot90 / copies give the
    same bits: P-Rotate for every angle (turns outside 0..3 included) and patch gathers, several
    patch sizes and element sizes, the batch split into chunks of 2, 2 and 1 images, masks, out=."""
    from augment.functional import _patch, _staged

    assert _patch._opencv() is not None, "the staged CPU path must be what this test exercises"
    g = torch.Generator().manual_seed(ps)
    x = torch.randint(0, 256, (5, 3, *size), generator=g).to(dtype)
    if dtype.is_floating_point:
        x = torch.randn((5, 3, *size), generator=g).to(dtype)
    grid = (size[0] // ps) * (size[1] // ps)
    turns = torch.randint(-6, 7, (5, grid), generator=g)
    turns[0] = torch.arange(grid) % 4  # every angle appears
    source = torch.randint(0, grid, (5, grid), generator=g)
    monkeypatch.setattr(_staged, "_STAGE_BYTES", 2 * x[0].numel() * x.element_size())
    staged = {"rotate": F.patch_rotate(x, turns, ps), "gather": F.patch_gather(x, source, ps),
              "mask": F.patch_rotate(x[:, 0].contiguous(), turns, ps)}
    out = torch.empty_like(x)
    assert F.patch_rotate(x, turns, ps, out=out) is out and torch.equal(out, staged["rotate"])
    monkeypatch.setattr(_patch, "_opencv", lambda: None)  # the torch path from here on
    assert torch.equal(staged["rotate"], F.patch_rotate(x, turns, ps))
    assert torch.equal(staged["gather"], F.patch_gather(x, source, ps))
    assert torch.equal(staged["mask"], F.patch_rotate(x[:, 0].contiguous(), turns, ps))
    assert torch.equal(staged["rotate"], rotate_by_hand(x, turns, ps))
    assert torch.equal(staged["gather"], gather_by_hand(x, source, ps))
    assert torch.equal(staged["mask"], staged["rotate"][:, 0])


def test_staged_cpu_path_is_thread_safe(image_factory):
    """Work buffers are per thread: concurrent calls give the sequential results."""
    from concurrent.futures import ThreadPoolExecutor

    inputs = [image_factory(8, (128, 128), seed=s) for s in range(6)]
    turns = [torch.randint(0, 4, (8, 64), generator=torch.Generator().manual_seed(s)) for s in range(6)]
    expected = [F.patch_rotate(x, t, 16) for x, t in zip(inputs, turns)]
    with ThreadPoolExecutor(3) as pool:
        for _ in range(3):
            results = list(pool.map(lambda pair: F.patch_rotate(pair[0], pair[1], 16), zip(inputs, turns)))
            assert all(torch.equal(a, b) for a, b in zip(results, expected))


def test_rotate_and_shuffle_on_odd_offsets_and_views(image_factory):
    """Non-contiguous and offset inputs take the narrow-element path and still work."""
    big = image_factory(4, (16, 33))
    x = big[1:3, :, :, 1:]  # a view with a storage offset
    for t in (A.PatchShuffle(8), A.PatchRotate(8), A.PatchInfill(4, 0.25)):
        params = t.make_params(x, torch.Generator().manual_seed(2))
        assert torch.equal(t.apply(x, params), t.apply(x.contiguous(), params))


@pytest.mark.parametrize("rate", [0.25, 0.375])
def test_infill_changes_only_the_centre_by_the_rate(image_factory, rate):
    x = image_factory(4, (56, 56))  # 14 x 14 patches of 4: the paper's ViT grid
    ps = 4
    t = A.PatchInfill(ps, rate)
    params = t.make_params(x, torch.Generator().manual_seed(3))
    out = t.apply(x, params)
    src, dst = patches(x, ps), patches(out, ps)
    rows = cols = 14
    for b in range(x.shape[0]):
        top, left, height, width = params["region"][b].tolist()
        assert abs(height * width / (rows * cols) - rate) <= 0.02, "region area follows the replace rate"
        assert top == (rows - height) // 2 and left == (cols - width) // 2, "the region is centred"
        assert top >= 1 and left >= 1 and top + height <= rows - 1 and left + width <= cols - 1
        inside = torch.zeros(rows, cols, dtype=torch.bool)
        inside[top:top + height, left:left + width] = True
        inside = inside.view(-1)
        assert torch.equal(dst[b][~inside], src[b][~inside]), "outside the centre nothing changes"
        outside_patches = src[b][~inside].reshape(int((~inside).sum()), -1)
        for p in inside.nonzero().view(-1).tolist():
            copied = dst[b, p].reshape(1, -1)
            assert (outside_patches == copied).all(dim=1).any(), "central patches are copies of outside patches"
        changed = (dst[b] != src[b]).flatten(1).any(dim=1)
        assert changed[inside].float().mean() > 0.8  # (a copy may equal the original by chance)



def test_infill_rate_range_draws_per_sample(image_factory):
    x = image_factory(16, (56, 56))
    params = A.PatchInfill(4, (0.1, 0.5)).make_params(x, torch.Generator().manual_seed(4))
    areas = (params["region"][:, 2] * params["region"][:, 3]).float() / 196
    assert areas.min() >= 0.08 and areas.max() <= 0.52 and len(set(areas.tolist())) > 3


def test_infill_region_values():
    assert F.infill_region(14, 14, 0.25) == (3, 3, 7, 7)
    assert F.infill_region(14, 14, 0.375) == (3, 2, 8, 9)  # 72/196 = 0.367
    assert F.infill_region(14, 14, 0.0) == (7, 7, 0, 0)
    with pytest.raises(ValueError, match="replace_rate"):
        F.infill_region(14, 14, 1.0)


def test_validation_names_the_argument(images):
    with pytest.raises(ValueError, match="must divide the image size 32x48; allowed: .*16"):
        A.PatchShuffle(5)(images)
    with pytest.raises(ValueError, match="multiple of model_patch_size 16"):
        A.PatchRotate(24, model_patch_size=16)
    with pytest.raises(ValueError, match="patch_size must be a positive int"):
        A.PatchInfill(0)
    with pytest.raises(ValueError, match="replace_rate"):
        A.PatchInfill(8, (0.5, 0.2))
    with pytest.raises(ValueError, match="replace_rate"):
        A.PatchInfill(8, 1.5)
    A.PatchShuffle(32, model_patch_size=16)  # a multiple: fine
    with pytest.raises(TypeError, match="bounding boxes"):
        boxes = tv_tensors.BoundingBoxes([[0, 0, 4, 4]], format="XYXY", canvas_size=(32, 48))
        A.PatchShuffle(16)(images[0], boxes)
    with pytest.raises(ValueError, match=r"source values must lie in \[0, 6\)"):
        F.patch_gather(images, torch.full((images.shape[0], 6), 6), 16)


def test_masks_move_with_their_patches(image_factory, mask_factory):
    x = image_factory(2, (32, 48))
    m = mask_factory(2, (32, 48))
    for t in (A.PatchShuffle(16), A.PatchRotate(8), A.PatchInfill(8, 0.3)):
        params = t.make_params(x, torch.Generator().manual_seed(5))
        moved = t.apply_mask(m, params)
        # the same op on an image holding the mask values moves them identically
        assert torch.equal(moved, t.apply(m[:, None].expand(-1, 3, -1, -1).contiguous(), params)[:, 0])


def test_negative_views(images):
    views = A.NegativeViews(A.PatchRotate(16))
    x, negative = views(images, generator=torch.Generator().manual_seed(0))
    assert x is images and negative.shape == images.shape and not torch.equal(negative, images)
    with pytest.raises(TypeError):
        A.NegativeViews("rotate")

"""DropToken (VATT) and MAE random masking: shapes, index semantics, determinism, the MAE
procedure step by step, and the contract (pickle, unmodified input, seeded)."""

from __future__ import annotations

import pickle

import pytest
import torch

import augment as A
from augment import functional as F


def _g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("shared", [False, True])
def test_droptoken_keeps_ordered_subsets(shared):
    tokens = torch.arange(3 * 10 * 2, dtype=torch.float32).view(3, 10, 2)
    before = tokens.clone()
    kept, index = A.DropToken(0.5, shared=shared)(tokens, generator=_g(0))
    assert torch.equal(tokens, before)
    assert kept.shape == (3, 5, 2)
    assert index.shape == ((5,) if shared else (3, 5))
    rows = index.expand(3, 5) if shared else index
    for b in range(3):
        assert torch.equal(rows[b], rows[b].sort().values) and len(set(rows[b].tolist())) == 5
        assert torch.equal(kept[b], tokens[b, rows[b]])
    if not shared:
        assert any(not torch.equal(index[0], index[b]) for b in (1, 2)), "per-sample subsets differ"


def test_droptoken_prefix_rates_and_seed():
    tokens = torch.randn(4, 17, 8)
    kept, index = A.DropToken(0.75, num_prefix_tokens=1)(tokens, generator=_g(1))
    assert kept.shape == (4, 1 + 16 - 12, 8) and (index[:, 0] == 0).all() and (index[:, 1:] > 0).all()
    assert A.DropToken(0.0)(tokens)[0].shape == tokens.shape
    a = A.DropToken(0.5)(tokens, generator=_g(2))[1]
    assert torch.equal(a, A.DropToken(0.5)(tokens, generator=_g(2))[1])
    clone = pickle.loads(pickle.dumps(A.DropToken(0.5, shared=True)))
    assert clone.shared and clone.rate == 0.5
    with pytest.raises(ValueError, match="rate"):
        A.DropToken(1.0)
    with pytest.raises(ValueError, match=r"tokens must be a tensor \[B,L,D\]"):
        A.DropToken()(torch.zeros(4, 5))


def test_random_masking_follows_mae():
    torch.manual_seed(0)
    tokens = torch.randn(2, 16, 3)
    masking = A.RandomMasking(0.75)
    params = masking.make_params(tokens, _g(3))
    kept, mask, ids_restore = masking.apply(tokens, params)
    # MAE's procedure, by hand
    ids_shuffle = torch.argsort(params["noise"], dim=1)
    assert torch.equal(ids_restore, torch.argsort(ids_shuffle, dim=1))
    keep = int(16 * (1 - 0.75))
    assert kept.shape == (2, keep, 3)
    for b in range(2):
        assert torch.equal(kept[b], tokens[b, ids_shuffle[b, :keep]])
        removed = set(range(16)) - set(ids_shuffle[b, :keep].tolist())
        assert set(mask[b].nonzero().view(-1).tolist()) == removed  # 1 = removed
    assert (mask.sum(dim=1) == 16 - keep).all()
    # unshuffling puts every kept token back in place
    restored = F.unshuffle_tokens(kept, ids_restore, torch.zeros(3))
    visible = mask == 0
    assert torch.equal(restored[visible], tokens[visible]) and (restored[~visible] == 0).all()
    a = masking(tokens, generator=_g(4))
    assert all(torch.equal(u, v) for u, v in zip(a, masking(tokens, generator=_g(4))))
    with pytest.raises(ValueError, match="ratio"):
        A.RandomMasking(1.0)

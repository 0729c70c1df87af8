"""Ensemble agreement (DatasetGAN, Zhang et al. 2021, arXiv:2104.06490): majority vote, per-pixel
Jensen-Shannon divergence, top-10% image scores and filtering, against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from datafactory.gan.uncertainty import image_scores, js_uncertainty, keep_least_uncertain, majority_vote


def _logits_from_probs(*members: list[float]) -> torch.Tensor:
    """(E, 1, C, 1, 1) logits whose softmax is each given distribution (log p; log 0 = -inf)."""
    probs = torch.tensor(members, dtype=torch.float64)
    return probs.log()[:, None, :, None, None]


def _entropy(p: list[float]) -> float:
    return -sum(x * math.log(x) for x in p if x > 0)


# -- Jensen-Shannon divergence ----------------------------------------------------------------------


def test_js_is_zero_when_members_agree():
    logits = torch.randn(1, 2, 5, 3, 4).expand(4, -1, -1, -1, -1)
    js = js_uncertainty(logits)
    assert js.shape == (2, 3, 4)
    assert torch.allclose(js, torch.zeros_like(js), atol=1e-6)


def test_js_of_two_opposite_one_hots_is_log_2():
    js = js_uncertainty(_logits_from_probs([1.0, 0.0], [0.0, 1.0]))
    assert js.item() == pytest.approx(math.log(2), abs=1e-12)
    # finite logits far apart approach it too
    far = torch.tensor([[30.0, -30.0], [-30.0, 30.0]])[:, None, :, None, None]
    assert js_uncertainty(far).item() == pytest.approx(math.log(2), abs=1e-5)


@pytest.mark.parametrize("members", [
    ([0.5, 0.5], [0.9, 0.1]),
    ([0.2, 0.3, 0.5], [0.6, 0.3, 0.1], [1 / 3, 1 / 3, 1 / 3]),
    ([0.7, 0.2, 0.1], [0.7, 0.2, 0.1], [0.0, 0.5, 0.5]),
])
def test_js_matches_hand_computation(members):
    mean = [sum(column) / len(members) for column in zip(*members)]
    expected = _entropy(mean) - sum(_entropy(p) for p in members) / len(members)
    got = js_uncertainty(_logits_from_probs(*members)).item()
    assert got == pytest.approx(expected, abs=1e-12)
    # float32 input computes in float32
    got32 = js_uncertainty(_logits_from_probs(*members).float().clamp_min(-1e4))
    assert got32.dtype == torch.float32
    assert got32.item() == pytest.approx(expected, abs=1e-5)


def test_js_is_bounded_by_log_members_and_log_classes():
    logits = 5 * torch.randn(3, 2, 4, 6, 6, generator=torch.Generator().manual_seed(0))
    js = js_uncertainty(logits)
    assert (js >= 0).all()
    assert (js <= math.log(3) + 1e-6).all()


# -- majority vote ----------------------------------------------------------------------------------


def _votes(*labels: int, num_classes: int = 4) -> torch.Tensor:
    """(E, 1, C, 1, 1) logits where member e predicts labels[e]."""
    logits = torch.zeros(len(labels), 1, num_classes, 1, 1)
    for e, label in enumerate(labels):
        logits[e, 0, label] = 1.0
    return logits


@pytest.mark.parametrize("labels, winner", [
    ((0, 1, 1), 1),
    ((3, 3, 2, 1, 0), 3),
    ((2, 1), 1),  # tie -> lowest class index
    ((0, 0, 2, 2), 0),
    ((3, 3, 1, 1, 2), 1),
    ((3,), 3),
])
def test_majority_vote_with_ties_to_lowest_class(labels, winner):
    out = majority_vote(_votes(*labels))
    assert out.dtype == torch.int64 and out.shape == (1, 1, 1)
    assert out.item() == winner


def test_majority_vote_per_pixel_and_per_image():
    logits = torch.zeros(3, 2, 3, 1, 2)
    # image 0: pixel 0 votes (2, 2, 0), pixel 1 votes (1, 0, 1); image 1: all vote 0 except member 2 votes 2 everywhere
    for e, (a, b) in enumerate([(2, 1), (2, 0), (0, 1)]):
        logits[e, 0, a, 0, 0] = 1
        logits[e, 0, b, 0, 1] = 1
    logits[2, 1, 2] = 1
    out = majority_vote(logits)
    assert out.tolist() == [[[2, 1]], [[0, 0]]]


def test_member_argmax_ties_also_go_to_lowest_class():
    logits = torch.zeros(1, 1, 3, 1, 1)  # all equal
    assert majority_vote(logits).item() == 0


# -- image scores and filtering -----------------------------------------------------------------------


def test_image_score_is_mean_of_top_ten_percent():
    values = torch.arange(100, dtype=torch.float32).reshape(1, 10, 10)
    values = torch.cat([values, values.flip(1) * 2])
    scores = image_scores(values)
    assert scores.tolist() == pytest.approx([sum(range(90, 100)) / 10, 2 * sum(range(90, 100)) / 10])


def test_image_score_rounds_pixel_count_up():
    values = torch.tensor([[[5.0, 1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 3.0, 0.0, 0.0]]])  # 10 pixels
    assert image_scores(values, 0.1).item() == pytest.approx(5.0)  # k = 1
    assert image_scores(values, 0.25).item() == pytest.approx((5 + 3 + 1) / 3)  # ceil(2.5) = 3
    assert image_scores(values, 0.3).item() == pytest.approx((5 + 3 + 1) / 3)  # 0.3 * 10 is 3, not 4
    assert image_scores(values, 0.01).item() == pytest.approx(5.0)  # at least one pixel
    assert image_scores(values, 1.0).item() == pytest.approx(0.9)


def test_keep_least_uncertain_is_stable_on_ties():
    scores = torch.tensor([0.5, 0.1, 0.9, 0.5, 0.3])
    keep = keep_least_uncertain(scores, 0.4)  # drop floor(2.0) = 2: 0.9 and the later 0.5
    assert keep.tolist() == [True, True, False, False, True]
    assert keep_least_uncertain(scores, 0.0).all()
    assert not keep_least_uncertain(scores, 1.0).any()
    assert keep_least_uncertain(scores, 0.39).sum() == 4  # floor(1.95) = 1 dropped
    equal = keep_least_uncertain(torch.zeros(6), 0.5)
    assert equal.tolist() == [True, True, True, False, False, False]


def test_keep_least_uncertain_drops_the_paper_ten_percent():
    scores = torch.rand(50, generator=torch.Generator().manual_seed(1))
    keep = keep_least_uncertain(scores, 0.1)
    assert keep.sum() == 45
    assert scores[keep].max() < scores[~keep].min()


# -- bad input --------------------------------------------------------------------------------------


def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match="logits"):
        js_uncertainty(torch.zeros(2, 3, 4, 4))
    with pytest.raises(TypeError, match="logits"):
        majority_vote(torch.zeros(2, 1, 3, 4, 4, dtype=torch.long))
    with pytest.raises(TypeError, match="logits"):
        majority_vote([[0.0]])
    with pytest.raises(ValueError, match="uncertainty"):
        image_scores(torch.zeros(4, 4))
    with pytest.raises(ValueError, match="top_fraction"):
        image_scores(torch.zeros(1, 4, 4), 0.0)
    with pytest.raises(ValueError, match="top_fraction"):
        image_scores(torch.zeros(1, 4, 4), 1.5)
    with pytest.raises(TypeError, match="top_fraction"):
        image_scores(torch.zeros(1, 4, 4), float("nan"))
    with pytest.raises(ValueError, match="drop_fraction"):
        keep_least_uncertain(torch.zeros(3), -0.1)
    with pytest.raises(ValueError, match="scores"):
        keep_least_uncertain(torch.zeros(3, 1), 0.1)
    with pytest.raises(ValueError, match="NaN"):
        keep_least_uncertain(torch.tensor([0.1, float("nan")]), 0.1)

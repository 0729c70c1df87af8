"""The negative-augmentation losses against values computed by hand on tiny inputs."""

from __future__ import annotations

import math

import pytest
import torch

from augment import losses


def test_uniform_loss_by_hand():
    # softmax([0, ln 3]) = [1/4, 3/4]; CE against [1/2, 1/2] = -(ln 1/4 + ln 3/4) / 2
    logits = torch.tensor([[0.0, math.log(3.0)], [0.0, 0.0]])
    expected = (-(math.log(0.25) + math.log(0.75)) / 2 + math.log(2.0)) / 2
    assert losses.negative_uniform_loss(logits).item() == pytest.approx(expected, abs=1e-6)
    # the minimum, log K, is reached by a uniform prediction
    assert losses.negative_uniform_loss(torch.zeros(3, 5)).item() == pytest.approx(math.log(5.0), abs=1e-6)


def test_l2_loss_by_hand():
    # softmax([0,0]) = [.5,.5], softmax([ln 3, 0]) = [.75,.25] -> distance sqrt(2 * .25^2)
    logits = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    negative = torch.tensor([[math.log(3.0), 0.0], [1.0, 1.0]])
    expected = -(math.sqrt(2 * 0.25**2) + 0.0) / 2
    assert losses.negative_l2_loss(logits, negative).item() == pytest.approx(expected, abs=1e-6)
    with pytest.raises(ValueError, match="must match"):
        losses.negative_l2_loss(logits, negative[:1])


def test_contrastive_loss_by_hand():
    e = math.e
    # two same-class anchors on (1,0); negative views (0,1) and (-1,0); tau = 1
    features = torch.tensor([[2.0, 0.0], [1.0, 0.0]])  # normalised inside
    negatives = torch.tensor([[0.0, 3.0], [-1.0, 0.0]])
    labels = torch.tensor([0, 0])
    value = losses.negative_contrastive_loss(features, negatives, labels, temperature=1.0)
    assert value.item() == pytest.approx(-math.log(e / (e + 1 + 1 / e)), abs=1e-6)
    # three anchors, the third without a positive (left out); each anchor sees 2|B|-|P|-1 = 4 negatives
    features = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, -1.0]])
    negatives = torch.tensor([[0.0, 1.0], [-1.0, 0.0], [0.0, 1.0]])
    value = losses.negative_contrastive_loss(features, negatives, torch.tensor([0, 0, 1]), temperature=1.0)
    assert value.item() == pytest.approx(math.log(1 + 3 / e + 1 / e**2), abs=1e-6)
    # temperature scales the similarities
    value = losses.negative_contrastive_loss(features, negatives, torch.tensor([0, 0, 1]), temperature=0.5)
    assert value.item() == pytest.approx(math.log(1 + 3 / e**2 + 1 / e**4), abs=1e-6)
    # no positives anywhere -> 0, still differentiable
    features.requires_grad_(True)
    zero = losses.negative_contrastive_loss(features, negatives, torch.tensor([0, 1, 2]))
    zero.backward()
    assert zero.item() == 0.0 and features.grad is not None


def test_combined_loss_and_callable():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    negative_logits = torch.zeros(2, 3)
    target = torch.tensor([0, 1])
    ce = torch.nn.functional.cross_entropy(logits, target).item()
    for weight in (0.5, 1.0, 1.5):
        value = losses.combined_loss(logits, target, losses.negative_uniform_loss(negative_logits), weight)
        assert value.item() == pytest.approx(ce + weight * math.log(3.0), abs=1e-6)
        call = losses.NegativeAugmentationLoss("uniform", weight)(logits, negative_logits, target)
        assert call.item() == pytest.approx(value.item(), abs=1e-6)
    l2 = losses.NegativeAugmentationLoss("l2", 1.0)(logits, negative_logits, target)
    assert l2.item() == pytest.approx(ce + losses.negative_l2_loss(logits, negative_logits).item(), abs=1e-6)
    with pytest.raises(ValueError, match="features"):
        losses.NegativeAugmentationLoss("contrastive")(logits, negative_logits, target)
    with pytest.raises(ValueError, match=r"kind must be one of \('uniform', 'l2', 'contrastive'\)"):
        losses.NegativeAugmentationLoss("hinge")
    with pytest.raises(ValueError, match="weight"):
        losses.combined_loss(logits, target, torch.tensor(0.0), -1.0)


def test_losses_train_in_the_right_direction():
    """A gradient step on the negative loss makes negative predictions more uniform / farther."""
    torch.manual_seed(0)
    logits = torch.randn(4, 5)
    negative = torch.randn(4, 5, requires_grad=True)
    before = losses.negative_uniform_loss(negative)
    before.backward()
    with torch.no_grad():
        after = losses.negative_uniform_loss(negative - 0.5 * negative.grad)
    assert after < before
    negative.grad = None
    before = losses.negative_l2_loss(logits, negative)
    before.backward()
    with torch.no_grad():
        after = losses.negative_l2_loss(logits, negative - 0.5 * negative.grad)
    assert after < before

"""The cxr trainer's parts: NaN-masked BCE (hand-computed values), rank AUC (hand examples and
SciPy's Mann-Whitney U), the DenseNet models (against TorchXRayVision's), the sample transform
(against TorchXRayVision's normalisation and crop), the frontal-view filter, and batches from
real shards of CheXpert-layout files."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from loaders.xray import PATHOLOGIES
from pipelines.tario import ShardError
from pipelines.train.cxr import (CXRClassifier, CXRSampleTransform, build_backbone, center_crop_square, keep_views,
                                 masked_bce_with_logits)
from pipelines.train.metrics_cxr import binary_auc, per_pathology_auc

NAN = float("nan")


def xray_builders():
    """The chest X-ray fixture builders of tests/test_xray (real files in each native layout)."""
    spec = importlib.util.spec_from_file_location("cxr_xray_builders", Path(__file__).parents[1] / "test_xray" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def bce(z: float, y: float) -> float:
    return -(y * math.log(1 / (1 + math.exp(-z))) + (1 - y) * math.log(1 - 1 / (1 + math.exp(-z))))


# --- loss ----------------------------------------------------------------------------------------


def test_masked_bce_hand_computed():
    logits = torch.tensor([[0.0, 2.0, -1.0], [-1.0, 0.5, 3.0]])
    targets = torch.tensor([[1.0, NAN, 0.0], [0.0, NAN, NAN]])
    a, b, c = math.log(2.0), math.log(1 + math.exp(-1.0)), math.log(1 + math.exp(-1.0))  # bce(0,1), bce(-1,0), bce(-1,0)
    assert a == pytest.approx(bce(0.0, 1.0)) and b == pytest.approx(bce(-1.0, 0.0))
    assert masked_bce_with_logits(logits, targets).item() == pytest.approx((a + b + c) / 3, rel=1e-6)
    # task_sum (TorchXRayVision's train_utils): column 0 mean (a + b) / 2, column 1 nothing, column 2 c
    assert masked_bce_with_logits(logits, targets, "task_sum").item() == pytest.approx((a + b) / 2 + c, rel=1e-6)


def test_nan_labels_contribute_nothing_to_loss_or_gradient():
    torch.manual_seed(0)
    targets = torch.bernoulli(torch.full((6, 18), 0.3))
    targets[torch.rand(6, 18) < 0.5] = NAN
    known = ~torch.isnan(targets)
    for reduction in ("mean", "task_sum"):
        logits = torch.randn(6, 18, requires_grad=True)
        loss = masked_bce_with_logits(logits, targets, reduction)
        loss.backward()
        assert torch.all(logits.grad[~known] == 0) and torch.all(logits.grad[known] != 0)
        wild = logits.detach().clone()
        wild[~known] = torch.tensor([1e6, -1e6, NAN])[torch.arange(int((~known).sum())) % 3]
        assert masked_bce_with_logits(wild, targets, reduction).item() == loss.item()
    # "mean" is plain BCE over the known entries
    reference = torch.nn.functional.binary_cross_entropy_with_logits(logits[known], targets[known])
    assert masked_bce_with_logits(logits, targets).item() == pytest.approx(reference.item(), rel=1e-6)


def test_all_unknown_batch_gives_zero_loss_and_zero_gradient():
    logits = torch.randn(3, 4, requires_grad=True)
    loss = masked_bce_with_logits(logits, torch.full((3, 4), NAN))
    loss.backward()
    assert loss.item() == 0.0 and torch.all(logits.grad == 0)
    empty = torch.zeros(0, 4, requires_grad=True)
    assert masked_bce_with_logits(empty, torch.zeros(0, 4)).item() == 0.0


def test_masked_bce_refuses_bad_arguments():
    with pytest.raises(ValueError, match="same|\\[B, K\\]"):
        masked_bce_with_logits(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="reduction must be one of"):
        masked_bce_with_logits(torch.zeros(2, 3), torch.zeros(2, 3), "sum")


# --- AUC -----------------------------------------------------------------------------------------


def brute_force_auc(scores, targets) -> float:
    pos = [s for s, t in zip(scores, targets) if t == 1]
    neg = [s for s, t in zip(scores, targets) if t == 0]
    return sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))


def test_auc_hand_examples_with_ties():
    assert binary_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == 0.75  # sklearn's roc_auc_score docstring example
    assert binary_auc([1, 1, 2, 2], [0, 1, 0, 1]) == 0.5  # pairs: tie, 0, 1, tie
    assert binary_auc([0.5, 0.5, 0.9], [0, 1, 1]) == 0.75  # tie (1/2) + win (1), over 2 pairs
    assert binary_auc([3, 2, 1], [1, 1, 0]) == 1.0 and binary_auc([3, 2, 1], [0, 0, 1]) == 0.0
    assert binary_auc([5, 1, 0.2, 9], [1, NAN, 0, NAN]) == 1.0  # NaN rows are left out


def test_auc_equals_mann_whitney_u_and_pairwise_count():
    from scipy.stats import mannwhitneyu

    rng = np.random.default_rng(0)
    for n in (7, 50, 301):
        targets = (rng.random(n) < 0.3).astype(np.float64)
        targets[:2] = [0, 1]
        scores = np.round(rng.normal(size=n) + targets, 1)  # rounding makes many ties
        u = mannwhitneyu(scores[targets == 1], scores[targets == 0]).statistic
        expected = u / ((targets == 1).sum() * (targets == 0).sum())
        assert binary_auc(scores, targets) == pytest.approx(expected, abs=1e-12)
        assert binary_auc(scores, targets) == pytest.approx(brute_force_auc(scores, targets), abs=1e-12)


def test_single_class_pathologies_are_skipped_and_counted():
    scores = np.array([[0.9, 0.1, 0.3], [0.2, 0.8, 0.3], [0.7, 0.4, 0.5]])
    targets = np.array([[1, 1, NAN], [0, 1, NAN], [1, 1, 0]])
    report = per_pathology_auc(scores, targets, ["A", "B", "C"])
    assert report.per_pathology["A"] == 1.0 and math.isnan(report.per_pathology["B"]) and math.isnan(report.per_pathology["C"])
    assert report.skipped == ("B", "C") and report.defined == 1 and report.mean == 1.0
    metrics = report.as_metrics()
    assert metrics == {"auc/A": 1.0, "auc_mean": 1.0, "auc_defined": 1.0, "auc_skipped": 2.0}
    none = per_pathology_auc(scores[:, 1:], targets[:, 1:], ["B", "C"])
    assert math.isnan(none.mean) and "auc_mean" not in none.as_metrics()


def test_auc_refuses_bad_input():
    with pytest.raises(ValueError, match="0, 1 or NaN"):
        binary_auc([0.1, 0.2], [0, 0.5])
    with pytest.raises(ValueError, match="finite"):
        binary_auc([NAN, 0.2], [0, 1])
    with pytest.raises(ValueError, match="same length"):
        binary_auc([0.1, 0.2, 0.3], [0, 1])
    with pytest.raises(ValueError, match="names"):
        per_pathology_auc(np.zeros((2, 3)), np.zeros((2, 3)), ["A"])


# --- models --------------------------------------------------------------------------------------


def test_densenet121_output_shape_and_torchxrayvision_parity(txv_models):
    torch.manual_seed(0)
    ours = build_backbone("densenet121", num_classes=len(PATHOLOGIES)).eval()
    theirs = txv_models.DenseNet(weights=None, num_classes=len(PATHOLOGIES), in_channels=1).eval()
    mine, other = ours.state_dict(), theirs.state_dict()
    assert ours.features.conv0.in_channels == 1
    assert {k: v.shape for k, v in mine.items()} == {k: v.shape for k, v in other.items()}
    ours.load_state_dict(other)  # TorchXRayVision's DenseNet weights load into ours
    image = (torch.rand(1, 1, 64, 64) * 2 - 1) * 1024
    with torch.no_grad():
        logits = CXRClassifier(ours)(image)
        assert logits.shape == (1, len(PATHOLOGIES))
        torch.testing.assert_close(logits, theirs(image))


@pytest.fixture
def txv_models():
    xrv = pytest.importorskip("torchxrayvision")
    return xrv.models


def test_tiny_model_takes_uint8_and_float_alike():
    torch.manual_seed(0)
    model = CXRClassifier(build_backbone("densenet_tiny", num_classes=5)).eval()
    assert model.backbone.features.conv0.in_channels == 1
    image = torch.randint(0, 256, (2, 1, 24, 24), dtype=torch.uint8)
    as_float = (2 * (image.to(torch.float32) / 255) - 1.0) * 1024
    with torch.no_grad():
        assert torch.equal(model(image), model(as_float))
    with pytest.raises(ValueError, match="model must be one of"):
        build_backbone("resnet50", 5)


# --- samples -------------------------------------------------------------------------------------


def sample(image, labels=None, **meta):
    out = {"__key__": "nih/00000001_000", "image": image, "labels": torch.zeros(18) if labels is None else labels}
    if meta:
        out["meta"] = meta
    return out


def test_float_input_is_torchxrayvision_normalize_and_center_crop(txv_models):
    import torchxrayvision as xrv

    rng = np.random.default_rng(1)
    array = rng.integers(0, 4096, size=(1, 20, 32)).astype(np.uint16)  # a 12-bit image stored in a 16-bit PNG
    out = CXRSampleTransform(20, "float")(sample(torch.from_numpy(array), maxval=4095, view="PA"))
    expected = xrv.datasets.XRayCenterCrop()(xrv.utils.normalize(array, 4095))
    assert out["image"].dtype == torch.float32 and out["image"].shape == (1, 20, 20)
    np.testing.assert_array_equal(out["image"].numpy(), expected)
    assert torch.equal(center_crop_square(torch.arange(15).reshape(1, 3, 5)), torch.tensor([[[1, 2, 3], [6, 7, 8], [11, 12, 13]]]))


def test_uint8_input_and_resize():
    image = torch.randint(0, 4096, (3, 40, 30), dtype=torch.int32).to(torch.uint16)  # colour: channel 0 is kept
    out = CXRSampleTransform(16, "uint8")(sample(image, maxval=4095, view="AP"))
    assert out["image"].dtype == torch.uint8 and out["image"].shape == (1, 16, 16) and bool(out["frontal"])
    as_uint8 = (image[:1].to(torch.float32) * (255 / 4095)).round().clamp(0, 255).to(torch.uint8)
    from torchvision.transforms.v2.functional import resize

    assert torch.equal(out["image"], resize(center_crop_square(as_uint8), [16, 16], antialias=True))


def test_labels_are_picked_by_name_and_checked():
    columns = PATHOLOGIES[:2] + PATHOLOGIES[3:]  # a set without Infiltration: Pneumothorax is column 2
    labels = torch.zeros(17)
    labels[1], labels[2] = 1.0, NAN
    transform = CXRSampleTransform(8, pathologies=("Pneumothorax", "Atelectasis", "Consolidation"), label_columns=columns)
    out = transform(sample(torch.zeros(1, 8, 8, dtype=torch.uint8), labels, view="PA"))
    assert out["labels"].tolist()[1:] == [0.0, 1.0] and math.isnan(out["labels"][0])
    missing = CXRSampleTransform(8, label_columns=("Atelectasis",), pathologies=("Atelectasis", "Hernia"))
    assert math.isnan(missing(sample(torch.zeros(1, 8, 8, dtype=torch.uint8), torch.ones(1), view="PA"))["labels"][1])


@pytest.mark.parametrize("make, field", [
    (lambda: {"__key__": "k1", "labels": torch.zeros(18), "meta": {"view": "PA"}}, "missing field 'image'"),
    (lambda: {"__key__": "k1", "image": torch.zeros(1, 8, 8, dtype=torch.uint8), "meta": {"view": "PA"}}, "missing field 'labels'"),
    (lambda: sample(torch.zeros(1, 8, 8, dtype=torch.uint8)), "missing field 'meta.view'"),
    (lambda: {**sample(torch.zeros(1, 8, 8, dtype=torch.uint8)), "meta": "x"}, "field 'meta' must be a JSON object"),
    (lambda: sample(torch.zeros(1, 8, 8, dtype=torch.uint16), view="PA"), "missing field 'meta.maxval'"),
    (lambda: sample(torch.zeros(1, 8, 8, dtype=torch.uint8), view="PA", maxval="255"), "'meta.maxval' must be an int"),
    (lambda: sample(torch.full((1, 8, 8), 300, dtype=torch.int32).to(torch.uint16), view="PA", maxval=255), "exceeds meta.maxval"),
    (lambda: sample(torch.zeros(1, 8, 8), view="PA"), "must be uint8/uint16"),
    (lambda: sample(torch.zeros(8, 8, dtype=torch.uint8), view="PA"), "must be a \\[C, H, W\\] tensor"),
    (lambda: sample(torch.zeros(1, 8, 8, dtype=torch.uint8), torch.zeros(14), view="PA"), "float vector of 18"),
    (lambda: sample(torch.zeros(1, 8, 8, dtype=torch.uint8), torch.full((18,), 2.0), view="PA"), "0, 1 or NaN"),
])
def test_bad_samples_raise_naming_the_sample_and_field(make, field):
    with pytest.raises(ShardError, match=field) as error:
        CXRSampleTransform(8)(make())
    assert "'k1'" in str(error.value) or "'nih/00000001_000'" in str(error.value)


def test_views_filter_and_all_views():
    lateral = sample(torch.zeros(1, 8, 8, dtype=torch.uint8), view="L")
    assert not bool(CXRSampleTransform(8)(lateral)["frontal"])
    assert bool(CXRSampleTransform(8, views=None)(lateral)["frontal"])
    assert bool(CXRSampleTransform(8, views=None)(sample(torch.zeros(1, 8, 8, dtype=torch.uint8)))["frontal"])  # no meta needed
    with pytest.raises(ValueError, match="image_format must be one of"):
        CXRSampleTransform(8, "uint16")


# --- batches from real shards --------------------------------------------------------------------


def test_batches_from_chexpert_shards_keep_frontal_views(tmp_path):
    import loaders
    import loaders.xray  # noqa: F401
    from pipelines import build_shards, make_loader

    root = xray_builders().make_chexpert(tmp_path / "src")
    build_shards("chexpert", tmp_path / "shards", root=root, options={"views": "*"})
    adapter = loaders.open_dataset("chexpert", root=root, views="*")
    views = {adapter[i]["__key__"]: adapter[i]["meta"]["view"] for i in range(len(adapter))}
    assert sorted(views.values()) == ["AP", "AP", "AP", "L", "PA", "UNKNOWN"]
    frontal = [adapter[i]["labels"] for i in range(len(adapter)) if views[adapter[i]["__key__"]] in ("PA", "AP")]

    loader = make_loader(tmp_path / "shards", batch_size=4, shuffle=False, transform=CXRSampleTransform(16),
                         batch_transform=keep_views)
    batches = list(loader)
    assert [len(b["image"]) for b in batches] == [3, 1] and sum(int(b["dropped"]) for b in batches) == 2
    images = torch.cat([b["image"] for b in batches])
    assert images.dtype == torch.float32 and images.shape == (4, 1, 16, 16) and images.abs().max() <= 1024
    torch.testing.assert_close(torch.cat([b["labels"] for b in batches]), torch.stack(frontal), equal_nan=True)

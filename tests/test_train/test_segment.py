"""The segment trainer: end to end on shapes and folder shards, mIoU against hand-computed
confusion matrices, Dice loss values, and clear errors for shards without masks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from pipelines import build_shards
from pipelines.train import fit, load_config
from pipelines.train.segment import TASK, SegmentConfig, SegmentSample
from pipelines.train.segment_ops import confusion_matrix, dice_loss, iou_scores

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ["base_channels=4", "depth=2", "lr=0.01", "log_every=1", "progress=false"]


def test_shapes_end_to_end_loss_decreases_miou_and_pngs(seg_shards, tmp_path):
    cfg = load_config(SegmentConfig, overrides=[
        f"shards={seg_shards['train']}", f"eval_shards={seg_shards['val']}", f"out={tmp_path / 'run'}", *TINY,
        "batch_size=4", "epochs=3", "dice_weight=0.5", "num_predictions=3",
        'class_names=["background", "body", "outline", "marking"]'])
    result = fit(TASK, cfg)
    train = [r for r in result.metrics if r["kind"] == "train"]
    assert len(train) == 12 and {"ce", "dice_loss"} <= set(train[0])
    assert np.mean([r["loss"] for r in train[-3:]]) < np.mean([r["loss"] for r in train[:3]])
    assert 0.0 <= result.final["miou"] <= 1.0 and 0.0 <= result.final["pixel_acc"] <= 1.0
    assert "iou_background" in result.final
    pngs = sorted((tmp_path / "run" / "eval" / "predictions").glob("*.png"))
    assert [p.name[:4] for p in pngs] == ["000_", "001_", "002_"]
    with Image.open(pngs[0]) as image:
        assert image.size == (96, 32) and image.mode == "RGB"  # image | truth | prediction


def test_folder_images_and_masks_with_resizing(folder_seg_shards, tmp_path):
    cfg = load_config(SegmentConfig, overrides=[
        f"shards={folder_seg_shards}", f"eval_shards={folder_seg_shards}", f"out={tmp_path / 'run'}", *TINY,
        "batch_size=3", "epochs=4", "num_classes=2", "image_size=32", 'class_names=["ground", "square"]', "lr=0.02"])
    result = fit(TASK, cfg)
    train = [r["loss"] for r in result.metrics if r["kind"] == "train"]
    assert train[-1] < train[0]
    assert {"iou_ground", "iou_square", "miou"} <= set(result.final)
    with Image.open(next((tmp_path / "run" / "eval" / "predictions").glob("*.png"))) as image:
        assert image.size == (96, 32)


def test_iou_from_a_hand_computed_confusion_matrix():
    target = torch.tensor([[0, 0, 1, 1], [2, 2, 255, 1]])
    prediction = torch.tensor([[0, 1, 1, 1], [2, 0, 2, 0]])
    confusion = confusion_matrix(prediction, target, num_classes=4)
    # rows: truth, columns: prediction; the 255 pixel is ignored
    expected = torch.tensor([[1, 1, 0, 0], [1, 2, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]])
    assert torch.equal(confusion, expected)
    iou, miou, accuracy = iou_scores(confusion)
    # class 0: TP 1, FP 2, FN 1 -> 1/4; class 1: 2/(2+1+1) = 1/2; class 2: 1/(1+0+1) = 1/2; class 3 absent
    assert iou[:3].tolist() == pytest.approx([0.25, 0.5, 0.5]) and torch.isnan(iou[3])
    assert miou == pytest.approx((0.25 + 0.5 + 0.5) / 3)
    assert accuracy == pytest.approx(4 / 7)
    with pytest.raises(ValueError, match=r"mask values must be in \[0, 4\)"):
        confusion_matrix(prediction, torch.full_like(target, 7), num_classes=4)


class FixedPrediction(torch.nn.Module):
    """Outputs logits whose argmax is a given mask per batch position (eval of known predictions)."""

    def __init__(self, predictions: torch.Tensor, num_classes: int) -> None:
        super().__init__()
        self.predictions, self.num_classes = predictions, num_classes
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        onehot = torch.nn.functional.one_hot(self.predictions[: len(x)], self.num_classes).permute(0, 3, 1, 2)
        return onehot.float() * 10 + self.dummy


def test_evaluate_reports_the_hand_computed_iou(tmp_path):
    cfg = load_config(SegmentConfig, overrides=["num_classes=3", 'class_names=["a", "b", "c"]', "num_predictions=1"])
    truth = torch.tensor([[[0, 0], [1, 2]], [[1, 1], [1, 0]]])
    guess = torch.tensor([[[0, 1], [1, 2]], [[1, 1], [0, 0]]])
    batch = {"__key__": ["x/1", "x/2"], "image": torch.zeros(2, 3, 2, 2), "mask": truth}
    metrics = TASK.evaluate(FixedPrediction(guess, 3), [batch], cfg, tmp_path)
    # a: TP 2 FP 1 FN 1 -> 0.5; b: TP 3 FP 1 FN 1 -> 0.6; c: TP 1 -> 1.0
    assert metrics["iou_a"] == pytest.approx(0.5) and metrics["iou_b"] == pytest.approx(0.6)
    assert metrics["iou_c"] == pytest.approx(1.0) and metrics["miou"] == pytest.approx(0.7)
    assert metrics["pixel_acc"] == pytest.approx(6 / 8)
    assert [p.name for p in (tmp_path / "predictions").iterdir()] == ["000_x_1.png"]


def test_dice_loss_values():
    target = torch.tensor([[[0, 1], [1, 1]]])
    perfect = torch.nn.functional.one_hot(target, 2).permute(0, 3, 1, 2).float() * 50
    assert float(dice_loss(perfect, target, eps=0.0)) == pytest.approx(0.0, abs=1e-6)
    uniform = torch.zeros(1, 2, 2, 2)
    # probabilities 0.5 everywhere: class 0 dice = 2*0.5/(2+1), class 1 = 2*1.5/(2+3)
    expected = 1 - (1 / 3 + 3 / 5) / 2
    assert float(dice_loss(uniform, target, eps=0.0)) == pytest.approx(expected)
    ignored = torch.tensor([[[0, 255], [255, 255]]])
    assert float(dice_loss(perfect, ignored, eps=0.0)) == pytest.approx(0.5)  # class 1 has nothing left: 0/0 -> eps


def _no_mask_samples(count: int, with_mask_every: int = 0):
    rng = np.random.default_rng(0)
    for i in range(count):
        sample = {"__key__": f"s{i}", "image": torch.from_numpy(rng.integers(0, 255, (3, 16, 16), dtype=np.uint8)), "label": 1}
        if with_mask_every and i % with_mask_every == 0:
            sample["mask"] = torch.zeros(16, 16, dtype=torch.int64)
        yield sample


def test_shards_without_a_mask_field_are_refused_naming_it(tmp_path):
    build_shards(_no_mask_samples(4), tmp_path / "nomask")
    cfg = load_config(SegmentConfig, overrides=[f"shards={tmp_path / 'nomask'}", f"out={tmp_path / 'run'}", "batch_size=2"])
    with pytest.raises(ValueError, match=r"shards '.*nomask': the samples have no 'mask' field"):
        fit(TASK, cfg)
    # a set where only some samples have masks passes the index check and fails on the first bare sample
    build_shards(_no_mask_samples(4, with_mask_every=2), tmp_path / "some")
    cfg = load_config(SegmentConfig, overrides=[f"shards={tmp_path / 'some'}", f"out={tmp_path / 'run2'}", "batch_size=2",
                                                "hflip=false"])
    loader = TASK.train_loader(cfg, rank=0, world_size=1, epoch=0)
    with pytest.raises(ValueError, match=r"sample 's\d' has no 'mask' field"):
        list(loader)


def test_bad_masks_and_configs_are_refused():
    cfg = load_config(SegmentConfig, overrides=["num_classes=2"])
    sample = {"__key__": "k", "image": torch.zeros(3, 4, 4, dtype=torch.uint8), "mask": torch.full((4, 4), 3)}
    with pytest.raises(ValueError, match=r"sample 'k': mask value 3 .* set num_classes"):
        SegmentSample(cfg, train=False)(sample)
    with pytest.raises(ValueError, match=r"sample 'k': 'mask' must be an \[H,W\] tensor of the image's size"):
        SegmentSample(cfg, train=False)({**sample, "mask": torch.zeros(3, 4, dtype=torch.int64)})
    for override, key in (("ignore_index=1", "ignore_index"), ('class_names=["a"]', "class_names"), ("model=fcn", "model")):
        with pytest.raises(ValueError, match=repr(key)):
            load_config(SegmentConfig, overrides=["num_classes=2", override])


def test_deeplabv3_option_builds_without_downloads_and_predicts_every_pixel():
    cfg = load_config(SegmentConfig, overrides=["model=deeplabv3", "num_classes=3"])
    model = TASK.build_model(cfg).eval()
    with torch.no_grad():
        logits = model(torch.randn(1, 3, 32, 32))
    assert logits.shape == (1, 3, 32, 32)
    assert json.dumps(cfg.model) == '"deeplabv3"'


def test_eval_over_a_registered_adapter_matches_eval_over_its_shards(seg_shards, tmp_path):
    """``eval_dataset`` reads a registered adapter directly: the same samples as its shards."""
    common = ["num_predictions=0", "batch_size=4", *TINY]
    from_shards = load_config(SegmentConfig, overrides=[f"eval_shards={seg_shards['val']}", *common])
    from_adapter = load_config(SegmentConfig, overrides=[
        "eval_dataset=shapes", "eval_split=val", 'eval_options={"size": 4, "resolution": 32, "seed": 0}', *common])
    a = next(iter(TASK.eval_loader(from_shards)))
    b = next(iter(TASK.eval_loader(from_adapter)))
    assert a["__key__"] == b["__key__"]
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])
    model = TASK.build_model(from_shards).eval()
    assert TASK.evaluate(model, TASK.eval_loader(from_adapter), from_adapter, tmp_path) == \
        TASK.evaluate(model, TASK.eval_loader(from_shards), from_shards, tmp_path)
    bare = load_config(SegmentConfig, overrides=["eval_dataset=shapes", 'eval_options={"size": 2, "resolution": 16}'])
    assert TASK.eval_loader(bare) is not None
    with pytest.raises(KeyError, match="unknown dataset 'nope'"):
        TASK.eval_loader(load_config(SegmentConfig, overrides=["eval_dataset=nope"]))

"""The ``vit`` trainer end to end on ``shapes`` shards: training through the core's ``fit``, the
negative losses wired exactly as ``augment.losses`` defines them, exact resume with every random
augmentation on, the patch-view (Figure 2) evaluation and the robustness sets through
``evaluate_run``."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from augment import MixUpCutMix, PatchRotate, PatchShuffle, losses
from pipelines.train.checkpoint import load_checkpoint, save_checkpoint
from pipelines.train.config import load_config
from pipelines.train.loop import evaluate_run, fit
from pipelines.train.models.vit_models import normalize_images
from pipelines.train.vit import TASK, ViTConfig, load_backbone_weights, shapes_shards

_spec = importlib.util.spec_from_file_location("imagenet_fixture_kit", Path(__file__).parents[1] / "test_imagenet" / "conftest.py")
kit = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(kit)

TINY = ["num_classes=6", "image_size=32", "patch_size=4", "depth=1", "hidden_dim=32", "num_heads=2", "mlp_dim=64",
        "batch_size=16", "progress=false"]


# tiny models run faster on one intra-op thread (the conftest's one_thread fixture)
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> tuple[Path, Path]:
    return shapes_shards(tmp_path_factory.mktemp("shapes"), seed=0, train_size=96, val_size=24, resolution=32)


def config(shards, out, *extra: str) -> ViTConfig:
    train, val = shards
    return load_config(ViTConfig, overrides=[f"shards={train}", f"eval_shards={val}", f"out={out}", *TINY, *extra])


def test_vit_trains_end_to_end_and_measures_patch_views(shards, tmp_path):
    cfg = config(shards, tmp_path / "run", "epochs=3", "eval_every=3", "log_every=6", "lr=3e-3", "random_crop=false")
    result = fit(TASK, cfg)
    assert result.steps == 18  # 96 samples / 16 per batch, 3 epochs
    train = [r for r in result.metrics if r["kind"] == "train"]
    assert len(train) == 3 and train[-1]["loss"] < train[0]["loss"]
    final = result.final
    assert final["samples"] == 24.0
    for key in ("top1", "patch_shuffle_top1", "patch_rotate_top1", "patch_infill_top1"):
        assert 0.0 <= final[key] <= 1.0
    for name in ("ckpt.pt", "metrics.jsonl", "metrics.png", "config.json", "eval/patch_views.png"):
        assert (tmp_path / "run" / name).is_file(), name
    # the checkpoint's weights are a plain torchvision ViT state_dict
    state = load_checkpoint(tmp_path / "run" / "ckpt.pt")
    assert "heads.head.weight" in state["model"] and "conv_proj.weight" in state["model"]


def _by_hand(model, images, cfg, negative_op):
    x = normalize_images(images)
    views = negative_op(x)
    both = torch.cat([x, views])
    tokens = torch.cat([model.class_token.expand(len(both), -1, -1), model._process_input(both)], dim=1)
    features = model.encoder(tokens)[:, 0]
    logits = model.heads(features)
    return logits.chunk(2), features.chunk(2)


@pytest.mark.parametrize("kind", ["uniform", "l2", "contrastive"])
def test_negative_losses_are_ce_plus_lambda_times_augment_losses(shards, tmp_path, kind):
    cfg = config(shards, tmp_path, "negatives=shuffle", f"negative_loss={kind}", "negative_weight=0.5",
                 "negative_patch_size=8")
    model = TASK.build_model(cfg)
    torch.nn.init.normal_(model.heads.head.weight, std=0.5)  # torchvision starts the head at zero
    batch = next(iter(TASK.train_loader(cfg, rank=0, world_size=1, epoch=0)))
    torch.manual_seed(11)
    loss, extras = TASK.training_step(model, batch, cfg)
    torch.manual_seed(11)
    (logits, logits_neg), (features, features_neg) = _by_hand(model, batch["image"], cfg, PatchShuffle(8, 4))
    labels = batch["label"]
    negative = {"uniform": lambda: losses.negative_uniform_loss(logits_neg),
                "l2": lambda: losses.negative_l2_loss(logits, logits_neg),
                "contrastive": lambda: losses.negative_contrastive_loss(features, features_neg, labels, 0.1)}[kind]()
    expected = F.cross_entropy(logits, labels) + 0.5 * negative
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
    assert extras["neg"] == pytest.approx(float(negative.detach()), rel=1e-5)
    loss.backward()
    assert model.conv_proj.weight.grad.abs().sum() > 0


def test_mixed_soft_targets_and_dominant_class_for_the_contrastive_term(shards, tmp_path):
    cfg = config(shards, tmp_path, "negatives=rotate", "negative_loss=contrastive", "mixup_alpha=0.8",
                 "cutmix_alpha=1.0", "label_smoothing=0.1", "negative_weight=1.5")
    model = TASK.build_model(cfg)
    batch = next(iter(TASK.train_loader(cfg, rank=0, world_size=1, epoch=0)))
    torch.manual_seed(5)
    loss, _ = TASK.training_step(model, batch, cfg)
    torch.manual_seed(5)
    mixer = MixUpCutMix(0.8, 1.0, 0.5, 1.0, "batch", label_smoothing=0.1, num_classes=6)
    mixed, target = mixer(normalize_images(batch["image"]), batch["label"])
    assert target.shape == (16, 6) and torch.allclose(target.sum(1), torch.ones(16))
    views = PatchRotate(8, 4)(mixed)
    both = torch.cat([mixed, views])
    tokens = torch.cat([model.class_token.expand(32, -1, -1), model._process_input(both)], dim=1)
    features = model.encoder(tokens)[:, 0]
    logits = model.heads(features)
    expected = F.cross_entropy(logits[:16], target) + 1.5 * losses.negative_contrastive_loss(
        features[:16], features[16:], target.argmax(1), 0.1)
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)


def test_resume_is_exact_with_negatives_mixing_randaugment_and_ema(shards, tmp_path):
    extra = ["max_steps=4", "negatives=rotate", "negative_loss=l2", "mixup_alpha=0.8", "cutmix_alpha=1.0",
             "randaugment_ops=2", "ema_decay=0.9", "log_every=1", "eval_patch_views=[\"shuffle\"]"]
    straight = fit(TASK, config(shards, tmp_path / "straight", *extra))
    interrupted = fit(TASK, config(shards, tmp_path / "resumed", *extra), interrupt_after=2)
    assert interrupted.interrupted and interrupted.steps == 2
    resumed = fit(TASK, config(shards, tmp_path / "resumed", *extra))
    assert resumed.steps == straight.steps == 4
    a, b = load_checkpoint(tmp_path / "straight" / "ckpt.pt"), load_checkpoint(tmp_path / "resumed" / "ckpt.pt")
    for weights, other in ((a["model"], b["model"]), (a["ema"]["model"], b["ema"]["model"])):
        assert weights.keys() == other.keys()
        assert all(torch.equal(v, other[k]) for k, v in weights.items())
    assert straight.metrics == resumed.metrics
    assert {"ema_top1", "ema_patch_shuffle_top1", "top1", "patch_shuffle_top1"} <= set(resumed.final)


def test_robustness_sets_in_training_and_through_evaluate_run(shards, tmp_path):
    sketch = tmp_path / "sketch-root" / "sketch"
    v2 = tmp_path / "v2-root" / "imagenetv2-matched-frequency-format-val"
    for k in range(3):
        kit.write(sketch / kit.TENCH / f"sketch_{k}.JPEG", kit.jpeg_bytes(k, "L", (40, 36)))
        kit.write(v2 / str(k) / f"{k:040x}.jpeg", kit.jpeg_bytes(10 + k, "RGB", (50, 40)))
    cfg = config(shards, tmp_path / "run", "num_classes=1000", "max_steps=1", f"imagenet_sketch={sketch.parent}",
                 "eval_patch_views=[]")
    result = fit(TASK, cfg)
    assert result.final["imagenet_sketch_samples"] == 3.0 and 0.0 <= result.final["imagenet_sketch_top1"] <= 1.0
    assert "imagenet_v2_top1" not in result.final and "patch_shuffle_top1" not in result.final
    metrics = evaluate_run(TASK, tmp_path / "run" / "ckpt.pt", [f"imagenet_v2={v2.parent}"])
    assert metrics["imagenet_v2_samples"] == 3.0 and metrics["imagenet_sketch_samples"] == 3.0
    assert json.loads((tmp_path / "run" / "eval" / "robustness.json").read_text())["imagenet_v2_samples"] == 3.0


@pytest.mark.parametrize("override, message", [
    ("negative_patch_size=6", "negative_patch_size"),
    ("negatives=jigsaw", "negatives"),
    ("negative_loss=hinge", "negative_loss"),
    ("imagenet_a=/data/imagenet-a", "num_classes=1000"),
    ("image_size=30", "image_size"),
    ("eval_patch_views=[\"mirror\"]", "eval_patch_views"),
    ("crop_scale=[0.5, 0.2]", "crop_scale"),
    ("eval_patch_size=16", "P-Infill needs a patch grid of at least 3x3"),  # 2x2 grid of 16 px patches on 32 px
])
def test_bad_configs_name_the_key(shards, tmp_path, override, message):
    with pytest.raises(ValueError, match=message):
        config(shards, tmp_path, override)


def test_init_checkpoint_loads_a_backbone_and_keeps_a_fresh_head_for_other_classes(shards, tmp_path):
    source = TASK.build_model(config(shards, tmp_path, "num_classes=10"))
    save_checkpoint(tmp_path / "src.pt", {"model": source.state_dict()})
    cfg = config(shards, tmp_path / "ft", f"init_checkpoint={tmp_path / 'src.pt'}")
    model = TASK.build_model(cfg)
    assert torch.equal(model.conv_proj.weight, source.conv_proj.weight)
    assert model.heads.head.out_features == 6
    wider = TASK.build_model(config(shards, tmp_path, "hidden_dim=64"))
    with pytest.raises(ValueError, match="shape differs"):
        load_backbone_weights(wider, tmp_path / "src.pt")


def test_a_label_outside_num_classes_is_named(shards, tmp_path):
    cfg = config(shards, tmp_path, "num_classes=3")  # shapes has 6 classes
    with pytest.raises(ValueError, match=r"label \d is outside \[0, 3\).*num_classes"):
        for _ in TASK.train_loader(cfg, rank=0, world_size=1, epoch=0):
            pass

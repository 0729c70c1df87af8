"""The ``mae`` trainer end to end on ``shapes`` shards: pre-training through the core's ``fit``
(loss decreases, exact resume with its random masks), the linear probe, fine-tuning through the
``vit`` trainer's ``init_checkpoint``, and the visible-vs-all-tokens step measurement."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pipelines.train.checkpoint import load_checkpoint
from pipelines.train.config import load_config
from pipelines.train.loop import fit
from pipelines.train.mae import TASK, MAEConfig, encoder_step_ratio, linear_probe
from pipelines.train.vit import TASK as VIT, ViTConfig, shapes_shards

ENCODER = ["image_size=32", "patch_size=4", "depth=1", "hidden_dim=32", "num_heads=2", "mlp_dim=64"]
TINY = [*ENCODER, "decoder_dim=16", "decoder_depth=1", "decoder_heads=2", "batch_size=16", "progress=false"]


# tiny models run faster on one intra-op thread (the conftest's one_thread fixture)
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> tuple[Path, Path]:
    return shapes_shards(tmp_path_factory.mktemp("shapes"), seed=1, train_size=96, val_size=24, resolution=32)


def config(shards, out, *extra: str) -> MAEConfig:
    train, val = shards
    return load_config(MAEConfig, overrides=[f"shards={train}", f"eval_shards={val}", f"out={out}", *TINY, *extra])


def test_mae_pretrains_end_to_end_with_a_linear_probe(shards, tmp_path):
    cfg = config(shards, tmp_path / "run", "epochs=3", "eval_every=3", "log_every=6", "lr=3e-3", "probe_steps=20")
    result = fit(TASK, cfg)
    assert result.steps == 18
    train = [r for r in result.metrics if r["kind"] == "train"]
    assert len(train) == 3 and train[-1]["loss"] < train[0]["loss"]
    final = result.final
    assert final["samples"] == 24.0 and final["probe_train_samples"] == 96.0 and final["loss"] > 0
    assert 0.0 <= final["probe_top1"] <= 1.0 and 0.0 <= final["probe_train_top1"] <= 1.0
    assert (tmp_path / "run" / "eval" / "reconstructions.png").is_file()

    # fine-tuning through vit: the MAE encoder's weights start a vit run of the same architecture
    mae_weights = load_checkpoint(tmp_path / "run" / "ckpt.pt")["model"]
    train_shards, val_shards = shards
    vit_cfg = load_config(ViTConfig, overrides=[f"shards={train_shards}", f"eval_shards={val_shards}", *ENCODER,
                                                "num_classes=6", f"out={tmp_path / 'ft'}",
                                                f"init_checkpoint={tmp_path / 'run' / 'ckpt.pt'}"])
    model = VIT.build_model(vit_cfg)
    for name, tensor in model.state_dict().items():
        if not name.startswith("heads."):
            assert torch.equal(tensor, mae_weights[f"encoder.{name}"]), name
    wrong = load_config(ViTConfig, overrides=[*ENCODER, "hidden_dim=48", f"init_checkpoint={tmp_path / 'run' / 'ckpt.pt'}"])
    with pytest.raises(ValueError, match="init_checkpoint"):
        VIT.build_model(wrong)


def test_mae_resume_is_exact_with_its_random_masks(shards, tmp_path):
    extra = ["max_steps=4", "log_every=1", "ema_decay=0.5", "probe=false"]
    straight = fit(TASK, config(shards, tmp_path / "straight", *extra))
    fit(TASK, config(shards, tmp_path / "resumed", *extra), interrupt_after=3)
    resumed = fit(TASK, config(shards, tmp_path / "resumed", *extra))
    a, b = load_checkpoint(tmp_path / "straight" / "ckpt.pt"), load_checkpoint(tmp_path / "resumed" / "ckpt.pt")
    for weights, other in ((a["model"], b["model"]), (a["ema"]["model"], b["ema"]["model"])):
        assert weights.keys() == other.keys() and all(torch.equal(v, other[k]) for k, v in weights.items())
    assert straight.metrics == resumed.metrics
    assert "ema_loss" in resumed.final and "probe_top1" not in resumed.final


def test_linear_probe_separates_separable_features():
    generator = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 8, generator=generator) * 4
    labels = torch.arange(90) % 3
    features = centres[labels] + torch.randn(90, 8, generator=generator)
    out = linear_probe(features[:60], labels[:60], features[60:], labels[60:], num_classes=3, steps=50)
    assert out["probe_top1"] == 1.0 and out["probe_train_top1"] == 1.0
    # evaluation runs under the run's AMP: the probe itself stays in full precision
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert linear_probe(features[:60], labels[:60], features[60:], labels[60:], num_classes=3, steps=50) == out
    # labels unrelated to the features: the probe cannot generalise
    shuffled = labels[torch.randperm(90, generator=generator)]
    out = linear_probe(torch.randn(60, 8, generator=generator), shuffled[:60], torch.randn(30, 8, generator=generator),
                       shuffled[60:], num_classes=3, steps=50)
    assert out["probe_top1"] < 0.8


def test_encoder_step_ratio_reports_both_token_counts():
    out = encoder_step_ratio(image_size=32, patch_size=4, depth=1, hidden_dim=32, num_heads=2, mlp_dim=64,
                             batch_size=4, steps=2)
    assert out["visible_tokens"] == 1 + 16 and out["all_tokens"] == 1 + 64
    assert out["visible_s"] > 0 and out["all_s"] > 0 and out["ratio"] == out["visible_s"] / out["all_s"]


@pytest.mark.parametrize("override, message", [
    ("mask_ratio=1.0", "mask_ratio"),
    ("decoder_dim=18", "decoder_dim"),
    ("arch=vit_x", "arch"),
    ("image_size=30", "image_size"),
])
def test_bad_configs_name_the_key(shards, tmp_path, override, message):
    with pytest.raises(ValueError, match=message):
        config(shards, tmp_path, override)

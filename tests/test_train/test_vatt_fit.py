"""The ``vatt`` trainer end to end on ``avshapes`` shards (real H.264 video and FLAC audio, built
by the real builder): the loss falls and zero-shot text-to-video retrieval on held-out clips
beats chance by a wide margin after a short run; a run interrupted and resumed equals the
uninterrupted one (DropToken's draws included); clips without text train on NCE alone; the
``datafactory train vatt`` / ``datafactory eval vatt`` commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from datafactory.cli import main
from loaders.schema import KEY
from pipelines.stream import collate_samples
from pipelines.train.checkpoint import load_checkpoint
from pipelines.train.config import load_config
from pipelines.train.loop import fit
from pipelines.train.vatt import TASK, VattConfig, avshapes_shards, clip_transform, probe_target
from pipelines.train.vatt_eval import chance_levels

pytestmark = pytest.mark.usefixtures("one_thread")

# 8 frames of 16 px (2 x 4 x 4 = 32 voxel tokens), 0.96 s of 4 kHz audio (30 tokens), 2 captions of 8 words
TINY = ["num_frames=8", "frame_size=16", "patch_frames=2", "patch_size=4", "audio_samples=3840", "audio_segment=128",
        "vocab_size=512", "max_words=8", "bag_size=2", "hidden_dim=64", "depth=1", "num_heads=4", "mlp_dim=128",
        "va_dim=64", "vt_dim=64", "batch_size=16", "lr=3e-3", "progress=false"]


OPTIONS = {"sample_rate": 4000, "resolution": 16, "num_frames": 8, "max_objects": 1, "bag_size": 2}


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> tuple[Path, Path]:
    return avshapes_shards(tmp_path_factory.mktemp("avshapes"), seed=1, train_size=384, val_size=64, options=OPTIONS)


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[Path, Path]:
    return avshapes_shards(tmp_path_factory.mktemp("avshapes_small"), seed=2, train_size=32, val_size=16, options=OPTIONS)


def config(shards, out, *extra: str) -> VattConfig:
    train, val = shards
    return load_config(VattConfig, overrides=[f"shards={train}", f"eval_shards={val}", f"out={out}", *TINY, *extra])


def test_vatt_learns_zero_shot_retrieval_well_above_chance(shards, tmp_path):
    # 96 steps of batch 16. Temperature 0.2 instead of the paper's 0.07 and a constant learning
    # rate: at 0.07, or with the cosine decay, a run this short often ends on the initial plateau
    # (see docs/train.md, vatt). Runs on the CPU are deterministic, so the seed fixes the outcome;
    # the moment the loss leaves the plateau varies with it (seeds 1-3: median rank 4-6 here).
    cfg = config(shards, tmp_path / "run", "epochs=4", "eval_every=4", "log_every=12", "temperature=0.2",
                 "scheduler=constant", "probe=none", "seed=1")
    result = fit(TASK, cfg)
    assert result.steps == 4 * 384 // 16
    train = [r for r in result.metrics if r["kind"] == "train"]
    assert train[-1]["loss"] < train[0]["loss"] - 1.0 and train[-1]["mil_nce"] < train[0]["mil_nce"]
    final = result.final
    assert final["clips"] == 64.0 and final["text_clips"] == 64.0
    chance = chance_levels(64)  # R@5 0.078, median rank 32.5
    assert final["t2v_r5"] >= 3 * chance["chance_r5"], final
    assert final["t2v_median_rank"] <= chance["chance_median_rank"] / 3, final
    listing = json.loads((tmp_path / "run" / "eval" / "retrieval.json").read_text())
    assert len(listing) == 20 and listing[0]["caption"].startswith(("a ", "an ")) and len(listing[0]["top5"]) == 5
    assert all(1 <= row["rank"] <= 64 for row in listing)


def test_vatt_resume_is_exact_with_droptoken_draws(small, tmp_path):
    extra = ["max_steps=4", "eval_every=100", "log_every=1", "ema_decay=0.5", "probe_steps=10", "drop_shared=false"]
    straight = fit(TASK, config(small, tmp_path / "straight", *extra))
    fit(TASK, config(small, tmp_path / "resumed", *extra), interrupt_after=3)
    resumed = fit(TASK, config(small, tmp_path / "resumed", *extra))
    a, b = load_checkpoint(tmp_path / "straight" / "ckpt.pt"), load_checkpoint(tmp_path / "resumed" / "ckpt.pt")
    for weights, other in ((a["model"], b["model"]), (a["ema"]["model"], b["ema"]["model"])):
        assert weights.keys() == other.keys() and all(torch.equal(v, other[k]) for k, v in weights.items())
    assert straight.metrics == resumed.metrics
    # avshapes clips carry a shape label: the probe runs on the video and the audio representation
    final = resumed.final
    assert final["probe_train_samples"] == 32.0 and 0 <= final["video_probe_top1"] <= 1 and "audio_probe_top1" in final
    assert final["clips"] == 16.0
    assert "ema_t2v_r1" in final and "ema_v2a_median_rank" in final


def test_clips_without_text_train_on_nce_alone(small):
    cfg = config(small, "unused", "probe=none")
    torch.manual_seed(0)
    model = TASK.build_model(cfg)
    transform = clip_transform(cfg, True)
    samples = [transform({KEY: f"c{i}", "video": torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8),
                          "audio": torch.randn(1, 4000) * 0.1}) for i in range(4)]
    batch = collate_samples(samples)
    assert not batch["text_mask"].any()
    loss, parts = TASK.training_step(model, batch, cfg)
    assert parts["mil_nce"] == 0.0 and parts["text_clips"] == 0.0 and abs(loss.item() - parts["nce"]) < 1e-6
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    assert probe_target(cfg) == "none" and probe_target(config(small, "unused")) == "label"  # auto: both sets have it


def test_cli_trains_and_evaluates_vatt(small, tmp_path, capsys):
    train, val = small
    code = main(["train", "vatt", "--shards", str(train), "--eval-shards", str(val), "--out", str(tmp_path / "run"),
                 *[arg for item in TINY for arg in ("--set", item)], "--set", "max_steps=2", "--set", "probe=none"])
    assert code == 0
    out = capsys.readouterr().out
    assert f"vatt: 2 steps in {tmp_path / 'run'}; final " in out and "t2v_r1=" in out
    assert main(["eval", "vatt", "--checkpoint", str(tmp_path / "run" / "ckpt.pt")]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["clips"] == 16.0 and 1 <= metrics["t2v_median_rank"] <= 16 and 1 <= metrics["v2a_median_rank"] <= 16
    code = main(["train", "vatt", "--shards", str(train), "--out", str(tmp_path / "bad"), "--set", "frame_size=30"])
    assert code == 2
    assert "'frame_size'" in capsys.readouterr().err

"""The ``vit`` trainer under ``torchrun``: 2 gloo processes equal 1 process on the same global batch
(with its per-sample random crop, flip and RandAugment, which are seeded per sample key), and the
negative views with the contrastive loss run through the DDP wrapper.

The shard set holds 8 samples and the global batch is 8, so every epoch is one global batch; each
rank takes 4 of them and DDP averages the gradients. ViTs use LayerNorm (per sample), so nothing
depends on how the batch is split.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pipelines.train import fit, load_checkpoint, load_config
from pipelines.train.vit import TASK, ViTConfig, shapes_shards

REPO = Path(__file__).resolve().parents[2]
SETTINGS = ["batch_size=8", "max_steps=2", "num_classes=6", "image_size=32", "patch_size=4", "depth=1",
            "hidden_dim=32", "num_heads=2", "mlp_dim=64", "lr=0.001", "log_every=1", "progress=false", "device=cpu",
            "randaugment_ops=2", "ema_decay=0.5"]


def torchrun(shards: Path, out: Path, settings: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "datafactory", "train", "vit", "--shards", str(shards), "--out", str(out)]
    for setting in settings:
        command += ["--set", setting]
    done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available")
def test_two_gloo_processes_match_one_process_and_negatives_run_under_ddp(tmp_path):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        shards, _ = shapes_shards(tmp_path / "data", seed=0, train_size=8, val_size=4, resolution=32)
        single = fit(TASK, load_config(ViTConfig, overrides=[f"shards={shards}", f"out={tmp_path / 'one'}", *SETTINGS]))
    finally:
        torch.set_num_threads(before)
    torchrun(shards, tmp_path / "two", SETTINGS)
    one, two = load_checkpoint(tmp_path / "one" / "ckpt.pt"), load_checkpoint(tmp_path / "two" / "ckpt.pt")
    assert two["progress"]["world_size"] == 2
    for part_one, part_two in ((one["model"], two["model"]), (one["ema"]["model"], two["ema"]["model"])):
        for key, value in part_one.items():
            torch.testing.assert_close(part_two[key], value, rtol=1e-4, atol=1e-5, msg=key)
    lines = [json.loads(x) for x in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in lines if r["kind"] == "train"] == pytest.approx(
        [r["loss"] for r in single.metrics if r["kind"] == "train"], rel=1e-5)

    # negative views + contrastive loss through the DDP wrapper (each rank draws its own views)
    done = torchrun(shards, tmp_path / "negatives", [*SETTINGS, "negatives=shuffle", "negative_loss=contrastive",
                                                     "negative_patch_size=8"])
    assert done.stdout.count("vit: 2 steps in") == 1
    lines = [json.loads(x) for x in (tmp_path / "negatives" / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in lines if r["kind"] == "train"]
    assert len(train) == 2 and all("neg" in r and r["loss"] == r["loss"] for r in train)

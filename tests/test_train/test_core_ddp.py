"""DDP through ``torchrun``: 2 processes on gloo equal 1 process on the same global batch.

The ``one_batch`` shard set holds 8 samples and the global batch is 8, so every epoch is one
global batch: with 2 processes each rank takes 4 of those 8 samples (pipelines.plan's rank split)
and DDP averages the two gradients, which is the 1-process gradient over the same 8 samples. The
U-Net uses GroupNorm (per sample), so no BatchNorm statistics differ between the layouts.
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
from pipelines.train.segment import TASK, SegmentConfig

REPO = Path(__file__).resolve().parents[2]
SETTINGS = ["batch_size=8", "max_steps=3", "base_channels=4", "depth=2", "lr=0.001", "log_every=1", "progress=false",
            "ema_decay=0.5", "device=cpu"]


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available")
def test_two_gloo_processes_match_one_process_on_the_same_global_batch(seg_shards, tmp_path, one_thread):
    shards = seg_shards["one_batch"]
    single = fit(TASK, load_config(SegmentConfig, overrides=[f"shards={shards}", f"out={tmp_path / 'one'}", *SETTINGS]))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "datafactory", "train", "segment", "--shards", str(shards), "--out", str(tmp_path / "two")]
    for setting in SETTINGS:
        command += ["--set", setting]
    done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("segment: 3 steps in") == 1  # rank 0 reports

    one, two = load_checkpoint(tmp_path / "one" / "ckpt.pt"), load_checkpoint(tmp_path / "two" / "ckpt.pt")
    assert two["progress"]["world_size"] == 2 and len(two["rng"]) == 2
    for key, value in one["model"].items():
        torch.testing.assert_close(two["model"][key], value, rtol=1e-4, atol=1e-5, msg=key)
    for key, value in one["ema"]["model"].items():
        torch.testing.assert_close(two["ema"]["model"][key], value, rtol=1e-4, atol=1e-5, msg=key)
    lines = [json.loads(x) for x in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    losses_two = [r["loss"] for r in lines if r["kind"] == "train"]
    losses_one = [r["loss"] for r in single.metrics if r["kind"] == "train"]
    assert losses_two == pytest.approx(losses_one, rel=1e-5)

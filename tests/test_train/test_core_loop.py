"""The core loop (``fit`` / ``evaluate_run``) on the segment task with tiny shapes shards:
exact resume (interrupted, or crashed between checkpoints), AMP/compile checks, logs and plots."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from pipelines.train import evaluate_run, fit, load_checkpoint, load_config
from pipelines.train.segment import TASK, SegmentConfig

pytestmark = pytest.mark.usefixtures("one_thread")

# 16 training samples, batch 4: 4 steps per epoch, 2 epochs
TINY = ["batch_size=4", "base_channels=4", "depth=2", "epochs=2", "lr=0.01", "log_every=1", "progress=false",
        "ema_decay=0.8", "warmup_steps=2"]


def config(seg_shards, out, *extra: str) -> SegmentConfig:
    return load_config(SegmentConfig, overrides=[f"shards={seg_shards['train']}", f"eval_shards={seg_shards['val']}",
                                                 f"out={out}", *TINY, *extra])


def same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def assert_same_run(out_a, out_b) -> None:
    a, b = load_checkpoint(out_a / "ckpt.pt"), load_checkpoint(out_b / "ckpt.pt")
    assert same_state(a["model"], b["model"])
    assert same_state(a["ema"]["model"], b["ema"]["model"])
    assert same_state(a["optimizer"]["state"][0], b["optimizer"]["state"][0])
    assert a["scheduler"] == b["scheduler"] and a["rng"] == b["rng"] and a["progress"] == b["progress"]
    assert (out_a / "metrics.jsonl").read_text() == (out_b / "metrics.jsonl").read_text()


@pytest.fixture(scope="module")
def straight(one_thread, seg_shards, tmp_path_factory):
    """The uninterrupted reference run."""
    out = tmp_path_factory.mktemp("straight") / "run"
    return fit(TASK, config(seg_shards, out))


def test_a_run_logs_evaluates_checkpoints_and_plots(straight):
    out = straight.out
    assert straight.steps == 8 and not straight.interrupted
    assert {"config.json", "ckpt.pt", "metrics.jsonl", "metrics.png", "eval", "eval_ema"} <= {p.name for p in out.iterdir()}
    assert json.loads((out / "config.json").read_text())["ema_decay"] == 0.8
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["kind"] == "train"]
    evals = [r for r in rows if r["kind"] == "eval"]
    assert [r["step"] for r in train] == list(range(1, 9))
    assert [(r["epoch"], r["step"]) for r in evals] == [(0, 4), (1, 8)]
    assert train[-1]["loss"] < train[0]["loss"]
    assert {"miou", "ema_miou", "pixel_acc", "ema_pixel_acc"} <= set(straight.final)
    assert straight.final == {k: v for k, v in evals[-1].items() if k not in ("kind", "epoch", "step")}
    assert (out / "metrics.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the warm-up then cosine schedule, as logged (rate used by each step)
    assert train[0]["lr"] == pytest.approx(0.005) and train[1]["lr"] == pytest.approx(0.01)
    assert train[-1]["lr"] < train[2]["lr"]


def test_interrupted_mid_epoch_and_resumed_equals_the_straight_run(straight, seg_shards, tmp_path):
    out = tmp_path / "run"
    first = fit(TASK, config(seg_shards, out), interrupt_after=3)
    assert first.interrupted and first.steps == 3
    state = load_checkpoint(out / "ckpt.pt")
    assert state["progress"]["loader"][0]["batches"] == 3  # mid-epoch: 3 of 4 batches taken
    second = fit(TASK, config(seg_shards, out))
    assert second.steps == 8
    assert_same_run(straight.out, out)


def test_exact_resume_with_loader_workers(seg_shards, tmp_path):
    """Worker processes draw their augmentation per sample key, so a resumed epoch matches too."""
    extra = ("num_workers=2", "max_steps=3", "eval_shards=", "ema_decay=0")
    fit(TASK, config(seg_shards, tmp_path / "a", *extra))
    fit(TASK, config(seg_shards, tmp_path / "b", *extra), interrupt_after=2)
    fit(TASK, config(seg_shards, tmp_path / "b", *extra))
    a, b = load_checkpoint(tmp_path / "a" / "ckpt.pt"), load_checkpoint(tmp_path / "b" / "ckpt.pt")
    assert same_state(a["model"], b["model"]) and a["progress"] == b["progress"]


def test_a_crash_between_checkpoints_resumes_from_the_last_one(straight, seg_shards, tmp_path, monkeypatch):
    out = tmp_path / "run"
    calls = {"n": 0}
    original = TASK.training_step

    def crashing(model, batch, cfg):
        calls["n"] += 1
        if calls["n"] == 6:
            raise RuntimeError("node lost")
        return original(model, batch, cfg)

    monkeypatch.setattr(TASK, "training_step", crashing)
    with pytest.raises(RuntimeError, match="node lost"):
        fit(TASK, config(seg_shards, out, "checkpoint_every=3"))
    monkeypatch.undo()
    assert load_checkpoint(out / "ckpt.pt")["progress"]["step"] == 4  # the end of epoch 0 came after step 3
    # metrics.jsonl holds a line for step 5, logged after the checkpoint: the resume drops it
    assert max(json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()) == 5
    fit(TASK, config(seg_shards, out, "checkpoint_every=3"))
    assert_same_run(straight.out, out)


def test_resume_with_another_config_names_the_keys(straight, seg_shards, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(straight.out, out)
    with pytest.raises(ValueError, match=r"lr: stored 0.01, given 0.02"):
        fit(TASK, config(seg_shards, out, "lr=0.02"))
    # keys that do not change what is computed may differ
    again = fit(TASK, config(seg_shards, out, "progress=true", "eval_every=2"))
    assert again.steps == 8 and again.final == straight.final


def test_evaluate_run_rebuilds_the_stored_config(straight, seg_shards, tmp_path):
    metrics = evaluate_run(TASK, straight.out / "ckpt.pt")
    assert metrics == pytest.approx(straight.final)
    assert json.loads((straight.out / "eval" / "metrics.json").read_text()) == pytest.approx(metrics)
    elsewhere = evaluate_run(TASK, straight.out / "ckpt.pt", [f"eval_shards={seg_shards['train']}", f"out={tmp_path}"])
    assert elsewhere["miou"] != metrics["miou"] and (tmp_path / "eval" / "predictions").is_dir()
    with pytest.raises(ValueError, match="unknown config key"):
        evaluate_run(TASK, straight.out / "ckpt.pt", ["nope=1"])


def test_fp16_and_compile_are_refused_on_cpu_and_bf16_runs(seg_shards, tmp_path):
    with pytest.raises(ValueError, match=r"'amp' is 'fp16', which needs a CUDA device.*amp=bf16"):
        fit(TASK, config(seg_shards, tmp_path / "a", "amp=fp16", "device=cpu"))
    with pytest.raises(ValueError, match=r"'compile' is true, but torch.compile is used on CUDA only"):
        fit(TASK, config(seg_shards, tmp_path / "b", "compile=true", "device=cpu"))
    result = fit(TASK, config(seg_shards, tmp_path / "c", "amp=bf16", "device=cpu", "max_steps=2", "ema_decay=0"))
    assert result.steps == 2 and all(v == v for v in result.final.values())


def test_missing_out_or_shards_and_an_indivisible_batch_are_refused(seg_shards, tmp_path):
    with pytest.raises(ValueError, match="'out' is empty"):
        fit(TASK, config(seg_shards, ""))
    with pytest.raises(ValueError, match="'shards' is empty"):
        fit(TASK, config(seg_shards, tmp_path / "r", "shards="))
    cfg = config(seg_shards, tmp_path / "r", "batch_size=6")
    with pytest.raises(ValueError, match=r"'batch_size' \(6\) must be divisible .* \(4\)"):
        TASK.train_loader(cfg, rank=0, world_size=4, epoch=0)
    with pytest.raises(ValueError, match="not one full batch"):
        TASK.train_loader(config(seg_shards, tmp_path / "r", "batch_size=32"), rank=0, world_size=1, epoch=0)


def test_a_foreign_checkpoint_in_the_run_folder_is_named(seg_shards, tmp_path):
    from pipelines.train import save_checkpoint

    (tmp_path / "run").mkdir()
    save_checkpoint(tmp_path / "run" / "ckpt.pt", {"model": {}, "config": "{}"})
    with pytest.raises(ValueError, match=r"ckpt\.pt' is not a pipelines.train checkpoint: it has no \['optimizer'"):
        fit(TASK, config(seg_shards, tmp_path / "run"))
    save_checkpoint(tmp_path / "run" / "ckpt.pt", {"model": {}, "config": "[1]"})
    with pytest.raises(ValueError, match="'config' must be a JSON object"):
        evaluate_run(TASK, tmp_path / "run" / "ckpt.pt")
    with pytest.raises(ValueError, match="from the 'vit' trainer"):
        save_checkpoint(tmp_path / "run" / "ckpt.pt", {"model": {}, "config": "{}", "trainer": "vit"})
        evaluate_run(TASK, tmp_path / "run" / "ckpt.pt")

"""Checkpoints load with torch.load(weights_only=True) only; RNG states round-trip; EMA math."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from pipelines.train.checkpoint import capture_rng, load_checkpoint, restore_rng, save_checkpoint
from pipelines.train.ema import ModelEMA


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))


def test_round_trip_of_model_optimizer_scheduler_and_rng(tmp_path):
    model = _model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 2)
    model(torch.randn(5, 3)).sum().backward()
    optimizer.step()
    scheduler.step()
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             "rng": [capture_rng()], "config": '{"lr": 0.1}', "progress": {"step": 1, "loader": None}}
    save_checkpoint(tmp_path / "ckpt.pt", state)
    loaded = load_checkpoint(tmp_path / "ckpt.pt")
    again = _model()
    again.load_state_dict(loaded["model"])
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    optimizer2 = torch.optim.AdamW(again.parameters(), lr=0.1)
    optimizer2.load_state_dict(loaded["optimizer"])
    assert torch.equal(optimizer2.state_dict()["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"])
    assert loaded["config"] == '{"lr": 0.1}' and loaded["progress"] == {"step": 1, "loader": None}
    assert not list(tmp_path.glob(".*tmp")), "the temporary file is renamed, not left behind"


def test_entries_weights_only_cannot_load_are_refused_by_name(tmp_path):
    with pytest.raises(TypeError, match=r"\['extra'\]\['fn'\].*function"):
        save_checkpoint(tmp_path / "ckpt.pt", {"extra": {"fn": len}})
    assert not (tmp_path / "ckpt.pt").exists()


def test_a_file_with_code_in_it_is_refused(tmp_path):
    """A checkpoint whose pickle names a callable (what a malicious file does) is not loaded."""
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "hook": ModelEMA}, path)  # a class reference: refused by weights_only
    with pytest.raises(ValueError, match=r"evil\.pt.*weights_only=True"):
        load_checkpoint(path)


def test_load_refuses_special_files_and_links_are_not_written_through(tmp_path):
    import os

    os.mkfifo(tmp_path / "fifo.pt")
    with pytest.raises(OSError):
        load_checkpoint(tmp_path / "fifo.pt")
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    (tmp_path / "ckpt.pt").symlink_to(victim)
    with pytest.raises(FileExistsError):
        save_checkpoint(tmp_path / "ckpt.pt", {"a": torch.zeros(1)})
    assert victim.read_bytes() == b"keep"


def test_rng_capture_restore_reproduces_every_generator(tmp_path):
    torch.manual_seed(1), np.random.seed(1), random.seed(1)
    state = capture_rng()
    save_checkpoint(tmp_path / "r.pt", {"rng": state})
    first = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)], np.random.randn())
    restore_rng(load_checkpoint(tmp_path / "r.pt")["rng"])
    second = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)], np.random.randn())
    assert torch.equal(first[0], second[0]) and np.array_equal(first[1], second[1])
    assert first[2] == second[2] and first[3] == second[3]


def test_restore_rng_refuses_malformed_states():
    state = capture_rng()
    with pytest.raises(ValueError, match="torch"):
        restore_rng({**state, "torch": [300] * 10})
    with pytest.raises(ValueError, match="'torch', 'numpy' and 'python'"):
        restore_rng({"torch": state["torch"]})


def test_ema_follows_the_formula_step_by_step():
    model = _model()
    ema = ModelEMA(model, decay=0.9)
    expected = {k: v.clone().double() for k, v in model.state_dict().items()}
    for step in range(3):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        model.train()(torch.randn(6, 3))  # moves BatchNorm's running stats and its batch counter
        ema.update(model)
        for key, value in model.state_dict().items():
            if value.is_floating_point():
                expected[key] = 0.9 * expected[key] + 0.1 * value.double()
            else:
                expected[key] = value.clone().double()
    assert ema.updates == 3
    for key, value in ema.module.state_dict().items():
        torch.testing.assert_close(value.double(), expected[key], rtol=1e-6, atol=1e-6)
    assert int(ema.module.state_dict()["1.num_batches_tracked"]) == 3
    assert not any(p.requires_grad for p in ema.module.parameters())


def test_ema_state_dict_round_trips_and_decay_is_checked():
    model = _model()
    ema = ModelEMA(model, 0.5)
    ema.update(_model())
    other = ModelEMA(torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2)), 0.1)
    other.load_state_dict(ema.state_dict())
    assert other.decay == 0.5 and other.updates == 1
    assert all(torch.equal(a, b) for a, b in zip(ema.module.state_dict().values(), other.module.state_dict().values()))
    for bad in (1.0, -0.1, True):
        with pytest.raises(ValueError, match="decay"):
            ModelEMA(model, bad)

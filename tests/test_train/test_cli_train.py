"""``datafactory train`` / ``datafactory eval``: options listed with defaults, config precedence,
clear one-line errors, and evaluation of a checkpoint."""

from __future__ import annotations

import json

import pytest

from datafactory.cli import main
from datafactory.cli.train import trainers_help
from pipelines.train import registry

pytestmark = pytest.mark.usefixtures("one_thread")


def test_train_help_lists_each_trainers_options_with_defaults(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["train", "--help"])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    assert "options of every trainer" in text and "batch_size (int, default 32)" in text
    assert "segment options" in text and "num_classes (int, default 4)" in text and 'model (str, default "unet")' in text
    for name in registry.trainer_names():
        assert f"\n{name}" in text


def test_help_of_one_trainer_and_a_broken_trainer_module(capsys, monkeypatch):
    with pytest.raises(SystemExit):
        main(["train", "segment", "--help"])
    text = capsys.readouterr().out
    assert "segment options" in text and "cxr options" not in text
    monkeypatch.setitem(registry.TRAINERS, "broken", "pipelines.train.no_such_module:TASK")
    listing = trainers_help()
    assert "broken: unavailable (ModuleNotFoundError" in listing and "segment options" in listing


def test_train_then_eval(seg_shards, tmp_path, capsys):
    config = tmp_path / "cfg.json"
    config.write_text(json.dumps({"batch_size": 4, "epochs": 5, "base_channels": 4, "depth": 2, "progress": False}))
    code = main(["train", "segment", "--shards", str(seg_shards["train"]), "--eval-shards", str(seg_shards["val"]),
                 "--config", str(config), "--set", "epochs=1", "--set", "log_every=2", "--out", str(tmp_path / "run")])
    assert code == 0
    out = capsys.readouterr().out
    assert f"segment: 4 steps in {tmp_path / 'run'}; final " in out and "miou=" in out
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (saved["epochs"], saved["batch_size"], saved["log_every"]) == (1, 4, 2)  # --set beats the file

    assert main(["eval", "segment", "--checkpoint", str(tmp_path / "run" / "ckpt.pt"), "--eval-shards",
                 str(seg_shards["train"])]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert 0 <= metrics["miou"] <= 1 and "loss" in metrics


def test_config_errors_are_one_line_naming_the_key(seg_shards, tmp_path, capsys):
    code = main(["train", "segment", "--shards", str(seg_shards["train"]), "--out", str(tmp_path / "r"),
                 "--set", "batchsize=4"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("datafactory: error: unknown config key(s) ['batchsize']") and "batch_size" in err
    assert main(["train", "segment", "--shards", str(seg_shards["train"]), "--out", str(tmp_path / "r"),
                 "--set", "amp=fp16", "--set", "device=cpu"]) == 2
    assert "'amp' is 'fp16'" in capsys.readouterr().err
    assert main(["eval", "segment", "--checkpoint", str(tmp_path / "missing.pt")]) == 2
    assert "missing.pt" in capsys.readouterr().err

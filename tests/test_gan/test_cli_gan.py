"""``datafactory gan ...``: each step through ``datafactory.cli.main`` (no subprocess)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from datafactory.cli import main
from datafactory.cli.gan import parse_settings
from pipelines import verify_shards

pytestmark = pytest.mark.usefixtures("one_thread")


def test_gan_help_lists_the_steps(capsys):
    assert main(["gan"]) == 0
    out = capsys.readouterr().out
    for step in ("train", "sample-for-annotation", "import-annotations", "fit-interpreter", "generate"):
        assert step in out


def test_parse_settings_nests_and_parses_json(tmp_path):
    config = tmp_path / "c.json"
    config.write_text('{"steps": 5, "model": {"z_dim": 8}}')
    assert parse_settings(str(config), ["model.resolution=16", "diffaugment=color", "steps=7"]) == \
        {"steps": 7, "diffaugment": "color", "model": {"z_dim": 8, "resolution": 16}}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_settings(None, ["steps"])


def test_train_sample_import_fit_generate(tmp_path, capsys):
    run = tmp_path / "gan"
    assert main(["gan", "train", "shapes", "--out", str(run), "--option", "size=8", "--quiet", "--device", "cpu",
                 "--set", "steps=2", "--set", "batch_size=4", "--set", "sample_grid=0", "--set", "log_every=0",
                 "--set", "checkpoint_every=0", "--set", "model.resolution=16", "--set", "model.z_dim=16",
                 "--set", "model.w_dim=16", "--set", "model.channel_base=128", "--set", "model.channel_max=16"]) == 0
    assert "generator: 2 steps" in capsys.readouterr().out
    generator = run / "generator.pt"
    annotation = tmp_path / "annotation"
    assert main(["gan", "sample-for-annotation", "--generator", str(generator), "--count", "5", "--seed", "40",
                 "--out", str(annotation), "--device", "cpu"]) == 0
    assert "5 images of 16x16 from seed 40" in capsys.readouterr().out
    manifest = json.loads((annotation / "manifest.json").read_text())
    assert manifest["generator"]["checkpoint"] == "generator.pt" and len(manifest["images"]) == 5

    # a person's masks: 8-bit index PNGs with 2 classes, one of them drawn at the wrong size first
    keys = [entry["key"] for entry in manifest["images"]]
    for i, key in enumerate(keys):
        array = np.zeros((16, 16 if i else 15), dtype=np.uint8)
        array[:, 8:] = 1
        Image.fromarray(array).save(annotation / "masks" / f"{key}.png")
    assert main(["gan", "import-annotations", "--annotation", str(annotation), "--num-classes", "2"]) == 2
    assert f"{keys[0]}.png" in capsys.readouterr().err
    Image.fromarray(np.tile(np.array([0] * 8 + [1] * 8, dtype=np.uint8), (16, 1))).save(annotation / "masks" / f"{keys[0]}.png")
    assert main(["gan", "import-annotations", "--annotation", str(annotation), "--num-classes", "2"]) == 0
    assert "5 masks OK (16x16); pixels per class 0: 640, 1: 640" in capsys.readouterr().out

    unlabeled = np.tile(np.array([0] * 8 + [1] * 8, dtype=np.uint8), (16, 1))
    unlabeled[0, :3] = 255  # a person left 3 pixels unlabeled: left out of the interpreter's training
    Image.fromarray(unlabeled).save(annotation / "masks" / f"{keys[1]}.png")
    interpreter = tmp_path / "interpreter.pt"
    assert main(["gan", "fit-interpreter", "--generator", str(generator), "--annotation", str(annotation),
                 "--num-classes", "2", "--out", str(interpreter), "--set", "ensemble_size=2", "--set", "max_epochs=2",
                 "--set", "pixels_per_epoch=256", "--quiet", "--device", "cpu"]) == 0
    assert "interpreter: 2 members on 5 annotated images" in capsys.readouterr().out
    saved = json.loads(interpreter.with_suffix(".json").read_text())["config"]
    assert saved["ensemble_size"] == 2 and saved["ignore_index"] == 255

    out = tmp_path / "generated"
    assert main(["gan", "generate", "--generator", str(generator), "--interpreter", str(interpreter), "--out", str(out),
                 "--count", "10", "--drop-fraction", "0.3", "--batch-size", "4", "--max-count", "4", "--quiet",
                 "--device", "cpu"]) == 0
    assert "generated 10 candidates: 3 dropped as most uncertain" in capsys.readouterr().out
    assert verify_shards(out / "shards").ok
    assert json.loads((out / "generate.json").read_text())["counts"] == \
        {"candidates": 10, "dropped": 3, "kept": 7, "written": 7}


def test_oracle_import_and_errors_go_through_the_cli_error_path(bundled, tmp_path, capsys):
    annotation = tmp_path / "annotation"
    assert main(["gan", "sample-for-annotation", "--generator", str(bundled["generator"]), "--count", "2",
                 "--out", str(annotation), "--device", "cpu"]) == 0
    capsys.readouterr()
    assert main(["gan", "import-annotations", "--annotation", str(annotation), "--num-classes", "4",
                 "--oracle", "shapes"]) == 0
    assert "2 masks OK" in capsys.readouterr().out
    # errors: exit code 2 and one line naming the problem
    assert main(["gan", "sample-for-annotation", "--generator", str(bundled["generator"]), "--count", "2",
                 "--out", str(annotation), "--device", "cpu"]) == 2
    assert "overwrite" in capsys.readouterr().err
    assert main(["gan", "generate", "--generator", str(tmp_path / "missing.pt"), "--interpreter",
                 str(bundled["interpreter"]), "--out", str(tmp_path / "g"), "--count", "2"]) == 2
    assert "missing.pt" in capsys.readouterr().err
    assert main(["gan", "fit-interpreter", "--generator", str(bundled["generator"]), "--annotation", str(annotation),
                 "--num-classes", "4", "--out", str(tmp_path / "i.pt"), "--set", "no_such_key=1"]) == 2
    assert "no_such_key" in capsys.readouterr().err


def test_ray_missing_is_an_error_line_before_anything_is_written(bundled, tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    assert main(["gan", "generate", "--generator", str(bundled["generator"]), "--interpreter", str(bundled["interpreter"]),
                 "--out", str(tmp_path / "g"), "--count", "2", "--engine", "ray"]) == 2
    assert 'pip install "datafactory-toolkit[ray]"' in capsys.readouterr().err
    assert not (tmp_path / "g").exists()

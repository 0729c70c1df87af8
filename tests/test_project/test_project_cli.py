"""The ``datafactory`` command line, run as users run it: in a subprocess."""

import json
import subprocess
import sys

import pytest


def _run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "datafactory", *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_help_lists_the_commands():
    result = _run("--help")
    assert result.returncode == 0
    for command in ("datasets", "demo", "shards", "augment"):
        assert command in result.stdout


def test_datasets_list_shows_builtin_adapters():
    result = _run("datasets", "list")
    assert result.returncode == 0
    names = [line.split()[0] for line in result.stdout.splitlines() if line.strip()]
    assert "shapes" in names and "folder" in names


def test_datasets_show_shapes():
    result = _run("datasets", "show", "shapes", "--split", "val", "-o", "size=7")
    assert result.returncode == 0, result.stderr
    assert "samples   7" in result.stdout and "circle" in result.stdout and "image" in result.stdout
    as_json = json.loads(_run("datasets", "show", "shapes", "-o", "size=3", "--json").stdout)
    assert as_json["samples"] == 3 and as_json["classes"] == 6 and "mask" in as_json["first_sample"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("datasets", "show", "nope"), "unknown dataset 'nope'; known datasets:"),
        (("datasets", "show", "shapes", "-o", "colour=red"), "does not accept option(s) ['colour']"),
        (("datasets", "show", "shapes", "-o", "size"), "KEY=VALUE"),
        (("datasets", "show", "folder", "--root", "/no/such/dir"), "not a directory"),
    ],
)
def test_bad_input_gives_a_clear_error_and_exit_code_2(args, message):
    result = _run(*args)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_a_corrupt_file_is_named_not_a_traceback(tmp_path):
    (tmp_path / "cls").mkdir()
    (tmp_path / "cls" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    result = _run("datasets", "show", "folder", "--root", str(tmp_path))
    assert result.returncode == 2 and "broken.jpg" in result.stderr and "Traceback" not in result.stderr


def test_demo_writes_a_preview(tmp_path):
    out = tmp_path / "demo"
    result = _run("demo", "--out", str(out), "--size", "6", "--shard-samples", "40", "--max-count", "16",
                  "--val-samples", "8", "--train-epochs", "1", "--no-gan")
    assert result.returncode == 0, result.stderr
    from PIL import Image

    with Image.open(out / "preview.png") as preview:
        assert preview.size[0] > 300 and preview.size[1] > 150
    summary = json.loads((out / "demo_summary.json").read_text())
    assert summary["samples"] == 6 and summary["oracle"]["pixel_accuracy"] > 0.99
    assert json.loads((out / "demo_config.json").read_text())["size"] == 6
    assert "oracle" in result.stdout and "preview" in result.stdout
    shards = summary["shards"]
    assert shards["verified"] and shards["skipped"] == 0 and shards["samples_read"] == shards["written"] == 40
    assert sorted(p.name for p in (out / "shards").glob("*.tar")) == ["000000.tar", "000001.tar", "000002.tar"]
    # the short training runs: one epoch each, full batches only (40 images: 2 of 16, 1 of 32)
    training = summary["training"]
    assert training["segment"]["steps"] == 2 and training["vit"]["steps"] == 1
    assert 0.0 <= training["segment"]["miou"] <= 1.0 and 0.0 <= training["vit"]["patch_shuffle_top1"] <= 1.0
    for name in ("segment", "vit"):
        run = out / "runs" / name
        assert (run / "ckpt.pt").is_file() and (run / "metrics.jsonl").is_file() and (run / "config.json").is_file()
        assert f"train     {name}:" in result.stdout
    assert list((out / "runs" / "segment" / "eval" / "predictions").glob("*.png"))
    assert summary["gan"] is None  # --no-gan (the factory has its own tests)

"""`datafactory shards build | verify | inspect | preview` and the demo round trip."""

from __future__ import annotations

import json
import sys

import pytest

from datafactory.cli import main
from datafactory.demo import demo_roundtrip
from loaders import decode


def test_build_verify_inspect_preview(tmp_path, capsys, helpers):
    root = tmp_path / "imgs"
    helpers.jpeg_folder(root, classes=2, per_class=5, size=24)
    (root / "class_0" / "img_002.jpg").write_bytes(b"")
    out = tmp_path / "out"
    code = main(["shards", "build", "folder", "--root", str(root), "--out", str(out), "--workers", "2",
                 "--max-count", "4", "--max-bytes", "1M", "--on-error", "skip"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "read 10 = written 9 + skipped 1" in captured.out and "sample/s" in captured.err  # tqdm rate
    assert main(["shards", "verify", str(out)]) == 0
    assert "OK: 3 shards, 9 samples" in capsys.readouterr().out
    assert main(["shards", "inspect", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["samples"] == 9 and summary["skipped"] == 1 and summary["skip_reasons"] == {"[jpg] empty payload": 1}
    assert main(["shards", "preview", str(out), "--out", str(tmp_path / "grid.png"), "--count", "4", "--size", "32"]) == 0
    grid = decode("png", (tmp_path / "grid.png").read_bytes())
    assert grid.shape[0] == 3 and grid.shape[1] == 36  # one row of 32 px tiles + padding
    (out / "000001.tar").write_bytes(b"\0" * 1024)
    assert main(["shards", "verify", str(out)]) == 1
    assert "FAIL 000001.tar" in capsys.readouterr().out


def test_build_shapes_from_the_readme(tmp_path, capsys):
    out = tmp_path / "shapes"
    assert main(["shards", "build", "shapes", "--split", "val", "--option", "size=20", "--out", str(out),
                 "--max-count", "8", "--quiet"]) == 0
    assert "3 shards" in capsys.readouterr().out
    assert main(["shards", "verify", str(out)]) == 0


def test_cli_errors(tmp_path, capsys, monkeypatch):
    assert main(["shards", "build", "shapes", "--out", str(tmp_path / "o"), "--max-count", "0", "--quiet"]) == 2
    assert "max_count must be a positive int" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "ray", None)
    assert main(["shards", "build", "shapes", "--out", str(tmp_path / "o"), "--engine", "ray", "--quiet"]) == 2
    assert 'pip install "datafactory-toolkit[ray]"' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["shards", "build", "shapes", "--out", str(tmp_path / "o"), "--max-bytes", "lots"])


def test_demo_roundtrip(tmp_path):
    result = demo_roundtrip(tmp_path / "demo", size=40, max_count=16, batch_size=8)
    assert result["verified"] and result["shards"] == 3
    assert result["written"] == result["samples_read"] == 40 and result["batches"] == 5
    assert result["image_batch_shape"] == (8, 3, 64, 64)

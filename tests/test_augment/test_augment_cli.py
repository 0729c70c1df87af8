"""``datafactory augment preview`` writes a grid a person can check: originals in the first
column, views next to them, and the resolved config beside the PNG."""

from __future__ import annotations

import json

import torch
from torchvision.io import decode_png, read_file

from datafactory.cli import main


def test_preview_writes_grid_and_config(tmp_path, capsys):
    out = tmp_path / "grid.png"
    code = main(["augment", "preview", "--spec", "patch_rotate:patch_size=16 | randaugment:p=0.5", "--dataset", "shapes",
                 "--count", "2", "--views", "3", "--scale", "1", "--out", str(out), "-o", "size=4"])
    assert code == 0 and "wrote" in capsys.readouterr().out
    grid = decode_png(read_file(str(out)))
    cell, pad = 64, 2
    assert grid.shape == (3, pad + 2 * (cell + pad), pad + 4 * (cell + pad))
    import loaders

    data = loaders.open_dataset("shapes", None, None, size=4)
    for row in range(2):
        top = pad + row * (cell + pad)
        original = grid[:, top:top + cell, pad:pad + cell]
        assert torch.equal(original, data[row]["image"]), "the first column holds the originals"
        view = grid[:, top:top + cell, 2 * pad + cell:2 * pad + 2 * cell]
        assert not torch.equal(view, original), "the next columns hold augmented views"
    config = json.loads(out.with_suffix(".json").read_text())
    assert config["spec"] == "patch_rotate:patch_size=16 | randaugment:p=0.5" and config["views"] == 3
    # same seed, same grid
    again = tmp_path / "again.png"
    main(["augment", "preview", "--spec", config["spec"], "--count", "2", "--views", "3", "--scale", "1",
          "--out", str(again), "-o", "size=4"])
    assert out.read_bytes() == again.read_bytes()


def test_preview_bad_spec_is_a_clear_error(tmp_path, capsys):
    code = main(["augment", "preview", "--spec", "randaugment:n=2", "--out", str(tmp_path / "g.png")])
    assert code == 2
    err = capsys.readouterr().err
    assert "allowed keys" in err and "num_ops" in err
    assert not (tmp_path / "g.png").exists()

"""``datafactory augment preview`` writes a grid a person can check: originals in the first
column, views next to them, and the resolved config beside the PNG."""

from __future__ import annotations

import json

import torch

import augment as A
import loaders
from datafactory.cli import main


def test_preview_writes_grid_and_config(tmp_path, capsys):
    out = tmp_path / "grid.png"
    code = main(["augment", "preview", "--spec", "patch_rotate:patch_size=16 | randaugment:p=0.5", "--dataset", "shapes",
                 "--count", "2", "--views", "3", "--scale", "1", "--out", str(out), "-o", "size=4"])
    assert code == 0 and "wrote" in capsys.readouterr().out
    grid = loaders.decode("png", out.read_bytes())
    cell, pad = 64, 2
    assert grid.shape == (3, pad + 2 * (cell + pad), pad + 4 * (cell + pad))
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


def test_preview_grid_holds_views_of_another_size(image_factory):
    """Crops are smaller than their originals: each sits top-left in a white cell."""
    images = image_factory(2, (32, 32))
    grid = A.preview_grid(images, A.RandomResizedCrop(16), views=2, generator=torch.Generator().manual_seed(0),
                          scale=1, padding=2)
    assert grid.shape == (3, 2 + 2 * 34, 2 + 3 * 34)
    assert torch.equal(grid[:, 2:34, 2:34], images[0])
    cell = grid[:, 2:34, 36:68]
    assert (cell[:, 16:, :] == 255).all() and (cell[:, :, 16:] == 255).all() and not (cell[:, :16, :16] == 255).all()

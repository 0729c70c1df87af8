"""The cxr trainer end to end through the core's ``fit``: real NIH- and CheXpert-layout files
(PNG/JPEG) built into shards, a tiny DenseNet, loss going down, exact mid-run resume, evaluation
(frontal views only, per-pathology AUC) and strict configs and shards."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

import loaders.xray  # noqa: F401  (registers the chest X-ray adapters)
from pipelines import build_shards
from pipelines.train import evaluate_run, fit, get_task, load_checkpoint, load_config
from pipelines.train.cxr import TASK, CXRConfig
from pipelines.train.cxr_synthetic import write_synthetic_nih


def xray_builders():
    """The chest X-ray fixture builders of tests/test_xray (real files in each native layout)."""
    spec = importlib.util.spec_from_file_location("cxr_xray_builders", Path(__file__).parents[1] / "test_xray" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> dict[str, Path]:
    """Training: 40 rendered NIH-layout PNGs (:mod:`pipelines.train.cxr_synthetic`, frontal views);
    eval: the CheXpert-layout JPEGs of tests/test_xray (4 PA/AP, 1 lateral, 1 without a view)."""
    base = tmp_path_factory.mktemp("cxr")
    nih = write_synthetic_nih(base / "nih", train=40, test=8, size=24, seed=0)
    chexpert = xray_builders().make_chexpert(base / "chexpert")
    build_shards("nih", base / "train", root=nih, split="train")
    build_shards("chexpert", base / "eval", root=chexpert, options={"views": "*"})
    return {"train": base / "train", "eval": base / "eval"}


def config(shards, out, *extra) -> CXRConfig:
    return load_config(CXRConfig, overrides=[f"shards={shards['train']}", f"eval_shards={shards['eval']}", f"out={out}",
                                              "model=densenet_tiny", "image_size=16", "batch_size=4", "lr=0.01",
                                              "eval_every=100", "device=cpu", "progress=false", *extra])


def test_registry_finds_the_trainer():
    assert get_task("cxr") is TASK and TASK.config_class is CXRConfig


def test_loss_decreases_and_eval_reports_frontal_auc(shards, tmp_path):
    result = fit(TASK, config(shards, tmp_path / "run", "log_every=2"))  # one epoch: 10 steps
    losses = [row["loss"] for row in result.metrics if row["kind"] == "train"]
    assert len(losses) == 5 and losses[-1] < 0.7 * losses[0]
    assert all(row["dropped_views"] == 0 for row in result.metrics if row["kind"] == "train")  # NIH: PA/AP only
    final = result.final
    # CheXpert eval: the lateral and the blank-view images are dropped, 4 frontal images remain
    assert final["samples"] == 4 and final["dropped_views"] == 2
    table = json.loads((tmp_path / "run" / "eval" / "auc.json").read_text())
    defined = [name for name, row in table.items() if row["positives"] and row["negatives"]]
    assert sorted(k[4:] for k in final if k.startswith("auc/")) == sorted(defined)
    assert final["auc_defined"] == len(defined) and final["auc_skipped"] == 18 - len(defined) and len(defined) >= 1
    assert all(0 <= final[f"auc/{name}"] <= 1 for name in defined)
    assert final["auc_mean"] == pytest.approx(sum(final[f"auc/{n}"] for n in defined) / len(defined))
    # Infiltration, Emphysema, ... are not CheXpert labels: unknown for every frontal image
    assert table["Infiltration"] == {"auc": None, "positives": 0, "negatives": 0, "unknown": 4}
    again = evaluate_run(TASK, tmp_path / "run" / "ckpt.pt")
    assert again == pytest.approx(final)


def test_mid_run_resume_equals_the_uninterrupted_run(shards, tmp_path):
    extra = ("max_steps=7", "batch_size=8", "log_every=1", "ema_decay=0.5", "image_format=uint8")
    whole = fit(TASK, config(shards, tmp_path / "whole", *extra))
    first = fit(TASK, config(shards, tmp_path / "parts", *extra), interrupt_after=3)  # mid-epoch 0 (5 batches/epoch)
    assert first.interrupted and first.steps == 3
    resumed = fit(TASK, config(shards, tmp_path / "parts", *extra))  # through the end of epoch 0 into epoch 1
    assert resumed.steps == whole.steps == 7
    a, b = load_checkpoint(tmp_path / "whole" / "ckpt.pt"), load_checkpoint(tmp_path / "parts" / "ckpt.pt")
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert all(torch.equal(a["ema"]["model"][k], b["ema"]["model"][k]) for k in a["ema"]["model"])
    assert (tmp_path / "whole" / "metrics.jsonl").read_text() == (tmp_path / "parts" / "metrics.jsonl").read_text()
    assert "ema_auc_defined" in whole.final and whole.final == resumed.final


@pytest.mark.parametrize("override, key", [
    ("model=resnet50", "'model' must be one of"),
    ("image_format=uint16", "'image_format' must be one of"),
    ("image_size=16", "'image_size' must be >= 32 for densenet121"),
    ('pathologies=["Atelectasis", "Tuberculosis"]', "'pathologies': \\['Tuberculosis'\\] not in label_columns"),
    ('pathologies=["Atelectasis", "Atelectasis"]', "'pathologies' must be a non-empty list of distinct names"),
    ('views=["*", "PA"]', "'views' must list view names"),
    ("views=[]", "'views' must list view names"),
    ("loss_reduction=sum", "'loss_reduction' must be one of"),
    ("drop_rate=1.5", "'drop_rate' must be in"),
    ("growth_rate=8", "unknown config key.*growth_rate"),
])
def test_bad_configs_name_the_key(override, key):
    with pytest.raises(ValueError, match=key):
        load_config(CXRConfig, overrides=[override])


def test_shards_without_labels_or_meta_are_refused_by_name(shards, tmp_path):
    from loaders import open_dataset

    nih = open_dataset("nih", root=xray_builders().make_nih(tmp_path / "nih"), decode=False)
    no_labels = [{k: v for k, v in nih.load(i, decode=False).items() if k != "labels.npy"} for i in range(len(nih))]
    no_meta = [{k: v for k, v in nih.load(i, decode=False).items() if k != "json"} for i in range(len(nih))]
    build_shards(no_labels, tmp_path / "no_labels")
    build_shards(no_meta, tmp_path / "no_meta")
    with pytest.raises(ValueError, match="no 'labels' field"):
        fit(TASK, config({**shards, "train": tmp_path / "no_labels"}, tmp_path / "a"))
    with pytest.raises(ValueError, match="no 'meta' field"):
        fit(TASK, config({**shards, "train": tmp_path / "no_meta"}, tmp_path / "b"))
    # without the views filter meta is not needed: 8-bit PNGs have a known full scale
    done = fit(TASK, config({**shards, "train": tmp_path / "no_meta"}, tmp_path / "c", 'views=["*"]', "max_steps=1"))
    assert done.steps == 1 and not math.isnan(done.final["loss"])

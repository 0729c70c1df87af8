"""Local engine: direct file copies on threads (small jobs) or forked processes give the same bytes."""

from __future__ import annotations

import pytest

import pipelines.engines as engines_module
import pipelines.unit as unit_module
from pipelines import build_shards
from pipelines.engines import THREAD_INPUTS_PER_WORKER, use_threads


def test_threads_only_for_small_jobs_of_direct_copies():
    assert use_threads(True, 2 * THREAD_INPUTS_PER_WORKER, 2)
    assert not use_threads(True, 2 * THREAD_INPUTS_PER_WORKER + 1, 2)
    assert use_threads(True, 4 * THREAD_INPUTS_PER_WORKER, 4)
    assert not use_threads(False, 10, 2)  # re-encoding, decoded samples, other adapters: processes


@pytest.fixture
def damaged_folder(tmp_path, helpers):
    root = tmp_path / "imgs"
    files = helpers.jpeg_folder(root, classes=3, per_class=7, size=40)
    good = files["class_1/img_003"]
    (root / "class_1" / "img_003.jpg").write_bytes(good[: len(good) - 400])  # truncated: the generic path skips it
    (root / "class_2" / "img_000.jpg").write_bytes(b"")  # empty
    helpers.jpeg(root / "class_2" / "img_100.jpg", seed=5, size=120)  # larger than the others
    return root


def test_direct_copies_on_processes_threads_and_one_worker_are_byte_identical(damaged_folder, tmp_path, helpers,
                                                                              monkeypatch):
    options = dict(max_count=6, max_bytes=7000, on_error="skip")  # several units, several parts per unit
    used = []
    for name in ("ProcessPoolExecutor", "ThreadPoolExecutor"):
        real = getattr(engines_module, name)
        monkeypatch.setattr(engines_module, name, lambda *a, _real=real, _name=name, **k: used.append(_name) or _real(*a, **k))
    log = tmp_path / "direct.log"  # the forked workers inherit this patch; they append to the file

    def copy_sample(*args, _real=unit_module.copy_sample, **kwargs):
        done = _real(*args, **kwargs)
        with open(log, "a") as handle:
            handle.write(f"{int(done)}\n")
        return done

    monkeypatch.setattr(unit_module, "copy_sample", copy_sample)
    monkeypatch.setattr(engines_module, "THREAD_INPUTS_PER_WORKER", 0)  # a "large" job: forked processes
    processes = build_shards("folder", tmp_path / "processes", root=damaged_folder, workers=2, **options)
    assert log.read_text().split().count("1") == 20  # every good file was copied directly, in the workers
    monkeypatch.setattr(engines_module, "THREAD_INPUTS_PER_WORKER", 10_000)
    threads = build_shards("folder", tmp_path / "threads", root=damaged_folder, workers=2, **options)
    one = build_shards("folder", tmp_path / "one", root=damaged_folder, workers=1, **options)
    assert used == ["ProcessPoolExecutor", "ThreadPoolExecutor"]
    assert processes.skipped == 2 and processes.written == 20 and len(processes.index["shards"]) > 4
    assert helpers.tree(tmp_path / "processes") == helpers.tree(tmp_path / "threads") == helpers.tree(tmp_path / "one")
    assert processes.index["shards"] == threads.index["shards"] == one.index["shards"]
    build_file = (tmp_path / "processes" / ".build.json").read_bytes()
    assert build_file == (tmp_path / "one" / ".build.json").read_bytes()  # the same input fingerprints

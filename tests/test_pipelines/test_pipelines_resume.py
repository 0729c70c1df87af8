"""Crash safety: SIGKILL a build at several points, rerun it, compare bytes with a clean build."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pipelines import build_shards

REPO = Path(__file__).resolve().parents[2]

MAX_COUNT, MAX_BYTES = 5, 7000  # units of 5 inputs, split into parts of about 3 samples by size
# (event kind, occurrence, workers): where the build kills itself with SIGKILL; "last" = the
# number of shards of a clean build
KILL_POINTS = [
    ("sample", 2, 1),  # mid-shard 0: nothing complete yet
    ("shard", 1, 1),  # right after shard 0 is complete (mid-unit: the unit has more parts)
    ("tar", 2, 1),  # shard 1's tar renamed, its sidecar not written yet
    ("sample", 20, 1),  # mid-shard, with skips recorded in earlier shards
    ("shard", "last", 1),  # every shard complete, index.json not written yet
    ("tar", 4, 2),  # two worker processes, later units' temporary parts in flight
]

SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    from pipelines import build_shards
    kind, when, workers, root, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
    seen = {"n": 0}
    def on_event(event, info):
        if event == kind:
            seen["n"] += 1
            if seen["n"] == when:
                os.kill(os.getpid(), signal.SIGKILL)
    build_shards("folder", out, root=root, max_count=5, max_bytes=7000, on_error="skip", workers=workers,
                 on_event=on_event)
    sys.exit(3)  # not killed: the kill point was never reached
    """
)


@pytest.fixture
def source(tmp_path, helpers):
    root = tmp_path / "imgs"
    helpers.jpeg_folder(root, classes=3, per_class=9, size=24)
    (root / "class_0" / "img_004.jpg").write_bytes(b"")  # a skip inside shard 0
    data = (root / "class_1" / "img_001.jpg").read_bytes()
    (root / "class_1" / "img_001.jpg").write_bytes(data[:100])  # a skip in shard 2
    return root


def test_sigkill_at_several_points_then_resume_is_byte_identical(source, tmp_path, helpers):
    clean = build_shards("folder", tmp_path / "clean", root=source, max_count=MAX_COUNT, max_bytes=MAX_BYTES,
                         on_error="skip")
    last = len(clean.index["shards"])
    assert last > 6 and clean.skipped == 2 and max(s["count"] for s in clean.index["shards"]) < MAX_COUNT
    expected = helpers.tree(tmp_path / "clean")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    runs = []
    for number, (kind, when, workers) in enumerate(KILL_POINTS):
        out = tmp_path / f"killed_{number}"
        when = last if when == "last" else when
        process = subprocess.Popen([sys.executable, "-c", SCRIPT, kind, str(when), str(workers), str(source), str(out)],
                                   env=env, cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        runs.append((kind, when, out, process))
    for kind, when, out, process in runs:
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == -signal.SIGKILL, (kind, when, stderr.decode()[-2000:])
        assert not (out / "index.json").exists()
        complete_before = len(list(out.glob("*.stats.json")))
        resumed = build_shards("folder", out, root=source, max_count=MAX_COUNT, max_bytes=MAX_BYTES, on_error="skip")
        assert resumed.resumed_shards == complete_before, (kind, when)
        assert helpers.tree(out) == expected, (kind, when)
        assert {k: v for k, v in resumed.index.items() if k != "run"} == {k: v for k, v in clean.index.items() if k != "run"}
        assert not list(out.glob(".*.tmp"))
    # the kill points covered: nothing complete, mid-shard, between tar and sidecar, all shards done
    assert {k for k, _, _ in KILL_POINTS} == {"sample", "shard", "tar"}


def test_partial_and_stray_files_are_rebuilt(source, tmp_path, helpers):
    out = tmp_path / "out"
    build_shards("folder", out, root=source, max_count=5, on_error="skip")
    expected = helpers.tree(out)
    (out / "index.json").unlink()
    (out / "000002.tar").write_bytes(b"partial garbage")  # sidecar disagrees on size -> rebuilt
    (out / ".000004.tar.tmp").write_bytes(b"half a shard")
    report = build_shards("folder", out, root=source, max_count=5, on_error="skip")
    assert report.resumed_shards == 2
    assert helpers.tree(out) == expected and not list(out.glob(".*.tmp"))

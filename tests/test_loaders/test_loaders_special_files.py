"""Special files in an input folder are never opened: FIFOs, sockets, devices, links to them.

A FIFO named ``pipe.png`` used to block the loader forever and ``zero.png -> /dev/zero`` read
until ``MemoryError``, even with ``on_error="skip"``. Now each is refused from its ``stat``,
before any ``open``, and reported under the error policy, naming the file.

Every call that could hang or read without end runs under :func:`guarded`: a repeating timer
signal that raises an exception nothing in the code under test catches, and an address-space
cap that turns an endless read into a quick ``MemoryError``; a regression fails the test
instead of hanging CI or exhausting the machine's memory. (The builder's worker threads cannot
be interrupted that way, so the multi-worker build runs in a subprocess with a timeout.)
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from loaders import SampleError
from loaders.fileio import NotRegularFileError, check_regular, open_regular, read_regular
from loaders.folder import FolderDataset, scan_files
from pipelines import build_shards
from pipelines.tario import iter_shard_samples

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo") or not hasattr(socket, "AF_UNIX") or not os.path.exists("/dev/zero"),
                                reason="needs POSIX FIFOs, UNIX sockets and /dev/zero")

GUARD_SECONDS = 20
MEMORY_HEADROOM = 1 << 30  # bytes of address space a guarded call may add


class Hung(BaseException):
    """Raised by the guard's timer; a BaseException, so no ``except OSError`` swallows it."""


@contextlib.contextmanager
def guarded(seconds: float = GUARD_SECONDS):
    """Fail (``Hung``) a block that runs longer than ``seconds`` (the signal repeats every second,
    in case one is swallowed); cap the address space so an endless read fails fast."""

    def on_alarm(signum, frame):
        raise Hung(f"still running after {seconds} s: blocked on a special file?")

    previous_handler = signal.signal(signal.SIGALRM, on_alarm)
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = _address_space() + MEMORY_HEADROOM
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    signal.setitimer(signal.ITIMER_REAL, seconds, 1.0)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
        signal.signal(signal.SIGALRM, previous_handler)


def _address_space() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 8 << 30  # not Linux: a generous cap


def _png(path: Path, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (16, 16, 3)).astype(np.uint8)).save(buffer, format="PNG")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())
    return buffer.getvalue()


@pytest.fixture
def hostile_folder(tmp_path):
    """Class folders with good PNGs and, among them, every kind of special file named ``.png``.

    Returns ``(root, good, bad)``: good keys -> bytes, bad keys -> what the error must say.
    """
    root = tmp_path / "imgs"
    good = {f"cat/good_{i}": _png(root / "cat" / f"good_{i}.png", i) for i in range(3)}
    good["dog/good_3"] = _png(root / "dog" / "good_3.png", 3)
    os.mkfifo(root / "cat" / "pipe.png")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(root / "cat" / "sock.png"))
    os.symlink("/dev/zero", root / "dog" / "zero.png")
    os.symlink(root / "cat" / "pipe.png", root / "dog" / "to_pipe.png")
    (root / "dog" / "x.png").mkdir()  # a folder named like an image: listed as a folder, never read
    bad = {"cat/pipe": "a FIFO", "cat/sock": "a socket", "dog/zero": "a character device", "dog/to_pipe": "a FIFO"}
    yield root, good, bad
    server.close()


# -- loaders.fileio ---------------------------------------------------------------------------


def test_fileio_refuses_every_special_file_without_blocking(hostile_folder, tmp_path):
    root, _, bad = hostile_folder
    (tmp_path / "x.bin").mkdir()
    paths = {key: root / f"{key}.png" for key in bad} | {"folder": tmp_path / "x.bin"}
    with guarded():
        for key, path in paths.items():
            for call in (check_regular, open_regular, read_regular):
                with pytest.raises(NotRegularFileError, match=str(path)) as caught:
                    call(path)
                assert isinstance(caught.value, OSError) and caught.value.filename == str(path)
                assert bad.get(key, "a directory") in str(caught.value)


def test_fileio_reads_regular_files_and_links_to_them(tmp_path):
    data = _png(tmp_path / "a.png", 0)
    os.symlink(tmp_path / "a.png", tmp_path / "link.png")
    with guarded():
        assert read_regular(tmp_path / "link.png") == read_regular(str(tmp_path / "a.png")) == data
        fd = open_regular(tmp_path / "link.png")
        try:
            assert os.get_blocking(fd)  # O_NONBLOCK was only for the open
        finally:
            os.close(fd)
    with pytest.raises(FileNotFoundError):
        read_regular(tmp_path / "absent.png")


def test_a_special_file_is_not_opened_at_all(tmp_path, monkeypatch):
    """Refused from its stat: opening some devices alone has effects (a tape rewinds)."""
    os.mkfifo(tmp_path / "pipe.png")
    opened = []
    real_open = os.open
    monkeypatch.setattr(os, "open", lambda path, *args, **kwargs: opened.append(path) or real_open(path, *args, **kwargs))
    with guarded(), pytest.raises(NotRegularFileError):
        read_regular(tmp_path / "pipe.png")
    assert opened == []


# -- the folder adapter -----------------------------------------------------------------------


def test_folder_lists_special_files_but_not_folders_named_like_images(hostile_folder):
    root, good, bad = hostile_folder
    with guarded():
        dataset = FolderDataset(root, decode=False)
    assert sorted(record["__key__"] for record in dataset.records()) == sorted([*good, *bad])


@pytest.mark.parametrize("decode", [False, True])
def test_folder_raise_names_the_special_file(hostile_folder, decode):
    root, _, bad = hostile_folder
    with guarded():
        dataset = FolderDataset(root, decode=decode, on_error="raise")
        keys = [record["__key__"] for record in dataset.records()]
        for key, what in bad.items():
            with pytest.raises(SampleError) as caught:
                dataset[keys.index(key)]
            error = caught.value
            assert error.key == key and error.path == str(root / f"{key}.png")
            assert what in str(error) and f"{key}.png" in str(error) and "not a regular file" in str(error)


@pytest.mark.parametrize("decode", [False, True])
def test_folder_skip_records_special_files_and_counts_add_up(hostile_folder, decode):
    root, good, bad = hostile_folder
    with guarded():
        dataset = FolderDataset(root, decode=decode, on_error="skip")
        loaded = {sample["__key__"]: sample for sample in dataset.samples()}
    assert sorted(loaded) == sorted(good)
    if not decode:
        assert all(loaded[key]["png"] == data for key, data in good.items())
    stats = dataset.stats()
    assert stats["total"] == stats["attempted"] == len(good) + len(bad)
    assert stats["loaded"] == len(good) and stats["skipped"] == len(bad)
    reasons = {skip["key"]: skip["reason"] for skip in stats["skips"]}
    assert sorted(reasons) == sorted(bad)
    for key, what in bad.items():
        assert what in reasons[key] and f"{key}.png" in reasons[key]


def test_folder_mask_that_is_special_names_the_mask(tmp_path):
    root = tmp_path / "seg"
    _png(root / "images" / "a.png", 0)
    _png(root / "images" / "b.png", 1)
    _png(root / "images" / "c.png", 2)
    _png(root / "masks" / "a.png", 3)
    os.mkfifo(root / "masks" / "b.png")
    (root / "masks" / "c.png").mkdir()
    with guarded():
        dataset = FolderDataset(root, decode=False, layout="segmentation")
        assert dataset.load(0)["mask.png"] == (root / "masks" / "a.png").read_bytes()
        for index, (name, what) in enumerate([("b", "a FIFO"), ("c", "a directory")], start=1):
            with pytest.raises(SampleError, match=f"{what}, not a regular file") as caught:
                dataset.load(index)
            assert caught.value.path == str(root / "masks" / f"{name}.png")


def test_scan_follows_linked_folders_once_and_never_loops(tmp_path):
    root = tmp_path / "imgs"
    _png(root / "cat" / "a.png", 0)
    os.symlink(root, root / "cat" / "up")  # a link back up the tree
    os.symlink(root / "cat", root / "cat" / "self")
    _png(tmp_path / "elsewhere" / "b.png", 1)
    os.symlink(tmp_path / "elsewhere", root / "dog")  # a linked-in class folder is followed
    with guarded():
        assert scan_files(root, [".png"]) == ["cat/a.png", "dog/b.png"]


# -- shard builds (the direct file-copy path, then the generic one) -------------------------------


def _skips(out: Path, report) -> dict[str, str]:
    skipped = {}
    for shard in report.index["shards"]:
        stats = json.loads((out / shard["shard"].replace(".tar", ".stats.json")).read_text())
        assert stats["read"] == stats["count"] + len(stats["skipped"])
        skipped.update({s["key"]: s["reason"] for s in stats["skipped"]})
    return skipped


def test_build_skip_records_special_files_and_copies_the_rest(hostile_folder, tmp_path, direct_copies):
    root, good, bad = hostile_folder
    out = tmp_path / "out"
    with guarded():
        report = build_shards("folder", out, root=root, max_count=3, on_error="skip", workers=1)
    assert report.read == len(good) + len(bad) == report.written + report.skipped
    assert report.skipped == len(bad) and direct_copies["ok"] == len(good)  # the good files took the direct path
    skipped = _skips(out, report)
    assert sorted(skipped) == sorted(bad)
    for key, what in bad.items():
        assert what in skipped[key] and f"{key}.png" in skipped[key]
    written = {s["__key__"]: s["png"] for shard in report.index["shards"] for s in iter_shard_samples(out / shard["shard"])}
    assert written == good


@pytest.mark.parametrize("special", ["pipe", "zero"])
def test_build_raise_names_the_special_file(tmp_path, special):
    root = tmp_path / "imgs"
    _png(root / "cat" / "a.png", 0)
    if special == "pipe":
        os.mkfifo(root / "cat" / "b.png")
    else:
        os.symlink("/dev/zero", root / "cat" / "b.png")
    out = tmp_path / "out"
    with guarded(), pytest.raises(SampleError, match=r"key 'cat/b', file '.*/cat/b\.png': .*not a regular file"):
        build_shards("folder", out, root=root, max_count=5, workers=1)
    assert not (out / "index.json").exists()


_THREADED_BUILD = """
import json, resource, sys
from pipelines import build_shards
resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[3]), resource.RLIM_INFINITY))  # an endless read fails fast
report = build_shards("folder", sys.argv[2], root=sys.argv[1], max_count=2, on_error="skip", workers=2)
print(json.dumps({"read": report.read, "written": report.written, "skipped": report.skipped}))
"""


def test_build_with_worker_threads_skips_special_files(hostile_folder, tmp_path):
    """Worker threads cannot be interrupted: the build runs in a subprocess with a timeout."""
    root, good, bad = hostile_folder
    cap = _address_space() + 2 * MEMORY_HEADROOM  # the child imports the same libraries as this process
    try:
        command = [sys.executable, "-c", textwrap.dedent(_THREADED_BUILD), str(root), str(tmp_path / "out"), str(cap)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parents[2])
    except subprocess.TimeoutExpired:
        pytest.fail("the threaded build hung on a special file")
    assert done.returncode == 0, done.stderr[-3000:]
    counts = json.loads(done.stdout.strip().splitlines()[-1])
    assert counts == {"read": len(good) + len(bad), "written": len(good), "skipped": len(bad)}

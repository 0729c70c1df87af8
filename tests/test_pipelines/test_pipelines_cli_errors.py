"""``datafactory shards build`` failures from the file system: one line naming the path, exit 2."""

from __future__ import annotations

import errno
import os

import pytest

from datafactory.cli import main


def _patch_enospc(monkeypatch, fragment: str) -> None:
    """Make ``os.write`` fail as a full disk does, for files whose path contains ``fragment``."""
    original = os.write

    def write(fd, data):
        if fragment in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(fd, data)

    monkeypatch.setattr(os, "write", write)


def _patch_unreadable(monkeypatch, folder) -> None:
    """As ``chmod 000`` would (the tests may run as root, which ignores it)."""
    original = os.scandir

    def scandir(path="."):
        if os.fspath(path) == os.fspath(folder):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return original(path)

    monkeypatch.setattr(os, "scandir", scandir)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="names open files through /proc")
@pytest.mark.parametrize("case", ["out is a file", "full disk (tar)", "full disk (json)", "unreadable class folder"])
def test_build_reports_file_system_errors_in_one_line(tmp_path, helpers, capsys, monkeypatch, case):
    root = tmp_path / "imgs"
    helpers.jpeg_folder(root, classes=2, per_class=3, size=16)
    out = tmp_path / "out"
    named = str(out)
    if case == "out is a file":
        out.write_bytes(b"not a folder")
    elif case == "full disk (tar)":
        _patch_enospc(monkeypatch, ".tar.")
    elif case == "full disk (json)":
        _patch_enospc(monkeypatch, ".build.json")
        named = str(out / ".build.json")
    else:
        _patch_unreadable(monkeypatch, root / "class_1")
        named = str(root / "class_1")
    code = main(["shards", "build", "folder", "--root", str(root), "--out", str(out), "--quiet"])
    stderr = capsys.readouterr().err
    assert code == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("datafactory: error: ") and named in lines[0], stderr
    assert "Traceback" not in stderr
    if case.startswith("full disk"):
        assert "No space left on device" in lines[0]
        assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]  # its temporary file went

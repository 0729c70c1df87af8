"""``datafactory audit``: one run as users run it (a subprocess), the error paths in-process."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from datafactory.cli import main


def test_audit_two_splits_writes_the_report(planted, tmp_path):
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "datafactory", "audit", "folder:train", "folder:test", "--root", str(planted["tmp"]),
         "--out", str(out), "--quiet", "--threshold", "8", "--hull-dims", "2", "12", "--hull-train", "40", "--hull-test", "10"],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    data = json.loads((out / "report.json").read_text())
    assert data["config"]["threshold"] == 8 and data["config"]["hull_dims"] == [2, 12]
    assert data["near_duplicates"]["phash"]["across"]["pairs"] == len(planted["expected"])
    assert data["interpolation"]["n_train"] == 40 and data["interpolation"]["n_test"] == 10
    assert f"{len(planted['expected'])} pairs" in result.stdout and "report.html" in result.stdout
    assert (out / "report.html").is_file() and (out / "interpolation.png").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("nope:train",), "known datasets"),
        (("shapes:val", "--threshold", "99"), "threshold must be an int in [0, 63]"),
        (("shapes:val", "--hull-dims", "0"), "hull_dims"),
        (("shapes:val", "shapes:test", "shapes:train"), "give one source, or two"),
        (("{folder}",), "has no index.json, so it is not a shard set"),
    ],
)
def test_audit_errors_are_one_line_with_exit_code_2(args, message, tmp_path, capsys):
    args = [a.format(folder=tmp_path) for a in args]
    assert main(["audit", *args, "--out", str(tmp_path / "o"), "--quiet"]) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1 and not (tmp_path / "o").exists()

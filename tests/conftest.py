"""Suite-wide pytest configuration: the ``gpu`` marker skips without CUDA; shared fixtures."""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import settings

# Property tests draw the same examples on every run: CI results do not depend on luck, and a
# failure reproduces. (Set HYPOTHESIS_PROFILE=explore to draw new examples locally.)
settings.register_profile("ci", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def default_max_pixels(monkeypatch):
    """Every test starts from the default decode pixel limit (no environment override), and a
    test that changes it with ``loaders.set_max_pixels`` cannot leak the change to the next."""
    from loaders import media

    monkeypatch.delenv(media.MAX_PIXELS_ENV, raising=False)
    monkeypatch.setattr(media, "_max_pixels", media._UNSET)
    yield
    monkeypatch.setattr(media, "_max_pixels", media._UNSET)


@pytest.fixture
def direct_copies(monkeypatch) -> dict[str, int]:
    """Counts the samples that shard builds wrote through the direct file-copy path."""
    import pipelines.unit as unit_module

    calls = {"ok": 0}
    original = unit_module.copy_sample

    def copy_sample(*args, **kwargs):
        done = original(*args, **kwargs)
        calls["ok"] += bool(done)
        return done

    monkeypatch.setattr(unit_module, "copy_sample", copy_sample)
    return calls


_LIMITED_CHILD = """
import json, resource, sys, warnings
warnings.simplefilter("ignore")
sys.path.insert(0, {repo!r})
import torch
{imports}
with open("/proc/self/statm") as statm:
    used = int(statm.read().split()[0]) * resource.getpagesize()
resource.setrlimit(resource.RLIMIT_AS, (used + {extra}, resource.RLIM_INFINITY))
outcomes = {{}}
for name, path, call in {jobs!r}:
    data = open(path, "rb").read()
    try:
        value = eval(call)
        outcomes[name] = {{"error": None, "message": repr(getattr(value, "shape", value))}}
    except BaseException as error:
        outcomes[name] = {{"error": type(error).__name__, "message": str(error)}}
    del data
print(json.dumps(outcomes))
"""


@pytest.fixture(scope="session")
def limited_child():
    """Run hostile decode calls in one child process whose address space may grow by a bound.

    ``limited_child(folder, calls, imports=..., suffix=".bin", extra_bytes=1 << 30)``: ``calls``
    maps a case name to ``(payload bytes, expression)``; each payload is written to a file in
    ``folder`` and the expression is evaluated with ``path`` (that file) and ``data`` (its bytes)
    in scope, after ``imports``. Returns ``{name: {"error": type name or None, "message": ...}}``.
    One child for all cases keeps the torch import to one; a child killed by a signal (a
    decoder that segfaults) or by the address-space bound fails every case, as it should.
    """
    import json
    import subprocess
    import sys
    from pathlib import Path

    repo = str(Path(__file__).resolve().parents[1])

    def run(folder: Path, calls: dict, *, imports: str, suffix: str = ".bin", extra_bytes: int = 1 << 30) -> dict:
        jobs = []
        for number, (name, (data, call)) in enumerate(sorted(calls.items())):
            path = folder / f"case{number}{suffix}"
            path.write_bytes(data)
            jobs.append((name, str(path), call))
        code = _LIMITED_CHILD.format(repo=repo, imports=imports, extra=extra_bytes, jobs=jobs)
        env = {key: value for key, value in os.environ.items() if key != "DATAFACTORY_MAX_PIXELS"}
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                                env={**env, "CUDA_VISIBLE_DEVICES": ""})
        assert result.returncode == 0, f"child died with {result.returncode}: {result.stderr[-2000:]}"
        return json.loads(result.stdout.strip().splitlines()[-1])

    return run

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


@pytest.fixture
def direct_copies(monkeypatch) -> dict[str, int]:
    """Counts the samples that shard builds wrote through the direct file-copy path."""
    import pipelines.build as build_module

    calls = {"ok": 0}
    original = build_module.copy_sample

    def copy_sample(*args, **kwargs):
        done = original(*args, **kwargs)
        calls["ok"] += bool(done)
        return done

    monkeypatch.setattr(build_module, "copy_sample", copy_sample)
    return calls

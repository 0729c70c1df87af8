"""Suite-wide pytest configuration: the ``gpu`` marker skips without CUDA; shared fixtures."""

from __future__ import annotations

import pytest
import torch


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

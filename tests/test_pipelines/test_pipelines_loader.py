"""make_loader: DDP splitting with equal batch counts, seeded shuffling, resume, transforms."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from pipelines import build_shards
from pipelines.loader import FieldTransform, ShardLoader, make_loader
from pipelines.plan import buffer_order, consumed_per_worker


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """40 shapes samples in shards of 7 (uneven shard sizes on purpose)."""
    out = tmp_path_factory.mktemp("shards") / "shapes"
    build_shards("shapes", out, split="val", options={"size": 40, "resolution": 16}, max_count=7)
    return out


def _epoch_keys(loader) -> list[list[str]]:
    return [batch["__key__"] for batch in loader]


def test_two_ranks_two_workers_cover_every_sample_once_with_equal_batches(shards):
    per_rank = []
    for rank in range(2):
        loader = make_loader(shards, batch_size=4, num_workers=2, rank=rank, world_size=2, seed=3, shuffle_buffer=8)
        assert isinstance(loader, ShardLoader) and isinstance(loader, torch.utils.data.DataLoader)
        batches = _epoch_keys(loader)
        assert len(batches) == len(loader) == 5
        per_rank.append(batches)
    assert len(per_rank[0]) == len(per_rank[1])
    everything = [k for batches in per_rank for b in batches for k in b]
    assert len(everything) == 40 and len(set(everything)) == 40  # exactly once per epoch


def test_uneven_total_pads_so_every_rank_gets_the_same_batches(shards):
    counts, keys = [], Counter()
    for rank in range(3):  # 40 samples over 3 ranks: 14 each, 2 padded by wrapping around
        batches = _epoch_keys(make_loader(shards, batch_size=4, rank=rank, world_size=3, seed=0))
        counts.append(len(batches))
        keys.update(k for b in batches for k in b)
    assert counts == [4, 4, 4]
    assert len(keys) == 40 and sum(keys.values()) == 42 and sorted(keys.values())[-2:] == [2, 2]
    dropped = [_epoch_keys(make_loader(shards, batch_size=4, rank=r, world_size=3, drop_last=True)) for r in range(3)]
    assert [len(b) for b in dropped] == [3, 3, 3] and all(len(x) == 4 for b in dropped for x in b)


def test_rank_from_environment(shards, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    from_env = _epoch_keys(make_loader(shards, batch_size=5, seed=1))
    explicit = _epoch_keys(make_loader(shards, batch_size=5, seed=1, rank=1, world_size=2))
    assert from_env == explicit and sum(len(b) for b in from_env) == 20
    with pytest.raises(ValueError, match="rank must be in"):
        make_loader(shards, batch_size=5, rank=2, world_size=2)


def test_epoch_and_seed_control_the_order(shards):
    def order(seed: int, epoch: int) -> list[str]:
        return [k for b in make_loader(shards, batch_size=8, seed=seed, epoch=epoch, shuffle_buffer=10) for k in b["__key__"]]

    base = order(0, 0)
    assert order(0, 0) == base
    assert order(0, 1) != base and sorted(order(0, 1)) == sorted(base)
    assert order(1, 0) != base
    loader = make_loader(shards, batch_size=8, seed=0, shuffle_buffer=10)
    loader.set_epoch(1)
    assert [k for b in loader for k in b["__key__"]] == order(0, 1)
    plain = [k for b in make_loader(shards, batch_size=8, shuffle=False) for k in b["__key__"]]
    assert plain == sorted(plain)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_state_dict_resumes_exactly_mid_epoch(shards, num_workers):
    options = dict(batch_size=3, num_workers=num_workers, seed=5, epoch=2, shuffle_buffer=6)
    full = _epoch_keys(make_loader(shards, **options))
    loader = make_loader(shards, **options)
    iterator = iter(loader)
    head = [next(iterator)["__key__"] for _ in range(5)]
    state = loader.state_dict()
    del iterator
    assert state["batches"] == 5 and state["epoch"] == 2
    resumed = make_loader(shards, **{**options, "epoch": 0})
    resumed.load_state_dict(state)
    tail = _epoch_keys(resumed)
    assert head + tail == full
    assert resumed.state_dict()["batches"] == len(full)
    with pytest.raises(ValueError, match="batch_size"):
        make_loader(shards, **{**options, "batch_size": 4}).load_state_dict(state)


def test_persistent_workers_follow_set_epoch_and_resume(shards):
    """Persistent workers keep their copy of the stream; epochs and resumes must still reach them."""
    options = dict(batch_size=3, num_workers=2, seed=4, shuffle_buffer=6)
    fresh = {e: _epoch_keys(make_loader(shards, **options, epoch=e)) for e in (0, 1, 2)}
    assert fresh[0] != fresh[1]
    loader = make_loader(shards, **options, persistent_workers=True)
    assert _epoch_keys(loader) == fresh[0]
    workers = loader._iterator._workers  # the same processes serve every epoch
    loader.set_epoch(1)
    iterator = iter(loader)
    head = [next(iterator)["__key__"] for _ in range(5)]  # stop mid-epoch (odd: roles rotate) ...
    state = loader.state_dict()
    del iterator
    loader.load_state_dict(state)  # ... and resume on the same warm workers
    assert head + _epoch_keys(loader) == fresh[1]
    assert _epoch_keys(loader) == fresh[1]  # a resume lasts one iteration; the next is whole
    loader.set_epoch(2)
    assert _epoch_keys(loader) == fresh[2]
    assert loader._iterator._workers is workers and all(w.is_alive() for w in workers)


def test_transform_and_batch_transform(shards):
    def batch_transform(batch):
        batch["image"] = batch["image"].float() / 255
        batch["mixed"] = batch["image"].mean()
        return batch

    loader = make_loader(shards, batch_size=4, num_workers=0, decode="RGB",
                         transform=FieldTransform("image", lambda x: x[:, :8, :8]), batch_transform=batch_transform)
    batch = next(iter(loader))
    assert batch["image"].shape == (4, 3, 8, 8) and batch["image"].dtype == torch.float32
    assert batch["label"].dtype == torch.int64 and isinstance(batch["meta"], list) and "mixed" in batch
    raw = next(iter(make_loader(shards, batch_size=2, decode=False)))
    assert isinstance(raw["png"][0], bytes)


def test_bad_loader_arguments(shards, tmp_path):
    with pytest.raises(ValueError, match="batch_size must be"):
        make_loader(shards, batch_size=0)
    with pytest.raises(ValueError, match="decode must be one of"):
        make_loader(shards, batch_size=2, decode="BGR")
    with pytest.raises(FileNotFoundError, match="no index.json"):
        make_loader(tmp_path, batch_size=2)
    with pytest.raises(ValueError, match="collate="):
        make_loader(shards, batch_size=2, collate_fn=list)


def test_plan_helpers():
    order = buffer_order(50, 8, __import__("numpy").random.default_rng(0))
    assert sorted(order) == list(range(50)) and order != list(range(50))
    assert all(order[i] <= i + 8 for i in range(50))  # an item is only emitted after it was read
    assert consumed_per_worker([3, 2], 4) == ([2, 2], 0)
    assert consumed_per_worker([3, 2], 5) == ([3, 2], 1)
    assert consumed_per_worker([2, 3], 5) == ([2, 3], 0)
    assert consumed_per_worker([3, 3], 3) == ([2, 1], 1)

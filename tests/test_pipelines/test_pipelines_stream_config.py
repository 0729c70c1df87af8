"""ShardStream's settings live in one frozen StreamConfig; make_loader's keywords fill it."""

from __future__ import annotations

import dataclasses
import inspect
import pickle

import pytest

from pipelines import build_shards
from pipelines.loader import FieldTransform, ShardStream, StreamConfig, collate_samples, make_loader


def _upper(text: bytes) -> bytes:
    return text.upper()


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    out = tmp_path_factory.mktemp("cfg") / "set"
    build_shards([{"__key__": f"s{i}", "cls": b"%d" % i, "txt": b"t%d" % i} for i in range(10)], out, max_count=4)
    return out


def test_make_loader_fills_the_config_from_its_keywords(shards):
    transform = FieldTransform("txt", _upper)
    loader = make_loader(shards, batch_size=3, decode=False, transform=transform, shuffle=False, shuffle_buffer=5,
                         seed=7, epoch=2, drop_last=True, rank=1, world_size=2, reuse_memory=False)
    stream = loader.dataset
    assert isinstance(stream, ShardStream)
    assert stream.config == StreamConfig(batch_size=3, decode=False, transform=transform, batch_transform=None,
                                         collate=collate_samples, shuffle=False, shuffle_buffer=5, seed=7, rank=1,
                                         world_size=2, drop_last=True, num_workers=0, max_slots=4)
    assert stream.epoch == 2
    # the config's fields read as attributes of the stream, as its constructor arguments did
    assert (stream.batch_size, stream.seed, stream.rank, stream.world_size) == (3, 7, 1, 2)
    with pytest.raises(AttributeError, match="no attribute 'not_a_field'"):
        stream.not_a_field  # noqa: B018
    with pytest.raises(dataclasses.FrozenInstanceError):
        stream.config.batch_size = 4  # type: ignore[misc]


def test_a_stream_from_a_config_reads_like_make_loader_and_pickles(shards):
    loader = make_loader(shards, batch_size=4, decode=False, shuffle=False)
    stream = ShardStream([(p, c) for p, c in zip(loader.dataset.paths, loader.dataset.counts)],
                         StreamConfig(batch_size=4, decode=False, shuffle=False))
    expected = [batch["__key__"] for batch in loader]
    assert [batch["__key__"] for batch in stream] == expected == [["s0", "s1", "s2", "s3"], ["s4", "s5", "s6", "s7"],
                                                                  ["s8", "s9"]]
    copy = pickle.loads(pickle.dumps(stream))  # what a spawned worker receives
    assert copy.config == stream.config and [batch["__key__"] for batch in copy] == expected


def test_make_loader_keywords_are_unchanged():
    """The keywords make_loader had before the config existed, in order and with their defaults."""
    parameters = inspect.signature(make_loader).parameters
    before = {"shards": inspect.Parameter.empty, "batch_size": inspect.Parameter.empty, "decode": True,
              "transform": None, "batch_transform": None, "collate": collate_samples, "shuffle": True,
              "shuffle_buffer": 1000, "seed": 0, "epoch": 0, "num_workers": 0, "drop_last": False, "rank": None,
              "world_size": None, "reuse_memory": True}
    assert {name: parameters[name].default for name in list(parameters)[:len(before)]} == before
    assert all(parameters[name].kind is inspect.Parameter.KEYWORD_ONLY for name in list(before)[1:])
    assert parameters["loader_options"].kind is inspect.Parameter.VAR_KEYWORD

"""Hugging Face ``datasets`` interop: our shards as a ``datasets.Dataset``.

The other direction is the ``hf`` source adapter (:mod:`loaders.hf`): ``build_shards("hf",
root=folder_or_dataset, ...)``. Our shards also load with the generic builder,
``datasets.load_dataset("webdataset", data_files=[...tars])``, because they are plain
WebDataset tars; :func:`to_hf_dataset` is the safe path (our tar reader and codec checks, no
pickle handlers) with predictable column types.
Reference: https://huggingface.co/docs/datasets/create_dataset
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

from loaders import get_codec
from loaders.schema import KEY
from pipelines.loader import check_suffixes, resolve_shards
from pipelines.tario import iter_shard_samples

__all__ = ["hf_features", "to_hf_dataset"]


def hf_features(suffixes: Sequence[str]) -> Any:
    """``datasets.Features`` for a shard schema: images -> ``Image``, ``cls`` -> int64,
    ``json``/``txt`` -> string (the raw text), everything else -> binary."""
    import datasets

    features: dict[str, Any] = {KEY: datasets.Value("string")}
    for suffix in suffixes:
        field = get_codec(suffix).field
        if field in ("image", "mask") and get_codec(suffix).suffix != "dcm":
            features[suffix] = datasets.Image()
        elif field == "label":
            features[suffix] = datasets.Value("int64")
        elif get_codec(suffix).suffix in ("json", "txt", "text.json"):
            features[suffix] = datasets.Value("string")
        else:
            features[suffix] = datasets.Value("binary")
    return datasets.Features(features)


def _rows(paths: Sequence[str], suffixes: Sequence[str], fingerprint: tuple = (),
          counts: tuple[tuple[str, int], ...] = ()) -> Iterator[dict[str, Any]]:
    del fingerprint  # only part of the cache key: datasets reuses its cache when gen_kwargs match
    known = dict(counts)  # by path: datasets may split the paths list, never this tuple
    for path in paths:
        # count: a shard that changed since it was listed fails by name instead of losing rows
        for sample in iter_shard_samples(path, count=known.get(path)):
            check_suffixes(sample, path)
            row: dict[str, Any] = {KEY: sample[KEY]}
            for suffix in suffixes:
                data = sample.get(suffix)
                field = get_codec(suffix).field
                if data is None:
                    row[suffix] = None
                elif field in ("image", "mask") and get_codec(suffix).suffix != "dcm":
                    row[suffix] = {"bytes": data, "path": None}
                elif field == "label":
                    row[suffix] = get_codec(suffix).decode(data)
                elif get_codec(suffix).suffix in ("json", "txt", "text.json"):
                    row[suffix] = data.decode("utf-8")
                else:
                    row[suffix] = data
            yield row


def to_hf_dataset(shards: str | os.PathLike | Sequence[str | os.PathLike], *, cache_dir: str | os.PathLike | None = None) -> Any:
    """Load a shard set into a ``datasets.Dataset`` (one column per member suffix + ``__key__``).

    Args:
        shards: a shard folder, an ``index.json`` or ``.tar`` paths.
        cache_dir: where ``datasets`` writes its Arrow cache (its default cache otherwise).
    """
    import datasets

    listed = resolve_shards(shards)  # index.json names confined to the shard folder
    paths = [p for p, _ in listed]
    suffixes: set[str] = set()
    for path, count in listed:
        for sample in iter_shard_samples(path, read_data=False, count=count):
            suffixes.update(s for s in sample if s != KEY)
    ordered = sorted(suffixes)
    # datasets caches by generator arguments; tuples (not lists) so it does not shard them, and
    # size + mtime so a rebuilt shard at the same path is not served from a stale cache.
    stamp = tuple((p, os.stat(p).st_size, os.stat(p).st_mtime_ns) for p in paths)
    return datasets.Dataset.from_generator(
        _rows, gen_kwargs={"paths": paths, "suffixes": tuple(ordered), "fingerprint": stamp, "counts": tuple(listed)},
        features=hf_features(ordered),
        cache_dir=None if cache_dir is None else os.fspath(cache_dir),
    )

"""Trainer data: shard loaders (:func:`pipelines.make_loader`) and registered-adapter loaders for eval.

Exact resume needs every random draw of the data path to be a function of the run's seed, not
of which process or worker made it or of how many draws came before. So the per-sample
``transform`` runs with torch's (and numpy's and Python's) global generators seeded from
``(seed, epoch, sample key)`` and the ``batch_transform`` from ``(seed, epoch, batch keys)``
(:class:`SeededTransform`), and the ``DataLoader`` draws its worker base seed from its own
generator, never from the training process's. A resumed epoch then yields bit-identical batches,
with any number of workers.

Training batches: each of ``W`` DDP ranks reads ``cfg.batch_size // W`` samples per batch over
its share of the epoch (:mod:`pipelines.plan`: equal batch counts on every rank), shuffled by
``(seed, epoch)``, full batches only (``drop_last``).
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, get_worker_info

from loaders.schema import KEY
from pipelines.loader import ShardLoader, collate_samples, make_loader, read_index
from pipelines.train.config import TrainConfig

__all__ = [
    "SeededTransform",
    "adapter_loader",
    "check_fields",
    "eval_loader",
    "has_eval_data",
    "move_to",
    "require_fields",
    "shard_loader",
    "split_batch_size",
]

_SPLITS = ("train", "eval")


def derive_seed(*parts: Any) -> int:
    """A 63-bit seed from ``parts`` (numbers, strings, lists of strings), stable across processes."""
    text = "\x1f".join(str(p) for p in parts)
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little") & (2**63 - 1)


class SeededTransform:
    """Run ``fn`` with the global RNGs (torch, numpy, Python) seeded from ``(seed, epoch, keys of
    its input)``; afterwards torch's generator is put back, and so are numpy's and Python's in the
    main process (in a loader worker those belong to the loader alone, and saving numpy's state
    costs ~1 ms).

    The input is a sample (its ``__key__``) or a collated batch (its list of ``__key__``).
    Without keys the draws cannot be tied to the data and ``fn`` runs unseeded.
    """

    def __init__(self, fn: Callable[[Any], Any], seed: int, epoch: int) -> None:
        if not callable(fn):
            raise TypeError(f"transform must be callable, got {type(fn).__name__}")
        self.fn, self.seed, self.epoch = fn, seed, epoch

    def __call__(self, item: Any) -> Any:
        key = item.get(KEY) if isinstance(item, Mapping) else None
        if key is None:
            return self.fn(item)
        in_worker = get_worker_info() is not None
        saved = None if in_worker else (np.random.get_state(), random.getstate())
        with torch.random.fork_rng(devices=[]):
            seed = derive_seed(self.seed, self.epoch, key)
            torch.default_generator.manual_seed(seed)
            np.random.seed(seed % 2**32)
            random.seed(seed)
            try:
                return self.fn(item)
            finally:
                if saved is not None:
                    np.random.set_state(saved[0])
                    random.setstate(saved[1])

    def __repr__(self) -> str:
        return f"SeededTransform({self.fn!r}, seed={self.seed}, epoch={self.epoch})"


def split_batch_size(cfg: TrainConfig, world_size: int) -> int:
    """``cfg.batch_size // world_size``; raises ``ValueError`` unless it divides evenly."""
    if cfg.batch_size % world_size:
        raise ValueError(f"config key 'batch_size' ({cfg.batch_size}) must be divisible by the number of DDP "
                         f"processes ({world_size}): it is the global batch")
    return cfg.batch_size // world_size


def check_fields(shards: str, fields: Sequence[str], *, trainer: str = "", config_key: str = "shards") -> None:
    """Refuse a shard set whose ``index.json`` schema lacks one of ``fields`` (e.g. ``"mask"``),
    before any training: ``ValueError`` naming the field, the folder and the fields it has."""
    index = read_index(shards)
    schema = index.index.get("schema", {})
    mapping = schema.get("fields") if isinstance(schema, dict) else None
    if not isinstance(mapping, dict):
        return  # an index without field names: each sample is checked as it is read
    present = sorted({str(v) for v in mapping.values()})
    missing = [f for f in fields if f not in present]
    if missing:
        who = f"the {trainer} trainer" if trainer else "this trainer"
        raise ValueError(f"{config_key} {str(shards)!r}: the samples have no {', '.join(map(repr, missing))} field "
                         f"(they have {present}); {who} needs {list(fields)}")


def require_fields(sample: Mapping[str, Any], fields: Sequence[str]) -> None:
    """``ValueError`` naming the sample key and the first of ``fields`` it lacks."""
    for field in fields:
        if field not in sample:
            present = sorted(k for k in sample if not k.startswith("__"))
            raise ValueError(f"sample {sample.get(KEY)!r} has no {field!r} field (it has {present})")


def _loader_generator(cfg: TrainConfig, split: str, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(cfg.seed, split, epoch, "loader"))


def shard_loader(
    cfg: TrainConfig,
    split: str = "train",
    *,
    transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    batch_transform: Callable[[dict[str, Any]], Any] | None = None,
    rank: int | None = None,
    world_size: int | None = None,
    epoch: int = 0,
    decode: bool | str = True,
    fields: Sequence[str] = (),
    **options: Any,
) -> ShardLoader | DataLoader:
    """Batches of ``cfg.shards`` (``split="train"``) or of the eval data (``split="eval"``).

    Train: rank/world from the arguments, else ``torch.distributed``/``torchrun``'s environment;
    ``cfg.batch_size // world_size`` samples per batch, shuffled by ``(cfg.seed, epoch)``, full
    batches only. Eval: ``cfg.eval_shards`` whole on this process (rank 0 of 1), in order, every
    sample once; or, when ``cfg.eval_dataset`` is set, the registered adapter it names
    (:func:`adapter_loader`).

    Args:
        transform, batch_transform: per sample / per collated batch, seeded per key (see
            :class:`SeededTransform`).
        decode: as :func:`pipelines.make_loader` (``"RGB"`` converts every image to 3 channels).
        fields: fields every sample must have (checked against ``index.json`` first).
        **options: more :func:`pipelines.make_loader` options (``shuffle_buffer``, ``pin_memory``...).

    Raises:
        ValueError: an unknown split, no shard folder configured, a batch size the world size
            does not divide, shards without the required fields, or an epoch with no full batch.
    """
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {list(_SPLITS)}, got {split!r}")
    if split == "eval" and cfg.eval_dataset:
        return adapter_loader(cfg, transform=transform, batch_transform=batch_transform, fields=fields)
    key = "shards" if split == "train" else "eval_shards"
    shards = getattr(cfg, key)
    if not shards:
        raise ValueError(f"config key {key!r} is empty: give the {split} shard folder")
    if fields:
        check_fields(shards, fields, config_key=key)
    prepare = _Checked(fields, transform) if fields else transform
    seeded = SeededTransform(prepare, cfg.seed, epoch) if prepare is not None else None
    batch_seeded = SeededTransform(batch_transform, cfg.seed, epoch) if batch_transform is not None else None
    if split == "eval":
        settings: dict[str, Any] = {"rank": 0, "world_size": 1, "batch_size": cfg.batch_size, "shuffle": False,
                                    "drop_last": False}
    else:
        from pipelines.train.dist import rank_and_world

        rank, world_size = rank_and_world(rank, world_size)
        settings = {"rank": rank, "world_size": world_size, "batch_size": split_batch_size(cfg, world_size),
                    "shuffle": True, "drop_last": True}
    settings.update(options)
    loader = make_loader(shards, decode=decode, transform=seeded, batch_transform=batch_seeded, seed=cfg.seed,
                         epoch=epoch, num_workers=cfg.num_workers, generator=_loader_generator(cfg, split, epoch),
                         **settings)
    if split == "train" and len(loader) == 0:
        total = sum(loader.dataset.counts)
        raise ValueError(f"shards {str(shards)!r} hold {total} samples: not one full batch of {settings['batch_size']} "
                         f"per process (batch_size {cfg.batch_size}, {settings['world_size']} processes)")
    return loader


def adapter_loader(
    cfg: TrainConfig,
    name: str | None = None,
    *,
    root: str | None = None,
    split: str | None = None,
    options: Mapping[str, Any] | None = None,
    transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    batch_transform: Callable[[dict[str, Any]], Any] | None = None,
    batch_size: int | None = None,
    fields: Sequence[str] = (),
) -> DataLoader:
    """Eval batches straight from a registered dataset adapter (:func:`loaders.open_dataset`),
    in order, every sample once. Defaults come from ``cfg.eval_dataset``, ``eval_root``,
    ``eval_split`` and ``eval_options`` (a JSON object)."""
    from loaders import open_dataset

    name = name or cfg.eval_dataset
    if not name:
        raise ValueError("config key 'eval_dataset' is empty: name a registered dataset (see `datafactory datasets list`)")
    if options is None:
        options = json.loads(cfg.eval_options) if cfg.eval_options else {}

    seeded = SeededTransform(_Checked(fields, transform), cfg.seed, 0)
    dataset = open_dataset(name, (root or cfg.eval_root) or None, (split or cfg.eval_split) or None,
                           transform=seeded, **dict(options))
    collate = collate_samples if batch_transform is None else _Then(collate_samples, SeededTransform(batch_transform, cfg.seed, 0))
    return DataLoader(dataset, batch_size=batch_size or cfg.batch_size, shuffle=False, collate_fn=collate,
                      num_workers=cfg.num_workers, generator=_loader_generator(cfg, "eval", 0))


class _Checked:
    """Check the required fields of a sample, then apply ``fn`` (if any); picklable."""

    def __init__(self, fields: Sequence[str], fn: Callable[[dict[str, Any]], Any] | None) -> None:
        self.fields, self.fn = tuple(fields), fn

    def __call__(self, sample: dict[str, Any]) -> Any:
        require_fields(sample, self.fields)
        return self.fn(sample) if self.fn is not None else sample


class _Then:
    """``second(first(x))``; picklable for worker processes."""

    def __init__(self, first: Callable[[Any], Any], second: Callable[[Any], Any]) -> None:
        self.first, self.second = first, second

    def __call__(self, x: Any) -> Any:
        return self.second(self.first(x))


def has_eval_data(cfg: TrainConfig) -> bool:
    """Whether the config names eval data (``eval_shards`` or ``eval_dataset``)."""
    return bool(cfg.eval_shards or cfg.eval_dataset)


def eval_loader(cfg: TrainConfig, **kwargs: Any) -> ShardLoader | DataLoader | None:
    """``shard_loader(cfg, "eval", **kwargs)``, or ``None`` when no eval data is configured."""
    return shard_loader(cfg, "eval", **kwargs) if has_eval_data(cfg) else None


def move_to(batch: Any, device: torch.device | str, non_blocking: bool = True) -> Any:
    """``batch`` with every tensor (in dicts, lists and tuples) moved to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=non_blocking)
    if isinstance(batch, Mapping):
        return {k: move_to(v, device, non_blocking) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)) and any(isinstance(v, (torch.Tensor, Mapping, list, tuple)) for v in batch):
        return type(batch)(move_to(v, device, non_blocking) for v in batch)
    return batch

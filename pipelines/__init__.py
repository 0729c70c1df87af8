"""pipelines: resumable WebDataset shard builds (local or Ray), verification and streaming loaders.

Build, check and read a shard set::

    from pipelines import build_shards, make_loader, verify_shards

    build_shards("folder", "shards/", root="photos/", max_count=10_000, workers=8)
    verify_shards("shards/", raise_on_error=True)
    loader = make_loader("shards/", batch_size=64, num_workers=8, seed=0)  # a torch DataLoader
    for epoch in range(10):
        loader.set_epoch(epoch)
        for batch in loader: ...

``pipelines`` imports ``loaders`` (and may import ``augment``), never ``datafactory``.
"""

from pipelines.build import ENGINES, RAY_INSTALL_HINT, BuildReport, build_shards
from pipelines.hf import to_hf_dataset
from pipelines.loader import FieldTransform, ShardLoader, ShardStream, collate_samples, make_loader, resolve_shards
from pipelines.sources import CHECKS, Reencode, SourceSpec
from pipelines.tario import ShardError
from pipelines.verify import VerifyReport, inspect_shards, preview_shards, verify_shards

#: ``inspect`` / ``preview`` helper names from the issue (``inspect`` would shadow the stdlib module).
inspect = inspect_shards
preview = preview_shards

__all__ = [
    "BuildReport",
    "CHECKS",
    "ENGINES",
    "FieldTransform",
    "RAY_INSTALL_HINT",
    "Reencode",
    "ShardError",
    "ShardLoader",
    "ShardStream",
    "SourceSpec",
    "VerifyReport",
    "build_shards",
    "collate_samples",
    "inspect",
    "inspect_shards",
    "make_loader",
    "preview",
    "preview_shards",
    "resolve_shards",
    "to_hf_dataset",
    "verify_shards",
]

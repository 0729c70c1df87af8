"""A shard round trip on the embedded ``shapes`` data, for ``datafactory demo`` and tutorials."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pipelines.build import build_shards
from pipelines.loader import make_loader
from pipelines.verify import verify_shards

__all__ = ["demo_roundtrip"]


def demo_roundtrip(out_dir: str | os.PathLike, *, size: int = 256, max_count: int = 64, workers: int = 1,
                   batch_size: int = 32, seed: int = 0, progress: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """Build shards of ``shapes`` (split ``train``), verify them and read one epoch back.

    ``overwrite=True`` replaces a shard set built earlier in ``out_dir`` with other settings.

    Returns:
        ``{"out_dir", "shards", "written", "skipped", "verified", "batches", "samples_read",
        "image_batch_shape"}``. ``samples_read == written`` (one rank, no drop_last).
    """
    out = Path(out_dir)
    report = build_shards("shapes", out, split="train", options={"size": size}, max_count=max_count,
                          workers=workers, progress=progress, overwrite=overwrite)
    verified = verify_shards(out, raise_on_error=True)
    loader = make_loader(out, batch_size=batch_size, seed=seed, shuffle_buffer=max_count, decode="RGB")
    batches, seen, shape = 0, 0, None
    for batch in loader:
        batches += 1
        seen += len(batch["__key__"])
        shape = shape or tuple(batch["image"].shape)  # the first (full) batch
    return {"out_dir": str(out), "shards": len(report.index["shards"]), "written": report.written,
            "skipped": report.skipped, "verified": verified.ok, "batches": batches, "samples_read": seen,
            "image_batch_shape": shape}

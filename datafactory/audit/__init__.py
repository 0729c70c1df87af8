"""``datafactory.audit``: dataset diagnostics -- duplicates, statistics, the interpolation regime.

A researcher's first questions about a corpus: does the test split leak into training (exact
and near-duplicate images across splits, a known problem of CIFAR and ImageNet), are labels
balanced, what do the images look like, and does a test sample lie inside the training data at
all (Balestriero, Pesenti and LeCun, 2021)::

    from datafactory.audit import audit, interpolation_rate

    report = audit("shards/train", "shards/test", "audit-out")        # report.json + report.html
    report.data["near_duplicates"]["phash"]["across"]["pairs"]

    result = interpolation_rate(train_images, test_images, dims=[2, 4, 8, 16, 32, 64])
    result.rates, result.plot("interpolation.png")

Modules: :mod:`~datafactory.audit.hashing` (byte/pixel digests, DCT pHash),
:mod:`~datafactory.audit.neardup` (multi-index hashing), :mod:`~datafactory.audit.embed`
(optional torchvision embeddings), :mod:`~datafactory.audit.stats`,
:mod:`~datafactory.audit.hull` (LP membership), :mod:`~datafactory.audit.interpolation`,
:mod:`~datafactory.audit.sources`, :mod:`~datafactory.audit.scan`,
:mod:`~datafactory.audit.duplicates`, :mod:`~datafactory.audit.plots`,
:mod:`~datafactory.audit.report` and :mod:`~datafactory.audit.run` (the flow).
"""

from datafactory.audit.config import AuditConfig
from datafactory.audit.embed import Embedder
from datafactory.audit.hashing import bytes_digest, hamming, phash, pixel_digest
from datafactory.audit.hull import HullResult, hull_membership, in_hull
from datafactory.audit.interpolation import InterpolationResult, interpolation_rate
from datafactory.audit.neardup import MultiIndexHash, brute_force_pairs
from datafactory.audit.run import REPORT_FORMAT, AuditReport, audit

__all__ = [
    "AuditConfig",
    "AuditReport",
    "Embedder",
    "HullResult",
    "InterpolationResult",
    "MultiIndexHash",
    "REPORT_FORMAT",
    "audit",
    "brute_force_pairs",
    "bytes_digest",
    "hamming",
    "hull_membership",
    "in_hull",
    "interpolation_rate",
    "phash",
    "pixel_digest",
]

"""DatasetGAN generation straight into shards: images, majority-vote masks, uncertainty, provenance.

Zhang et al., "DatasetGAN: Efficient Labeled Data Factory with Minimal Human Effort", CVPR 2021,
arXiv:2104.06490, Sec. 3-4: sample latents, run the generator, label each pixel by the majority
vote of the interpreter ensemble, score each image by the mean of its top 10% pixel
Jensen-Shannon uncertainties, and drop the most uncertain images before training a downstream
segmentation network.

Dropping the most uncertain fraction needs every candidate's score before the first sample is
written, so :func:`generate_shards` works in two shard builds (:func:`pipelines.build_shards`,
each resumable, deterministic and runnable on Ray with ``engine="ray"``):

1. *scoring* (only when ``drop_fraction > 0``): :class:`ScoredCandidates`, one tiny JSON sample
   (seed, score) per candidate seed, into ``<out>/scores/``;
2. *generation*: :class:`GeneratedSamples` over the kept seeds into ``<out>/shards/``; sample
   ``i`` is made again from its seed: ``png`` (the image), ``mask.png`` (8-bit majority-vote
   labels), ``json`` (seed, latent, score, sha256 of the generator and interpreter checkpoints).

Both adapters hold only paths and seeds and load the checkpoints lazily, in the process that
uses them (a forked worker or a Ray task; loaded models are left out when pickled). Samples are
computed ``batch_size`` at a time in batches aligned at fixed positions, so the bytes do not
depend on the worker count, the engine or where a resumed build starts. ``<out>/generate.json``
records the configuration, the checkpoints and the counts (candidates = kept + dropped;
kept = written).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from loaders import Adapter, decode, encode
from loaders.schema import KEY
from pipelines import build_shards
from pipelines.engines import require_engine
from pipelines.manifest import read_index, read_json, write_json

__all__ = [
    "GENERATE_FORMAT",
    "GenerateConfig",
    "GenerateResult",
    "GeneratedSamples",
    "ScoredCandidates",
    "generate_shards",
    "label_batch",
    "read_scores",
]

GENERATE_FORMAT = "datafactory.gan.generate/1"
_SEED_MAX = 2**63 - 1


@dataclass(frozen=True)
class GenerateConfig:
    """What to generate and how.

    Attributes:
        count: candidate images (per-image seeds ``seed .. seed + count - 1``).
        seed: the first seed.
        drop_fraction: the fraction of candidates with the highest uncertainty score left out
            (``floor(drop_fraction * count)``), in ``[0, 1)``; 0 keeps all (no scoring pass).
        top_fraction: an image's score is the mean of its ``top_fraction`` most uncertain pixels
            (0.1 in the paper).
        batch_size: images generated and labelled per forward pass.
        max_count: samples per shard.
        workers, engine, ray_address: how the shard builds run (see :func:`pipelines.build_shards`).
        device: where the generator and interpreter run (default: CUDA when available, else CPU).

    ``count``, ``seed``, ``drop_fraction``, ``top_fraction``, ``batch_size`` and ``max_count``
    decide the output bytes and are recorded; a rerun with other values refuses the folder.
    """

    count: int
    seed: int = 0
    drop_fraction: float = 0.0
    top_fraction: float = 0.1
    batch_size: int = 16
    max_count: int = 1000
    workers: int = 1
    engine: str = "local"
    ray_address: str | None = None
    device: str | None = None

    def __post_init__(self) -> None:
        for name, low in (("count", 1), ("batch_size", 1), ("max_count", 1), ("workers", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed <= _SEED_MAX - self.count:
            raise ValueError(f"seed must be an int >= 0 with seed + count inside the signed 64-bit range, got {self.seed!r}")
        if isinstance(self.drop_fraction, bool) or not isinstance(self.drop_fraction, (int, float)) \
                or not 0.0 <= self.drop_fraction < 1.0:
            raise ValueError(f"drop_fraction must be a number in [0, 1), got {self.drop_fraction!r}")
        if isinstance(self.top_fraction, bool) or not isinstance(self.top_fraction, (int, float)) \
                or not 0.0 < self.top_fraction <= 1.0:
            raise ValueError(f"top_fraction must be a number in (0, 1], got {self.top_fraction!r}")
        if self.engine not in ("local", "ray"):
            raise ValueError(f"engine must be 'local' or 'ray', got {self.engine!r}")

    def record(self) -> dict[str, Any]:
        """The settings that decide the output bytes (recorded in ``generate.json``)."""
        return {k: v for k, v in asdict(self).items() if k in ("count", "seed", "drop_fraction", "top_fraction",
                                                                 "batch_size", "max_count")}


@dataclass(frozen=True)
class GenerateResult:
    """What :func:`generate_shards` did.

    Attributes:
        out_dir: the work folder; shards: ``out_dir/shards`` (the labelled set).
        candidates, dropped, written: ``candidates == dropped + written``.
        threshold: the largest kept score (``None`` without filtering).
        record: the ``generate.json`` content.
        seconds: wall time of this call; resumed_shards: shards kept from an earlier run.
    """

    out_dir: Path
    shards: Path
    candidates: int
    dropped: int
    written: int
    threshold: float | None
    record: dict[str, Any]
    seconds: float
    resumed_shards: int


# -- the models, loaded lazily where they are used ------------------------------------------------


def _default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _load_generator(spec: Any, device: str) -> Any:
    if isinstance(spec, (str, os.PathLike)):
        from datafactory.gan.generator import load_generator

        return load_generator(spec, device=device)
    if callable(getattr(spec, "synthesize", None)):
        return spec
    generator = spec()  # a zero-argument factory
    if not callable(getattr(generator, "synthesize", None)):
        raise TypeError(f"the generator factory returned {type(generator).__name__}, not a Generator")
    return generator


def _load_interpreter(spec: Any, device: str) -> Any:
    if isinstance(spec, (str, os.PathLike)):
        from datafactory.gan.interpreter import load_interpreter

        spec = load_interpreter(spec)
    if not callable(getattr(spec, "predict", None)):
        raise TypeError(f"interpreter must be a checkpoint path or an InterpreterEnsemble, got {type(spec).__name__}")
    return spec.to(device).eval()


def _check_generator_spec(spec: Any) -> None:
    if not (isinstance(spec, (str, os.PathLike)) or callable(getattr(spec, "synthesize", None)) or callable(spec)):
        raise TypeError("generator must be a checkpoint path, a Generator or a zero-argument factory of one, "
                        f"got {type(spec).__name__}")


def checkpoint_record(spec: Any, sha256: str | None = None) -> dict[str, Any]:
    """``{"checkpoint": file name or None, "sha256": hex or None}`` of a model given as a path."""
    if isinstance(spec, (str, os.PathLike)):
        from datafactory.gan.generator import checkpoint_sha256

        return {"checkpoint": Path(spec).name, "sha256": checkpoint_sha256(spec)}
    path = getattr(spec, "checkpoint", None)
    if sha256 is None and isinstance(path, (str, os.PathLike)):
        from datafactory.gan.generator import checkpoint_sha256

        return {"checkpoint": Path(path).name, "sha256": checkpoint_sha256(path)}
    return {"checkpoint": None, "sha256": sha256}


def label_batch(generator: Any, interpreter: Any, seeds: list[int], *, top_fraction: float = 0.1) -> dict[str, torch.Tensor]:
    """Generate and label the images of ``seeds``.

    Returns:
        ``{"images": uint8 (n, 3, R, R), "labels": int64 (n, R, R), "scores": float32 (n,),
        "latents": float32 (n, z_dim)}`` on the CPU.
    """
    from datafactory.gan.annotate import to_uint8
    from datafactory.gan.generator import latents_for_seeds
    from datafactory.gan.uncertainty import image_scores

    latents = latents_for_seeds(seeds, generator.z_dim)
    sample = generator.synthesize(latents, seeds)
    size = tuple(sample.images.shape[-2:])
    prediction = interpreter.predict(sample.features, size)
    scores = image_scores(prediction.uncertainty.float(), top_fraction)
    return {"images": to_uint8(sample.images), "labels": prediction.labels.cpu().to(torch.int64),
            "scores": scores.cpu().to(torch.float32), "latents": latents}


# -- the two adapters -------------------------------------------------------------------------------


class _GeneratedSource(Adapter):
    """Candidates ``seeds`` labelled ``batch_size`` at a time; models loaded on first use."""

    name: ClassVar[str] = "datasetgan"
    root = None
    split = None

    def __init__(self, generator: Any, interpreter: Any, seeds: list[int], *, batch_size: int = 16,
                 top_fraction: float = 0.1, device: str | None = None) -> None:
        super().__init__(decode=False)
        _check_generator_spec(generator)
        self.generator_spec, self.interpreter_spec = generator, interpreter
        self.seeds = [int(s) for s in seeds]
        self.batch_size, self.top_fraction = batch_size, top_fraction
        self.device = device or _default_device()
        self._models: tuple[Any, Any] | None = None
        self._cache: tuple[int, dict[str, torch.Tensor]] | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if isinstance(self.generator_spec, (str, os.PathLike)) and isinstance(self.interpreter_spec, (str, os.PathLike)):
            state["_models"] = None  # reloaded from the paths where the adapter lands
        state["_cache"] = None
        return state

    def models(self) -> tuple[Any, Any]:
        """The generator and interpreter (loaded on first call in each process)."""
        if self._models is None:
            self._models = (_load_generator(self.generator_spec, self.device),
                            _load_interpreter(self.interpreter_spec, self.device))
        return self._models

    def _build_index(self) -> list[dict[str, Any]]:
        return [{KEY: f"seed_{seed}", "position": i, "seed": seed} for i, seed in enumerate(self.seeds)]

    def _check_index(self, records: Any) -> None:
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError("seeds must not repeat")

    def batch(self, position: int) -> tuple[int, dict[str, torch.Tensor]]:
        """``(first position, results)`` of the aligned batch holding ``position``."""
        start = position - position % self.batch_size
        if self._cache is None or self._cache[0] != start:
            generator, interpreter = self.models()
            seeds = self.seeds[start:start + self.batch_size]
            self._cache = (start, label_batch(generator, interpreter, seeds, top_fraction=self.top_fraction))
        return self._cache


class ScoredCandidates(_GeneratedSource):
    """The scoring pass: one ``json`` member ``{"seed", "score"}`` per candidate seed."""

    def _load_encoded(self, record: Mapping[str, Any]) -> dict[str, bytes]:
        start, results = self.batch(record["position"])
        score = float(results["scores"][record["position"] - start])
        return {"json": encode("json", {"seed": record["seed"], "score": score})}


class GeneratedSamples(_GeneratedSource):
    """The labelled samples: ``png``, ``mask.png`` (majority vote) and ``json`` (provenance).

    Args:
        generator: a generator checkpoint path (loaded lazily), a Generator, or a zero-argument
            factory (picklable, for Ray) returning one.
        interpreter: an interpreter checkpoint path or an ``InterpreterEnsemble``.
        seeds: the per-image seeds, in output order.
        scores: the scores the filter ranked (``None``: computed here).
        provenance: recorded in every sample's JSON (checkpoint names and hashes).
        batch_size, top_fraction, device: as in :class:`GenerateConfig`.
    """

    def __init__(self, generator: Any, interpreter: Any, seeds: list[int], *, scores: list[float] | None = None,
                 provenance: Mapping[str, Any] | None = None, batch_size: int = 16, top_fraction: float = 0.1,
                 device: str | None = None) -> None:
        super().__init__(generator, interpreter, seeds, batch_size=batch_size, top_fraction=top_fraction, device=device)
        if scores is not None and len(scores) != len(self.seeds):
            raise ValueError(f"scores has {len(scores)} entries for {len(self.seeds)} seeds")
        self.scores = None if scores is None else [float(s) for s in scores]
        self.provenance = dict(provenance or {})

    def _load_encoded(self, record: Mapping[str, Any]) -> dict[str, bytes]:
        position = record["position"]
        start, results = self.batch(position)
        row = position - start
        score = self.scores[position] if self.scores is not None else float(results["scores"][row])
        meta = {"seed": record["seed"], "latent": [float(v) for v in results["latents"][row].tolist()],
                "score": score, **self.provenance}
        return {"png": encode("png", results["images"][row]), "mask.png": encode("mask.png", results["labels"][row]),
                "json": encode("json", meta)}


# -- the driver --------------------------------------------------------------------------------------


def read_scores(folder: str | os.PathLike) -> list[tuple[int, float]]:
    """``(seed, score)`` of every candidate of a finished scoring pass, in candidate order."""
    from pipelines.tario import iter_shard_samples

    shard_set = read_index(folder)
    out: list[tuple[int, float]] = []
    for shard in shard_set.shards:
        for sample in iter_shard_samples(shard.path, count=shard.entry.get("count")):
            meta = decode("json", sample["json"])
            out.append((int(meta["seed"]), float(meta["score"])))
    return out


def _prepare(out: Path, record: dict[str, Any], overwrite: bool) -> None:
    path = out / "generate.json"
    if os.path.lexists(path) and not overwrite:
        previous = read_json(path)
        same = isinstance(previous, dict) and all(previous.get(k) == record[k] for k in ("format", "generator",
                                                                                         "interpreter", "config"))
        if not same:
            raise ValueError(f"{str(out)!r} holds a generation with other checkpoints or settings "
                             f"({str(path)!r}); pass overwrite=True (--overwrite) or choose another folder")
    write_json(path, record)


def generate_shards(
    generator: Any,
    interpreter: Any,
    out_dir: str | os.PathLike,
    config: GenerateConfig,
    *,
    generator_sha256: str | None = None,
    overwrite: bool = False,
    progress: bool = False,
    on_event: Callable[[str, Mapping[str, Any]], None] | None = None,
) -> GenerateResult:
    """Generate ``config.count`` candidates, drop the most uncertain, write the rest as shards.

    Args:
        generator: a generator checkpoint path (``generator.pt`` + ``generator.json``), a
            Generator, or a picklable zero-argument factory of one (for Ray).
        interpreter: an interpreter checkpoint path (from ``save_interpreter``) or an ensemble.
        out_dir: the work folder: ``generate.json``, ``scores/`` (the scoring pass) and
            ``shards/`` (the output). A rerun with the same inputs resumes.
        config: a :class:`GenerateConfig`.
        generator_sha256: the checkpoint hash to record for a generator not given as a path.
        overwrite: start over in a folder holding another generation.
        progress: tqdm bars for both passes.
        on_event: passed to both :func:`pipelines.build_shards` calls.

    Returns:
        A :class:`GenerateResult` (counts also in ``generate.json``).

    Raises:
        RuntimeError: ``engine="ray"`` without Ray installed (the message says how to install it).
    """
    began = time.perf_counter()
    if not isinstance(config, GenerateConfig):
        raise TypeError(f"config must be a GenerateConfig, got {type(config).__name__}")
    _check_generator_spec(generator)
    require_engine(config.engine)  # before anything is written: Ray missing names the install command
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    record = {"format": GENERATE_FORMAT, "generator": checkpoint_record(generator, generator_sha256),
              "interpreter": checkpoint_record(interpreter), "config": config.record()}
    _prepare(out, record, overwrite)
    provenance = {"generator": record["generator"]["checkpoint"], "generator_sha256": record["generator"]["sha256"],
                  "interpreter": record["interpreter"]["checkpoint"],
                  "interpreter_sha256": record["interpreter"]["sha256"]}
    build = {"max_count": config.max_count, "workers": config.workers, "engine": config.engine,
             "ray_address": config.ray_address, "overwrite": overwrite, "progress": progress, "on_event": on_event}
    candidates = list(range(config.seed, config.seed + config.count))
    options = {"batch_size": config.batch_size, "top_fraction": config.top_fraction, "device": config.device}
    seeds, scores, threshold = candidates, None, None
    if config.drop_fraction > 0:
        from datafactory.gan.uncertainty import keep_least_uncertain

        build_shards(ScoredCandidates(generator, interpreter, candidates, **options), out / "scores", **build)
        scored = read_scores(out / "scores")
        if [seed for seed, _ in scored] != candidates:
            raise ValueError(f"{str(out / 'scores')!r} does not hold the scores of seeds {config.seed}.."
                             f"{config.seed + config.count - 1}; pass overwrite=True")
        keep = keep_least_uncertain(torch.tensor([s for _, s in scored], dtype=torch.float64), config.drop_fraction)
        kept = [pair for pair, flag in zip(scored, keep.tolist()) if flag]
        seeds, scores = [seed for seed, _ in kept], [score for _, score in kept]
        threshold = max(scores) if scores else None
    report = build_shards(GeneratedSamples(generator, interpreter, seeds, scores=scores, provenance=provenance, **options),
                          out / "shards", **build)
    dropped = len(candidates) - len(seeds)
    if report.written + report.skipped != len(seeds) or report.skipped:
        raise RuntimeError(f"generation wrote {report.written} of {len(seeds)} samples ({report.skipped} skipped)")
    record["counts"] = {"candidates": len(candidates), "dropped": dropped, "kept": len(seeds), "written": report.written}
    record["threshold"] = threshold
    write_json(out / "generate.json", record)
    return GenerateResult(out_dir=out, shards=out / "shards", candidates=len(candidates), dropped=dropped,
                          written=report.written, threshold=threshold, record=record,
                          seconds=time.perf_counter() - began, resumed_shards=report.resumed_shards)

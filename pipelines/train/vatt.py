"""The ``vatt`` trainer: self-supervised video-audio-text transformers on clip shards, with
DropToken, NCE + MIL-NCE and zero-shot retrieval evaluation (Akbari et al., "VATT: Transformers
for Multimodal Self-Supervised Learning from Raw Video, Audio and Text", NeurIPS 2021, arXiv
2104.11178).

Recipe (:class:`~pipelines.train.models.vatt_model.VATT`): voxel, waveform-segment and word
tokens, DropToken on the video and audio tokens in training (``drop_rate`` 0.5, one subset per
batch as VATT's code or one per clip), one transformer per modality or one shared (VATT-MA),
heads into a video-audio and a video-text space, and the loss
``nce_weight * NCE(video, audio) + mil_nce_weight * MIL-NCE(video, caption bag)`` at ``tau =
0.07`` (:mod:`pipelines.train.vatt_losses`). Clips without text (AudioSet) add no MIL-NCE term.
The data path is :class:`~pipelines.train.vatt_data.ClipTransform`; captions are hashed words
(:class:`~pipelines.train.text_tokens.HashTokenizer`).

Evaluation (:mod:`pipelines.train.vatt_eval`) on the eval clips: zero-shot text-to-video
retrieval (each clip's retrieval caption against every eval clip with text: ``t2v_r1/5/10``,
``t2v_median_rank``), video-to-audio and audio-to-video retrieval (``v2a_*``, ``a2v_*``), and a
linear probe on the frozen video and audio representations when the shards have labels.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from pipelines.train.config import TrainConfig
from pipelines.train.data import eval_loader, has_eval_data, shard_loader
from pipelines.train.dist import unwrap
from pipelines.train.models.vatt_model import VATT
from pipelines.train.task import Batch
from pipelines.train.text_tokens import HashTokenizer
from pipelines.train.vatt_data import PROBE_TARGETS, ClipTransform, normalize_video
from pipelines.train.vatt_eval import (
    chance_levels,
    collect_embeddings,
    probe_metrics,
    recall_at,
    retrieval_ranks,
    write_retrieval_listing,
)
from pipelines.train.vatt_losses import vatt_loss

__all__ = ["TASK", "VattConfig", "VattTask", "avshapes_shards", "build_vatt", "clip_transform", "droptoken_step_times",
           "probe_target", "small_scale_results", "tokenizer_of"]

_PROBES = ("auto", *PROBE_TARGETS)


@dataclass
class VattConfig(TrainConfig):
    """``vatt`` trainer options (the shared ones are :class:`~pipelines.train.config.TrainConfig`'s)."""

    num_frames: int = 8
    frame_size: int = 32
    patch_frames: int = 2
    patch_size: int = 8
    audio_samples: int = 15360
    audio_segment: int = 128
    sample_rate: int = 0
    vocab_size: int = 16384
    max_words: int = 16
    bag_size: int = 4
    hidden_dim: int = 96
    depth: int = 4
    num_heads: int = 4
    mlp_dim: int = 384
    shared_encoder: bool = False
    va_dim: int = 512
    vt_dim: int = 256
    head_bn: bool = True
    drop_path: float = 0.0
    drop_rate: float = 0.5
    drop_shared: bool = True
    temperature: float = 0.07
    nce_weight: float = 1.0
    mil_nce_weight: float = 1.0
    hflip: bool = False
    probe: str = "auto"
    num_classes: int = 0
    probe_max_samples: int = 4096
    probe_steps: int = 100
    probe_weight_decay: float = 1e-4

    HELP: ClassVar[Mapping[str, str]] = {
        "num_frames": "frames per clip (consecutive; random start in training, centred in eval)",
        "frame_size": "square frame side after resizing the shorter side and cropping",
        "patch_frames": "video voxel patch: frames (paper: 4)",
        "patch_size": "video voxel patch: pixels per side (paper: 16)",
        "audio_samples": "waveform samples per clip (mono), cut at the frames' start (paper: 3.2 s at 48 kHz)",
        "audio_segment": "samples per audio token (paper: 128)",
        "sample_rate": "> 0: refuse clips whose meta sample_rate differs (0 = accept any)",
        "vocab_size": "rows of the word-embedding table (words are hashed into it; 0 = padding)",
        "max_words": "word tokens per caption",
        "bag_size": "captions per clip for MIL-NCE (the bag's first ones)",
        "hidden_dim": "transformer width (all modalities)",
        "depth": "transformer blocks per encoder",
        "num_heads": "attention heads",
        "mlp_dim": "transformer MLP width",
        "shared_encoder": "one transformer for video, audio and text (VATT-MA)",
        "va_dim": "video-audio common space (paper: 512)",
        "vt_dim": "video-text common space (paper: 256)",
        "head_bn": "BatchNorm after the heads' linear layers",
        "drop_path": "stochastic depth of the last block",
        "drop_rate": "DropToken: fraction of video and audio tokens dropped in training (paper: 0.5)",
        "drop_shared": "DropToken: one kept subset per batch (VATT's code) instead of one per clip",
        "temperature": "tau of NCE and MIL-NCE (paper: 0.07)",
        "nce_weight": "weight of NCE(video, audio) (0 = off)",
        "mil_nce_weight": "lambda: weight of MIL-NCE(video, captions) (paper: 1; 0 = off)",
        "hflip": "random horizontal flip in training (turns 'moving left' into 'moving right')",
        "probe": "linear probe target: auto (label, else labels, when both shard sets have it) | " + " | ".join(PROBE_TARGETS),
        "num_classes": "probe classes for 'label' (0 = the largest label seen + 1)",
        "probe_max_samples": "training clips whose features fit the probe",
        "probe_steps": "L-BFGS iterations of the probe",
        "probe_weight_decay": "L2 penalty of the probe",
    }

    def validate(self) -> None:
        super().validate()
        for key in ("num_frames", "frame_size", "patch_frames", "patch_size", "audio_samples", "audio_segment",
                    "max_words", "bag_size", "hidden_dim", "depth", "num_heads", "mlp_dim", "va_dim", "vt_dim",
                    "probe_max_samples", "probe_steps"):
            if getattr(self, key) < 1:
                raise ValueError(f"config key {key!r} must be >= 1, got {getattr(self, key)!r}")
        for key in ("sample_rate", "num_classes"):
            if getattr(self, key) < 0:
                raise ValueError(f"config key {key!r} must be >= 0, got {getattr(self, key)!r}")
        if self.vocab_size < 2:
            raise ValueError(f"config key 'vocab_size' must be >= 2 (id 0 is padding), got {self.vocab_size!r}")
        for key, size, patch in (("num_frames", self.num_frames, self.patch_frames),
                                 ("frame_size", self.frame_size, self.patch_size),
                                 ("audio_samples", self.audio_samples, self.audio_segment)):
            if size % patch:
                raise ValueError(f"config key {key!r} ({size}) must be a multiple of its patch ({patch})")
        if self.hidden_dim % self.num_heads:
            raise ValueError(f"config key 'hidden_dim' ({self.hidden_dim}) must be divisible by 'num_heads' ({self.num_heads})")
        if not 0.0 <= self.drop_rate < 1.0:
            raise ValueError(f"config key 'drop_rate' must be in [0, 1), got {self.drop_rate!r}")
        if not 0.0 <= self.drop_path < 1.0:
            raise ValueError(f"config key 'drop_path' must be in [0, 1), got {self.drop_path!r}")
        if not (self.temperature > 0 and math.isfinite(self.temperature)):
            raise ValueError(f"config key 'temperature' must be a finite number > 0, got {self.temperature!r}")
        for key in ("nce_weight", "mil_nce_weight"):
            if not 0.0 <= getattr(self, key) < math.inf:
                raise ValueError(f"config key {key!r} must be a finite number >= 0, got {getattr(self, key)!r}")
        if self.nce_weight == 0 and self.mil_nce_weight == 0:
            raise ValueError("config keys 'nce_weight' and 'mil_nce_weight' are both 0: nothing to train")
        if self.probe not in _PROBES:
            raise ValueError(f"config key 'probe' must be one of {list(_PROBES)}, got {self.probe!r}")
        if not self.probe_weight_decay >= 0:
            raise ValueError(f"config key 'probe_weight_decay' must be >= 0, got {self.probe_weight_decay!r}")


def build_vatt(cfg: VattConfig) -> VATT:
    """The VATT model of ``cfg`` (random init)."""
    return VATT(frames=cfg.num_frames, size=cfg.frame_size, patch_frames=cfg.patch_frames, patch_size=cfg.patch_size,
                audio_samples=cfg.audio_samples, audio_segment=cfg.audio_segment, vocab_size=cfg.vocab_size,
                max_words=cfg.max_words, dim=cfg.hidden_dim, depth=cfg.depth, num_heads=cfg.num_heads,
                mlp_dim=cfg.mlp_dim, shared_encoder=cfg.shared_encoder, va_dim=cfg.va_dim, vt_dim=cfg.vt_dim,
                head_bn=cfg.head_bn, drop_rate=cfg.drop_rate, drop_shared=cfg.drop_shared, drop_path=cfg.drop_path)


def tokenizer_of(cfg: VattConfig) -> HashTokenizer:
    """The caption tokenizer of ``cfg``."""
    return HashTokenizer(cfg.vocab_size, cfg.max_words)


def _shard_fields(folder: str) -> set[str] | None:
    from pipelines.loader import read_index

    schema = read_index(folder).index.get("schema", {})
    mapping = schema.get("fields") if isinstance(schema, dict) else None
    return {str(v) for v in mapping.values()} if isinstance(mapping, dict) else None


def probe_target(cfg: VattConfig) -> str:
    """The probe target: ``cfg.probe``, or for ``auto`` ``label`` (else ``labels``) when the training
    and eval shards' ``index.json`` both list it, else ``none`` (also with ``eval_dataset``)."""
    if cfg.probe != "auto":
        return cfg.probe
    if not (cfg.shards and cfg.eval_shards) or cfg.eval_dataset:
        return "none"
    train, held_out = _shard_fields(cfg.shards), _shard_fields(cfg.eval_shards)
    for target in ("label", "labels"):
        if train and held_out and target in train and target in held_out:
            return target
    return "none"


def clip_transform(cfg: VattConfig, train: bool, probe: str = "none") -> ClipTransform:
    """The per-sample transform of ``cfg`` (training: random crops; evaluation: centred)."""
    return ClipTransform(cfg.num_frames, cfg.frame_size, cfg.audio_samples, tokenizer_of(cfg), cfg.bag_size,
                         train=train, hflip=cfg.hflip, sample_rate=cfg.sample_rate, probe=probe)


class VattTask:
    """The ``vatt`` :class:`~pipelines.train.task.Task`."""

    name = "vatt"
    config_class = VattConfig

    def build_model(self, cfg: VattConfig) -> nn.Module:
        return build_vatt(cfg)

    def train_loader(self, cfg: VattConfig, *, rank: int, world_size: int, epoch: int) -> Iterable[Batch]:
        return shard_loader(cfg, "train", transform=clip_transform(cfg, True), rank=rank, world_size=world_size,
                            epoch=epoch, fields=("video", "audio"))

    def eval_loader(self, cfg: VattConfig) -> Iterable[Batch] | None:
        if not has_eval_data(cfg):
            return None
        probe = probe_target(cfg)
        fields = ("video", "audio") if probe == "none" else ("video", "audio", probe)
        return eval_loader(cfg, transform=clip_transform(cfg, False, probe), fields=fields)

    def training_step(self, model: nn.Module, batch: Batch, cfg: VattConfig) -> tuple[torch.Tensor, dict[str, float]]:
        out = model(normalize_video(batch["video"]), batch["audio"].float(), batch["text_ids"], batch["text_mask"])
        loss, parts = vatt_loss(out, temperature=cfg.temperature, nce_weight=cfg.nce_weight,
                                mil_nce_weight=cfg.mil_nce_weight)
        return loss + out["unused"], parts

    def evaluate(self, model: nn.Module, loader: Iterable[Batch], cfg: VattConfig, out_dir: Path) -> dict[str, float]:
        vatt = unwrap(model)
        if not isinstance(vatt, VATT):
            raise TypeError(f"expected a VATT model, got {type(vatt).__name__}")
        device = next(vatt.parameters()).device
        probe = probe_target(cfg)
        found = collect_embeddings(vatt, loader, device, probe)
        if not found:
            return {}
        clips = len(found["video_va"])
        metrics: dict[str, float] = {"clips": float(clips), "text_clips": float(found["has_text"].sum())}
        metrics.update(recall_at(retrieval_ranks(found["video_va"], found["audio_va"]), "v2a"))
        metrics.update(recall_at(retrieval_ranks(found["audio_va"], found["video_va"]), "a2v"))
        if "text_vt" in found:
            ranks = retrieval_ranks(found["text_vt"], found["video_vt"][found["has_text"]])
            metrics.update(recall_at(ranks, "t2v"))
            Path(out_dir).mkdir(parents=True, exist_ok=True)
            write_retrieval_listing(found, ranks, Path(out_dir) / "retrieval.json")
        if probe != "none":
            probe_batches = shard_loader(cfg, "train", transform=clip_transform(cfg, False, probe), rank=0, world_size=1,
                                         epoch=0, fields=("video", "audio", probe), shuffle=False, drop_last=False)
            train = collect_embeddings(vatt, probe_batches, device, probe, limit=cfg.probe_max_samples)
            metrics.update(probe_metrics(probe, train, found, num_classes=cfg.num_classes, steps=cfg.probe_steps,
                                         weight_decay=cfg.probe_weight_decay))
        return metrics


TASK = VattTask()


def droptoken_step_times(cfg: VattConfig, rates: Iterable[float] = (0.0, 0.5), *, steps: int = 5,
                         device: str = "cpu", seed: int = 0) -> dict[float, dict[str, float]]:
    """Time a full training step (forward, loss, backward, AdamW step) of ``cfg``'s model at each
    DropToken rate, on one random batch of ``cfg.batch_size`` clips with full caption bags.

    The rates are timed in turn, ``steps`` rounds after one warm-up step each; each figure is the
    minimum over the rounds (the least disturbed by other load). Returns, per rate,
    ``{"seconds", "video_tokens", "audio_tokens"}`` (tokens the first video/audio block saw,
    aggregation token included).
    """
    torch.manual_seed(seed)
    model = build_vatt(cfg).to(device)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    b = cfg.batch_size
    batch = {
        "video": torch.randint(0, 256, (b, cfg.num_frames, 3, cfg.frame_size, cfg.frame_size), dtype=torch.uint8),
        "audio": torch.randn(b, cfg.audio_samples) * 0.1,
        "text_ids": torch.randint(1, cfg.vocab_size, (b, cfg.bag_size, cfg.max_words)),
        "text_mask": torch.ones(b, cfg.bag_size, dtype=torch.bool),
    }
    batch = {k: v.to(device) for k, v in batch.items()}
    seen: dict[str, int] = {}
    hooks = [model.encoder_of(m).blocks[0].register_forward_pre_hook(
        lambda module, args, m=m: seen.__setitem__(m, args[0].shape[1])) for m in ("video", "audio")]
    synchronize = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)

    def step(rate: float) -> tuple[float, int, int]:
        model.drop_token.rate = rate
        synchronize()
        start = time.perf_counter()
        out = model(normalize_video(batch["video"]), batch["audio"], batch["text_ids"], batch["text_mask"])
        loss, _ = vatt_loss(out, temperature=cfg.temperature)
        optimizer.zero_grad(set_to_none=True)
        (loss + out["unused"]).backward()
        optimizer.step()
        synchronize()
        video_tokens, audio_tokens = seen["video"], seen["audio"]
        return time.perf_counter() - start, video_tokens, audio_tokens

    rates = [float(r) for r in rates]
    for rate in rates:
        step(rate)
    times: dict[float, list[float]] = {r: [] for r in rates}
    tokens: dict[float, tuple[int, int]] = {}
    for _ in range(steps):
        for rate in rates:
            seconds, video_tokens, audio_tokens = step(rate)
            times[rate].append(seconds)
            tokens[rate] = (video_tokens, audio_tokens)
    for hook in hooks:
        hook.remove()
    return {r: {"seconds": min(times[r]), "video_tokens": float(tokens[r][0]), "audio_tokens": float(tokens[r][1])}
            for r in rates}


def avshapes_shards(folder: str | Path, *, seed: int, train_size: int, val_size: int,
                    options: Mapping[str, Any] | None = None) -> tuple[Path, Path]:
    """Shard sets of the ``avshapes`` demo clips (its ``train`` and ``val`` splits) under
    ``folder``; built once (a rerun with the same settings keeps them)."""
    from pipelines.build import build_shards

    options = dict(options or {})
    tag = "-".join(f"{k}{v}" for k, v in sorted(options.items()))
    out = []
    for split, size in (("train", train_size), ("val", val_size)):
        target = Path(folder) / (f"avshapes-{split}-{size}-seed{seed}" + (f"-{tag}" if tag else ""))
        build_shards("avshapes", target, split=split, options={"size": size, "seed": seed, **options},
                     max_count=256)
        out.append(target)
    return out[0], out[1]


def small_scale_results(workdir: str | Path, seed: int) -> list[dict[str, Any]]:
    """VATT on the ``avshapes`` demo clips at DropToken 0, 50 and 75%: zero-shot text-to-video
    and video-to-audio retrieval (R@1, R@5, median rank, next to chance) on the validation clips,
    the linear probe of the main object's shape, and the training step time of each setting; and
    the same evaluation of an untrained model (``random-init``).

    Clips (the adapter's defaults except length and audio rate): 8 frames of 32 px at 8 fps (1 s),
    8 kHz mono audio, 1 or 2 objects, caption bags of 4. Model: 2 x 4 x 4 = 64 video tokens,
    7,680 samples in 60 audio tokens, width 96, 2 blocks per modality, heads 256 / 128, the
    paper's tau 0.07 and weights 1, 1; 1,000 training and 200 validation clips, 8 epochs of batch
    32 (248 steps), AdamW lr 1e-3 with 20 warm-up steps and cosine decay.

    ``step_s`` is a separate measurement (:func:`droptoken_step_times`: one training step on a
    batch of random clips of the same shapes, best of 5), as the run's wall time is mostly
    decoding. Sizes fit a few minutes per setting on two CPU cores; nothing is tuned towards an
    outcome.
    """
    from pipelines.train.config import load_config
    from pipelines.train.loop import fit

    work = Path(workdir)
    train_size, val_size = 1000, 200
    train, val = avshapes_shards(work / "data", seed=seed, train_size=train_size, val_size=val_size,
                                 options={"sample_rate": 8000, "num_frames": 8})
    common = [f"shards={train}", f"eval_shards={val}", f"seed={seed}", "num_frames=8", "frame_size=32",
              "patch_frames=2", "patch_size=8", "audio_samples=7680", "audio_segment=128", "sample_rate=8000",
              "vocab_size=4096", "hidden_dim=96", "depth=2", "num_heads=4", "mlp_dim=192", "va_dim=256", "vt_dim=128",
              "batch_size=32", "epochs=8", "eval_every=8", "lr=1e-3", "warmup_steps=20", "progress=false",
              "log_every=31"]
    rows = []
    for rate in (0.0, 0.5, 0.75):
        name = f"droptoken-{round(rate * 100)}%"
        cfg = load_config(VattConfig, overrides=[*common, f"drop_rate={rate}", f"out={work / 'runs' / name[:-1]}"])
        started = time.perf_counter()
        result = fit(TASK, cfg)
        seconds = round(time.perf_counter() - started, 1)
        step = droptoken_step_times(cfg, (rate,), steps=5, seed=seed)[rate]
        final = result.final
        losses = [r["loss"] for r in result.metrics if r["kind"] == "train"]
        t2v_chance = chance_levels(int(final.get("text_clips", 1)))
        va_chance = chance_levels(int(final.get("clips", 1)))
        rows.append({
            "trainer": "vatt", "setting": name, "seed": seed, "train_samples": train_size, "eval_samples": val_size,
            "epochs": cfg.epochs, "steps": result.steps,
            "t2v_r1": final.get("t2v_r1"), "t2v_r5": final.get("t2v_r5"), "t2v_median_rank": final.get("t2v_median_rank"),
            "chance_r1": t2v_chance["chance_r1"], "chance_r5": t2v_chance["chance_r5"],
            "chance_median_rank": t2v_chance["chance_median_rank"],
            "v2a_r1": final.get("v2a_r1"), "v2a_r5": final.get("v2a_r5"), "v2a_median_rank": final.get("v2a_median_rank"),
            "va_chance_r1": va_chance["chance_r1"], "step_s": round(step["seconds"], 4),
            "video_tokens": step["video_tokens"], "audio_tokens": step["audio_tokens"], "seconds": seconds,
            "video_probe_top1": final.get("video_probe_top1"), "audio_probe_top1": final.get("audio_probe_top1"),
            "train_loss_first": losses[0], "train_loss_last": losses[-1],
        })
    rows.append(_random_init_row(work, common, seed, train_size, val_size))
    return rows


def _random_init_row(work: Path, common: list[str], seed: int, train_size: int, val_size: int) -> dict[str, Any]:
    """The same evaluation on an untrained model: the probes' and retrieval's floor."""
    from pipelines.train.config import load_config
    from pipelines.train.dist import resolve_device
    from pipelines.train.loop import evaluate_model

    cfg = load_config(VattConfig, overrides=[*common, f"out={work / 'runs' / 'random-init'}"])
    torch.manual_seed(seed)
    model = TASK.build_model(cfg)
    device = resolve_device(cfg.device)
    final = evaluate_model(TASK, model.to(device), cfg, work / "runs" / "random-init", device)
    return {"trainer": "vatt", "setting": "random-init", "seed": seed, "train_samples": train_size,
            "eval_samples": val_size, "epochs": 0, "steps": 0, "t2v_r1": final.get("t2v_r1"), "t2v_r5": final.get("t2v_r5"),
            "t2v_median_rank": final.get("t2v_median_rank"), "v2a_r1": final.get("v2a_r1"), "v2a_r5": final.get("v2a_r5"),
            "v2a_median_rank": final.get("v2a_median_rank"), "video_probe_top1": final.get("video_probe_top1"),
            "audio_probe_top1": final.get("audio_probe_top1")}

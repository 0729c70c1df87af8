"""The training loop every trainer shares: :func:`fit` and :func:`evaluate_run`.

``fit(task, cfg)`` seeds everything from ``cfg.seed``, joins the ``torchrun`` process group when
launched by it, builds the model, optimizer, schedule, loss scaler and EMA, resumes from
``out/ckpt.pt`` when present, trains with a progress bar, logs to ``out/metrics.jsonl``, plots
``out/metrics.png`` and evaluates (raw and EMA weights) at the end of each ``eval_every``-th epoch
and of training, and checkpoints every ``checkpoint_every`` steps and at each epoch's end.

**Exact resume.** A checkpoint holds everything the rest of the run depends on: weights,
optimizer, schedule, loss scaler and EMA states, each rank's RNG states and loader position
(batches yielded in the epoch), the metric window being averaged and the length of
``metrics.jsonl``. Data randomness is tied to sample keys (:mod:`pipelines.train.data`) and
evaluation runs under a forked RNG, so a run interrupted at step ``k`` and resumed equals the
uninterrupted run bit for bit on the CPU (weights, EMA, metrics file).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from pipelines.train import dist
from pipelines.train.checkpoint import capture_rng, load_checkpoint, restore_rng, save_checkpoint, seed_everything
from pipelines.train.config import TrainConfig, config_from_dict, config_to_dict, parse_override, save_config
from pipelines.train.data import move_to
from pipelines.train.ema import ModelEMA
from pipelines.train.logging import MetricsLog, plot_metrics, progress_bar
from pipelines.train.optim import build_optimizer, build_scheduler
from pipelines.train.precision import autocast, check_precision, grad_scaler
from pipelines.train.task import Task

__all__ = ["CHECKPOINT_FORMAT", "RESUMABLE_CHANGES", "RunResult", "evaluate_model", "evaluate_run", "fit"]

CHECKPOINT_FORMAT = 1
#: config keys a resumed run may change (they do not change what is computed)
RESUMABLE_CHANGES = frozenset({"out", "progress", "log_every", "eval_every", "checkpoint_every", "eval_shards",
                               "eval_dataset", "eval_root", "eval_split", "eval_options", "device"})


@dataclass
class RunResult:
    """What :func:`fit` did.

    Attributes:
        out: the run folder. steps: optimizer steps taken in total (including before a resume).
        metrics: the rows of ``metrics.jsonl``. final: the last evaluation's metrics ({} if none).
        interrupted: ``fit`` stopped at ``interrupt_after`` (the run can be resumed).
    """

    out: Path
    steps: int
    metrics: list[dict[str, Any]]
    final: dict[str, float]
    interrupted: bool = False


@dataclass
class _Window:
    """Sums of the training numbers since the last metrics line."""

    count: int = 0
    loss: torch.Tensor | None = None
    extras: dict[str, float] = field(default_factory=dict)

    def add(self, loss: torch.Tensor, extras: dict[str, float]) -> None:
        self.count += 1
        value = loss.detach().float()
        self.loss = value if self.loss is None else self.loss + value
        for key, number in extras.items():
            self.extras[key] = self.extras.get(key, 0.0) + float(number)

    def means(self) -> dict[str, float]:
        out = {"loss": float(self.loss) / self.count} if self.loss is not None else {}
        out.update({k: v / self.count for k, v in self.extras.items()})
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"count": self.count, "loss": None if self.loss is None else self.loss.cpu(), "extras": dict(self.extras)}

    @classmethod
    def from_state(cls, state: dict[str, Any], device: torch.device) -> _Window:
        loss = state.get("loss")
        return cls(int(state["count"]), None if loss is None else loss.to(device), dict(state["extras"]))


def _check_task(task: Any) -> None:
    if not isinstance(task, Task):
        raise TypeError(f"task must implement pipelines.train.task.Task, got {type(task).__name__}")


_RUN_KEYS = ("config", "model", "optimizer", "scheduler", "scaler", "ema", "rng", "progress", "window")


def _read_run_checkpoint(path: Path, keys: tuple[str, ...] = _RUN_KEYS) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(checkpoint, stored config values)``; ``ValueError`` naming what a foreign or damaged file lacks."""
    state = load_checkpoint(path)
    missing = [k for k in keys if k not in state]
    if missing:
        raise ValueError(f"checkpoint {str(path)!r} is not a pipelines.train checkpoint: it has no {missing}")
    try:
        stored = json.loads(state["config"])
    except (TypeError, json.JSONDecodeError):
        stored = None
    if not isinstance(stored, dict):
        raise ValueError(f"checkpoint {str(path)!r}: 'config' must be a JSON object string")
    return state, stored


def _config_differences(cfg: TrainConfig, stored: dict[str, Any]) -> list[str]:
    mine = config_to_dict(cfg)
    return sorted(k for k in set(mine) | set(stored) if k not in RESUMABLE_CHANGES and mine.get(k) != stored.get(k))


@torch.no_grad()
def evaluate_model(task: Task, model: torch.nn.Module, cfg: TrainConfig, out_dir: Path, device: torch.device,
                   ema: ModelEMA | None = None) -> dict[str, float]:
    """``task.evaluate`` on the raw weights (and the EMA's, prefixed ``ema_``), in eval mode, under
    a forked RNG (evaluation never shifts the training's random stream)."""
    metrics: dict[str, float] = {}
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        raw = dist.unwrap(model)
        was_training = raw.training
        raw.eval()
        try:
            for prefix, module, folder in (("", raw, "eval"), ("ema_", None if ema is None else ema.module, "eval_ema")):
                if module is None:
                    continue
                loader = task.eval_loader(cfg)
                if loader is None:
                    break
                (out_dir / folder).mkdir(parents=True, exist_ok=True)
                with autocast(cfg, device):
                    found = task.evaluate(module, loader, cfg, out_dir / folder)
                metrics.update({f"{prefix}{k}": float(v) for k, v in found.items()})
        finally:
            raw.train(was_training)
    return metrics


def fit(task: Task, cfg: TrainConfig, *, interrupt_after: int | None = None) -> RunResult:
    """Train ``task`` with ``cfg`` into the run folder ``cfg.out`` (resuming from its ``ckpt.pt``).

    Args:
        task: a :class:`~pipelines.train.task.Task`.
        cfg: its config (``task.config_class``), from :func:`~pipelines.train.config.load_config`.
        interrupt_after: stop right after checkpointing at this step, as a preempted job would
            (the run resumes from there when ``fit`` is called again).

    Raises:
        ValueError: no ``out``/``shards``, an ``amp``/``compile`` setting this device cannot run,
            or a run folder holding a checkpoint of a different config (the keys are named).
    """
    _check_task(task)
    if not isinstance(cfg, task.config_class):
        raise TypeError(f"cfg must be a {task.config_class.__name__} (the {task.name} trainer's config), got {type(cfg).__name__}")
    if not cfg.out:
        raise ValueError("config key 'out' is empty: give the run folder")
    if not cfg.shards:
        raise ValueError("config key 'shards' is empty: give the training shard folder")
    ctx = dist.setup(cfg.device)
    try:
        return _Run(task, cfg, ctx).train(interrupt_after)
    finally:
        dist.teardown(ctx)


class _Run:
    """The state of one :func:`fit` call (a thin holder; the steps are its methods)."""

    def __init__(self, task: Task, cfg: TrainConfig, ctx: dist.DistContext) -> None:
        self.task, self.cfg, self.ctx, self.device = task, cfg, ctx, ctx.device
        self.main = ctx.rank == 0
        check_precision(cfg, self.device)
        self.out = Path(cfg.out)
        if self.main:
            self.out.mkdir(parents=True, exist_ok=True)
        dist.barrier()
        self.log = MetricsLog(self.out / "metrics.jsonl")
        seed_everything(cfg.seed)
        model = task.build_model(cfg).to(self.device)
        if ctx.world_size > 1 and self.device.type == "cuda" and cfg.sync_bn:
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.model = model
        self.ema = ModelEMA(model, cfg.ema_decay) if cfg.ema_decay > 0 else None
        self.optimizer = build_optimizer(model, cfg)
        self.first_loader = task.train_loader(cfg, rank=ctx.rank, world_size=ctx.world_size, epoch=0)
        self.steps_per_epoch = len(self.first_loader)
        self.total_steps = cfg.max_steps if cfg.max_steps > 0 else cfg.epochs * self.steps_per_epoch
        self.scheduler = build_scheduler(self.optimizer, cfg, self.total_steps)
        self.scaler = grad_scaler(cfg, self.device)
        self.epoch, self.step, self.loader_state = 0, 0, None
        self.window = _Window()
        self.lr = cfg.lr
        self.final: dict[str, float] = {}
        self._resume_or_start()

    # -- checkpoints -------------------------------------------------------------------------

    def _resume_or_start(self) -> None:
        path = self.out / "ckpt.pt"
        if not path.exists():
            if self.main:
                save_config(self.cfg, self.out)
                self.log.truncate_after(0)  # lines of an earlier attempt that never checkpointed
            dist.barrier()
            return
        state, stored = _read_run_checkpoint(path)
        differ = _config_differences(self.cfg, stored)
        if differ:
            shown = ", ".join(f"{k}: stored {stored.get(k)!r}, given {getattr(self.cfg, k, None)!r}" for k in differ)
            raise ValueError(f"run folder {str(self.out)!r} holds a checkpoint of another config ({shown}); resume with "
                             "the stored values or train into a new out folder")
        progress = state["progress"]
        if progress["world_size"] != self.ctx.world_size:
            raise ValueError(f"checkpoint {str(path)!r} was taken with {progress['world_size']} processes, this run "
                             f"has {self.ctx.world_size}: resume with the same number")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self.epoch, self.step = int(progress["epoch"]), int(progress["step"])
        loaders = progress["loader"]
        self.loader_state = None if loaders is None else loaders[self.ctx.rank]
        self.window = _Window.from_state(state["window"], self.device)
        self.final = {k: float(v) for k, v in state.get("final", {}).items()}
        if self.main:
            self._keep_lines(int(progress["metrics_lines"]))
        dist.barrier()
        restore_rng(state["rng"][self.ctx.rank])  # last: nothing above draws random numbers after it

    def _keep_lines(self, count: int) -> None:
        rows = self.log.rows()
        if len(rows) != count:
            from pipelines.train.files import write_bytes_atomic

            text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows[:count])
            write_bytes_atomic(self.log.path, text.encode("utf-8"))

    def _save(self, loader: Any | None) -> None:
        """Checkpoint (``loader``: the current epoch's loader when mid-epoch, else ``None``)."""
        rng = dist.all_gather_json(capture_rng(), self.device)
        loaders = None if loader is None else dist.all_gather_json(loader.state_dict(), self.device)
        if self.main:
            state = {
                "format": CHECKPOINT_FORMAT,
                "trainer": self.task.name,
                "config": json.dumps(config_to_dict(self.cfg), sort_keys=True),
                "model": dist.unwrap(self.model).state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(),
                "ema": None if self.ema is None else self.ema.state_dict(),
                "rng": rng,
                "progress": {"epoch": self.epoch, "step": self.step, "loader": loaders, "world_size": self.ctx.world_size,
                             "metrics_lines": len(self.log.rows())},
                "window": self.window.state_dict(),
                "final": dict(self.final),
            }
            save_checkpoint(self.out / "ckpt.pt", state)
        dist.barrier()

    # -- training ----------------------------------------------------------------------------

    def _wrapped(self) -> torch.nn.Module:
        model: torch.nn.Module = self.model
        if self.ctx.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel

            model = DistributedDataParallel(model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if self.cfg.compile:
            model = torch.compile(model)
        return model

    def _log_train(self) -> None:
        means = dist.all_reduce_mean(self.window.means(), self.device)
        if not all(v == v and abs(v) != float("inf") for v in means.values()):
            raise FloatingPointError(f"non-finite training metrics at step {self.step}: {means}")
        if self.main:
            self.log.append({"kind": "train", "epoch": self.epoch, "step": self.step,
                             "lr": self.lr, **means})
        self.window = _Window()

    def _evaluate(self, epoch: int) -> None:
        if self.main:
            metrics = evaluate_model(self.task, self.model, self.cfg, self.out, self.device, self.ema)
            if metrics:
                self.final = metrics
                self.log.append({"kind": "eval", "epoch": epoch, "step": self.step, **metrics})
        dist.barrier()

    def _train_step(self, model: torch.nn.Module, batch: Any) -> None:
        cfg = self.cfg
        with autocast(cfg, self.device):
            loss, extras = self.task.training_step(model, move_to(batch, self.device), cfg)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if cfg.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.lr = self.optimizer.param_groups[0]["lr"]  # the rate this step used
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.model)
        self.step += 1
        self.window.add(loss, extras)

    def train(self, interrupt_after: int | None) -> RunResult:
        cfg, task = self.cfg, self.task
        model = self._wrapped()
        model.train()
        while self.step < self.total_steps:
            loader: Iterable[Any] = self.first_loader if self.epoch == 0 else task.train_loader(
                cfg, rank=self.ctx.rank, world_size=self.ctx.world_size, epoch=self.epoch)
            self.first_loader = None
            if self.loader_state is not None:
                loader.load_state_dict(self.loader_state)
                self.loader_state = None
            done = loader.state_dict()["batches"] if hasattr(loader, "state_dict") else 0
            bar = progress_bar(len(loader), initial=done, desc=f"{task.name} epoch {self.epoch}",
                               enabled=self.main and cfg.progress)
            started, seen = time.perf_counter(), 0
            try:
                for batch in loader:
                    self._train_step(model, batch)
                    seen += 1
                    bar.update(1)
                    if self.step % cfg.log_every == 0:
                        self._log_train()
                        bar.set_postfix(step=self.step, steps_per_s=f"{seen / (time.perf_counter() - started):.2f}")
                    interrupt = self.step == interrupt_after and self.step < self.total_steps
                    if (cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0) or interrupt:
                        self._save(loader)
                    if interrupt:
                        return self._result(interrupted=True)
                    if self.step >= self.total_steps:
                        break
            finally:
                bar.close()
            epoch_done = loader.state_dict()["batches"] >= len(loader) if hasattr(loader, "state_dict") else True
            last = self.step >= self.total_steps
            if not (epoch_done or last):
                continue
            if last and self.window.count:
                self._log_train()
            finished = self.epoch
            if epoch_done:
                self.epoch += 1
            if last or (epoch_done and self.epoch % cfg.eval_every == 0):
                self._evaluate(finished)
            self._save(None if epoch_done else loader)
            if self.main:
                plot_metrics(self.log.rows(), self.out / "metrics.png")
        return self._result()

    def _result(self, interrupted: bool = False) -> RunResult:
        rows = self.log.rows() if self.main else []
        return RunResult(self.out, self.step, rows, dict(self.final), interrupted)


def evaluate_run(task: Task, checkpoint: str | Path, overrides: Iterable[str] = ()) -> dict[str, float]:
    """Evaluate a checkpoint: its stored config with ``overrides`` (``key=value`` strings, e.g.
    ``eval_shards=DIR``) applied, its raw weights and, when it has one, its EMA (``ema_`` metrics).

    Outputs (prediction PNGs, ``metrics.json``) go to ``<checkpoint folder>/eval`` (or
    ``<out>/eval`` when ``out`` is overridden).
    """
    _check_task(task)
    if isinstance(overrides, str):
        raise TypeError("overrides must be a list of 'key=value' strings, not one string")
    path = Path(checkpoint)
    state, values = _read_run_checkpoint(path, ("config", "model"))
    if state.get("trainer") not in (None, task.name):
        raise ValueError(f"checkpoint {str(path)!r} is from the {state['trainer']!r} trainer, not {task.name!r}")
    changed = dict(parse_override(task.config_class, text) for text in overrides)
    values.update(changed)
    cfg = config_from_dict(task.config_class, values)
    device = dist.resolve_device(cfg.device)
    check_precision(cfg, device, compile_model=False)
    with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
        seed_everything(cfg.seed)
        model = task.build_model(cfg)
    model.load_state_dict(state["model"])
    model.to(device)
    ema = None
    if state.get("ema") is not None:
        ema = ModelEMA(model, float(state["ema"]["decay"]))
        ema.load_state_dict(state["ema"])
    if not (cfg.eval_shards or cfg.eval_dataset):
        raise ValueError("no eval data: set eval_shards=DIR (or eval_dataset=NAME)")
    out = Path(cfg.out) if "out" in changed else path.parent
    metrics = evaluate_model(task, model, cfg, out, device, ema)
    from pipelines.train.files import write_bytes_atomic

    (out / "eval").mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(out / "eval" / "metrics.json", (json.dumps(metrics, indent=1, sort_keys=True) + "\n").encode())
    return metrics

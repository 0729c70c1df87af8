"""The DatasetGAN style interpreter: an ensemble of MLP pixel classifiers over generator features.

Zhang et al., "DatasetGAN: Efficient Labeled Data Factory with Minimal Human Effort", CVPR 2021,
arXiv:2104.06490. Every pixel of a generated image is described by all the
generator's feature maps, upsampled to the output size (bilinear, ``align_corners=False``) and
concatenated (``D = sum_l C_l`` values). An ensemble of ``E`` MLPs (paper: 10) maps that vector
to ``C`` part classes: ``D -> 128 -> 32 -> C`` (``D -> 256 -> 128 -> C`` for ``C >= 32``), each
hidden linear followed by ReLU and BatchNorm1d, trained with cross-entropy and Adam (lr 1e-3) on
batches of 64 annotated pixels, with early stopping. Each member starts from its own seed.

Memory -- the reason this module exists in this form. The official code materialises the
``K x H x W x D`` pixel features of the ``K`` annotated images (16 faces at 512 px: 85 GB in
float32; its README asks for 160 GB of RAM) and a ``D x H x W`` tensor per generated image.
Here nothing of that size is ever built (see :mod:`datafactory.gan.pixelfeatures`):

* inference (:meth:`InterpreterEnsemble.forward`) splits the first layer by feature level, applies
  each part at the level's native resolution and upsamples the ``hidden[0]``-channel results: the
  same function (bilinear upsampling and the linear map commute), peak memory per member
  ``n * max(hidden[0], C) * H * W`` plus the native features;
* training (:func:`fit_interpreter`) keeps the annotated images' native feature maps once (a
  channels-last copy: ``K * sum_l C_l * h_l * w_l`` values) and gathers each batch's upsampled
  pixel features by bilinear interpolation at the pixel centres: ``O(batch * D)`` per step and
  ``O(chunk * D)`` for validation, never ``O(K * H * W * D)``.

BatchNorm: in eval mode it is a per-channel affine map and is applied after the summed first
layer; in train mode the factorised forward normalises over all ``n * H * W`` pixels, exactly as
the per-pixel MLP would over that batch (training itself uses the pixel-batch path).

Seeds: member ``m`` draws its initial weights from ``SeedSequence([seed, m, 0])`` and its
held-out split and batch order from ``SeedSequence([seed, m, 1])`` (numpy's seed mixing), so
members differ, runs repeat, and the global torch RNG is neither used nor reseeded.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from datafactory.gan.pixelfeatures import (PixelFeatureBank, check_levels, check_size, factorised_first_layer,
                                           upsample_concat)
from datafactory.gan.pixeltrain import MemberHistory, check_annotations, train_member
from datafactory.gan.uncertainty import image_scores, js_uncertainty, majority_vote

__all__ = ["EnsemblePrediction", "InterpreterConfig", "InterpreterEnsemble", "MemberHistory", "fit_interpreter",
           "load_interpreter", "save_interpreter"]

_FORMAT = "datafactory.gan.interpreter"
_VERSION = 1
_PREDICT_BUDGET = 2**25  # values of the largest per-member activation in one predict chunk (128 MB float32)


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


@dataclass(frozen=True)
class InterpreterConfig:
    """Interpreter ensemble and its training (defaults: the paper's recipe).

    Args:
        num_classes: part classes ``C`` (>= 2); mask values are ``0 .. C-1``.
        ensemble_size: members ``E`` (paper: 10).
        hidden: hidden widths; None -> ``(128, 32)``, or ``(256, 128)`` when ``num_classes >= 32``.
        lr: Adam learning rate.
        batch_pixels: annotated pixels per step (>= 2, for BatchNorm).
        max_epochs: at most this many passes over the training pixels.
        patience: stop after this many epochs without a lower held-out loss (then keep the best).
        val_fraction: fraction of annotated pixels held out for early stopping, in [0, 1);
            0 trains ``max_epochs`` epochs with no early stopping.
        pixels_per_epoch: if set, an epoch is this many training pixels drawn afresh (large sets).
        seed: base seed (>= 0) of all members.
        ignore_index: a mask value for unlabelled pixels, left out of training and validation
            (None: every pixel must hold a class); must not be one of the classes.
    """

    num_classes: int
    ensemble_size: int = 10
    hidden: tuple[int, ...] | None = None
    lr: float = 1e-3
    batch_pixels: int = 64
    max_epochs: int = 100
    patience: int = 5
    val_fraction: float = 0.1
    pixels_per_epoch: int | None = None
    seed: int = 0
    ignore_index: int | None = None

    def __post_init__(self) -> None:
        for name, low in (("num_classes", 2), ("ensemble_size", 1), ("batch_pixels", 2), ("max_epochs", 1),
                          ("patience", 1), ("seed", 0)):
            value = getattr(self, name)
            if not _is_int(value) or value < low:
                raise ValueError(f"InterpreterConfig.{name} must be an int >= {low}, got {value!r}")
            object.__setattr__(self, name, int(value))  # numpy integers become plain ints (JSON)
        if self.pixels_per_epoch is not None and (not _is_int(self.pixels_per_epoch) or self.pixels_per_epoch < 2):
            raise ValueError(f"InterpreterConfig.pixels_per_epoch must be None or an int >= 2, got {self.pixels_per_epoch!r}")
        if self.pixels_per_epoch is not None:
            object.__setattr__(self, "pixels_per_epoch", int(self.pixels_per_epoch))
        if self.ignore_index is not None:
            if not _is_int(self.ignore_index) or 0 <= self.ignore_index < self.num_classes:
                raise ValueError(f"InterpreterConfig.ignore_index must be None or an int outside the classes "
                                 f"0..{self.num_classes - 1} (e.g. 255 or -1), got {self.ignore_index!r}")
            object.__setattr__(self, "ignore_index", int(self.ignore_index))
        if self.hidden is not None:
            if isinstance(self.hidden, (str, bytes)) or not isinstance(self.hidden, Sequence) or not self.hidden \
                    or not all(_is_int(h) and h >= 1 for h in self.hidden):
                raise ValueError(f"InterpreterConfig.hidden must be None or a non-empty sequence of ints >= 1, "
                                 f"got {self.hidden!r}")
            object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"InterpreterConfig.lr must be a finite number > 0, got {self.lr!r}")
        if isinstance(self.val_fraction, bool) or not isinstance(self.val_fraction, (int, float)) \
                or not 0 <= self.val_fraction < 1:
            raise ValueError(f"InterpreterConfig.val_fraction must be a number in [0, 1), got {self.val_fraction!r}")
        object.__setattr__(self, "lr", float(self.lr))
        object.__setattr__(self, "val_fraction", float(self.val_fraction))

    @property
    def hidden_sizes(self) -> tuple[int, ...]:
        """The hidden widths in use (``hidden`` or the paper's default for ``num_classes``)."""
        if self.hidden is not None:
            return self.hidden
        return (256, 128) if self.num_classes >= 32 else (128, 32)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (``hidden`` as a list or None)."""
        out = dataclasses.asdict(self)
        out["hidden"] = None if self.hidden is None else list(self.hidden)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InterpreterConfig:
        """Strict inverse of :meth:`to_dict`: an unknown key raises naming it and the allowed keys."""
        if not isinstance(data, Mapping):
            raise TypeError(f"InterpreterConfig data must be a mapping, got {type(data).__name__}")
        allowed = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            raise ValueError(f"InterpreterConfig: unknown key(s) {unknown}; allowed: {allowed}")
        if "num_classes" not in data:
            raise ValueError("InterpreterConfig: missing key 'num_classes'")
        return cls(**dict(data))


@dataclass(frozen=True)
class EnsemblePrediction:
    """Labels and uncertainty of ``n`` images (see :mod:`datafactory.gan.uncertainty`).

    Attributes:
        labels: ``(n, H, W)`` int64, majority vote of the members (ties -> lowest class).
        uncertainty: ``(n, H, W)`` float32, per-pixel Jensen-Shannon divergence in nats.
        scores: ``(n,)`` float32, mean of each image's top-10% pixel uncertainties.
    """

    labels: torch.Tensor
    uncertainty: torch.Tensor
    scores: torch.Tensor


def _member_generator(seed: int, member: int, purpose: int) -> torch.Generator:
    state = np.random.SeedSequence([seed, member, purpose]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def _make_member(dim: int, hidden: Sequence[int], num_classes: int, generator: torch.Generator) -> nn.Sequential:
    """``Linear -> ReLU -> BatchNorm1d`` per hidden width, then ``Linear`` to the classes.

    Linear layers get PyTorch's default initialisation (uniform in ``+-1/sqrt(fan_in)``), drawn
    from ``generator`` (the global RNG is untouched).
    """
    layers: list[nn.Module] = []
    widths = [dim, *hidden, num_classes]
    for i, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:])):
        linear = nn.utils.skip_init(nn.Linear, fan_in, fan_out)
        bound = 1.0 / math.sqrt(fan_in)
        with torch.no_grad():
            linear.weight.uniform_(-bound, bound, generator=generator)
            linear.bias.uniform_(-bound, bound, generator=generator)
        layers.append(linear)
        if i < len(hidden):
            layers += [nn.ReLU(), nn.BatchNorm1d(fan_out)]
    return nn.Sequential(*layers)


def _pixelwise(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply a per-pixel layer to ``(n, channels, pixels)``: Linear as a 1x1 convolution;
    BatchNorm1d and ReLU accept this layout directly (BN's statistics run over ``n * pixels``)."""
    if isinstance(layer, nn.Linear):
        return F.conv1d(x, layer.weight[:, :, None], layer.bias)
    return layer(x)


class InterpreterEnsemble(nn.Module):
    """``E`` MLP pixel classifiers over generator features, evaluated factorised.

    Args:
        channels: ``C_l`` of each feature level, coarse to fine (the order of the feature lists).
        cfg: the configuration (``num_classes``, ``ensemble_size``, ``hidden``, ``seed`` are used here).

    Attributes:
        members: ``nn.ModuleList`` of ``nn.Sequential`` MLPs (input ``sum(channels)``).
        history: per-member :class:`MemberHistory` after :func:`fit_interpreter` (else empty).
    """

    def __init__(self, channels: Sequence[int], cfg: InterpreterConfig) -> None:
        super().__init__()
        if not isinstance(cfg, InterpreterConfig):
            raise TypeError(f"cfg must be an InterpreterConfig, got {type(cfg).__name__}")
        if isinstance(channels, (str, bytes)) or not isinstance(channels, Sequence) or not channels \
                or not all(_is_int(c) and c >= 1 for c in channels):
            raise ValueError(f"channels must be a non-empty sequence of ints >= 1, got {channels!r}")
        self.channels: tuple[int, ...] = tuple(int(c) for c in channels)
        self.cfg = cfg
        dim = sum(self.channels)
        self.members = nn.ModuleList(
            _make_member(dim, cfg.hidden_sizes, cfg.num_classes, _member_generator(cfg.seed, m, 0))
            for m in range(cfg.ensemble_size))
        self.history: tuple[MemberHistory, ...] = ()

    @property
    def num_classes(self) -> int:
        return self.cfg.num_classes

    def forward(self, features: Sequence[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        """Logits of every member for every pixel, factorised (never builds the ``D``-channel tensor).

        Args:
            features: levels ``(n, C_l, h_l, w_l)`` on this module's device, ``C_l`` = ``channels``.
            size: output ``(H, W)``.

        Returns:
            ``(E, n, C, H, W)`` logits.
        """
        height, width = check_size(size)
        n = check_levels(features, self.channels, "features")
        out = []
        for member in self.members:
            first = member[0]
            x = factorised_first_layer(features, first.weight, first.bias, (height, width)).flatten(2)
            for layer in member[1:]:
                x = _pixelwise(layer, x)
            out.append(x.reshape(n, self.num_classes, height, width))
        return torch.stack(out)

    def naive_forward(self, features: Sequence[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        """Reference: upsample + concatenate all levels, then each MLP per pixel (as the paper
        describes it). Same result as :meth:`forward` with ``D / hidden[0]`` times the memory."""
        height, width = check_size(size)
        n = check_levels(features, self.channels, "features")
        pixels = upsample_concat([level.to(dtype=self.members[0][0].weight.dtype) for level in features],
                                 (height, width))
        pixels = pixels.permute(0, 2, 3, 1).reshape(n * height * width, -1)
        out = [member(pixels).reshape(n, height, width, -1).permute(0, 3, 1, 2) for member in self.members]
        return torch.stack(out)

    def predict(self, features: Sequence[torch.Tensor], size: tuple[int, int], *,
                chunk: int | None = None) -> EnsemblePrediction:
        """Majority-vote labels, JS uncertainty and image scores, ``chunk`` images at a time.

        Runs in eval mode without gradients (the training flag is restored afterwards). Features
        may live on another device or dtype; each chunk is moved to this module's.

        Args:
            features: levels ``(n, C_l, h_l, w_l)``.
            size: output ``(H, W)``.
            chunk: images per forward pass; None -> as many as keep the largest per-member
                activation under 2**25 values (at least 1).

        Returns:
            :class:`EnsemblePrediction` on this module's device.
        """
        height, width = check_size(size)
        n = check_levels(features, self.channels, "features")
        if chunk is None:
            widest = max(*self.cfg.hidden_sizes, self.num_classes) * len(self.members)
            chunk = max(1, _PREDICT_BUDGET // (widest * height * width))
        elif not _is_int(chunk) or chunk < 1:
            raise ValueError(f"chunk must be None or an int >= 1, got {chunk!r}")
        weight = self.members[0][0].weight
        was_training = self.training
        self.eval()
        labels, uncertainty, scores = [], [], []
        try:
            with torch.no_grad():
                for start in range(0, n, chunk):
                    part = [level[start:start + chunk].to(device=weight.device, dtype=weight.dtype) for level in features]
                    logits = self(part, (height, width))
                    labels.append(majority_vote(logits))
                    pixel_js = js_uncertainty(logits)
                    uncertainty.append(pixel_js)
                    scores.append(image_scores(pixel_js, 0.1))
        finally:
            self.train(was_training)
        return EnsemblePrediction(torch.cat(labels), torch.cat(uncertainty), torch.cat(scores))


# -- training ---------------------------------------------------------------------------------------


def fit_interpreter(features: Sequence[Sequence[torch.Tensor]], masks: torch.Tensor, cfg: InterpreterConfig, *,
                    progress: bool = False, device: torch.device | str | None = None) -> InterpreterEnsemble:
    """Train the interpreter ensemble on ``K`` annotated images.

    Each member trains on its own random split of the annotated pixels (``val_fraction`` held
    out) with Adam and cross-entropy on batches of ``batch_pixels`` pixels, keeps its weights from
    the epoch with the lowest held-out loss and stops after ``patience`` epochs without
    improvement (:func:`~datafactory.gan.pixeltrain.train_member`).

    Memory: the native feature maps once (``K * sum_l C_l * h_l * w_l`` values in the dtype given;
    pass float16 to halve it) plus ``O(batch_pixels * D)`` per step and ``2**22`` values per
    validation chunk -- independent of ``H * W * D``.

    Args:
        features: per annotated image, its feature list (levels ``(1, C_l, h_l, w_l)``, coarse to fine).
        masks: ``(K, H, W)`` integer class indices in ``0 .. num_classes - 1`` (``H, W``: the label
            size); pixels equal to ``cfg.ignore_index`` (if set) are left out.
        cfg: the configuration.
        progress: show a tqdm bar over members.
        device: where to train (default: the device of ``features[0][0]``).

    Returns:
        The trained ensemble in eval mode, with :attr:`InterpreterEnsemble.history`.

    Raises:
        TypeError / ValueError: naming ``features[k][l]``, ``masks`` or ``cfg`` and the problem.
    """
    if not isinstance(cfg, InterpreterConfig):
        raise TypeError(f"cfg must be an InterpreterConfig, got {type(cfg).__name__}")
    channels, size = check_annotations(features, masks, cfg.num_classes, cfg.ignore_index)
    device = torch.device(device) if device is not None else features[0][0].device
    bank = PixelFeatureBank(features, size, device=device)
    flat = masks.reshape(-1).to(dtype=torch.long)
    labelled = None if cfg.ignore_index is None else (flat != cfg.ignore_index).nonzero().flatten().cpu()
    labels = flat.to(device)
    ensemble = InterpreterEnsemble(channels, cfg).to(device)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(ensemble.members), desc="interpreter", unit="member", dynamic_ncols=True)
    histories = []
    try:
        for index, member in enumerate(ensemble.members):
            def on_epoch(epoch: int, val_loss: float | None, index: int = index) -> None:
                if bar is not None:
                    bar.set_postfix(member=index, epoch=epoch, val_loss="-" if val_loss is None else f"{val_loss:.4f}")

            histories.append(train_member(
                member, bank, labels, generator=_member_generator(cfg.seed, index, 1), lr=cfg.lr,
                batch_pixels=cfg.batch_pixels, max_epochs=cfg.max_epochs, patience=cfg.patience,
                val_fraction=cfg.val_fraction, pixels_per_epoch=cfg.pixels_per_epoch, index=index, labelled=labelled,
                on_epoch=on_epoch))
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    ensemble.history = tuple(histories)
    return ensemble.eval()


# -- files ----------------------------------------------------------------------------------------


def _paths(path: str | os.PathLike) -> tuple[Path, Path]:
    target = Path(path)
    if target.suffix != ".pt":
        raise ValueError(f"path must name a .pt file (its config goes next to it as .json), got {os.fspath(path)!r}")
    return target, target.with_suffix(".json")


def save_interpreter(ensemble: InterpreterEnsemble, path: str | os.PathLike) -> Path:
    """Write ``ensemble``'s state_dict to ``path`` (``.pt``) and its channels, config and training
    history to the ``.json`` of the same stem. Both are written under a temporary name and renamed
    into place (a link at the target is refused, never written through).

    Returns:
        The ``.pt`` path.
    """
    from pipelines.manifest import write_json
    from pipelines.train.checkpoint import save_checkpoint

    if not isinstance(ensemble, InterpreterEnsemble):
        raise TypeError(f"ensemble must be an InterpreterEnsemble, got {type(ensemble).__name__}")
    weights, config = _paths(path)
    save_checkpoint(weights, {k: v.detach().cpu() for k, v in ensemble.state_dict().items()})
    write_json(config, {"format": _FORMAT, "version": _VERSION, "channels": list(ensemble.channels),
                        "config": ensemble.cfg.to_dict(), "history": [h.to_dict() for h in ensemble.history]})
    return weights


def _read_config(config: Path) -> tuple[list[int], InterpreterConfig, tuple[MemberHistory, ...]]:
    from loaders.fileio import read_regular

    try:
        data = json.loads(read_regular(config).decode("utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"interpreter config {str(config)!r} not found (saved next to the .pt file)") from None
    except (ValueError, RecursionError) as error:
        raise ValueError(f"{str(config)!r}: not valid JSON: {error}") from None
    if not isinstance(data, dict) or data.get("format") != _FORMAT:
        raise ValueError(f"{str(config)!r}: not an interpreter config (expected 'format': {_FORMAT!r})")
    if data.get("version") != _VERSION:
        raise ValueError(f"{str(config)!r}: unsupported version {data.get('version')!r} (this release reads {_VERSION})")
    channels = data.get("channels")
    if not isinstance(channels, list) or not channels or not all(_is_int(c) and c >= 1 for c in channels):
        raise ValueError(f"{str(config)!r}: 'channels' must be a non-empty list of ints >= 1, got {channels!r}")
    try:
        cfg = InterpreterConfig.from_dict(data.get("config"))
    except (TypeError, ValueError) as error:
        raise ValueError(f"{str(config)!r}: 'config': {error}") from None
    history = []
    for entry in data.get("history") or []:
        try:
            history.append(MemberHistory.from_dict(entry))
        except (TypeError, ValueError) as error:
            raise ValueError(f"{str(config)!r}: bad 'history' entry: {error}") from None
    return channels, cfg, tuple(history)


def load_interpreter(path: str | os.PathLike, *, channels: Sequence[int] | None = None,
                     device: torch.device | str | None = None) -> InterpreterEnsemble:
    """Read an ensemble written by :func:`save_interpreter` (``torch.load(weights_only=True)``).

    Args:
        path: the ``.pt`` file; its ``.json`` must sit next to it.
        channels: if given, the feature channels the caller will feed (e.g. the generator's); a
            mismatch with the saved ones raises instead of failing later inside a matrix product.
        device: where to put the weights (default CPU).

    Returns:
        The ensemble in eval mode.

    Raises:
        FileNotFoundError: a file is missing. ValueError: unreadable files, a config that does not
            match the weights, or ``channels`` that differ from the saved ones (all named).
    """
    from pipelines.train.checkpoint import load_checkpoint

    weights, config = _paths(path)
    saved_channels, cfg, history = _read_config(config)
    if channels is not None and [int(c) for c in channels] != saved_channels:
        raise ValueError(f"{str(weights)!r}: the interpreter was trained on feature channels {saved_channels} "
                         f"but channels {list(channels)} were given; the generator does not match")
    state = load_checkpoint(weights)
    ensemble = InterpreterEnsemble(saved_channels, cfg)
    expected = ensemble.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(f"{str(weights)!r} does not match its config {str(config)!r}: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")
    for key, value in expected.items():
        if not isinstance(state[key], torch.Tensor) or state[key].shape != value.shape:
            got = tuple(state[key].shape) if isinstance(state[key], torch.Tensor) else type(state[key]).__name__
            raise ValueError(f"{str(weights)!r}: {key} has shape {got} but the config's channels {saved_channels} "
                             f"and classes {cfg.num_classes} need {tuple(value.shape)}")
    ensemble.load_state_dict(state)
    ensemble.history = history
    return ensemble.to(device if device is not None else "cpu").eval()

"""The generator side of DatasetGAN: a small protocol and an adapter for any ``nn.Module``.

DatasetGAN (Zhang et al., "DatasetGAN: Efficient Labeled Data Factory with Minimal Human
Effort", CVPR 2021, arXiv:2104.06490) labels the pixels of generated images from the
generator's own intermediate feature maps. Everything downstream (annotation, the pixel
interpreter, generation into shards) therefore needs only one thing from a generator: given
seeds or latents, the images *and* the feature maps that produced them. :class:`Generator` is
that protocol; :class:`HookedGenerator` turns any PyTorch generator (for example a user's own
pretrained StyleGAN2, Karras et al., CVPR 2020, arXiv:1912.04958) plus a list of layer names
into it with forward hooks; :func:`load_generator` rebuilds the bundled network saved by the
trainer.

Determinism: image ``i`` of ``sample(n, seed)`` is fully determined by the per-image seed
``seed + i``: its latent is drawn from ``torch.Generator().manual_seed(seed + i)`` on the CPU
(:func:`latents_for_seeds`), and per-image noise comes from :func:`noise_generator`, so an image
is the same whether it is sampled alone or in a batch (up to float rounding of batched kernels).
"""

from __future__ import annotations

import hashlib
import json
import math
import operator
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol, Sequence, runtime_checkable

import torch
from torch import nn

__all__ = [
    "GeneratorSample",
    "Generator",
    "HookedGenerator",
    "latents_for_seeds",
    "noise_generator",
    "seeds_for",
    "checkpoint_sha256",
    "config_path_for",
    "load_generator",
]

# torch.Generator.manual_seed accepts [-2**63, 2**64); keep seeds in the signed 64-bit range so a
# seed survives JSON, numpy int64 and shard metadata unchanged.
_SEED_MIN = -(2**63)
_SEED_MAX = 2**63 - 1


@dataclass(frozen=True)
class GeneratorSample:
    """One batch of generated images with the feature maps that produced them.

    Attributes:
        images: ``(n, 3, H, W)`` float32 in ``[-1, 1]``.
        features: feature maps, coarse to fine, each ``(n, C_l, h_l, w_l)`` float32.
        latents: ``(n, z_dim)`` float32, the ``z`` of each image.
        seeds: per-image seeds; ``-1`` where the latent was supplied without a seed.
    """

    images: torch.Tensor
    features: list[torch.Tensor]
    latents: torch.Tensor
    seeds: list[int]

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def index(self, items: slice | Sequence[int]) -> "GeneratorSample":
        """The sub-batch ``items`` (a slice or a list of indices)."""
        if isinstance(items, slice):
            idx = list(range(len(self)))[items]
        else:
            idx = [int(i) for i in items]
        for i in idx:
            if not 0 <= i < len(self):
                raise IndexError(f"index {i} out of range for a sample of {len(self)} images")
        t = torch.as_tensor(idx, dtype=torch.long)
        return GeneratorSample(
            images=self.images.index_select(0, t.to(self.images.device)),
            features=[f.index_select(0, t.to(f.device)) for f in self.features],
            latents=self.latents.index_select(0, t.to(self.latents.device)),
            seeds=[self.seeds[i] for i in idx],
        )

    @property
    def channels(self) -> list[int]:
        """Channel count of each feature level (what the pixel interpreter needs)."""
        return [int(f.shape[1]) for f in self.features]


@runtime_checkable
class Generator(Protocol):
    """What DatasetGAN needs from a generator.

    ``sample(n, seed)``: image ``i`` is fully determined by the per-image seed ``seed + i`` (its
    ``z`` is drawn from ``torch.Generator().manual_seed(seed + i)``, noise inputs likewise),
    independent of ``n`` and of batching. ``synthesize(latents, seeds)`` runs given latents.
    """

    resolution: int
    z_dim: int

    def sample(self, n: int, seed: int) -> GeneratorSample: ...

    def synthesize(
        self, latents: torch.Tensor, seeds: Sequence[int] | None = None
    ) -> GeneratorSample: ...


def _check_seed(seed: object, name: str) -> int:
    if isinstance(seed, bool):
        raise TypeError(f"{name} must be an int, got bool")
    try:
        seed = operator.index(seed)  # int and numpy integers
    except TypeError:
        raise TypeError(f"{name} must be an int, got {type(seed).__name__}") from None
    if not _SEED_MIN <= seed <= _SEED_MAX:
        raise ValueError(f"{name}={seed} is outside the signed 64-bit range")
    return int(seed)


def _check_positive_int(value: object, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def seeds_for(n: int, seed: int) -> list[int]:
    """The per-image seeds of ``sample(n, seed)``: ``seed, seed + 1, ..., seed + n - 1``."""
    n = _check_positive_int(n, "n")
    seed = _check_seed(seed, "seed")
    if seed + n - 1 > _SEED_MAX:
        raise ValueError(f"seed={seed} with n={n} runs past the signed 64-bit range")
    return list(range(seed, seed + n))


def latents_for_seeds(seeds: Sequence[int], z_dim: int) -> torch.Tensor:
    """``(len(seeds), z_dim)`` float32 standard-normal latents, one CPU generator per seed.

    Row ``i`` is ``torch.randn(z_dim, generator=torch.Generator().manual_seed(seeds[i]))``, so a
    seed's latent never depends on the other seeds in the list.
    """
    z_dim = _check_positive_int(z_dim, "z_dim")
    seeds = [_check_seed(s, f"seeds[{i}]") for i, s in enumerate(seeds)]
    out = torch.empty(len(seeds), z_dim, dtype=torch.float32)
    for i, s in enumerate(seeds):
        out[i] = torch.randn(z_dim, generator=torch.Generator().manual_seed(s))
    return out


def noise_generator(seed: int | None, latent: torch.Tensor | None = None) -> torch.Generator:
    """A CPU ``torch.Generator`` for the per-image noise of the image with ``seed``.

    Its stream is independent of the latent's stream for the same seed (the seed is hashed with a
    tag). With ``seed=None`` the generator is seeded from the latent's bytes, so an image made from
    a supplied latent is a function of that latent alone.
    """
    if seed is None:
        if latent is None:
            raise ValueError("noise_generator needs a seed or a latent")
        payload = b"latent:" + latent.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()
    else:
        payload = b"noise:" + str(_check_seed(seed, "seed")).encode()
    digest = hashlib.sha256(payload).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def _check_latents(latents: torch.Tensor, z_dim: int) -> torch.Tensor:
    if not isinstance(latents, torch.Tensor):
        raise TypeError(f"latents must be a torch.Tensor, got {type(latents).__name__}")
    if latents.ndim != 2 or latents.shape[1] != z_dim or latents.shape[0] < 1:
        raise ValueError(f"latents must have shape (n >= 1, z_dim={z_dim}), got {tuple(latents.shape)}")
    if not latents.is_floating_point():
        raise TypeError(f"latents must be a floating tensor, got {latents.dtype}")
    if not torch.isfinite(latents).all():
        raise ValueError("latents contain NaN or infinite values")
    return latents.detach().to(torch.float32)


def _check_seed_list(seeds: Sequence[int] | None, n: int) -> list[int] | None:
    if seeds is None:
        return None
    seeds = [_check_seed(s, f"seeds[{i}]") for i, s in enumerate(seeds)]
    if len(seeds) != n:
        raise ValueError(f"seeds has {len(seeds)} entries but latents has {n} rows")
    return seeds


def _layer_output(name: str, output: object) -> torch.Tensor:
    """The feature tensor of a hooked layer's output (a tensor, or the first 4-D tensor of a tuple)."""
    if isinstance(output, torch.Tensor):
        tensor = output
    elif isinstance(output, (tuple, list)):
        tensors = [o for o in output if isinstance(o, torch.Tensor) and o.ndim == 4]
        if not tensors:
            raise TypeError(f"layer {name!r} returned a {type(output).__name__} without a 4-D tensor")
        tensor = tensors[0]
    else:
        raise TypeError(f"layer {name!r} returned {type(output).__name__}, not a tensor")
    if tensor.ndim != 4:
        raise ValueError(f"layer {name!r} output has shape {tuple(tensor.shape)}; expected (n, C, h, w)")
    return tensor


class HookedGenerator:
    """Any ``nn.Module`` generator as a :class:`Generator`, features taken by forward hooks.

    Args:
        module: the generator; it is put in ``eval()`` mode (and moved to ``device`` if given).
        layers: names of submodules (``module.get_submodule(name)``) whose outputs are the
            feature maps, listed coarse to fine. A module returning a tuple contributes its first
            4-D tensor.
        z_dim: latent size.
        resolution: output height == width.
        forward: ``forward(module, z) -> images``; default ``module(z)``. Use it to pass extra
            arguments, e.g. ``lambda G, z: G(z, None, noise_mode="const")``.
        output_range: the value range of the module's images, mapped linearly to ``[-1, 1]``
            (then clamped).
        device: where the module runs; default the device of its first parameter (else CPU).
        batch_size: images per forward pass.

    Per-image determinism: latents come from per-image seeds. Any randomness the module draws
    itself (e.g. StyleGAN2's ``noise_mode="random"``) comes from the global RNG, which is forked
    and seeded per forward pass with the batch's first seed, so results are reproducible but
    depend on batching unless ``batch_size=1`` or the module is deterministic given ``z``.
    """

    def __init__(
        self,
        module: nn.Module,
        layers: Sequence[str],
        *,
        z_dim: int,
        resolution: int,
        forward: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None,
        output_range: tuple[float, float] = (-1.0, 1.0),
        device: torch.device | str | None = None,
        batch_size: int = 8,
    ) -> None:
        if not isinstance(module, nn.Module):
            raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
        if isinstance(layers, str) or not isinstance(layers, Sequence):
            raise TypeError("layers must be a sequence of submodule names, e.g. ['synthesis.b8.conv0']")
        if len(layers) == 0:
            raise ValueError("layers must name at least one submodule")
        if len(set(layers)) != len(layers):
            raise ValueError(f"layers contains duplicates: {list(layers)}")
        self._targets: list[tuple[str, nn.Module]] = []
        for name in layers:
            if not isinstance(name, str):
                raise TypeError(f"layers entries must be str, got {type(name).__name__}: {name!r}")
            try:
                sub = module.get_submodule(name)
            except AttributeError:
                known = [n for n, _ in module.named_modules() if n]
                hint = ", ".join(known[:20]) + (" ..." if len(known) > 20 else "")
                raise KeyError(f"layer {name!r} is not a submodule of {type(module).__name__}; known: {hint}") from None
            self._targets.append((name, sub))
        self.z_dim = _check_positive_int(z_dim, "z_dim")
        self.resolution = _check_positive_int(resolution, "resolution")
        self.batch_size = _check_positive_int(batch_size, "batch_size")
        if forward is not None and not callable(forward):
            raise TypeError("forward must be callable as forward(module, z) -> images")
        lo, hi = (float(v) for v in output_range)
        if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
            raise ValueError(f"output_range must be (low, high) with low < high, got {output_range}")
        self.output_range = (lo, hi)
        if device is None:
            param = next(module.parameters(), None)
            device = param.device if param is not None else torch.device("cpu")
        self.device = torch.device(device)
        self.module = module.to(self.device).eval()
        self.layers = [name for name, _ in self._targets]
        self._forward = forward

    def sample(self, n: int, seed: int) -> GeneratorSample:
        """``n`` images with per-image seeds ``seed, ..., seed + n - 1``."""
        seeds = seeds_for(n, seed)
        return self.synthesize(latents_for_seeds(seeds, self.z_dim), seeds)

    def synthesize(self, latents: torch.Tensor, seeds: Sequence[int] | None = None) -> GeneratorSample:
        """Run ``latents`` ``(n, z_dim)``; ``seeds`` (recorded, and seeding module randomness)."""
        latents = _check_latents(latents, self.z_dim)
        n = latents.shape[0]
        seed_list = _check_seed_list(seeds, n)
        images, features = [], []
        for start in range(0, n, self.batch_size):
            z = latents[start : start + self.batch_size]
            if seed_list is not None:
                rng_seed = seed_list[start]
            else:
                rng_seed = noise_generator(None, z[0]).initial_seed()
            img, feats = self._run(z, rng_seed)
            images.append(img)
            features.append(feats)
        levels = [torch.cat([f[level] for f in features]) for level in range(len(self.layers))]
        return GeneratorSample(
            images=torch.cat(images),
            features=levels,
            latents=latents.cpu(),
            seeds=seed_list if seed_list is not None else [-1] * n,
        )

    def _run(self, z: torch.Tensor, rng_seed: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
        captured: dict[str, list[torch.Tensor]] = {name: [] for name in self.layers}
        handles = []
        for name, sub in self._targets:
            def hook(_mod: nn.Module, _inp: object, out: object, name: str = name) -> None:
                captured[name].append(_layer_output(name, out).detach().float())

            handles.append(sub.register_forward_hook(hook))
        devices = [self.device] if self.device.type == "cuda" else []
        try:
            with torch.no_grad(), torch.random.fork_rng(devices=devices):
                torch.manual_seed(rng_seed)
                if self.device.type == "cuda":
                    torch.cuda.manual_seed(rng_seed)
                z = z.to(self.device)
                out = self._forward(self.module, z) if self._forward is not None else self.module(z)
        finally:
            for h in handles:
                h.remove()
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"the generator's forward returned {type(out).__name__}; expected an image tensor")
        expected = (z.shape[0], 3, self.resolution, self.resolution)
        if tuple(out.shape) != expected:
            raise ValueError(f"the generator returned images of shape {tuple(out.shape)}; expected {expected}")
        lo, hi = self.output_range
        images = ((out.detach().float() - lo) * (2.0 / (hi - lo)) - 1.0).clamp_(-1.0, 1.0)
        feats = []
        for name in self.layers:
            got = captured[name]
            if len(got) != 1:
                raise ValueError(
                    f"layer {name!r} ran {len(got)} times in one forward pass; hook a module that runs exactly once"
                )
            if got[0].shape[0] != z.shape[0]:
                raise ValueError(f"layer {name!r} output has batch size {got[0].shape[0]}, expected {z.shape[0]}")
            feats.append(got[0])
        return images, feats


def checkpoint_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a checkpoint file (recorded with generated samples as provenance)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist or is not a file")
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def config_path_for(path: str | os.PathLike) -> Path:
    """The config JSON that accompanies a generator state_dict: same stem, ``.json``."""
    return Path(path).with_suffix(".json")


def load_generator(path: str | os.PathLike, *, device: torch.device | str | None = None) -> Generator:
    """The bundled generator saved at ``path`` (a state_dict) with its config JSON beside it.

    The state_dict is read with ``torch.load(..., weights_only=True)``; the JSON (same stem,
    ``.json``) holds the network config under ``"config"``. Strict loading: missing or
    unexpected keys raise ``ValueError``; a missing file ``FileNotFoundError``; an unknown config
    key ``KeyError`` naming it.
    """
    from pipelines.train.checkpoint import load_checkpoint

    from .stylegan import BundledGenerator, StyleGAN2Config, StyleGAN2Generator

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"generator checkpoint {str(path)!r} does not exist or is not a file")
    cfg_path = config_path_for(path)
    if not cfg_path.is_file():
        raise FileNotFoundError(f"generator config {str(cfg_path)!r} (next to {path.name}) does not exist")
    try:
        meta = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"generator config {str(cfg_path)!r} is not valid JSON: {exc}") from None
    if not isinstance(meta, dict) or "config" not in meta:
        raise KeyError(f"generator config {str(cfg_path)!r} has no 'config' entry")
    cfg = StyleGAN2Config.from_dict(meta["config"])
    state = load_checkpoint(path)  # torch.load(weights_only=True) of a regular file; ValueError otherwise
    bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(f"generator checkpoint {str(path)!r} is not a state_dict of tensors (entry {bad[0]!r})")
    net = StyleGAN2Generator(cfg)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"generator checkpoint {str(path)!r} does not match its config: {exc}") from None
    return BundledGenerator(net, device=device, checkpoint=path)

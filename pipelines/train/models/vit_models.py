"""Vision Transformers for the ``vit`` and ``mae`` trainers, built on torchvision's
``VisionTransformer`` (Dosovitskiy et al., "An Image is Worth 16x16 Words", ICLR 2021).

* :func:`build_vit` makes either a small configurable ViT (``"tiny"``: trains on CPU at 32-64 px)
  or one of torchvision's named architectures (``vit_b_16`` for real use), always with
  ``weights=None``: nothing is downloaded.
* :func:`forward_with_features` runs the model *through its own forward* (so DDP's gradient hooks
  see the call) and also returns the penultimate features -- the class token after the final
  LayerNorm, the input of ``heads`` -- that the supervised-contrastive negative loss needs.
* :func:`normalize_images` turns uint8 (or [0, 1] float) batches into the normalised float input.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torchvision.models import vision_transformer as tv_vit

from pipelines.train.dist import unwrap

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "NAMED_ARCHS",
    "build_vit",
    "forward_with_features",
    "normalize_images",
    "vit_patch_size",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: torchvision builders usable as ``arch`` (patch size, for checks before building).
NAMED_ARCHS = {"vit_b_16": 16, "vit_b_32": 32, "vit_l_16": 16, "vit_l_32": 32, "vit_h_14": 14}


def _positive(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def build_vit(arch: str = "tiny", *, image_size: int = 32, num_classes: int = 1000, patch_size: int = 4,
              depth: int = 6, hidden_dim: int = 192, num_heads: int = 3, mlp_dim: int = 768,
              dropout: float = 0.0) -> tv_vit.VisionTransformer:
    """A torchvision ``VisionTransformer`` with random weights.

    Args:
        arch: ``"tiny"`` (uses ``patch_size``, ``depth``, ``hidden_dim``, ``num_heads``,
            ``mlp_dim``) or a name in :data:`NAMED_ARCHS` (``vit_b_16``: ViT-B/16; those five
            arguments are then the architecture's own and ignored).
        image_size: input side in pixels; must be a multiple of the patch size.
        num_classes: classifier outputs.
        dropout: dropout after the position embedding and in the MLPs.
    """
    _positive("image_size", image_size)
    _positive("num_classes", num_classes)
    if arch in NAMED_ARCHS:
        patch = NAMED_ARCHS[arch]
        if image_size % patch:
            raise ValueError(f"image_size {image_size} is not a multiple of {arch}'s patch size {patch}")
        return getattr(tv_vit, arch)(weights=None, image_size=image_size, num_classes=num_classes, dropout=dropout)
    if arch != "tiny":
        raise ValueError(f"arch must be 'tiny' or one of {sorted(NAMED_ARCHS)}, got {arch!r}")
    for name, value in (("patch_size", patch_size), ("depth", depth), ("hidden_dim", hidden_dim),
                        ("num_heads", num_heads), ("mlp_dim", mlp_dim)):
        _positive(name, value)
    if image_size % patch_size:
        raise ValueError(f"image_size {image_size} is not a multiple of patch_size {patch_size}")
    if hidden_dim % num_heads:
        raise ValueError(f"hidden_dim {hidden_dim} is not divisible by num_heads {num_heads}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    return tv_vit.VisionTransformer(image_size=image_size, patch_size=patch_size, num_layers=depth,
                                    num_heads=num_heads, hidden_dim=hidden_dim, mlp_dim=mlp_dim,
                                    dropout=dropout, num_classes=num_classes)


def vit_patch_size(model: nn.Module) -> int:
    """The input patch size of a (possibly wrapped) torchvision ViT."""
    inner = unwrap(model)
    if not isinstance(inner, tv_vit.VisionTransformer):
        raise TypeError(f"expected a torchvision VisionTransformer, got {type(inner).__name__}")
    return int(inner.patch_size)


def forward_with_features(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits, features)`` from one call of ``model(x)``; ``features`` is the input of the
    classifier ``heads`` (the class token after the encoder's final LayerNorm).

    A forward pre-hook on ``heads`` catches the features, so the call goes through the wrapper's
    own ``forward`` (DDP all-reduces the gradients of both outputs).
    """
    inner = unwrap(model)
    heads = getattr(inner, "heads", None)
    if not isinstance(heads, nn.Module):
        raise TypeError(f"expected a torchvision VisionTransformer (with .heads), got {type(inner).__name__}")
    caught: list[torch.Tensor] = []

    def hook(_module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        caught.append(args[0])

    handle = heads.register_forward_pre_hook(hook)
    try:
        logits = model(x)
    finally:
        handle.remove()
    if len(caught) != 1:
        raise RuntimeError(f"expected one call of heads in the forward, saw {len(caught)}")
    return logits, caught[0]


def normalize_images(images: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN,
                     std: Sequence[float] = IMAGENET_STD) -> torch.Tensor:
    """uint8 ``[B,C,H,W]`` (0..255) or float in [0, 1] -> float32 ``(x - mean) / std`` per channel."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise ValueError(f"images must be a tensor [B,C,H,W], got {getattr(images, 'shape', type(images))}")
    if len(mean) != images.shape[1] or len(std) != images.shape[1]:
        raise ValueError(f"mean/std have {len(mean)}/{len(std)} values for {images.shape[1]} channels")
    x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s

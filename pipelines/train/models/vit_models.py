"""Vision Transformers for the ``vit`` and ``mae`` trainers, built on torchvision's
``VisionTransformer`` (Dosovitskiy et al., "An Image is Worth 16x16 Words", ICLR 2021).

* :func:`build_vit` makes either a small configurable ViT (``"tiny"``: trains on CPU at 32-64 px)
  or one of torchvision's named architectures (``vit_b_16`` for real use) with random weights:
  nothing is downloaded.
* :class:`FeatureViT` is torchvision's ``VisionTransformer`` -- the same parameters and
  ``state_dict`` keys -- whose ``forward(x, return_features=True)`` also returns the penultimate
  features (the class token after the final LayerNorm, the input of ``heads``) that the
  supervised-contrastive negative loss needs, in the same call (so DDP synchronises the gradients
  of both, and ``torch.compile`` sees one plain forward).
* :func:`normalize_images` turns uint8 (or [0, 1] float) batches into the normalised float input.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torchvision.models import vision_transformer as tv_vit

from pipelines.train.dist import unwrap

__all__ = [
    "ARCH_SIZES",
    "FeatureViT",
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

#: torchvision's named ViTs usable as ``arch`` -> their patch size.
NAMED_ARCHS = {"vit_b_16": 16, "vit_b_32": 32, "vit_l_16": 16, "vit_l_32": 32, "vit_h_14": 14}
#: ``(num_layers, num_heads, hidden_dim, mlp_dim)`` of each, as torchvision's builders set them
#: (ViT-Base/Large/Huge of Dosovitskiy et al., Table 1).
ARCH_SIZES = {"vit_b_16": (12, 12, 768, 3072), "vit_b_32": (12, 12, 768, 3072), "vit_l_16": (24, 16, 1024, 4096),
              "vit_l_32": (24, 16, 1024, 4096), "vit_h_14": (32, 16, 1280, 5120)}


class FeatureViT(tv_vit.VisionTransformer):
    """torchvision's ``VisionTransformer`` (same parameters, same ``state_dict``) whose forward can
    also return the features the classifier ``heads`` receive."""

    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        tokens = self._process_input(x)
        tokens = torch.cat([self.class_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        features = self.encoder(tokens)[:, 0]
        logits = self.heads(features)
        return (logits, features) if return_features else logits


def _positive(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def build_vit(arch: str = "tiny", *, image_size: int = 32, num_classes: int = 1000, patch_size: int = 4,
              depth: int = 6, hidden_dim: int = 192, num_heads: int = 3, mlp_dim: int = 768,
              dropout: float = 0.0) -> FeatureViT:
    """A :class:`FeatureViT` (a torchvision ``VisionTransformer``) with random weights.

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
        patch_size = NAMED_ARCHS[arch]
        if image_size % patch_size:
            raise ValueError(f"image_size {image_size} is not a multiple of {arch}'s patch size {patch_size}")
        depth, num_heads, hidden_dim, mlp_dim = ARCH_SIZES[arch]
    elif arch != "tiny":
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
    return FeatureViT(image_size=image_size, patch_size=patch_size, num_layers=depth, num_heads=num_heads,
                      hidden_dim=hidden_dim, mlp_dim=mlp_dim, dropout=dropout, num_classes=num_classes)


def vit_patch_size(model: nn.Module) -> int:
    """The input patch size of a (possibly wrapped) torchvision ViT."""
    inner = unwrap(model)
    if not isinstance(inner, tv_vit.VisionTransformer):
        raise TypeError(f"expected a torchvision VisionTransformer, got {type(inner).__name__}")
    return int(inner.patch_size)


def forward_with_features(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits, features)`` from one call of ``model(x, return_features=True)`` (``model``: a
    :class:`FeatureViT`, possibly inside DDP or ``torch.compile``)."""
    if not isinstance(unwrap(model), FeatureViT):
        raise TypeError(f"expected a FeatureViT (build_vit), got {type(unwrap(model)).__name__}")
    logits, features = model(x, return_features=True)
    return logits, features


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

"""Masked autoencoder (He et al., "Masked Autoencoders Are Scalable Vision Learners", CVPR 2022)
around a torchvision ``VisionTransformer`` encoder.

* The encoder embeds the patches, adds their position embeddings, keeps a random 25% per sample
  (:class:`augment.RandomMasking`, 75% masked by default) and runs its transformer blocks on the
  class token plus the *visible tokens only* -- no mask tokens, so the encoder's cost falls with
  the mask ratio (the paper's 2.8-4.1x wall-clock speed-up).
* A light decoder (torchvision ``EncoderBlock`` layers; the paper uses 8 blocks of width 512)
  gets the encoded visible tokens plus one shared learnable mask token for every removed patch,
  unshuffled with ``ids_restore``, plus fixed 2-D sine-cosine position embeddings, and predicts
  the pixels of every patch.
* The loss (:func:`mae_loss`) is the mean squared error on the *masked* patches only, against
  per-patch normalised pixels (each patch's mean and variance; ``norm_pix_loss``).

The encoder stays a plain ``VisionTransformer`` (its classifier ``heads`` emptied, as MAE
pre-training has none), so ``state_dict()`` entries under ``encoder.`` load into the ``vit``
trainer's model for fine-tuning; :meth:`MaskedAutoencoder.features` gives linear-probe features.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torchvision.models import vision_transformer as tv_vit

from augment import RandomMasking

__all__ = ["MaskedAutoencoder", "mae_loss", "patchify", "sincos_pos_embed_2d", "unpatchify"]


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """``[B,C,H,W]`` -> ``[B, L, p*p*C]``, patches in the encoder's token order (row-major grid),
    pixels within a patch ordered (row, column, channel)."""
    b, c, h, w = images.shape
    p = patch_size
    if h % p or w % p:
        raise ValueError(f"image {h}x{w} is not divisible by patch size {p}")
    x = images.reshape(b, c, h // p, p, w // p, p)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // p) * (w // p), p * p * c)


def unpatchify(patches: torch.Tensor, patch_size: int, channels: int = 3) -> torch.Tensor:
    """Inverse of :func:`patchify` for a square grid."""
    b, length, _ = patches.shape
    side = math.isqrt(length)
    if side * side != length:
        raise ValueError(f"{length} patches do not form a square grid")
    p = patch_size
    x = patches.reshape(b, side, side, p, p, channels).permute(0, 5, 1, 3, 2, 4)
    return x.reshape(b, channels, side * p, side * p)


def sincos_pos_embed_2d(dim: int, grid: int) -> torch.Tensor:
    """Fixed 2-D sine-cosine position embeddings ``[grid*grid, dim]`` (Vaswani et al. 2017's
    1-D embedding of each coordinate in half of the channels), row-major like the tokens."""
    if dim % 4:
        raise ValueError(f"embedding dim must be a multiple of 4, got {dim}")
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    coords = torch.arange(grid, dtype=torch.float64)
    rows, cols = torch.meshgrid(coords, coords, indexing="ij")

    def embed(positions: torch.Tensor) -> torch.Tensor:
        angles = positions.reshape(-1, 1) * omega[None]
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    return torch.cat([embed(cols), embed(rows)], dim=1).float()


def mae_loss(images: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor, patch_size: int,
             norm_pix: bool = True, eps: float = 1e-6) -> torch.Tensor:
    """Mean squared error on the masked patches only.

    Args:
        images: ``[B,C,H,W]`` the encoder's input (the pixels to reconstruct).
        pred: ``[B, L, p*p*C]`` the decoder's prediction for every patch.
        mask: ``[B, L]``, 1 for removed (masked) patches, 0 for visible ones.
        norm_pix: normalise each target patch by its own mean and variance,
            ``(t - mean) / sqrt(var + eps)`` with the unbiased variance, as MAE's reference.

    Returns:
        ``sum_{b,l} mask * mean_pixels((pred - target)^2) / sum mask``.
    """
    target = patchify(images, patch_size)
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} does not match the patchified images {tuple(target.shape)}")
    if mask.shape != target.shape[:2]:
        raise ValueError(f"mask must have shape {tuple(target.shape[:2])}, got {tuple(mask.shape)}")
    if norm_pix:
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + eps).sqrt()
    per_patch = ((pred - target) ** 2).mean(dim=-1)
    mask = mask.to(per_patch.dtype)
    return (per_patch * mask).sum() / mask.sum().clamp_min(1.0)


class MaskedAutoencoder(nn.Module):
    """MAE: a ``VisionTransformer`` encoder on the visible tokens and a light decoder.

    Args:
        encoder: a torchvision ``VisionTransformer`` (its ``heads`` are replaced by an empty
            ``Sequential``; every other parameter is used).
        decoder_dim, decoder_depth, decoder_heads: the decoder's width, blocks and heads (the
            paper: 512, 8, 16).
        mask_ratio: fraction of patches removed per sample (0.75).
        norm_pix_loss: per-patch normalised pixel targets.

    ``forward(images)`` returns ``(loss, pred, mask)``; ``images`` are normalised float
    ``[B,3,H,W]`` at the encoder's ``image_size``.
    """

    def __init__(self, encoder: tv_vit.VisionTransformer, *, decoder_dim: int = 512, decoder_depth: int = 8,
                 decoder_heads: int = 16, mask_ratio: float = 0.75, norm_pix_loss: bool = True) -> None:
        super().__init__()
        if not isinstance(encoder, tv_vit.VisionTransformer) or not isinstance(encoder.conv_proj, nn.Conv2d):
            raise TypeError("encoder must be a torchvision VisionTransformer with a patchify conv_proj")
        if decoder_dim % decoder_heads:
            raise ValueError(f"decoder_dim {decoder_dim} is not divisible by decoder_heads {decoder_heads}")
        if decoder_depth < 1:
            raise ValueError(f"decoder_depth must be >= 1, got {decoder_depth}")
        encoder.heads = nn.Sequential()  # no classifier during pre-training: every parameter gets a gradient
        self.encoder = encoder
        self.masking = RandomMasking(mask_ratio)
        self.norm_pix_loss = bool(norm_pix_loss)
        self.patch_size = int(encoder.patch_size)
        self.grid = encoder.image_size // self.patch_size
        width = encoder.hidden_dim
        self.decoder_embed = nn.Linear(width, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        self.register_buffer("decoder_pos_embed", sincos_pos_embed_2d(decoder_dim, self.grid)[None], persistent=False)
        self.decoder_blocks = nn.Sequential(*[
            tv_vit.EncoderBlock(decoder_heads, decoder_dim, 4 * decoder_dim, 0.0, 0.0, encoder.norm_layer)
            for _ in range(decoder_depth)
        ])
        self.decoder_norm = encoder.norm_layer(decoder_dim)
        self.decoder_pred = nn.Linear(decoder_dim, self.patch_size ** 2 * 3)
        nn.init.normal_(self.mask_token, std=0.02)
        for module in [self.decoder_embed, self.decoder_pred]:
            nn.init.xavier_uniform_(module.weight)
            nn.init.zeros_(module.bias)

    @property
    def mask_ratio(self) -> float:
        return self.masking.ratio

    def _tokens(self, images: torch.Tensor) -> torch.Tensor:
        """Patch embeddings plus their position embeddings, ``[B, L, D]`` (no class token)."""
        enc = self.encoder
        return enc._process_input(images) + enc.encoder.pos_embedding[:, 1:]

    def _encode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Prepend the class token (with its position embedding) and run the encoder blocks."""
        enc = self.encoder
        cls = (enc.class_token + enc.encoder.pos_embedding[:, :1]).expand(tokens.shape[0], -1, -1)
        x = torch.cat([cls, tokens], dim=1)
        return enc.encoder.ln(enc.encoder.layers(enc.encoder.dropout(x)))

    def forward_encoder(self, images: torch.Tensor, mask_ratio: float | None = None,
                        generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(latent [B, 1+K, D], mask [B, L], ids_restore [B, L])`` on the visible tokens only."""
        tokens = self._tokens(images)
        masking = self.masking if mask_ratio is None else RandomMasking(mask_ratio)
        kept, mask, ids_restore = masking(tokens, generator=generator)
        return self._encode(kept), mask, ids_restore

    def forward_decoder(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """Pixel predictions ``[B, L, p*p*3]`` for every patch."""
        x = self.decoder_embed(latent)
        batch, visible = x.shape[0], x.shape[1] - 1
        length = ids_restore.shape[1]
        masks = self.mask_token.expand(batch, length - visible, -1)
        shuffled = torch.cat([x[:, 1:], masks], dim=1)  # visible tokens first, in noise order
        index = ids_restore.unsqueeze(-1).expand(-1, -1, x.shape[2])
        unshuffled = torch.gather(shuffled, 1, index)
        x = torch.cat([x[:, :1], unshuffled + self.decoder_pos_embed], dim=1)
        x = self.decoder_norm(self.decoder_blocks(x))
        return self.decoder_pred(x[:, 1:])

    def forward(self, images: torch.Tensor, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        latent, mask, ids_restore = self.forward_encoder(images, generator=generator)
        pred = self.forward_decoder(latent, ids_restore)
        return mae_loss(images, pred, mask, self.patch_size, self.norm_pix_loss), pred, mask

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Linear-probe features: the class token after the final LayerNorm, on all patches."""
        return self._encode(self._tokens(images))[:, 0]

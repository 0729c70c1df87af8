"""Token dropping kernels: VATT's DropToken (Akbari et al., 2021) and MAE's random masking
(He et al., 2021). Pure functions of the tokens and the drawn noise / indices."""

from __future__ import annotations

import torch

__all__ = ["gather_tokens", "random_masking", "unshuffle_tokens"]


def gather_tokens(tokens: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``tokens[b, index[b, j]]``: ``[B,L,D]`` with ``[B,K]`` (or a shared ``[K]``) -> ``[B,K,D]``."""
    if tokens.ndim != 3:
        raise ValueError(f"tokens must be [B,L,D], got {tuple(tokens.shape)}")
    index = index.to(tokens.device)
    if index.ndim == 1:  # one index for the whole batch: a plain slice-gather, no per-sample index
        return tokens.index_select(1, index)
    return tokens.gather(1, index.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))


def random_masking(tokens: torch.Tensor, noise: torch.Tensor, ratio: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """MAE random masking with the given noise.

    ``ids_shuffle = argsort(noise)``, ``ids_restore = argsort(ids_shuffle)``; the first
    ``int(L * (1 - ratio))`` of ``ids_shuffle`` are kept; the binary mask (1 = removed) is built in
    shuffled order and unshuffled with ``ids_restore``.

    Args:
        tokens: ``[B,L,D]``.
        noise: ``[B,L]`` in ``[0,1)``.
        ratio: fraction removed, in ``[0, 1)``.

    Returns:
        ``(kept [B,K,D], mask [B,L] float, ids_restore [B,L] int64)``.
    """
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"ratio must be in [0, 1), got {ratio!r}")
    batch, length, _ = tokens.shape
    if noise.shape != (batch, length):
        raise ValueError(f"noise must have shape {(batch, length)}, got {tuple(noise.shape)}")
    keep = int(length * (1 - ratio))
    ids_shuffle = noise.to(tokens.device).argsort(dim=1)
    ids_restore = ids_shuffle.argsort(dim=1)
    kept = gather_tokens(tokens, ids_shuffle[:, :keep])
    mask = torch.ones((batch, length), dtype=tokens.dtype if tokens.is_floating_point() else torch.float32, device=tokens.device)
    mask[:, :keep] = 0
    mask = mask.gather(1, ids_restore)
    return kept, mask, ids_restore


def unshuffle_tokens(kept: torch.Tensor, ids_restore: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    """Put ``kept`` tokens back in place, ``fill`` (``[D]``, e.g. a mask token) elsewhere (MAE decoder input)."""
    batch, keep, dim = kept.shape
    length = ids_restore.shape[1]
    full = torch.cat([kept, fill.to(kept).expand(batch, length - keep, dim)], dim=1)
    return full.gather(1, ids_restore.to(kept.device).unsqueeze(-1).expand(-1, -1, dim))

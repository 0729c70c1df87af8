"""The ``vatt`` trainer's contrastive losses: NCE between video and audio, MIL-NCE between video
and a bag of candidate captions (VATT, Akbari et al., 2021, arXiv 2104.11178, eq. 3-4; MIL-NCE,
Miech et al., 2020, arXiv 1912.06430).

With L2-normalised embeddings and ``s(x, y) = x . y / tau``, for video ``v_i`` of clip ``i`` and
the valid candidates ``c_{j,k}`` of every clip ``j`` of the batch (``mask[j, k]``):

* positives ``P_i = {s(v_i, c_{i,k})}``: the clip's own candidates;
* the denominator ``D_i = {s(v_i, c_{j,k}) for all j, k} + {s(v_j, c_{i,k}) for all j, k}``:
  the video against every candidate of the batch, and every video against the clip's own
  candidates (so each positive appears twice, as in both papers' reference code);
* ``MIL-NCE = mean over clips with a candidate of  logsumexp(D_i) - logsumexp(P_i)``.

``NCE(v, a)`` is the bag-of-one case: the audio of the same clip is the only positive. Clips
without a candidate (AudioSet has no text) add no term and are no one's negative candidate; their
video still serves as a negative of the others. A batch with no candidate at all gives an exact
``0`` that keeps the graph (gradients of zero). Negatives come from this process's batch only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["MASKED", "mil_nce", "nce", "vatt_loss"]

#: the similarity given to masked candidates before the log-sum-exp (finite, so gradients stay
#: finite: ``-inf`` would give ``0 * nan`` in the backward pass of an all-masked row)
MASKED = -1e9


def _check(video: torch.Tensor, candidates: torch.Tensor, mask: torch.Tensor, temperature: float) -> None:
    if video.ndim != 2:
        raise ValueError(f"video embeddings must be [B, D], got {tuple(video.shape)}")
    if candidates.ndim != 3 or candidates.shape[0] != video.shape[0] or candidates.shape[2] != video.shape[1]:
        raise ValueError(f"candidates must be [B, K, D] = [{video.shape[0]}, K, {video.shape[1]}], got "
                         f"{tuple(candidates.shape)}")
    if mask.shape != candidates.shape[:2] or mask.dtype != torch.bool:
        raise ValueError(f"mask must be bool [B, K] = {list(candidates.shape[:2])}, got {mask.dtype} {tuple(mask.shape)}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
        raise ValueError(f"temperature must be a number > 0, got {temperature!r}")


def mil_nce(video: torch.Tensor, candidates: torch.Tensor, mask: torch.Tensor | None = None,
            temperature: float = 0.07) -> torch.Tensor:
    """MIL-NCE of ``video [B, D]`` against the candidate bags ``candidates [B, K, D]``.

    Args:
        video: one embedding per clip (normalised here).
        candidates: ``K`` candidate embeddings per clip (normalised here).
        mask: bool ``[B, K]``, which candidates exist (``None``: all).
        temperature: ``tau`` (VATT: 0.07).

    Returns:
        The float32 scalar loss (``0`` when no clip has a candidate).
    """
    if mask is None:
        mask = torch.ones(candidates.shape[:2], dtype=torch.bool, device=candidates.device)
    _check(video, candidates, mask, temperature)
    batch = video.shape[0]
    v = F.normalize(video.float(), dim=-1)
    c = F.normalize(candidates.float(), dim=-1)
    sim = torch.einsum("id,jkd->ijk", v, c) / temperature  # [i video, j clip, k candidate]
    sim = sim.masked_fill(~mask[None], MASKED)
    positives = sim.diagonal(dim1=0, dim2=1).transpose(0, 1)  # [i, k] = s(v_i, c_{i,k})
    row = sim.reshape(batch, -1)  # v_i against every candidate
    column = sim.transpose(0, 1).reshape(batch, -1)  # every video v_j against the candidates of clip i
    per_clip = torch.logsumexp(torch.cat([row, column], dim=1), dim=1) - torch.logsumexp(positives, dim=1)
    anchors = mask.any(dim=1)
    if not bool(anchors.any()):
        return sim.sum() * 0.0 + 0.0  # an exact 0 (not -0.0) that keeps the graph
    return per_clip[anchors].mean()


def nce(video: torch.Tensor, audio: torch.Tensor, temperature: float = 0.07) -> torch.Tensor:
    """NCE of ``video [B, D]`` against ``audio [B, D]``: MIL-NCE with the clip's audio as its one candidate."""
    if audio.ndim != 2:
        raise ValueError(f"audio embeddings must be [B, D], got {tuple(audio.shape)}")
    return mil_nce(video, audio[:, None], None, temperature)


def vatt_loss(outputs: dict[str, torch.Tensor], *, temperature: float = 0.07, nce_weight: float = 1.0,
              mil_nce_weight: float = 1.0) -> tuple[torch.Tensor, dict[str, float]]:
    """``nce_weight * NCE(video_va, audio_va) + mil_nce_weight * MIL-NCE(video_vt, text_vt)``.

    Args:
        outputs: the model's outputs: ``video_va``, ``audio_va`` ``[B, D_va]``; ``video_vt``
            ``[B, D_vt]``; ``text_vt`` ``[B, K, D_vt]`` with ``text_mask`` ``[B, K]``.
        temperature, nce_weight, mil_nce_weight: ``tau`` and the two weights (VATT: 0.07, 1, 1;
            a weight of 0 skips its term).

    Returns:
        ``(loss, {"nce": ..., "mil_nce": ..., "text_clips": ...})``.
    """
    zero = outputs["video_va"].float().sum() * 0.0
    parts = {}
    loss = zero
    if nce_weight:
        term = nce(outputs["video_va"], outputs["audio_va"], temperature)
        loss = loss + nce_weight * term
        parts["nce"] = float(term.detach())
    if mil_nce_weight:
        term = mil_nce(outputs["video_vt"], outputs["text_vt"], outputs["text_mask"], temperature)
        loss = loss + mil_nce_weight * term
        parts["mil_nce"] = float(term.detach())
    parts["text_clips"] = float(outputs["text_mask"].any(dim=1).sum())
    return loss, parts

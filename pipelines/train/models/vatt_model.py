"""VATT: transformers on raw video, audio and text with common-space projection heads
(Akbari et al., "VATT: Transformers for Multimodal Self-Supervised Learning from Raw Video,
Audio and Text", NeurIPS 2021, arXiv 2104.11178).

* **Tokenizers.** Video ``[B, T, 3, H, W]`` is cut into ``t x p x p`` voxel patches, each
  flattened and linearly projected to the width ``D``, plus learnable positional embeddings
  factorised as ``e_t[i] + e_h[j] + e_w[k]`` (:class:`VideoTokenizer`). Raw audio ``[B, S]`` is
  cut into segments of ``s`` samples, linearly projected, plus one learnable embedding per
  segment position (:class:`AudioTokenizer`). Text word ids ``[N, W]`` go through a word-embedding
  table (one-hot times a matrix) plus learnable positions (:class:`TextTokenizer`).
* **DropToken.** In training only, ``augment.DropToken`` keeps a random subset of the video and
  of the audio tokens after the positional embeddings (never of the text); the encoder then runs
  on the kept tokens only, so its cost falls with the drop rate.
* **Encoders.** A learnable aggregation token is prepended per modality and its output, after
  the final LayerNorm, is the modality's representation. The blocks are timm's pre-norm ViT
  ``Block`` (multi-head self-attention + GeLU MLP). One encoder per modality, or one shared by
  all three (``shared_encoder``: VATT-MA, the paper's modality-agnostic variant); text padding is
  masked out of the attention.
* **Heads** (MMV's fine-and-coarse spaces, as VATT): video -> video-audio space by a linear
  layer + BatchNorm; that -> video-text space by ReLU + linear + BatchNorm; audio -> video-audio
  space and text -> video-text space by linear + BatchNorm. The losses L2-normalise.
"""

from __future__ import annotations

import inspect
import math
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from augment import DropToken
from pipelines.train.text_tokens import PAD_ID

__all__ = [
    "AudioTokenizer",
    "Encoder",
    "ProjectionHead",
    "TextTokenizer",
    "VATT",
    "VideoTokenizer",
    "segment_audio",
    "voxelize",
]


def voxelize(video: torch.Tensor, patch_frames: int, patch_size: int) -> torch.Tensor:
    """``[B, T, C, H, W]`` -> ``[B, (T/t)(H/p)(W/p), t*p*p*C]``: voxel patches in (time, row,
    column) order, each flattened as (frame, row, column, channel)."""
    if video.ndim != 5:
        raise ValueError(f"video must be [B, T, C, H, W], got {tuple(video.shape)}")
    b, t, c, h, w = video.shape
    pt, p = patch_frames, patch_size
    if t % pt or h % p or w % p:
        raise ValueError(f"video {t}x{h}x{w} (frames x height x width) is not divisible by the patch {pt}x{p}x{p}")
    x = video.reshape(b, t // pt, pt, c, h // p, p, w // p, p)
    x = x.permute(0, 1, 4, 6, 2, 5, 7, 3)
    return x.reshape(b, (t // pt) * (h // p) * (w // p), pt * p * p * c)


def segment_audio(audio: torch.Tensor, segment: int) -> torch.Tensor:
    """``[B, S]`` -> ``[B, S/s, s]``: consecutive waveform segments."""
    if audio.ndim != 2:
        raise ValueError(f"audio must be [B, S], got {tuple(audio.shape)}")
    if audio.shape[1] % segment:
        raise ValueError(f"audio length {audio.shape[1]} is not divisible by the segment length {segment}")
    return audio.reshape(audio.shape[0], audio.shape[1] // segment, segment)


def _positions(count: int, dim: int) -> nn.Parameter:
    return nn.Parameter(torch.zeros(count, dim).normal_(std=0.02))


class VideoTokenizer(nn.Module):
    """Voxel patches -> linear projection + ``e_t[i] + e_h[j] + e_w[k]``.

    Args:
        frames, size: input frames and square frame side.
        patch_frames, patch_size: the voxel ``t x p x p``.
        dim: token width. channels: input channels.
    """

    def __init__(self, frames: int, size: int, patch_frames: int, patch_size: int, dim: int, channels: int = 3) -> None:
        super().__init__()
        if frames % patch_frames or size % patch_size:
            raise ValueError(f"frames {frames} and size {size} must be multiples of patch_frames {patch_frames} and "
                             f"patch_size {patch_size}")
        self.patch_frames, self.patch_size = patch_frames, patch_size
        self.grid = (frames // patch_frames, size // patch_size, size // patch_size)
        self.proj = nn.Linear(patch_frames * patch_size * patch_size * channels, dim)
        self.pos_t, self.pos_h, self.pos_w = (_positions(n, dim) for n in self.grid)

    @property
    def num_tokens(self) -> int:
        return math.prod(self.grid)

    def position_embeddings(self) -> torch.Tensor:
        """``[nt*nh*nw, D]``: ``e_t[i] + e_h[j] + e_w[k]`` in the voxels' order."""
        pos = self.pos_t[:, None, None] + self.pos_h[None, :, None] + self.pos_w[None, None, :]
        return pos.reshape(-1, pos.shape[-1])

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        tokens = self.proj(voxelize(video, self.patch_frames, self.patch_size))
        if tokens.shape[1] != self.num_tokens:
            raise ValueError(f"video gives {tokens.shape[1]} voxel patches, the tokenizer has {self.num_tokens} "
                             f"positions (grid {self.grid})")
        return tokens + self.position_embeddings()


class AudioTokenizer(nn.Module):
    """Waveform segments of ``segment`` samples -> linear projection + learnable positions."""

    def __init__(self, samples: int, segment: int, dim: int) -> None:
        super().__init__()
        if samples % segment:
            raise ValueError(f"samples {samples} must be a multiple of the segment length {segment}")
        self.segment = segment
        self.proj = nn.Linear(segment, dim)
        self.pos = _positions(samples // segment, dim)

    @property
    def num_tokens(self) -> int:
        return self.pos.shape[0]

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        tokens = self.proj(segment_audio(audio, self.segment))
        if tokens.shape[1] != self.num_tokens:
            raise ValueError(f"audio gives {tokens.shape[1]} segments, the tokenizer has {self.num_tokens} positions")
        return tokens + self.pos


class TextTokenizer(nn.Module):
    """Word ids ``[N, W]`` -> word embeddings + learnable positions (id 0 is padding)."""

    def __init__(self, vocab_size: int, max_words: int, dim: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=PAD_ID)
        nn.init.normal_(self.embed.weight, std=0.02)
        with torch.no_grad():
            self.embed.weight[PAD_ID].zero_()
        self.pos = _positions(max_words, dim)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if ids.ndim != 2 or ids.shape[1] != self.pos.shape[0]:
            raise ValueError(f"text ids must be [N, {self.pos.shape[0]}], got {tuple(ids.shape)}")
        return self.embed(ids) + self.pos


def _block_takes_mask(block_class: type) -> bool:
    return "attn_mask" in inspect.signature(block_class.forward).parameters


class Encoder(nn.Module):
    """``depth`` timm ViT blocks + a final LayerNorm, with an optional key-padding mask."""

    def __init__(self, dim: int, depth: int, num_heads: int, mlp_dim: int, drop_path: float = 0.0) -> None:
        super().__init__()
        from timm.models.vision_transformer import Block

        if not _block_takes_mask(Block):
            raise ImportError("the vatt encoder needs timm's Block with an attn_mask argument (timm >= 1.0.15)")
        rates = [drop_path * i / max(depth - 1, 1) for i in range(depth)]
        self.blocks = nn.ModuleList(
            Block(dim, num_heads, mlp_ratio=mlp_dim / dim, qkv_bias=True, drop_path=rate,
                  norm_layer=partial(nn.LayerNorm, eps=1e-6))
            for rate in rates
        )
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """``x [B, L, D]``; ``keep [B, L]`` bool (``False`` = padding, never attended to)."""
        mask = None if keep is None else keep[:, None, None, :]
        for block in self.blocks:
            x = block(x) if mask is None else block(x, attn_mask=mask)
        return self.norm(x)


class ProjectionHead(nn.Module):
    """``[ReLU ->] Linear [-> BatchNorm1d]``: one step into a common space."""

    def __init__(self, in_dim: int, out_dim: int, relu: bool = False, batch_norm: bool = True) -> None:
        super().__init__()
        self.relu = relu
        self.linear = nn.Linear(in_dim, out_dim)
        self.bn = nn.BatchNorm1d(out_dim) if batch_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.linear(F.relu(x) if self.relu else x)
        if self.bn is None:
            return x
        if self.training and x.shape[0] < 2:  # batch statistics need two rows: use the running ones
            return F.batch_norm(x, self.bn.running_mean, self.bn.running_var, self.bn.weight, self.bn.bias, False,
                                0.0, self.bn.eps)
        return self.bn(x)


class VATT(nn.Module):
    """Video, audio and text transformers with DropToken and common-space heads.

    Args:
        frames, size, patch_frames, patch_size: video input and voxel patch.
        audio_samples, audio_segment: audio input length and segment.
        vocab_size, max_words: text ids.
        dim, depth, num_heads, mlp_dim: each encoder (the same sizes for all three).
        shared_encoder: one encoder for every modality (VATT-MA).
        va_dim, vt_dim: the video-audio and video-text spaces (paper: 512, 256).
        head_bn: BatchNorm after the heads' linear layers.
        drop_rate: DropToken rate on video and audio tokens in training (paper: 0.5).
        drop_shared: one kept subset for the whole batch (VATT's reference) instead of one per clip.
        drop_path: stochastic depth of the last block (linear from 0 at the first).

    ``forward(video, audio, text_ids, text_mask)`` with float video ``[B, T, 3, H, W]``, float
    audio ``[B, S]``, int64 ``text_ids [B, K, W]`` and bool ``text_mask [B, K]`` returns
    ``video_va``, ``video_vt``, ``audio_va`` ``[B, .]``, ``text_vt [B, K, vt_dim]`` (zeros where
    masked), ``text_mask`` and ``unused`` (a zero that touches the text encoder when no caption is
    valid, so DDP sees a gradient for every parameter).
    """

    MODALITIES = ("video", "audio", "text")

    def __init__(self, *, frames: int, size: int, patch_frames: int, patch_size: int, audio_samples: int,
                 audio_segment: int, vocab_size: int, max_words: int, dim: int, depth: int, num_heads: int,
                 mlp_dim: int, shared_encoder: bool = False, va_dim: int = 512, vt_dim: int = 256,
                 head_bn: bool = True, drop_rate: float = 0.5, drop_shared: bool = True,
                 drop_path: float = 0.0) -> None:
        super().__init__()
        self.video_tokens = VideoTokenizer(frames, size, patch_frames, patch_size, dim)
        self.audio_tokens = AudioTokenizer(audio_samples, audio_segment, dim)
        self.text_tokens = TextTokenizer(vocab_size, max_words, dim)
        self.agg = nn.ParameterDict({m: nn.Parameter(torch.zeros(1, 1, dim).normal_(std=0.02)) for m in self.MODALITIES})
        self.shared_encoder = bool(shared_encoder)
        if self.shared_encoder:
            self.encoder = Encoder(dim, depth, num_heads, mlp_dim, drop_path)
        else:
            self.encoders = nn.ModuleDict({m: Encoder(dim, depth, num_heads, mlp_dim, drop_path) for m in self.MODALITIES})
        self.video_to_va = ProjectionHead(dim, va_dim, batch_norm=head_bn)
        self.va_to_vt = ProjectionHead(va_dim, vt_dim, relu=True, batch_norm=head_bn)
        self.audio_to_va = ProjectionHead(dim, va_dim, batch_norm=head_bn)
        self.text_to_vt = ProjectionHead(dim, vt_dim, batch_norm=head_bn)
        self.drop_token = DropToken(drop_rate, shared=drop_shared)
        self.vt_dim = vt_dim

    def encoder_of(self, modality: str) -> Encoder:
        """The encoder that runs ``modality``'s tokens."""
        return self.encoder if self.shared_encoder else self.encoders[modality]

    def _encode(self, modality: str, tokens: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        agg = self.agg[modality].expand(tokens.shape[0], -1, -1).to(tokens.dtype)
        x = torch.cat([agg, tokens], dim=1)
        if keep is not None:
            keep = torch.cat([torch.ones_like(keep[:, :1]), keep], dim=1)
        return self.encoder_of(modality)(x, keep)[:, 0]

    def _dropped(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.training and self.drop_token.rate > 0:
            tokens, _ = self.drop_token(tokens)
        return tokens

    def encode_video(self, video: torch.Tensor) -> torch.Tensor:
        """The video representation ``[B, D]`` (the aggregation token's output)."""
        return self._encode("video", self._dropped(self.video_tokens(video)))

    def encode_audio(self, audio: torch.Tensor) -> torch.Tensor:
        """The audio representation ``[B, D]``."""
        return self._encode("audio", self._dropped(self.audio_tokens(audio)))

    def encode_text(self, ids: torch.Tensor) -> torch.Tensor:
        """The text representation ``[N, D]`` of ``N`` captions of word ids."""
        return self._encode("text", self.text_tokens(ids), ids != PAD_ID)

    def embed_video(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(video_va, video_vt)``: the video in both common spaces (not normalised)."""
        va = self.video_to_va(self.encode_video(video))
        return va, self.va_to_vt(va)

    def embed_audio(self, audio: torch.Tensor) -> torch.Tensor:
        """``audio_va``: the audio in the video-audio space (not normalised)."""
        return self.audio_to_va(self.encode_audio(audio))

    def embed_text(self, ids: torch.Tensor) -> torch.Tensor:
        """``text_vt [N, vt_dim]``: captions in the video-text space (not normalised)."""
        return self.text_to_vt(self.encode_text(ids))

    def forward(self, video: torch.Tensor, audio: torch.Tensor, text_ids: torch.Tensor,
                text_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        if text_ids.ndim != 3 or text_mask.shape != text_ids.shape[:2]:
            raise ValueError(f"text_ids must be [B, K, W] and text_mask [B, K], got {tuple(text_ids.shape)} and "
                             f"{tuple(text_mask.shape)}")
        video_va, video_vt = self.embed_video(video)
        audio_va = self.embed_audio(audio)
        batch, bag, _ = text_ids.shape
        flat_mask = text_mask.reshape(-1)
        text_vt = video_vt.new_zeros(batch * bag, self.vt_dim)
        if bool(flat_mask.any()):
            chosen = flat_mask.nonzero().squeeze(1)
            embedded = self.embed_text(text_ids.reshape(batch * bag, -1).index_select(0, chosen))
            text_vt = text_vt.to(embedded.dtype).index_copy(0, chosen, embedded)
            unused = video_va.new_zeros(())
        else:  # no caption: touch the text path once so that every parameter gets a (zero) gradient
            probe = torch.full_like(text_ids[:1, 0], PAD_ID)
            unused = self.embed_text(probe).sum() * 0.0
        return {"video_va": video_va, "video_vt": video_vt, "audio_va": audio_va,
                "text_vt": text_vt.reshape(batch, bag, -1), "text_mask": text_mask, "unused": unused}

"""Token-level data operators: DropToken (VATT, Akbari et al., 2021) and MAE random masking
(He et al., 2021), applied to patch tokens after patch and position embedding.

Both return the indices they kept, so position embeddings or reconstruction targets can be
gathered to match. Text tokens are never passed here: VATT drops only video/audio tokens.
"""

from __future__ import annotations

import torch

from augment import functional as F
from augment._transform import check_generator, draw_device

__all__ = ["DropToken", "RandomMasking"]


def _check_tokens(tokens: object) -> torch.Tensor:
    if not isinstance(tokens, torch.Tensor) or tokens.ndim != 3:
        raise ValueError(f"tokens must be a tensor [B,L,D], got {getattr(tokens, 'shape', type(tokens))}")
    return tokens


class DropToken:
    """Keep a random subset of tokens: ``tokens [B,L,D] -> (kept [B,K,D], index)``.

    ``K = L - int(L * rate)`` (at least 1). With ``shared=False`` every sample keeps its own subset
    (timm ``PatchDropout`` / MAE semantics; ``index`` is ``[B,K]``); with ``shared=True`` one
    random subset serves the whole batch, as VATT's reference code draws one permutation per batch
    (``index`` is ``[K]``, and the gather is a cheaper slice). Kept tokens stay in their original
    order; the first ``num_prefix_tokens`` (e.g. a class token) are always kept.

    Args:
        rate: fraction dropped, in ``[0, 1)`` (VATT: 0.5).
        shared: one subset for the batch (VATT) instead of one per sample.
        num_prefix_tokens: leading tokens never dropped.
    """

    def __init__(self, rate: float = 0.5, shared: bool = False, num_prefix_tokens: int = 0) -> None:
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate < 1.0:
            raise ValueError(f"rate must be a float in [0, 1), got {rate!r}")
        if not isinstance(shared, bool):
            raise ValueError(f"shared must be a bool, got {shared!r}")
        if isinstance(num_prefix_tokens, bool) or not isinstance(num_prefix_tokens, int) or num_prefix_tokens < 0:
            raise ValueError(f"num_prefix_tokens must be an int >= 0, got {num_prefix_tokens!r}")
        self.rate, self.shared, self.num_prefix_tokens = float(rate), shared, num_prefix_tokens

    def make_params(self, tokens: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Draw the kept indices (sorted, prefix included): ``{"index": [B,K] or [K]}``."""
        batch, length, _ = tokens.shape
        prefix = self.num_prefix_tokens
        if length <= prefix:
            raise ValueError(f"tokens have L={length}, not more than num_prefix_tokens={prefix}")
        body = length - prefix
        keep = max(1, body - int(body * self.rate))
        rows = 1 if self.shared else batch
        noise = torch.rand((rows, body), generator=generator, device=draw_device(generator))
        chosen = noise.argsort(dim=1)[:, :keep].sort(dim=1).values + prefix
        if prefix:
            chosen = torch.cat([torch.arange(prefix).expand(rows, prefix), chosen], dim=1)
        chosen = chosen.to(tokens.device)
        return {"index": chosen[0] if self.shared else chosen}

    def apply(self, tokens: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
        return F.gather_tokens(tokens, params["index"])

    def __call__(self, tokens: torch.Tensor, *, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        _check_tokens(tokens)
        check_generator(generator)
        params = self.make_params(tokens, generator)
        return self.apply(tokens, params), params["index"]

    def __repr__(self) -> str:
        return f"DropToken(rate={self.rate}, shared={self.shared}, num_prefix_tokens={self.num_prefix_tokens})"


class RandomMasking:
    """MAE random masking: ``tokens [B,L,D] -> (kept [B,K,D], mask [B,L], ids_restore [B,L])``.

    Per sample, ``noise ~ U(0,1)``; keep the ``int(L * (1 - ratio))`` lowest-noise tokens (in
    noise order, as MAE does); ``mask`` is 1 for removed tokens; ``ids_restore`` unshuffles.

    Args:
        ratio: fraction removed (MAE default 0.75).
    """

    def __init__(self, ratio: float = 0.75) -> None:
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0.0 <= ratio < 1.0:
            raise ValueError(f"ratio must be a float in [0, 1), got {ratio!r}")
        self.ratio = float(ratio)

    def make_params(self, tokens: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        batch, length, _ = tokens.shape
        return {"noise": torch.rand((batch, length), generator=generator, device=draw_device(generator)).to(tokens.device)}

    def apply(self, tokens: torch.Tensor, params: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return F.random_masking(tokens, params["noise"], self.ratio)

    def __call__(self, tokens: torch.Tensor, *, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        _check_tokens(tokens)
        check_generator(generator)
        return self.apply(tokens, self.make_params(tokens, generator))

    def __repr__(self) -> str:
        return f"RandomMasking(ratio={self.ratio})"

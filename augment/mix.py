"""MixUp (Zhang et al., 2018), CutMix (Yun et al., 2019) and the two combined, on batches.

timm's conventions (``lam ~ Beta(alpha, alpha)``, ``switch_prob``, ``correct_lam``, label smoothing,
``batch`` / ``pair`` / ``elem`` modes) with what timm and torchvision lack: odd batch sizes,
multi-hot targets, segmentation masks carried by CutMix, and a ``torch.Generator``.

Pairing: ``batch`` and ``elem`` mix each sample with the next one along a random cycle (every
sample gets a partner, whatever ``B``); ``pair`` mixes the two members of random pairs with one
shared ``lam`` and box, and for odd ``B`` the unpaired sample mixes one-way with a random other.
timm instead pairs sample ``i`` with ``B - 1 - i`` (the flipped batch) and needs an even ``B``.
CutMix boxes are timm's (``rand_bbox`` / ``rand_bbox_minmax``) for the same ``lam`` and centre.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from augment import functional as F
from augment._sampling import sample_beta
from augment._transform import Params, check_generator, check_image, draw_device

__all__ = ["MIX_MODES", "CutMix", "MixUp", "MixUpCutMix"]

#: the ``mode`` values
MIX_MODES = ("batch", "pair", "elem")


def _check_alpha(alpha: Any, name: str) -> None:
    """``alpha`` of :class:`MixUp` / :class:`CutMix`: a finite float > 0.

    timm's ``Mixup`` reads ``mixup_alpha = 0`` / ``cutmix_alpha = 0`` as "disabled"; a MixUp or
    CutMix that is disabled is a mistake here, so 0 (like nan, inf and negatives) is refused.
    """
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < math.inf:
        raise ValueError(f"{name}: alpha must be a finite float > 0 (the Beta(alpha, alpha) parameter), got {alpha!r}; "
                         "to disable it, leave the op out (MixUpCutMix takes 0 to disable one of the two)")


class MixUpCutMix:
    """MixUp and/or CutMix on a batch, choosing CutMix with probability ``switch_prob``.

    Call as ``mix(x, target)`` -> ``(x_mixed, target_mixed)``, or ``mix(x, target, mask)`` ->
    ``(x, target, mask)`` (CutMix only: a MixUp of label maps is meaningless). ``x`` is
    ``[B,C,H,W]`` (uint8 or float, any device, ``B >= 2``; an empty batch, ``B = 0``, comes back
    unchanged); ``target`` class indices ``[B]`` (needs
    ``num_classes``) or multi-hot / soft ``[B,K]``; the mixed targets are float32 ``[B,K]``.
    ``blends`` and ``carries_masks`` are set as :class:`augment.Transform`'s flags: MixUp blends,
    and masks follow only when MixUp is off.

    Args:
        mixup_alpha: Beta parameter of MixUp (0 disables MixUp).
        cutmix_alpha: Beta parameter of CutMix (0 disables CutMix).
        switch_prob: probability of CutMix when both are enabled.
        prob: probability that a batch / pair / element is mixed at all.
        mode: ``"batch"``, ``"pair"`` or ``"elem"`` (see the module docstring).
        correct_lam: recompute CutMix's ``lam`` from the clipped box area.
        label_smoothing: ``s`` in ``[0, 1)``.
        num_classes: ``K`` for index targets.
        cutmix_minmax: timm's ``cutmix_minmax``: ``(low, high)`` fractions of each side; CutMix
            boxes then have sides drawn uniformly in ``[int(size * low), int(size * high))`` and
            a uniform position (timm's ``rand_bbox_minmax``), and ``lam`` comes from the box
            whatever ``correct_lam`` says. As in timm, it turns CutMix on (``cutmix_alpha`` is
            set to 1.0; it no longer matters).
    """

    def __init__(self, mixup_alpha: float = 0.8, cutmix_alpha: float = 1.0, switch_prob: float = 0.5,
                 prob: float = 1.0, mode: str = "batch", correct_lam: bool = True, label_smoothing: float = 0.1,
                 num_classes: int | None = None, cutmix_minmax: tuple[float, float] | None = None) -> None:
        if cutmix_minmax is not None:
            cutmix_minmax = F.check_cutmix_minmax(cutmix_minmax)
            cutmix_alpha = 1.0  # as timm: with cutmix_minmax, CutMix is on and the box alone sets lam
        for name, value in (("mixup_alpha", mixup_alpha), ("cutmix_alpha", cutmix_alpha)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
                raise ValueError(f"{name} must be a finite float >= 0 (0 disables it), got {value!r}")
        if mixup_alpha == 0 and cutmix_alpha == 0:
            raise ValueError("at least one of mixup_alpha and cutmix_alpha must be > 0")
        for name, value in (("switch_prob", switch_prob), ("prob", prob)):
            if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value!r}")
        if mode not in MIX_MODES:
            raise ValueError(f"mode must be one of {MIX_MODES}, got {mode!r}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing!r}")
        if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1):
            raise ValueError(f"num_classes must be a positive int or None, got {num_classes!r}")
        self.mixup_alpha, self.cutmix_alpha = float(mixup_alpha), float(cutmix_alpha)
        self.switch_prob, self.prob, self.mode = float(switch_prob), float(prob), mode
        self.correct_lam, self.label_smoothing, self.num_classes = bool(correct_lam), float(label_smoothing), num_classes
        self.cutmix_minmax = cutmix_minmax

    # -- flags, as augment.Transform's ----------------------------------------------------------
    @property
    def blends(self) -> bool:
        """MixUp blends each image with its partner (CutMix pastes: no pixel is a mix)."""
        return self.mixup_alpha > 0

    @property
    def carries_masks(self) -> bool:
        """Masks follow CutMix only: a blend of label maps is meaningless."""
        return self.mixup_alpha == 0

    # -- parameters -------------------------------------------------------------------------------
    def _groups(self, batch: int, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor, int]:
        """``(partner [B], group [B], groups)``: samples of one group share lam / box / switch."""
        order = torch.randperm(batch, generator=generator, device=draw_device(generator)).cpu()
        partner = torch.empty(batch, dtype=torch.int64)
        group = torch.empty(batch, dtype=torch.int64)
        if self.mode == "pair":
            pairs = batch // 2
            partner[order[0:2 * pairs:2]] = order[1:2 * pairs:2]
            partner[order[1:2 * pairs:2]] = order[0:2 * pairs:2]
            group[order[0:2 * pairs:2]] = torch.arange(pairs)
            group[order[1:2 * pairs:2]] = torch.arange(pairs)
            if batch % 2:
                partner[order[-1]] = order[0]
                group[order[-1]] = pairs
            return partner, group, pairs + batch % 2
        partner[order] = order.roll(-1)
        if self.mode == "batch":
            return partner, torch.zeros(batch, dtype=torch.int64), 1
        return partner, torch.arange(batch), batch

    def make_params(self, x: torch.Tensor, generator: torch.Generator | None = None) -> Params:
        """Draw ``partner``, ``lam`` (weight of the own sample, after ``correct_lam``),
        ``cutmix`` (bool) and ``boxes`` ``(top, left, bottom, right)`` for the batch ``x``."""
        batch, height, width = x.shape[0], x.shape[-2], x.shape[-1]
        if batch == 0:  # an empty batch: nothing to mix, nothing drawn
            return {"partner": torch.empty(0, dtype=torch.int64), "lam": torch.empty(0, dtype=torch.float64),
                    "cutmix": torch.empty(0, dtype=torch.bool), "boxes": torch.empty((0, 4), dtype=torch.int64)}
        if batch < 2:
            raise ValueError(f"{type(self).__name__} mixes samples of a batch: needs [B,C,H,W] with B >= 2 "
                             f"(or an empty batch), got B={batch}")
        partner, group, groups = self._groups(batch, generator)
        device = draw_device(generator)
        use_cutmix = torch.rand(groups, generator=generator, device=device).cpu() < self.switch_prob
        if self.mixup_alpha == 0:
            use_cutmix[:] = True
        elif self.cutmix_alpha == 0:
            use_cutmix[:] = False
        lam_mix = sample_beta(self.mixup_alpha or 1.0, self.mixup_alpha or 1.0, groups, generator).cpu()
        lam_cut = sample_beta(self.cutmix_alpha or 1.0, self.cutmix_alpha or 1.0, groups, generator).cpu()
        centers = torch.rand((groups, 2), generator=generator, device=device, dtype=torch.float64).cpu()
        apply = torch.rand(groups, generator=generator, device=device).cpu() < self.prob
        if self.cutmix_minmax is None:
            boxes, corrected = F.cutmix_boxes(lam_cut, height, width, centers)
            if self.correct_lam:
                lam_cut = corrected
        else:  # timm's rand_bbox_minmax: box sides drawn in the range; lam always from the box
            draws = torch.rand((groups, 4), generator=generator, device=device, dtype=torch.float64).cpu()
            boxes, lam_cut = F.cutmix_boxes_minmax(height, width, self.cutmix_minmax, draws)
        lam = torch.where(use_cutmix, lam_cut, lam_mix)
        lam = torch.where(apply, lam, torch.ones_like(lam))
        boxes[~(apply & use_cutmix)] = 0
        return {"partner": partner, "lam": lam[group], "cutmix": (use_cutmix & apply)[group], "boxes": boxes[group]}

    # -- application ------------------------------------------------------------------------------
    def apply(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        """Mix the batch ``x`` with ``params`` (pure)."""
        partner, lam, use_cutmix = params["partner"], params["lam"], params["cutmix"]
        boxes = params["boxes"].clone()
        boxes[~use_cutmix] = 0
        blend = torch.where(use_cutmix, torch.ones_like(lam), lam)
        if bool(use_cutmix.all()):
            return F.cutmix(x, x, boxes, partner)
        mixed = F.mixup(x, x, blend, partner) if bool((blend < 1).any()) else x.clone()
        if not bool(use_cutmix.any()):
            return mixed
        return F.cutmix(mixed, x, boxes, partner)  # boxes are empty for the MixUp samples

    def apply_target(self, target: torch.Tensor, params: Params) -> torch.Tensor:
        """Smoothed, mixed float32 targets ``[B,K]``."""
        smooth = F.smooth_targets(target, self.num_classes, self.label_smoothing)
        return F.mix_targets(smooth, params["lam"], params["partner"])

    def apply_mask(self, mask: torch.Tensor, params: Params) -> torch.Tensor:
        """Carry integer masks ``[B,H,W]`` through CutMix."""
        if not self.carries_masks:
            raise ValueError(f"{type(self).__name__}: masks can only follow CutMix; set mixup_alpha=0 (or use CutMix)")
        boxes = params["boxes"].clone()
        boxes[~params["cutmix"]] = 0
        return F.cutmix(mask, mask, boxes, params["partner"])

    def __call__(self, x: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None, *,
                 generator: torch.Generator | None = None) -> Any:
        check_generator(generator)
        check_image(x, "x")
        if x.ndim != 4:
            raise ValueError(f"{type(self).__name__} needs a batch [B,C,H,W], got {tuple(x.shape)}")
        if not isinstance(target, torch.Tensor) or target.shape[0] != x.shape[0]:
            raise ValueError(f"target must be a tensor with {x.shape[0]} rows, got {getattr(target, 'shape', type(target))}")
        if mask is not None and not self.carries_masks:
            raise ValueError(f"{type(self).__name__}: masks can only follow CutMix; set mixup_alpha=0 (or use CutMix)")
        params = self.make_params(x, generator)
        out, mixed = self.apply(x, params), self.apply_target(target, params)
        if mask is None:
            return out, mixed
        if mask.shape != (x.shape[0], *x.shape[-2:]):
            raise ValueError(f"mask must have shape {(x.shape[0], *x.shape[-2:])}, got {tuple(mask.shape)}")
        return out, mixed, self.apply_mask(mask, params)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in vars(self).items())})"


class MixUp(MixUpCutMix):
    """MixUp only: ``x = lam * x + (1 - lam) * x[partner]``, ``lam ~ Beta(alpha, alpha)``.

    Args:
        alpha: the Beta parameter, a finite float > 0 (0, nan, inf raise ``ValueError``).
            Other arguments as :class:`MixUpCutMix`.
    """

    def __init__(self, alpha: float = 0.8, prob: float = 1.0, mode: str = "batch", label_smoothing: float = 0.1,
                 num_classes: int | None = None) -> None:
        _check_alpha(alpha, "MixUp")
        super().__init__(alpha, 0.0, 0.0, prob, mode, True, label_smoothing, num_classes)


class CutMix(MixUpCutMix):
    """CutMix only: paste a box of area ``~(1 - lam)`` from the partner; carries masks.

    The box is timm's ``rand_bbox`` for the same ``lam`` and centre (or ``rand_bbox_minmax`` with
    ``cutmix_minmax``).

    Args:
        alpha: the Beta parameter, a finite float > 0 (0, nan, inf raise ``ValueError``).
            Other arguments as :class:`MixUpCutMix`.
    """

    def __init__(self, alpha: float = 1.0, prob: float = 1.0, mode: str = "batch", correct_lam: bool = True,
                 label_smoothing: float = 0.1, num_classes: int | None = None,
                 cutmix_minmax: tuple[float, float] | None = None) -> None:
        _check_alpha(alpha, "CutMix")
        super().__init__(0.0, alpha, 1.0, prob, mode, correct_lam, label_smoothing, num_classes, cutmix_minmax)

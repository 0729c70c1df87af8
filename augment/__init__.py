"""augment: data augmentation operators on tensors -- a functional core and thin transforms.

Families (each class draws its parameters per sample, optionally from a ``torch.Generator`` passed
to the call, and calls a pure kernel in :mod:`augment.functional`):

* patch-based negatives (Qin et al., 2021): :class:`PatchShuffle`, :class:`PatchRotate`,
  :class:`PatchInfill`, :class:`NegativeViews`, and their losses in :mod:`augment.losses`;
* :class:`MixUp`, :class:`CutMix`, :class:`MixUpCutMix` (timm conventions, odd batches, masks);
* :class:`AutoAugment`, :class:`RandAugment`, :class:`TrivialAugmentWide`, :class:`AugMix`
  (torchvision's ops and bins, per sample on batches);
* :class:`DropToken` (VATT) and :class:`RandomMasking` (MAE) on token sequences;
* :class:`RandomResizedCrop` and :class:`RandomHorizontalFlip`, the standard ImageNet training
  crop and flip, bit-identical to torchvision v2's with the same seed, one draw per sample;
* :class:`Compose`, :class:`OneOf`, :class:`RandomApply`, the spec language
  (:func:`parse_spec`), and the :class:`Albumentations` bridge.

This package imports nothing else of the toolkit.
"""

from augment import functional, losses
from augment._transform import Transform
from augment.autoaugment import AugMix, AutoAugment, RandAugment, TrivialAugmentWide
from augment.bridge import Albumentations
from augment.compose import Compose, OneOf, RandomApply
from augment.geometry import RandomHorizontalFlip, RandomResizedCrop
from augment.mix import CutMix, MixUp, MixUpCutMix
from augment.patch import NegativeViews, PatchInfill, PatchRotate, PatchShuffle
from augment.preview import preview_grid
from augment.spec import AugmentSpec, OpSpec, build, format_spec, parse_spec
from augment.tokens import DropToken, RandomMasking

__all__ = [
    "Albumentations",
    "AugMix",
    "AugmentSpec",
    "AutoAugment",
    "Compose",
    "CutMix",
    "DropToken",
    "MixUp",
    "MixUpCutMix",
    "NegativeViews",
    "OneOf",
    "OpSpec",
    "PatchInfill",
    "PatchRotate",
    "PatchShuffle",
    "RandAugment",
    "RandomApply",
    "RandomHorizontalFlip",
    "RandomMasking",
    "RandomResizedCrop",
    "Transform",
    "TrivialAugmentWide",
    "build",
    "format_spec",
    "functional",
    "losses",
    "parse_spec",
    "preview_grid",
]

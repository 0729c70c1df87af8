"""Pure kernels behind the ``augment`` transforms: no randomness, batched ``[B,...]`` tensors, any
device. The transform classes draw parameters and call these."""

from augment.functional._aa_ops import OPS, apply_op
from augment.functional._autoaugment import apply_ops, augmix
from augment.functional._geometry import hflip, resized_crop, resized_crop_masks
from augment.functional._mix import cutmix, cutmix_boxes, cutmix_boxes_minmax, mix_targets, mixup, smooth_targets
from augment.functional._patch import (
    MIN_INFILL_GRID,
    check_infill_grid,
    check_patch_size,
    infill_region,
    infill_regions,
    infill_sources,
    patch_gather,
    patch_infill,
    patch_rotate,
    patch_shuffle,
)
from augment.functional._tokens import gather_tokens, random_masking, unshuffle_tokens

__all__ = [
    "MIN_INFILL_GRID",
    "OPS",
    "apply_op",
    "apply_ops",
    "augmix",
    "check_infill_grid",
    "check_patch_size",
    "cutmix",
    "cutmix_boxes",
    "cutmix_boxes_minmax",
    "gather_tokens",
    "hflip",
    "infill_region",
    "infill_regions",
    "infill_sources",
    "mix_targets",
    "mixup",
    "patch_gather",
    "patch_infill",
    "patch_rotate",
    "patch_shuffle",
    "random_masking",
    "resized_crop",
    "resized_crop_masks",
    "smooth_targets",
    "unshuffle_tokens",
]

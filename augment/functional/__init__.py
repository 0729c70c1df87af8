"""Pure kernels behind the ``augment`` transforms: no randomness, batched ``[B,...]`` tensors, any
device. The transform classes draw parameters and call these; random draws that need more than a
torch call (gamma, Beta, Dirichlet) live in the private ``augment._sampling``, outside this
package. Every name a transform class uses is exported here: the classes import this namespace,
never its private modules (tests check both rules)."""

from augment.functional._aa_ops import GEOMETRIC_OPS, OPS, apply_op, apply_op_to_target, check_fill, fill_values
from augment.functional._autoaugment import (
    AUGMIX_SPACE,
    AUTOAUGMENT_POLICIES,
    AUTOAUGMENT_SPACE,
    RANDAUGMENT_SPACE,
    TRIVIALAUGMENT_SPACE,
    apply_ops,
    apply_ops_to_target,
    augmix,
    magnitude_bins,
)
from augment.functional._geometry import hflip, resized_crop, resized_crop_masks
from augment.functional._mix import (
    check_cutmix_minmax,
    cutmix,
    cutmix_boxes,
    cutmix_boxes_minmax,
    mix_targets,
    mixup,
    smooth_targets,
)
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
    "AUGMIX_SPACE",
    "AUTOAUGMENT_POLICIES",
    "AUTOAUGMENT_SPACE",
    "GEOMETRIC_OPS",
    "MIN_INFILL_GRID",
    "OPS",
    "RANDAUGMENT_SPACE",
    "TRIVIALAUGMENT_SPACE",
    "apply_op",
    "apply_op_to_target",
    "apply_ops",
    "apply_ops_to_target",
    "augmix",
    "check_cutmix_minmax",
    "check_fill",
    "check_infill_grid",
    "check_patch_size",
    "cutmix",
    "cutmix_boxes",
    "cutmix_boxes_minmax",
    "fill_values",
    "gather_tokens",
    "hflip",
    "infill_region",
    "infill_regions",
    "infill_sources",
    "magnitude_bins",
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

"""The ImageNet family: ImageNet-1k (train/val, three val layouts, ReaL) and its test variants
A, R, C, V2 and Sketch, all labelled with the standard 1k class index.

Importing this package registers ``imagenet``, ``imagenet-a``, ``imagenet-r``, ``imagenet-c``,
``imagenet-v2`` and ``imagenet-sketch``. Layouts: ``docs/imagenet.md``.
"""

from loaders.imagenet.common import ImageNetFamily
from loaders.imagenet.corruptions import (
    ALL_CORRUPTIONS,
    BENCHMARK_CORRUPTIONS,
    EXTRA_CORRUPTIONS,
    SEVERITIES,
    ImageNetCDataset,
)
from loaders.imagenet.imagenet1k import ImageNetDataset
from loaders.imagenet.metadata import (
    imagenet_class_names,
    imagenet_wnids,
    read_devkit_meta,
    read_real_labels,
    read_synset_mapping,
    read_val_solution,
    subset_indices,
    subset_logits_mask,
    subset_wnids,
)
from loaders.imagenet.variants import (
    V2_VARIANTS,
    ImageNetADataset,
    ImageNetRDataset,
    ImageNetSketchDataset,
    ImageNetSubsetDataset,
    ImageNetV2Dataset,
)

__all__ = [
    "ALL_CORRUPTIONS",
    "BENCHMARK_CORRUPTIONS",
    "EXTRA_CORRUPTIONS",
    "ImageNetADataset",
    "ImageNetCDataset",
    "ImageNetDataset",
    "ImageNetFamily",
    "ImageNetRDataset",
    "ImageNetSketchDataset",
    "ImageNetSubsetDataset",
    "ImageNetV2Dataset",
    "SEVERITIES",
    "V2_VARIANTS",
    "imagenet_class_names",
    "imagenet_wnids",
    "read_devkit_meta",
    "read_real_labels",
    "read_synset_mapping",
    "read_val_solution",
    "subset_indices",
    "subset_logits_mask",
    "subset_wnids",
]

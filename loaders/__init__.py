"""loaders: the sample schema, the safe codec table, the dataset adapter registry and adapters.

``loaders`` imports nothing else of the toolkit (``augment``, ``pipelines``, ``datafactory``).

>>> import loaders
>>> ds = loaders.open_dataset("shapes", split="val", size=4)
>>> sorted(ds[0])
['__key__', '__source__', 'image', 'label', 'mask', 'meta']
"""

from loaders.base import Adapter, MissingFilesWarning, SampleError, check_on_error, skip_none_collate, summarize_sample
from loaders.codecs import (
    CODECS,
    AudioClip,
    Codec,
    CodecError,
    VideoClip,
    decode,
    decode_sample,
    encode,
    encode_sample,
    get_codec,
)
from loaders.media import get_max_pixels, set_max_pixels
from loaders.registry import dataset_factory, list_datasets, open_dataset, register_dataset
from loaders.schema import FIELDS, KEY, SOURCE, safe_key, validate_key, validate_sample

# Built-in adapters register themselves on import (one module per dataset family).
from loaders import folder, hf, imagenet, multimodal, shapes, xray  # noqa: E402,F401  isort: skip
from loaders.folder import FolderDataset
from loaders.hf import HFDataset
from loaders.shapes import PART_CLASSES, SHAPE_CLASSES, ShapesDataset, annotate_parts

__all__ = [
    "Adapter",
    "AudioClip",
    "CODECS",
    "Codec",
    "CodecError",
    "FIELDS",
    "FolderDataset",
    "HFDataset",
    "KEY",
    "MissingFilesWarning",
    "PART_CLASSES",
    "SHAPE_CLASSES",
    "SOURCE",
    "SampleError",
    "ShapesDataset",
    "VideoClip",
    "annotate_parts",
    "check_on_error",
    "dataset_factory",
    "decode",
    "decode_sample",
    "encode",
    "encode_sample",
    "get_codec",
    "get_max_pixels",
    "list_datasets",
    "open_dataset",
    "register_dataset",
    "safe_key",
    "set_max_pixels",
    "skip_none_collate",
    "summarize_sample",
    "validate_key",
    "validate_sample",
]

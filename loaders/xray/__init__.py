"""Chest X-ray collections with harmonised labels (TorchXRayVision conventions) and DICOM decoding.

Importing this package registers the adapters ``nih``, ``nih-google``, ``chexpert``,
``mimic-cxr``, ``padchest``, ``rsna-pneumonia``, ``siim-pneumothorax``, ``vindr-cxr``, ``openi``,
``covid19`` and ``nlm-tb``. Each sample carries ``labels``: float32 ``[18]`` over
:data:`PATHOLOGIES` (NaN where the collection does not label a pathology); :func:`merge`
concatenates collections with aligned labels. See ``docs/xray.md`` for layouts and label rules.
"""

from loaders.xray.labels import PATHOLOGIES, UNCERTAIN_POLICIES, harmonise, relabel
from loaders.xray.common import DEFAULT_VIEWS, IMAGE_FORMATS, XRayDataset, convert_image

# one module per collection; importing registers it
from loaders.xray.nih import NIHDataset, NIHGoogleDataset  # noqa: E402  isort: skip
from loaders.xray.chexpert import CheXpertDataset, MIMICDataset  # noqa: E402  isort: skip
from loaders.xray.padchest import PadChestDataset  # noqa: E402  isort: skip
from loaders.xray.rsna import RSNAPneumoniaDataset  # noqa: E402  isort: skip
from loaders.xray.siim import SIIMPneumothoraxDataset, rle_decode, rle_encode  # noqa: E402  isort: skip
from loaders.xray.vindr import VinDrCXRDataset  # noqa: E402  isort: skip
from loaders.xray.openi import OpenIDataset  # noqa: E402  isort: skip
from loaders.xray.covid19 import COVID19Dataset  # noqa: E402  isort: skip
from loaders.xray.nlmtb import NLMTBDataset  # noqa: E402  isort: skip
from loaders.xray.merge import MergedXRayDataset, merge  # noqa: E402  isort: skip

__all__ = [
    "COVID19Dataset",
    "CheXpertDataset",
    "DEFAULT_VIEWS",
    "IMAGE_FORMATS",
    "MIMICDataset",
    "MergedXRayDataset",
    "NIHDataset",
    "NIHGoogleDataset",
    "NLMTBDataset",
    "OpenIDataset",
    "PATHOLOGIES",
    "PadChestDataset",
    "RSNAPneumoniaDataset",
    "SIIMPneumothoraxDataset",
    "UNCERTAIN_POLICIES",
    "VinDrCXRDataset",
    "XRayDataset",
    "convert_image",
    "harmonise",
    "merge",
    "relabel",
    "rle_decode",
    "rle_encode",
]

"""Multimodal clip adapters: AudioSet, HowTo100M, Ego4D and the ``avshapes`` demo (registered on import).

* :mod:`loaders.clip_io` -- seeking PyAV clip readers, resampling (shared by all three; media I/O,
  so it lives next to :mod:`loaders.media`);
* :mod:`loaders.multimodal.pairing` -- clip windows and clip-text pairing rules (pure functions);
* :mod:`loaders.multimodal.audioset_meta` -- AudioSet CSVs, class index and ontology helpers;
* :mod:`loaders.multimodal.audioset`, :mod:`~loaders.multimodal.howto100m`,
  :mod:`~loaders.multimodal.ego4d` -- the adapters (``audioset``, ``howto100m``, ``ego4d``);
* :mod:`loaders.multimodal.avshapes` -- ``avshapes``, rendered clips of moving shapes with a tone
  per shape and captions (no download).

PyAV and h5py are imported only inside the functions that decode media.
"""

from loaders.clip_io import Clip, read_audio, read_audio_clip, read_clip, resample
from loaders.multimodal.audioset import AudioSetDataset
from loaders.multimodal.audioset_meta import Ontology, read_class_labels, read_segments
from loaders.multimodal.avshapes import AVShapesDataset
from loaders.multimodal.clips import ClipAdapter
from loaders.multimodal.ego4d import Ego4DDataset
from loaders.multimodal.howto100m import HowTo100MDataset

__all__ = [
    "AVShapesDataset",
    "AudioSetDataset",
    "Clip",
    "ClipAdapter",
    "Ego4DDataset",
    "HowTo100MDataset",
    "Ontology",
    "read_audio",
    "read_audio_clip",
    "read_class_labels",
    "read_clip",
    "read_segments",
    "resample",
]

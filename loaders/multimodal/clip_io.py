"""The clip readers' former home: they are media I/O, now :mod:`loaders.clip_io` (next to
:mod:`loaders.media`). This module re-exports the public names so existing imports keep working."""

from loaders.clip_io import (
    AUDIO_FILE_EXTENSIONS,
    MISSING_AUDIO,
    Clip,
    fit_length,
    output_size,
    read_audio,
    read_audio_clip,
    read_clip,
    remix_channels,
    resample,
)

__all__ = [
    "AUDIO_FILE_EXTENSIONS",
    "Clip",
    "MISSING_AUDIO",
    "fit_length",
    "output_size",
    "read_audio",
    "read_audio_clip",
    "read_clip",
    "remix_channels",
    "resample",
]

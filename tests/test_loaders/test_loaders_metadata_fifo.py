"""Metadata readers never block on a FIFO named like a metadata file.

ImageNet's metadata parsers, AudioSet's CSV/ontology readers and HDF5 packs, Ego4D's and
HowTo100M's CSV/JSON readers open their files through :mod:`loaders.fileio`: a FIFO in place of
the file is refused from its ``stat`` with an error naming it, before anything opens it.

Each call runs under :func:`unblocking`: should a reader open the FIFO after all (a regression),
a helper process opens the FIFO's write end after a few seconds and closes it again, which lets
the blocked ``open`` (in Python or in a C library such as HDF5) return and the read see an empty
file; the test then fails on the missing refusal and the recorded block instead of hanging.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from loaders.fileio import NotRegularFileError
from loaders.imagenet.metadata import (
    read_devkit_ground_truth,
    read_devkit_meta,
    read_real_labels,
    read_synset_mapping,
    read_val_solution,
)
from loaders.multimodal import AudioSetDataset, Ego4DDataset
from loaders.multimodal.audioset_meta import Ontology, read_class_labels, read_segments
from loaders.multimodal.ego4d import read_egoclip
from loaders.multimodal.howto100m import read_captions, read_task_ids, read_videos_csv

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs")

GUARD_SECONDS = 5.0


_RELEASER = """
import errno, os, sys, time
fifo, wait = sys.argv[1], float(sys.argv[2])
time.sleep(wait)
while True:
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # ENXIO: no reader has it open
    except OSError as error:
        if error.errno != errno.ENXIO:
            raise
    else:
        print("blocked", flush=True)  # before the close that lets the reader see the end
        os.close(fd)
    time.sleep(0.1)
"""


@contextlib.contextmanager
def unblocking(fifo: Path, seconds: float = GUARD_SECONDS) -> Iterator[list[bool]]:
    """Yield a list that holds ``True`` afterwards if anything was still blocked on ``fifo`` after
    ``seconds``; from then on a helper process opens and closes the FIFO's write end every 0.1 s,
    so a blocked reader gets an empty file. (A process, not a thread: a C library may block in
    ``open`` while holding the GIL, as HDF5 does.)"""
    outcome: list[bool] = []
    helper = subprocess.Popen([sys.executable, "-c", _RELEASER, str(fifo), str(seconds)], stdout=subprocess.PIPE, text=True)
    try:
        yield outcome
    finally:
        helper.kill()
        out, _ = helper.communicate()
        outcome.append("blocked" in out)


def _refused(call: Callable[[], object], fifo: Path) -> None:
    with unblocking(fifo) as blocked:
        with pytest.raises(NotRegularFileError) as error:
            call()
    assert blocked == [False], f"{fifo} was opened: the reader blocked on the FIFO"
    assert error.value.filename == str(fifo) and "a FIFO, not a regular file" in str(error.value)


READERS: dict[str, tuple[str, Callable[[Path], object]]] = {  # reader -> (file name it reads, call)
    "imagenet.read_synset_mapping": ("LOC_synset_mapping.txt", read_synset_mapping),
    "imagenet.read_devkit_meta": ("meta.mat", read_devkit_meta),
    "imagenet.read_devkit_ground_truth": ("ILSVRC2012_validation_ground_truth.txt", read_devkit_ground_truth),
    "imagenet.read_val_solution": ("LOC_val_solution.csv", read_val_solution),
    "imagenet.read_real_labels": ("real.json", read_real_labels),
    "audioset.read_segments": ("eval_segments.csv", read_segments),
    "audioset.read_class_labels": ("class_labels_indices.csv", read_class_labels),
    "audioset.Ontology.from_json": ("ontology.json", Ontology.from_json),
    "ego4d.read_egoclip": ("egoclip.csv", read_egoclip),
    "howto100m.read_videos_csv": ("HowTo100M_v1.csv", read_videos_csv),
    "howto100m.read_task_ids": ("task_ids.csv", read_task_ids),
    "howto100m.read_captions": ("caption.json", read_captions),
}


@pytest.mark.parametrize("reader", sorted(READERS))
def test_a_fifo_in_place_of_a_metadata_file_is_refused_naming_it(tmp_path, reader):
    name, read = READERS[reader]
    fifo = tmp_path / name
    os.mkfifo(fifo)
    _refused(lambda: read(fifo), fifo)
    _refused(lambda: read(str(fifo)), fifo)


def test_the_guard_catches_a_reader_that_blocks(tmp_path):
    """The guard itself: a plain ``open`` of the FIFO is released, and reported."""
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    with unblocking(fifo, seconds=0.2) as blocked:
        with open(fifo, encoding="utf-8") as handle:
            assert handle.read() == ""
    assert blocked == [True]


def _audioset_root(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "class_labels_indices.csv").write_text('index,mid,display_name\n0,/m/09x0r,"Speech"\n', encoding="utf-8")
    (root / "eval_segments.csv").write_text("# YTID, start_seconds, end_seconds, positive_labels\n"
                                            'abc, 0.000, 10.000, "/m/09x0r"\n', encoding="utf-8")
    return root


def test_audioset_refuses_a_fifo_named_like_an_hdf5_pack(tmp_path):
    root = _audioset_root(tmp_path / "audioset")
    (root / "hdf5s" / "waveforms" / "eval").mkdir(parents=True)
    fifo = root / "hdf5s" / "waveforms" / "eval" / "part0.h5"
    os.mkfifo(fifo)
    _refused(lambda: AudioSetDataset(root, split="eval"), fifo)


def test_audioset_refuses_a_fifo_named_like_its_ontology(tmp_path):
    root = _audioset_root(tmp_path / "audioset")
    (root / "audio" / "eval").mkdir(parents=True)
    fifo = root / "metadata" / "ontology.json"
    fifo.parent.mkdir()
    os.mkfifo(fifo)
    _refused(lambda: AudioSetDataset(root, split="eval"), fifo)


def test_ego4d_refuses_a_fifo_given_as_its_metadata(tmp_path):
    root = tmp_path / "ego4d"
    (root / "v2" / "annotations").mkdir(parents=True)
    (root / "v2" / "annotations" / "narration.json").write_text("{}", encoding="utf-8")
    fifo = tmp_path / "ego4d.json"
    os.mkfifo(fifo)
    _refused(lambda: Ego4DDataset(root, metadata=fifo), fifo)


def test_audioset_refuses_a_fifo_named_like_its_class_labels(tmp_path):
    """Found by its default name, a FIFO is refused as what it is, not reported as absent."""
    root = _audioset_root(tmp_path / "audioset")
    (root / "audio" / "eval").mkdir(parents=True)
    fifo = root / "class_labels_indices.csv"
    fifo.unlink()
    os.mkfifo(fifo)
    _refused(lambda: AudioSetDataset(root, split="eval"), fifo)


def test_ego4d_refuses_a_fifo_given_as_its_narrations(tmp_path):
    root = tmp_path / "ego4d"
    root.mkdir()
    fifo = tmp_path / "narration.json"
    os.mkfifo(fifo)
    _refused(lambda: Ego4DDataset(root, narrations=fifo, source="narrations"), fifo)


def test_howto100m_refuses_a_fifo_named_like_its_captions(tmp_path):
    from loaders.multimodal import HowTo100MDataset

    root = tmp_path / "howto100m"
    root.mkdir()
    fifo = root / "caption.json"
    os.mkfifo(fifo)
    _refused(lambda: HowTo100MDataset(root), fifo)


def test_a_missing_metadata_file_is_still_reported_as_not_found(tmp_path):
    from loaders.multimodal import HowTo100MDataset

    with pytest.raises(FileNotFoundError, match="caption.json"):
        HowTo100MDataset(tmp_path)
    with pytest.raises(FileNotFoundError, match="class_labels_indices.csv"):
        AudioSetDataset(tmp_path, split="eval")

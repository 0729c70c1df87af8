"""Fixture builders for the ImageNet-family tests: tiny real JPEG/PNG files in the native layouts.

Layouts and quirks follow the distributed datasets (docs/imagenet.md): torchvision class-folder val,
Kaggle's flat val with an unsorted, multi-box ``LOC_val_solution.csv``, the devkit's ground
truth in devkit-id order with a ``meta.mat`` written by ``scipy.io.savemat`` as a struct array of
the 8 devkit fields, ReaL's ``real.json`` with an empty list, A/R ``README.txt`` and file names
with spaces and dots, C's ``<corruption>/<severity>/<wnid>/`` (flat and grouped), V2's numeric
folders ``0``, ``1``, ``2``, ``10`` (lexicographic != numeric), Sketch's ``sketch/<wnid>/``.

Hand-checked facts used by the tests (docs/imagenet.md): tench ``n01440764`` = index 0 = devkit id
449; goldfish ``n01443537`` = 1; sea snake ``n01751748`` = 65 = devkit id 490; toilet tissue
``n15075141`` = 999. The 1000-wnid list for the fixture files comes from the package data.
"""

from __future__ import annotations

import io
import json
import random
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

import loaders.imagenet  # noqa: F401  (registers the adapters until loaders/__init__ imports it)
from loaders.imagenet import imagenet_class_names, imagenet_wnids

TENCH, GOLDFISH, SEA_SNAKE, TOILET_TISSUE = "n01440764", "n01443537", "n01751748", "n15075141"
PNG_NAMED_JPEG = "n02105855"  # its train file n02105855_2933.JPEG is really a PNG


def jpeg_bytes(seed: int, mode: str = "RGB", size: tuple[int, int] = (12, 10)) -> bytes:
    """A real JPEG (``mode`` RGB, L or CMYK) with seed-dependent pixels."""
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "L": 1, "CMYK": 4}[mode]
    pixels = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    image = Image.fromarray(pixels[..., 0] if channels == 1 else pixels, mode)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def png_bytes(seed: int, size: tuple[int, int] = (9, 7)) -> bytes:
    """A real RGB PNG."""
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_bytes(data)
    return path


def devkit_ids() -> dict[str, int]:
    """A devkit-style ILSVRC2012_ID for every wnid: a fixed permutation of 1..1000 (not sorted
    order), with the two ids known from the real devkit pinned (tench 449, sea snake 490)."""
    wnids = list(imagenet_wnids())
    ids = list(range(1, 1001))
    random.Random(2012).shuffle(ids)
    table = dict(zip(wnids, ids))
    for wnid, known in ((TENCH, 449), (SEA_SNAKE, 490)):
        other = next(w for w, i in table.items() if i == known)
        table[other], table[wnid] = table[wnid], known
    return table


def write_meta_mat(path: Path, ids: dict[str, int]) -> Path:
    """The devkit ``meta.mat``: ``synsets`` struct array (N x 1, like MATLAB) with the 8 fields,
    1000 leaves in devkit-id order followed by ancestors (ids > 1000, ``num_children`` > 0)."""
    from scipy.io import savemat

    fields = ["ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children", "wordnet_height", "num_train_images"]
    names = dict(zip(imagenet_wnids(), imagenet_class_names()))
    leaves = sorted(ids, key=ids.get)
    ancestors = [("n00001740", "entity", [1001 + 1, 1001 + 2]), ("n00002684", "object, physical object", [449, 490]),
                 ("n01905661", "invertebrate", [1, 2, 3])]  # fmt: skip
    synsets = np.zeros((len(leaves) + len(ancestors), 1), dtype=[(f, object) for f in fields])
    for row, wnid in enumerate(leaves):
        synsets[row, 0] = (np.uint16(ids[wnid]), wnid, names[wnid], f"gloss of {wnid}", np.uint8(0),
                           np.zeros((0, 0), np.uint8), np.uint8(0), np.uint16(1300))  # fmt: skip
    for k, (wnid, words, children) in enumerate(ancestors):
        synsets[len(leaves) + k, 0] = (np.uint16(1001 + k), wnid, words, "an ancestor", np.uint8(len(children)),
                                       np.array([children], np.uint16), np.uint8(5 + k), np.uint16(0))  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    savemat(path, {"synsets": synsets})
    return path


def synset_mapping_text() -> str:
    """``LOC_synset_mapping.txt``: 1000 lines ``<wnid> <names>`` in sorted-wnid order."""
    return "".join(f"{w} {n}\n" for w, n in zip(imagenet_wnids(), imagenet_class_names()))


#: val images of the fixtures: number -> (wnid, image bytes kind)
VAL = {1: SEA_SNAKE, 2: TENCH, 3: GOLDFISH, 4: TENCH, 5: TOILET_TISSUE}
#: ReaL entries for val images 1..5 (image 1 has no valid label)
REAL = [[], [0, 389], [1], [0], [999, 1]]


def val_name(number: int) -> str:
    return f"ILSVRC2012_val_{number:08d}.JPEG"


def _train(base: Path) -> dict[str, bytes]:
    """train/<wnid>/<wnid>_<n>.JPEG with a CMYK JPEG, a greyscale JPEG and a PNG named .JPEG."""
    files = {
        f"{TENCH}/{TENCH}_10026.JPEG": jpeg_bytes(1),
        f"{TENCH}/{TENCH}_9.JPEG": jpeg_bytes(2, "L"),
        f"{GOLDFISH}/{GOLDFISH}_1309.JPEG": jpeg_bytes(3, "CMYK"),
        f"{SEA_SNAKE}/{SEA_SNAKE}_77.JPEG": jpeg_bytes(4),
        f"{PNG_NAMED_JPEG}/{PNG_NAMED_JPEG}_2933.JPEG": png_bytes(5),
        f"{TOILET_TISSUE}/{TOILET_TISSUE}_1.JPEG": jpeg_bytes(6),
    }
    for rel, data in files.items():
        write(base / rel, data)
    return files


@pytest.fixture
def imagenet_torchvision(tmp_path: Path) -> SimpleNamespace:
    """torchvision layout: train/<wnid>/..., val/<wnid>/ILSVRC2012_val_*.JPEG, meta.bin, real.json."""
    root = tmp_path / "imagenet"
    train = _train(root / "train")
    val = {n: jpeg_bytes(100 + n, "CMYK" if n == 4 else "RGB") for n in VAL}
    for number, wnid in VAL.items():
        write(root / "val" / wnid / val_name(number), val[number])
    # torchvision caches a torch.save pickle here; the adapter must never open it
    write(root / "meta.bin", b"\x80\x04 not to be unpickled")
    write(root / "real.json", json.dumps(REAL))
    return SimpleNamespace(root=root, train=train, val=val)


@pytest.fixture
def imagenet_kaggle(tmp_path: Path) -> SimpleNamespace:
    """Kaggle layout: LOC_* files, ILSVRC/Data/CLS-LOC/{train/<wnid>/, val/ (flat)}."""
    root = tmp_path / "imagenet-object-localization-challenge"
    data = root / "ILSVRC" / "Data" / "CLS-LOC"
    train = _train(data / "train")
    val = {n: jpeg_bytes(200 + n) for n in VAL}
    for number in VAL:
        write(data / "val" / val_name(number), val[number])
    write(data / "test" / "ILSVRC2012_test_00000001.JPEG", jpeg_bytes(300))
    write(root / "LOC_synset_mapping.txt", synset_mapping_text())
    rows = [  # unsorted, multi-box, one trailing space
        f"ILSVRC2012_val_00000004,{TENCH} 10 11 40 50 {TENCH} 1 2 3 4",
        f"ILSVRC2012_val_00000001,{SEA_SNAKE} 111 108 441 193",
        f"ILSVRC2012_val_00000005,{TOILET_TISSUE} 0 0 9 9 ",
        f"ILSVRC2012_val_00000003,{GOLDFISH} 5 5 6 6 {GOLDFISH} 7 7 8 8 {GOLDFISH} 1 1 2 2",
        f"ILSVRC2012_val_00000002,{TENCH} 3 3 8 8",
    ]
    write(root / "LOC_val_solution.csv", "ImageId,PredictionString\n" + "\n".join(rows) + "\n")
    write(root / "LOC_train_solution.csv", f"ImageId,PredictionString\n{TENCH}_10026,{TENCH} 1 2 3 4\n")
    return SimpleNamespace(root=root, train=train, val=val)


@pytest.fixture
def imagenet_devkit(tmp_path: Path) -> SimpleNamespace:
    """Devkit layout: flat val/ + ILSVRC2012_devkit_t12/data/{meta.mat, ground truth}."""
    root = tmp_path / "ilsvrc2012"
    ids = devkit_ids()
    val = {n: jpeg_bytes(400 + n) for n in VAL}
    for number in VAL:
        write(root / "val" / val_name(number), val[number])
    data = root / "ILSVRC2012_devkit_t12" / "data"
    write_meta_mat(data / "meta.mat", ids)
    write(data / "ILSVRC2012_validation_ground_truth.txt", "".join(f"{ids[VAL[n]]}\n" for n in sorted(VAL)))
    return SimpleNamespace(root=root, val=val, ids=ids)


A_FILES = {  # wnid -> names as in the release (predictions embedded, spaces and dots)
    "n01498041": ["0.000116_digital clock _ digital clock_0.865662.jpg", "0.000524_stingray _ stingray_0.9.JPEG"],
    "n12267677": ["0.00239_acorn _ acorn_0.5.jpg"],
}
R_FILES = {"n01443537": ["art_0.jpg", "cartoon_1.jpg"], "n12267677": ["sketch_3.jpg"]}


@pytest.fixture
def imagenet_a(tmp_path: Path) -> Path:
    """imagenet-a/README.txt + <wnid>/ folders; one greyscale image."""
    base = tmp_path / "imagenet-a"
    write(base / "README.txt", "ImageNet-A\n200 classes\n")
    for k, (wnid, names) in enumerate(A_FILES.items()):
        for j, name in enumerate(names):
            write(base / wnid / name, jpeg_bytes(500 + 10 * k + j, "L" if j == 1 else "RGB"))
    return tmp_path


@pytest.fixture
def imagenet_r(tmp_path: Path) -> Path:
    base = tmp_path / "imagenet-r"
    write(base / "README.txt", "ImageNet-R\n")
    for k, (wnid, names) in enumerate(R_FILES.items()):
        for j, name in enumerate(names):
            write(base / wnid / name, jpeg_bytes(600 + 10 * k + j))
    return base  # the adapter also accepts the folder itself


@pytest.fixture
def imagenet_c(tmp_path: Path) -> Path:
    """gaussian_noise/{1,3}/<wnid>/ (flat) and blur/defocus_blur/{1,3}/<wnid>/ (grouped)."""
    root = tmp_path / "imagenet-c"
    for corruption_dir in ("gaussian_noise", "blur/defocus_blur"):
        for severity in (1, 3):
            for number, wnid in ((1, SEA_SNAKE), (2, TENCH)):
                write(root / corruption_dir / str(severity) / wnid / val_name(number), jpeg_bytes(700 + number + 10 * severity))
    return root


@pytest.fixture
def imagenet_v2(tmp_path: Path) -> Path:
    """imagenetv2-matched-frequency-format-val/{0,1,2,10}/<hash>.jpeg."""
    base = tmp_path / "imagenetv2-matched-frequency-format-val"
    for folder in ("0", "1", "2", "10"):
        write(base / folder / f"{int(folder) * 7919:040x}.jpeg", jpeg_bytes(800 + int(folder)))
    return tmp_path


@pytest.fixture
def imagenet_sketch(tmp_path: Path) -> Path:
    """sketch/<wnid>/sketch_<k>.JPEG, greyscale."""
    for wnid in (TENCH, TOILET_TISSUE):
        for k in range(2):
            write(tmp_path / "sketch" / wnid / f"sketch_{k}.JPEG", jpeg_bytes(900 + k, "L"))
    return tmp_path


@pytest.fixture
def kit() -> SimpleNamespace:
    """The builders and constants above, for tests (which must not import conftest)."""
    return SimpleNamespace(
        TENCH=TENCH, GOLDFISH=GOLDFISH, SEA_SNAKE=SEA_SNAKE, TOILET_TISSUE=TOILET_TISSUE, PNG_NAMED_JPEG=PNG_NAMED_JPEG,
        jpeg_bytes=jpeg_bytes, png_bytes=png_bytes, write=write, val_name=val_name, write_meta_mat=write_meta_mat,
        devkit_ids=devkit_ids, synset_mapping_text=synset_mapping_text, A_FILES=A_FILES, R_FILES=R_FILES,
    )  # fmt: skip

"""Fixtures for the DatasetGAN tests: a tiny real generator behind ``HookedGenerator``.

``TinyGenerator`` is a small random-weight convolutional generator (``z`` of 8 -> 16x16 RGB with
two feature levels, 8x8 and 16x16): any ``nn.Module`` generator plugs into the workflow through
:class:`datafactory.gan.generator.HookedGenerator`, so the annotation, interpreter and
generation code is exercised exactly as with a user's own network, at test speed.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

TINY_Z = 8
TINY_RES = 16


class TinyGenerator(nn.Module):
    """``z (n, 8)`` -> images ``(n, 3, 16, 16)`` in ``[-1, 1]``; features at ``block1`` and ``block2``."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(seed)  # PyTorch's default initialisation, reproducibly
            self.fc = nn.Linear(TINY_Z, 16 * 4 * 4)
            self.block1 = nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(16, 12, 3, padding=1), nn.LeakyReLU(0.2))
            self.block2 = nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(12, 8, 3, padding=1), nn.LeakyReLU(0.2))
            self.to_rgb = nn.Conv2d(8, 3, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.fc(z).view(-1, 16, 4, 4)
        return torch.tanh(4 * self.to_rgb(self.block2(self.block1(x))))


def make_tiny_generator(seed: int = 0, batch_size: int = 8):
    from datafactory.gan.generator import HookedGenerator

    return HookedGenerator(TinyGenerator(seed), ["block1", "block2"], z_dim=TINY_Z, resolution=TINY_RES,
                           batch_size=batch_size)


@pytest.fixture
def tiny_generator():
    return make_tiny_generator()


@pytest.fixture
def make_tiny():
    """``make_tiny(seed=0, batch_size=8)`` -> a fresh tiny ``HookedGenerator`` (tests cannot import conftest)."""
    return make_tiny_generator


@pytest.fixture
def one_thread():
    """Run a test with one torch thread (the suite shares two cores), restoring the count after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def brightness_classes(images: torch.Tensor) -> torch.Tensor:
    """A stand-in annotator for generated images of any domain: 3 classes by mean brightness."""
    return (images.float().mean(dim=-3) * 3 / 256).long().clamp(0, 2)


@pytest.fixture
def annotator():
    return brightness_classes


@pytest.fixture(scope="session")
def bundled(tmp_path_factory):
    """A tiny bundled generator (2 training steps on 8 ``shapes`` images, 16 px) and an
    interpreter fitted on 6 of its images, all written as real checkpoints.

    Returns ``{"generator": path, "interpreter": path, "annotation": folder, "masks": folder}``.
    """
    from datafactory.gan.annotate import import_annotations, oracle_annotate, sample_for_annotation
    from datafactory.gan.factory import fit_interpreter_from_annotations
    from datafactory.gan.gan_train import GanTrainConfig, train_gan
    from datafactory.gan.interpreter import InterpreterConfig
    from datafactory.gan.stylegan import StyleGAN2Config

    base = tmp_path_factory.mktemp("bundled")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = GanTrainConfig(model=StyleGAN2Config(resolution=16, z_dim=16, w_dim=16, channel_base=128, channel_max=16),
                             steps=2, batch_size=4, log_every=0, checkpoint_every=0, sample_grid=0)
        trained = train_gan(cfg, "shapes", base / "gan", progress=False, device="cpu", dataset_options={"size": 8})
        manifest = sample_for_annotation(trained.generator_path, 6, 1000, base / "annotation", device="cpu")
        masks = oracle_annotate(base / "annotation", annotator=brightness_classes)
        annotations = import_annotations(masks, manifest, 3)
        fit_interpreter_from_annotations(trained.generator_path, annotations,
                                         InterpreterConfig(num_classes=3, ensemble_size=3, max_epochs=2,
                                                           pixels_per_epoch=512),
                                         base / "interpreter.pt", device="cpu")
    finally:
        torch.set_num_threads(before)
    return {"generator": trained.generator_path, "interpreter": base / "interpreter.pt",
            "annotation": base / "annotation", "masks": masks}

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

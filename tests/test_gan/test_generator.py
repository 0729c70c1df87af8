"""The generator protocol: HookedGenerator on user modules, per-seed latents, loading bundled
checkpoints with weights_only, checkpoint hashes."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from torch import nn

from datafactory.gan.generator import (
    Generator,
    GeneratorSample,
    HookedGenerator,
    checkpoint_sha256,
    latents_for_seeds,
    load_generator,
    noise_generator,
    seeds_for,
)
from datafactory.gan.stylegan import BundledGenerator, StyleGAN2Config, StyleGAN2Generator

pytestmark = pytest.mark.usefixtures("one_thread")

Z = 6


class UserGenerator(nn.Module):
    """A user's own generator: images in [0, 1], a block returning a tuple, a noise input drawn
    from the global RNG (like StyleGAN2's noise_mode="random")."""

    def __init__(self, noise: float = 0.0) -> None:
        super().__init__()
        self.fc = nn.Linear(Z, 8 * 4 * 4)
        self.up = nn.Upsample(scale_factor=2)
        self.block = TupleBlock()
        self.conv = nn.Conv2d(8, 4, 3, padding=1)
        self.rgb = nn.Conv2d(4, 3, 1)
        self.noise = noise

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.fc(z).view(-1, 8, 4, 4)
        x, _ = self.block(x)
        x = self.conv(self.up(x))
        if self.noise:
            x = x + self.noise * torch.randn_like(x)
        return torch.sigmoid(self.rgb(x))


class TupleBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.relu(self.conv(x))
        return y, y.mean(dim=(1, 2, 3))


def make_user(noise: float = 0.0, batch_size: int = 3) -> HookedGenerator:
    torch.manual_seed(0)
    return HookedGenerator(UserGenerator(noise), ["block", "conv"], z_dim=Z, resolution=8,
                           output_range=(0.0, 1.0), batch_size=batch_size)


def test_hooked_generator_implements_the_protocol():
    g = make_user()
    assert isinstance(g, Generator)
    s = g.sample(5, seed=10)
    assert isinstance(s, GeneratorSample) and len(s) == 5
    assert s.images.shape == (5, 3, 8, 8) and s.images.dtype == torch.float32
    assert [tuple(f.shape) for f in s.features] == [(5, 8, 4, 4), (5, 4, 8, 8)]
    assert s.channels == [8, 4]
    assert s.seeds == [10, 11, 12, 13, 14]
    assert torch.equal(s.latents, latents_for_seeds(range(10, 15), Z))
    assert s.images.min() >= -1 and s.images.max() <= 1


def test_output_range_is_mapped_linearly_to_minus_one_one():
    g = make_user()
    z = latents_for_seeds([3, 4], Z)
    with torch.no_grad():
        raw = g.module(z)
    torch.testing.assert_close(g.synthesize(z, [3, 4]).images, raw * 2 - 1)


def test_features_are_the_hooked_layer_outputs():
    g = make_user()
    z = latents_for_seeds([7], Z)
    m = g.module
    with torch.no_grad():
        block = m.block(m.fc(z).view(-1, 8, 4, 4))[0]
        conv = m.conv(m.up(block))
    s = g.synthesize(z, [7])
    torch.testing.assert_close(s.features[0], block)
    torch.testing.assert_close(s.features[1], conv)


@pytest.mark.parametrize("factory", ["hooked", "bundled"])
def test_image_of_a_seed_does_not_depend_on_batching(factory):
    if factory == "hooked":
        g = make_user(batch_size=8)
    else:
        torch.manual_seed(1)
        net = StyleGAN2Generator(StyleGAN2Config(resolution=8, z_dim=8, w_dim=8, channel_base=64, channel_max=8))
        for layer in net.feature_layers:  # make noise matter
            net.get_submodule(layer).noise_strength.data.fill_(0.5)
        g = BundledGenerator(net, batch_size=8)
    batch = g.sample(8, seed=100)
    for i in (0, 5, 7):
        alone = g.sample(1, seed=100 + i)
        torch.testing.assert_close(alone.images[0], batch.images[i], atol=1e-5, rtol=1e-5)
        for fa, fb in zip(alone.features, batch.features):
            torch.testing.assert_close(fa[0], fb[i], atol=1e-5, rtol=1e-5)
    other = g.sample(3, seed=101)  # a different batch composition and offset
    torch.testing.assert_close(other.images[:2], batch.images[1:3], atol=1e-5, rtol=1e-5)


def test_module_randomness_is_seeded_and_global_rng_untouched():
    g = make_user(noise=0.5, batch_size=1)
    state = torch.get_rng_state()
    a, b = g.sample(2, seed=4), g.sample(2, seed=4)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a.images, b.images)
    c = g.synthesize(a.latents, [40, 41])  # same latents, other seeds: other module noise
    assert not torch.allclose(a.images, c.images)


def test_synthesize_without_seeds_records_minus_one_and_is_reproducible():
    g = make_user(noise=0.5, batch_size=1)
    z = latents_for_seeds([1, 2], Z)
    a, b = g.synthesize(z), g.synthesize(z)
    assert a.seeds == [-1, -1]
    assert torch.equal(a.images, b.images)


def test_hooks_are_removed_and_module_is_in_eval_mode():
    g = make_user()
    g.sample(2, 0)
    for _, sub in g.module.named_modules():
        assert not sub._forward_hooks
    assert not g.module.training


def test_bad_layer_names_raise_naming_the_layer():
    with pytest.raises(KeyError, match="'blokc'") as info:
        HookedGenerator(UserGenerator(), ["block", "blokc"], z_dim=Z, resolution=8)
    assert "block" in str(info.value)  # the known names are listed
    with pytest.raises(ValueError, match="duplicates"):
        HookedGenerator(UserGenerator(), ["block", "block"], z_dim=Z, resolution=8)
    with pytest.raises(ValueError, match="at least one"):
        HookedGenerator(UserGenerator(), [], z_dim=Z, resolution=8)
    with pytest.raises(TypeError, match="layers"):
        HookedGenerator(UserGenerator(), "block", z_dim=Z, resolution=8)


def test_bad_arguments_raise_naming_them():
    with pytest.raises(ValueError, match="output_range"):
        HookedGenerator(UserGenerator(), ["conv"], z_dim=Z, resolution=8, output_range=(1.0, 0.0))
    with pytest.raises(ValueError, match="z_dim"):
        HookedGenerator(UserGenerator(), ["conv"], z_dim=0, resolution=8)
    with pytest.raises(TypeError, match="module"):
        HookedGenerator("G", ["conv"], z_dim=Z, resolution=8)
    g = make_user()
    with pytest.raises(ValueError, match="latents must have shape"):
        g.synthesize(torch.zeros(2, Z + 1))
    with pytest.raises(ValueError, match="seeds has 1 entries"):
        g.synthesize(torch.zeros(2, Z), [1])
    with pytest.raises(ValueError, match="NaN"):
        g.synthesize(torch.full((1, Z), float("nan")))
    with pytest.raises(ValueError, match="n must be"):
        g.sample(0, 0)
    with pytest.raises(TypeError, match="seed"):
        g.sample(2, 1.5)


def test_wrong_resolution_and_layer_run_twice_are_reported():
    g = HookedGenerator(UserGenerator(), ["conv"], z_dim=Z, resolution=16)
    with pytest.raises(ValueError, match=r"shape \(1, 3, 8, 8\)"):
        g.sample(1, 0)

    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(Z, 3 * 8 * 8)
            self.act = nn.Tanh()

        def forward(self, z):
            return self.act(self.act(self.fc(z).view(-1, 3, 8, 8)))

    with pytest.raises(ValueError, match="'act' ran 2 times"):
        HookedGenerator(Twice(), ["act"], z_dim=Z, resolution=8).sample(1, 0)
    with pytest.raises(ValueError, match=r"'fc' output has shape \(1, 192\)"):  # not a feature map
        HookedGenerator(Twice(), ["fc"], z_dim=Z, resolution=8).sample(1, 0)


def test_latents_for_seeds_one_generator_per_seed():
    z = latents_for_seeds([5, 9, 5], 7)
    assert z.shape == (3, 7) and z.dtype == torch.float32
    assert torch.equal(z[0], torch.randn(7, generator=torch.Generator().manual_seed(5)))
    assert torch.equal(z[0], z[2]) and not torch.equal(z[0], z[1])
    assert torch.equal(latents_for_seeds([np.int64(9)], 7)[0], z[1])
    with pytest.raises(TypeError, match=r"seeds\[0\]"):
        latents_for_seeds([True], 7)
    with pytest.raises(ValueError, match="64-bit"):
        latents_for_seeds([2**63], 7)
    assert seeds_for(3, -1) == [-1, 0, 1]


def test_noise_stream_differs_from_latent_stream():
    a = torch.randn(16, generator=noise_generator(3))
    b = torch.randn(16, generator=torch.Generator().manual_seed(3))
    assert not torch.equal(a, b)
    assert torch.equal(a, torch.randn(16, generator=noise_generator(3)))


def test_checkpoint_sha256(tmp_path):
    path = tmp_path / "g.pt"
    path.write_bytes(b"abc" * 1000)
    assert checkpoint_sha256(path) == hashlib.sha256(b"abc" * 1000).hexdigest()
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        checkpoint_sha256(tmp_path / "missing.pt")


def _save_bundled(tmp_path, cfg):
    torch.manual_seed(2)
    net = StyleGAN2Generator(cfg)
    torch.save(net.state_dict(), tmp_path / "generator.pt")
    (tmp_path / "generator.json").write_text(json.dumps({"config": cfg.to_dict()}))
    return net


def test_load_generator_round_trip(tmp_path):
    cfg = StyleGAN2Config(resolution=8, z_dim=8, w_dim=8, channel_base=64, channel_max=8)
    net = _save_bundled(tmp_path, cfg)
    g = load_generator(tmp_path / "generator.pt", device="cpu")
    assert isinstance(g, Generator) and g.resolution == 8 and g.z_dim == 8
    assert g.checkpoint_sha256 == checkpoint_sha256(tmp_path / "generator.pt")
    ref = BundledGenerator(net).sample(3, 0)
    got = g.sample(3, 0)
    assert torch.equal(ref.images, got.images)


def test_load_generator_errors_name_the_problem(tmp_path):
    cfg = StyleGAN2Config(resolution=8, z_dim=8, w_dim=8, channel_base=64, channel_max=8)
    _save_bundled(tmp_path, cfg)
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_generator(tmp_path / "nope.pt")
    (tmp_path / "generator.json").write_text(json.dumps({"config": {**cfg.to_dict(), "channel_mux": 3}}))
    with pytest.raises(KeyError, match="channel_mux"):
        load_generator(tmp_path / "generator.pt")
    bigger = StyleGAN2Config(resolution=16, z_dim=8, w_dim=8, channel_base=64, channel_max=8)
    (tmp_path / "generator.json").write_text(json.dumps({"config": bigger.to_dict()}))
    with pytest.raises(ValueError, match="does not match its config"):
        load_generator(tmp_path / "generator.pt")
    (tmp_path / "generator.json").unlink()
    with pytest.raises(FileNotFoundError, match="generator.json"):
        load_generator(tmp_path / "generator.pt")


class Payload:
    """Not a tensor: a checkpoint holding it must not load under weights_only."""


def test_load_generator_refuses_pickled_objects(tmp_path):
    cfg = StyleGAN2Config(resolution=8, z_dim=8, w_dim=8, channel_base=64, channel_max=8)
    _save_bundled(tmp_path, cfg)
    torch.save({"mapping.w_avg": Payload()}, tmp_path / "generator.pt")
    with pytest.raises(ValueError, match="weights_only"):
        load_generator(tmp_path / "generator.pt")


def test_users_pretrained_network_plugs_in_via_weights_only_state_dict(tmp_path):
    """The documented path: a user's network class, weights saved as a state_dict and loaded with
    weights_only=True, layer names from named_modules, extra forward arguments via ``forward``."""
    cfg = StyleGAN2Config(resolution=8, z_dim=8, w_dim=8, channel_base=64, channel_max=8)
    trained = _save_bundled(tmp_path, cfg)
    net = StyleGAN2Generator(cfg)
    net.load_state_dict(torch.load(tmp_path / "generator.pt", weights_only=True))
    g = HookedGenerator(net, net.feature_layers, z_dim=8, resolution=8,
                        forward=lambda G, z: G(z, noise_mode="const"))
    s = g.sample(2, 0)
    with torch.no_grad():
        img, feats = trained(latents_for_seeds([0, 1], 8), noise_mode="const", return_features=True)
    torch.testing.assert_close(s.images, img.clamp(-1, 1))
    assert [f.shape[-1] for f in s.features] == [4, 4, 8, 8]
    for a, b in zip(s.features, feats):
        torch.testing.assert_close(a, b)

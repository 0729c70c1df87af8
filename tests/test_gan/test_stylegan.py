"""The bundled StyleGAN2-style networks: shapes, demodulation, features, gradients, config checks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from datafactory.gan.generator import HookedGenerator, latents_for_seeds
from datafactory.gan.stylegan import (
    BundledGenerator,
    StyleGAN2Config,
    StyleGAN2Discriminator,
    StyleGAN2Generator,
    minibatch_stddev,
    modulated_conv2d,
    modulated_weight,
)

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = StyleGAN2Config(resolution=16, z_dim=16, w_dim=16, channel_base=128, channel_max=16)


def make(cfg: StyleGAN2Config = TINY, seed: int = 0) -> tuple[StyleGAN2Generator, StyleGAN2Discriminator]:
    torch.manual_seed(seed)
    return StyleGAN2Generator(cfg), StyleGAN2Discriminator(cfg)


def test_default_config_shapes_and_documented_feature_resolutions():
    G, D = make(StyleGAN2Config())
    z = torch.randn(3, 64)
    img, feats = G(z, return_features=True)
    assert img.shape == (3, 3, 32, 32)
    assert G.feature_layers == [f"synthesis.blocks.b{r}.conv{k}" for r in (4, 8, 16, 32) for k in (0, 1)]
    assert G.feature_resolutions == [4, 4, 8, 8, 16, 16, 32, 32]
    assert [f.shape[-1] for f in feats] == G.feature_resolutions
    assert [f.shape[1] for f in feats] == G.feature_channels == [32, 32, 32, 32, 32, 32, 16, 16]
    assert D(img).shape == (3,)


def test_64_px_works():
    cfg = StyleGAN2Config(resolution=64, z_dim=16, w_dim=16, channel_base=256, channel_max=16)
    G, D = make(cfg)
    img, feats = G(torch.randn(2, 16), return_features=True)
    assert img.shape == (2, 3, 64, 64)
    assert [f.shape[-1] for f in feats] == [4, 4, 8, 8, 16, 16, 32, 32, 64, 64]
    assert D(img).shape == (2,)


def test_demodulated_weights_have_unit_norm_per_output_channel():
    torch.manual_seed(0)
    weight, styles = torch.randn(5, 4, 3, 3), torch.rand(2, 4) * 3 + 0.1
    w = modulated_weight(weight, styles)
    assert w.shape == (2, 5, 4, 3, 3)
    torch.testing.assert_close(w.flatten(2).norm(dim=2), torch.ones(2, 5))
    raw = modulated_weight(weight, styles, demodulate=False)
    torch.testing.assert_close(raw, weight[None] * styles[:, None, :, None, None])


@pytest.mark.parametrize("demodulate", [True, False])
def test_fast_modulated_conv_equals_per_sample_weights(demodulate):
    torch.manual_seed(1)
    x, weight, styles = torch.randn(3, 4, 6, 6), torch.randn(5, 4, 3, 3), torch.randn(3, 4)
    got = modulated_conv2d(x, weight, styles, demodulate=demodulate)
    per_sample = modulated_weight(weight, styles, demodulate=demodulate)
    want = torch.cat([F.conv2d(x[i : i + 1], per_sample[i], padding=1) for i in range(3)])
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_demodulation_keeps_activations_at_unit_scale():
    """The point of demodulation (paper, section 2.2): unit-variance input -> unit-variance output,
    whatever the style's scale."""
    torch.manual_seed(2)
    x, weight = torch.randn(4, 64, 16, 16), torch.randn(32, 64, 3, 3)
    for scale in (0.1, 10.0):
        y = modulated_conv2d(x, weight, torch.rand(4, 64) * scale + 0.01)
        assert 0.8 < float(y[..., 1:-1, 1:-1].std()) < 1.2


def test_gradients_reach_every_parameter():
    G, D = make()
    for layer in G.feature_layers:  # strengths start at zero; their gradient exists regardless
        G.get_submodule(layer).noise_strength.data.fill_(0.1)
    loss = F.softplus(-D(G(torch.randn(4, 16)))).mean()
    loss.backward()
    for name, p in list(G.named_parameters()) + list(D.named_parameters()):
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_noise_and_truncation():
    G, _ = make()
    for layer in G.feature_layers:
        G.get_submodule(layer).noise_strength.data.fill_(0.5)
    z = torch.randn(2, 16)
    noise = G.make_noise(2, torch.Generator().manual_seed(0))
    assert [tuple(n.shape) for n in noise] == [(2, 1, r, r) for r in G.feature_resolutions]
    a, b = G(z, noise), G(z, noise)
    assert torch.equal(a, b)
    assert not torch.allclose(a, G(z, G.make_noise(2, torch.Generator().manual_seed(1))))
    const = G(z, noise_mode="const")
    zero = G(z, [torch.zeros_like(n) for n in noise])
    torch.testing.assert_close(const, zero)
    G.mapping.w_avg.copy_(torch.randn(16))
    t0 = G(z, noise_mode="const", truncation=0.0)
    torch.testing.assert_close(t0[0], t0[1])  # every w is pulled onto w_avg
    with pytest.raises(ValueError, match="noise_mode"):
        G(z, noise_mode="fixed")
    with pytest.raises(ValueError, match="noise must hold"):
        G(z, noise[:2])


def test_w_avg_tracks_the_mean_of_w():
    G, _ = make()
    w = torch.randn(8, 16)
    G.update_w_avg(w, beta=0.0)
    torch.testing.assert_close(G.mapping.w_avg, w.mean(0))
    G.update_w_avg(torch.zeros(8, 16), beta=0.75)
    torch.testing.assert_close(G.mapping.w_avg, 0.75 * w.mean(0))


def test_minibatch_stddev_by_hand():
    x = torch.randn(6, 2, 3, 3)
    y = minibatch_stddev(x, group=4)  # 6 is not divisible by 4: groups of 3
    assert y.shape == (6, 3, 3, 3)
    torch.testing.assert_close(y[:, :2], x)
    groups = x.reshape(3, 2, 2, 3, 3)  # (group member, group index, ...): sample i is in group i % 2
    std = groups.var(dim=0, unbiased=False).add(1e-8).sqrt().mean(dim=(1, 2, 3))
    for i in range(6):
        torch.testing.assert_close(y[i, 2], torch.full((3, 3), float(std[i % 2])))


def test_hooked_bundled_network_gives_the_same_features():
    G, _ = make()
    hooked = HookedGenerator(G, G.feature_layers, z_dim=16, resolution=16,
                             forward=lambda net, z: net(z, noise_mode="const"))
    bundled = BundledGenerator(G)  # noise strengths are zero at init: same function
    a, b = hooked.sample(3, 5), bundled.sample(3, 5)
    torch.testing.assert_close(a.images, b.images)
    for fa, fb in zip(a.features, b.features):
        torch.testing.assert_close(fa, fb)
    assert torch.equal(b.latents, latents_for_seeds([5, 6, 7], 16))


def test_bundled_noise_follows_the_seed_not_the_latent():
    G, _ = make()
    for layer in G.feature_layers:
        G.get_submodule(layer).noise_strength.data.fill_(0.5)
    g = BundledGenerator(G)
    z = latents_for_seeds([1, 1], 16)
    s = g.synthesize(z, [1, 2])
    assert not torch.allclose(s.images[0], s.images[1])
    torch.testing.assert_close(s.images[0], g.sample(1, 1).images[0])


@pytest.mark.parametrize(("key", "value", "match"), [
    ("resolution", 48, "resolution must be a power of two"),
    ("resolution", 4, "resolution"),
    ("z_dim", 0, "z_dim"),
    ("channel_max", True, "channel_max"),
    ("mapping_lr_mul", 0.0, "mapping_lr_mul"),
    ("channel_base", 8, "channel_base is too small"),
])
def test_bad_configs_raise_naming_the_key(key, value, match):
    with pytest.raises(ValueError, match=match):
        StyleGAN2Config(**{key: value})


def test_config_round_trip_and_unknown_key():
    cfg = StyleGAN2Config(resolution=64, channel_max=32)
    assert StyleGAN2Config.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(KeyError, match="'w_dims'"):
        StyleGAN2Config.from_dict({"w_dims": 3})


def test_discriminator_rejects_wrong_shapes():
    _, D = make()
    with pytest.raises(ValueError, match=r"\(n, 3, 16, 16\)"):
        D(torch.zeros(2, 3, 32, 32))


def test_bundled_generator_argument_checks():
    G, _ = make()
    with pytest.raises(ValueError, match="truncation"):
        BundledGenerator(G, truncation=1.5)
    with pytest.raises(TypeError, match="StyleGAN2Generator"):
        BundledGenerator(torch.nn.Linear(2, 2))

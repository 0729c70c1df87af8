"""The GAN trainer: losses and R1 by hand, the EMA rule, exact resume, weights_only outputs,
DiffAugment, data sources, config errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from datafactory.gan.diffaugment import apply_diff_augment, diff_augment, diff_augment_params, parse_policy
from datafactory.gan.gan_data import load_training_images, to_training_image
from datafactory.gan.gan_train import (
    GanTrainConfig,
    discriminator_loss,
    ema_beta,
    ema_update,
    generator_loss,
    r1_penalty,
    train_gan,
)
from datafactory.gan.generator import Generator, load_generator
from datafactory.gan.stylegan import StyleGAN2Config, StyleGAN2Generator

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = StyleGAN2Config(resolution=16, z_dim=16, w_dim=16, channel_base=128, channel_max=16)


def tiny_cfg(**overrides) -> GanTrainConfig:
    base = dict(model=TINY, steps=4, batch_size=4, r1_every=2, log_every=1, checkpoint_every=0, sample_grid=0)
    return GanTrainConfig(**{**base, **overrides})


SHAPES = {"size": 12}


# -- functional core ----------------------------------------------------------------------------


def test_losses_match_their_formulas():
    real, fake = torch.tensor([2.0, -1.0]), torch.tensor([0.5, -3.0])
    sp = lambda v: torch.log1p(torch.exp(v))  # noqa: E731
    torch.testing.assert_close(generator_loss(fake), sp(-fake).mean())
    torch.testing.assert_close(discriminator_loss(real, fake), sp(fake).mean() + sp(-real).mean())


class TinyD(nn.Module):
    """D(x) = sum(a * tanh(x)) + b: grad_x D = a * (1 - tanh(x)^2), known in closed form."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.randn(3, 2, 2))
        self.b = nn.Parameter(torch.tensor(0.3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (torch.tanh(x) * self.a).sum(dim=(1, 2, 3)) + self.b


def test_r1_equals_the_hand_computed_gradient_penalty():
    torch.manual_seed(0)
    D, x = TinyD(), torch.randn(5, 3, 2, 2)
    penalty, logits = r1_penalty(D, x)
    grad = D.a.detach() * (1 - torch.tanh(x) ** 2)
    torch.testing.assert_close(penalty, grad.square().sum(dim=(1, 2, 3)))
    torch.testing.assert_close(logits, D(x))
    # differentiable w.r.t. D's parameters: d/da sum_i ||a (1 - t_i^2)||^2 = 2 a sum_i (1 - t_i^2)^2
    penalty.sum().backward()
    torch.testing.assert_close(D.a.grad, 2 * D.a.detach() * ((1 - torch.tanh(x) ** 2) ** 2).sum(0))


def test_r1_gradient_is_taken_before_augmentation():
    torch.manual_seed(1)
    D, x = TinyD(), torch.randn(2, 3, 2, 2)
    penalty, _ = r1_penalty(D, x, augment=lambda v: 2 * v)
    grad = 2 * D.a.detach() * (1 - torch.tanh(2 * x) ** 2)  # chain rule through the augmentation
    torch.testing.assert_close(penalty, grad.square().sum(dim=(1, 2, 3)))


def test_ema_update_rule():
    torch.manual_seed(0)
    model, ema = StyleGAN2Generator(TINY), StyleGAN2Generator(TINY)
    before = {k: v.clone() for k, v in ema.state_dict().items()}
    model.mapping.w_avg.fill_(3.0)
    ema_update(ema, model, beta=0.9)
    params = dict(model.named_parameters())
    for name, value in ema.state_dict().items():
        if name in params:
            torch.testing.assert_close(value, 0.9 * before[name] + 0.1 * params[name].detach())
        else:  # buffers are copied
            assert torch.equal(value, model.state_dict()[name])


def test_ema_beta_half_life_and_rampup():
    # after ema_images images the old weights weigh one half
    assert ema_beta(16, 10**9, 1000, None) ** (1000 / 16) == pytest.approx(0.5)
    # early on the half-life is capped at ema_rampup * images seen
    assert ema_beta(16, 160, 1000, 0.5) == pytest.approx(0.5 ** (16 / 80))
    assert ema_beta(16, 10**9, 1000, 0.5) == ema_beta(16, 10**9, 1000, None)


# -- DiffAugment ---------------------------------------------------------------------------------


def test_diffaugment_translation_moves_pixels_and_pads_with_zeros():
    x = torch.zeros(1, 1, 8, 8)
    x[0, 0, 3, 4] = 1.0
    y = apply_diff_augment(x, {"translation": torch.tensor([[1, -2]])})
    assert y[0, 0, 2, 6] == 1.0 and y.sum() == 1.0  # output[r, c] = input[r + 1, c - 2]
    ones = apply_diff_augment(torch.ones(1, 1, 8, 8), {"translation": torch.tensor([[1, 0]])})
    assert ones[0, 0, -1].sum() == 0 and ones[0, 0, :-1].min() == 1


def test_diffaugment_cutout_zeroes_a_half_size_square():
    y = apply_diff_augment(torch.ones(2, 3, 8, 8), {"cutout": torch.tensor([[4, 4], [0, 0]])})
    assert (y[0] == 0).sum() == 3 * 16
    assert torch.equal(y[0, :, 2:6, 2:6], torch.zeros(3, 4, 4))
    assert (y[1] == 0).sum() == 3 * 4  # clipped at the corner


def test_diffaugment_colour_identity_and_brightness():
    x = torch.rand(2, 3, 4, 4)
    same = {"brightness": torch.zeros(2), "saturation": torch.ones(2), "contrast": torch.ones(2)}
    torch.testing.assert_close(apply_diff_augment(x, same), x)
    brighter = dict(same, brightness=torch.tensor([0.25, -0.5]))
    torch.testing.assert_close(apply_diff_augment(x, brighter), x + torch.tensor([0.25, -0.5])[:, None, None, None])


def test_diffaugment_draws_per_image_and_is_differentiable():
    g = torch.Generator().manual_seed(0)
    params = diff_augment_params(4, 16, ("color", "translation", "cutout"), g)
    assert params["translation"].shape == (4, 2) and params["translation"].abs().max() <= 2
    assert len(set(params["brightness"].tolist())) == 4
    x = torch.rand(2, 3, 16, 16, requires_grad=True)
    diff_augment(x, ("color", "translation", "cutout"), torch.Generator().manual_seed(1)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert diff_augment(x, (), g) is x
    with pytest.raises(ValueError, match="'blur'"):
        parse_policy("color,blur")


# -- data ---------------------------------------------------------------------------------------


def test_training_images_are_converted_to_rgb_squares():
    grey = torch.full((1, 10, 20), 100, dtype=torch.uint8)
    out = to_training_image(grey, 8)
    assert out.shape == (3, 8, 8) and out.dtype == torch.uint8 and (out == 100).all()
    rgba = torch.zeros(4, 8, 8, dtype=torch.uint8)
    rgba[3] = 255
    assert (to_training_image(rgba, 8) == 0).all()
    sixteen = torch.full((3, 8, 8), 65535, dtype=torch.int32)
    assert (to_training_image(sixteen, 8) == 255).all()
    wide = torch.zeros(3, 4, 12, dtype=torch.uint8)
    wide[:, :, 4:8] = 200  # the centre square is kept
    assert (to_training_image(wide, 4) == 200).all()
    with pytest.raises(ValueError, match="'k1'.*2 channels"):
        to_training_image(torch.zeros(2, 4, 4, dtype=torch.uint8), 4, "k1")


def test_sources_shards_name_and_adapter_agree(tmp_path):
    from loaders import open_dataset
    from pipelines import build_shards

    build_shards("shapes", tmp_path / "shards", split="train", options={"size": 6, "resolution": 16, "seed": 0},
                 max_count=4)
    from_shards = load_training_images(tmp_path / "shards", 16)
    from_name = load_training_images("shapes", 16, options={"size": 6})
    from_adapter = load_training_images(open_dataset("shapes", split="train", size=6, resolution=16), 16)
    assert from_name.shape == (6, 3, 16, 16)
    assert torch.equal(from_name, from_adapter)
    # shards hold the same PNGs; the loader may order them differently
    key = lambda t: sorted(x.flatten().tolist() for x in t)  # noqa: E731
    assert key(from_shards) == key(from_name)
    with pytest.raises(FileNotFoundError, match="'no_such_set'.*shapes"):
        load_training_images("no_such_set", 16)
    with pytest.raises(ValueError, match="max_images=4"):
        load_training_images("shapes", 16, options={"size": 6}, max_images=4)
    with pytest.raises(TypeError, match="source"):
        load_training_images(3.5, 16)


# -- training -----------------------------------------------------------------------------------


def _states(out):
    from pipelines.train.checkpoint import load_checkpoint

    return load_checkpoint(out / "checkpoint.pt")


def _assert_same(a, b, where=""):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert set(a) == set(b), where
        for k in a:
            _assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def test_resume_equals_uninterrupted_bit_for_bit(tmp_path):
    cfg = tiny_cfg(steps=4, diffaugment="color,translation,cutout")
    full = train_gan(cfg, "shapes", tmp_path / "full", progress=False, device="cpu", plot=False,
                     dataset_options=SHAPES)
    train_gan(tiny_cfg(steps=3, diffaugment="color,translation,cutout"), "shapes", tmp_path / "split",
              progress=False, device="cpu", plot=False, dataset_options=SHAPES)
    resumed = train_gan(cfg, "shapes", tmp_path / "split", progress=False, device="cpu", plot=False,
                        dataset_options=SHAPES)
    assert resumed.steps == full.steps == 4 and resumed.images_seen == 16
    a, b = _states(tmp_path / "full"), _states(tmp_path / "split")
    for key in ("G", "D", "G_ema", "opt_g", "opt_d", "rng_data", "rng_latent", "rng_aug", "step", "images_seen"):
        _assert_same(a[key], b[key], key)
    ga = torch.load(full.generator_path, weights_only=True)
    gb = torch.load(resumed.generator_path, weights_only=True)
    _assert_same(ga, gb, "generator.pt")
    from pipelines.train.logging import read_metrics

    strip = lambda rows: [{k: v for k, v in r.items() if k != "time"} for r in rows]  # noqa: E731
    assert strip(read_metrics(full.metrics_path)) == strip(read_metrics(resumed.metrics_path))


def test_outputs_load_with_weights_only_and_describe_the_run(tmp_path):
    before = torch.get_rng_state()
    result = train_gan(tiny_cfg(steps=2, sample_grid=4), "shapes", tmp_path, progress=True, device="cpu",
                       dataset_options=SHAPES)
    assert torch.equal(torch.get_rng_state(), before)  # the caller's RNG is untouched
    state = torch.load(result.generator_path, weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    torch.load(result.checkpoint_path, weights_only=True)
    meta = json.loads(result.config_path.read_text())
    assert meta["config"] == TINY.to_dict()
    assert meta["feature_resolutions"] == [4, 4, 8, 8, 16, 16]
    assert meta["training"]["steps"] == 2 and meta["training"]["num_training_images"] == 12
    assert meta["training"]["config"]["batch_size"] == 4
    g = result.load(device="cpu")
    assert isinstance(g, Generator)
    s = g.sample(2, 0)
    assert s.images.shape == (2, 3, 16, 16) and len(s.features) == 6
    assert torch.equal(load_generator(result.generator_path).sample(1, 1).images, g.sample(1, 1).images)
    rows = [json.loads(line) for line in result.metrics_path.read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert all(math.isfinite(r["loss_g"]) and math.isfinite(r["loss_d"]) for r in rows)
    assert "r1" in rows[0]  # step 0 is a regularisation step
    assert result.samples_path is not None and result.samples_path.stat().st_size > 0


def test_training_is_deterministic_by_seed(tmp_path):
    run = lambda seed, d: train_gan(tiny_cfg(steps=2, seed=seed), "shapes", tmp_path / d, progress=False,  # noqa: E731
                                    device="cpu", plot=False, dataset_options=SHAPES)
    a, b, c = run(0, "a"), run(0, "b"), run(1, "c")
    sa, sb, sc = (torch.load(r.generator_path, weights_only=True) for r in (a, b, c))
    _assert_same(sa, sb)
    assert not torch.equal(sa["synthesis.blocks.b4.const"], sc["synthesis.blocks.b4.const"])


def test_r1_is_applied_lazily_every_r1_every_steps(tmp_path):
    from pipelines.train.logging import read_metrics

    result = train_gan(tiny_cfg(steps=4, r1_every=2), "shapes", tmp_path / "lazy", progress=False, device="cpu",
                       plot=False, dataset_options=SHAPES)
    rows = read_metrics(result.metrics_path)
    assert ["r1" in r for r in rows] == [True, False, True, False]  # steps 0 and 2 (logged as 1 and 3)
    assert all(r["r1"] > 0 for r in rows if "r1" in r)
    off = train_gan(tiny_cfg(steps=2, r1_gamma=0.0), "shapes", tmp_path / "off", progress=False, device="cpu",
                    plot=False, dataset_options=SHAPES)
    assert not any("r1" in r for r in read_metrics(off.metrics_path))


def test_resume_with_a_different_recipe_raises_naming_the_key(tmp_path):
    train_gan(tiny_cfg(steps=1), "shapes", tmp_path, progress=False, device="cpu", plot=False, dataset_options=SHAPES)
    with pytest.raises(ValueError, match=r"\['lr_g'\]"):
        train_gan(tiny_cfg(steps=2, lr_g=0.001), "shapes", tmp_path, progress=False, device="cpu", plot=False,
                  dataset_options=SHAPES)


@pytest.mark.parametrize(("overrides", "match"), [
    ({"steps": 0}, "steps"),
    ({"batch_size": 1.5}, "batch_size"),
    ({"lr_d": 0.0}, "lr_d"),
    ({"r1_gamma": -1.0}, "r1_gamma"),
    ({"ema_rampup": 2.0}, "ema_rampup"),
    ({"diffaugment": "colour"}, "diffaugment.*'colour'"),
    ({"sample_grid": 10}, "sample_grid"),
])
def test_bad_train_configs_raise_naming_the_key(overrides, match):
    with pytest.raises(ValueError, match=match):
        GanTrainConfig(**overrides)


def test_train_config_round_trip_and_strict_keys():
    cfg = GanTrainConfig.quick(seed=3)
    assert GanTrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert GanTrainConfig.quick().steps < GanTrainConfig().steps
    with pytest.raises(KeyError, match="'stepz'"):
        GanTrainConfig.from_dict({"stepz": 3})
    with pytest.raises(KeyError, match="'chanel_max'"):
        GanTrainConfig.from_dict({"model": {"chanel_max": 3}})
    with pytest.raises(TypeError, match="cfg"):
        train_gan({"steps": 1}, "shapes", "/nonexistent")


# -- quality measures ---------------------------------------------------------------------------


def test_frechet_distance_of_known_gaussians():
    from datafactory.gan.quality import frechet_distance

    rng = np.random.default_rng(0)
    a = rng.standard_normal((20000, 2))
    b = rng.standard_normal((20000, 2)) * 2 + np.array([3.0, 0.0])
    # ||mu||^2 + tr(I + 4I - 2 * 2I) = 9 + 2
    assert frechet_distance(a, b) == pytest.approx(11.0, rel=0.03)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)


def test_part_measures_tell_solid_shapes_from_noise():
    from loaders import open_dataset

    from datafactory.gan.quality import high_frequency, part_coherence, part_fractions

    ds = open_dataset("shapes", split="val", size=8, resolution=32)
    real = torch.stack([ds[i]["image"] for i in range(8)]).float() / 127.5 - 1
    noise = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    fractions = part_fractions(real)
    assert fractions.sum().item() == pytest.approx(1.0) and fractions[0] > 0.5  # mostly background
    assert part_coherence(real) > 0.5
    assert abs(part_coherence(noise)) < 0.05
    assert high_frequency(noise) > 2 * high_frequency(real)

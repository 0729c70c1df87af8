"""The DatasetGAN interpreter (Zhang et al. 2021, arXiv:2104.06490): the factorised evaluation
equals the paper's concatenate-then-MLP definition (outputs and gradients), the pixel-gather
training path equals indexing the upsampled concatenation, training learns, early stopping stops,
files round-trip, and bad input is named."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from datafactory.gan.interpreter import (InterpreterConfig, InterpreterEnsemble, fit_interpreter, load_interpreter,
                                         save_interpreter)
from datafactory.gan.pixelfeatures import (PixelFeatureBank, bilinear_taps, factorised_first_layer, gather_pixels,
                                           upsample_concat)

pytestmark = pytest.mark.usefixtures("one_thread")

SIZE = (24, 20)  # non-square output
# (channels, h, w): coarse to fine, two levels at one size, one level at the output size, one larger
# (downsampled) and a repeated size that is not adjacent to its twin (exercises the column order)
LEVELS = [(5, 4, 3), (3, 4, 3), (4, 8, 7), (2, 24, 20), (3, 30, 25), (2, 8, 7)]
CHANNELS = [c for c, _, _ in LEVELS]


def _features(n: int, seed: int = 0, dtype=torch.float32) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, c, h, w, generator=g, dtype=dtype) for c, h, w in LEVELS]


def _ensemble(num_classes: int = 3, members: int = 2, **kw) -> InterpreterEnsemble:
    return InterpreterEnsemble(CHANNELS, InterpreterConfig(num_classes=num_classes, ensemble_size=members, **kw))


# -- factorised == naive ------------------------------------------------------------------------------


def _randomise_batchnorm(ensemble: InterpreterEnsemble) -> None:
    """Non-trivial BatchNorm statistics and affine parameters."""
    with torch.no_grad():
        for module in ensemble.modules():
            if isinstance(module, nn.BatchNorm1d):
                module.running_mean.uniform_(-1, 1)
                module.running_var.uniform_(0.5, 2)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.5, 0.5)


def test_factorised_forward_equals_naive():
    ensemble = _ensemble().eval()
    _randomise_batchnorm(ensemble)
    features = _features(3)
    fast = ensemble(features, SIZE)
    slow = ensemble.naive_forward(features, SIZE)
    assert fast.shape == slow.shape == (2, 3, 3, *SIZE)
    assert (fast - slow).abs().max() < 1e-5


def test_factorised_forward_in_train_mode_normalises_over_all_pixels():
    """Train-mode BatchNorm uses the statistics of all n*H*W pixels in both paths (float64: the
    batch statistics amplify float32 rounding to ~2e-5), and updates the running statistics alike."""
    fast_model = _ensemble().double()
    _randomise_batchnorm(fast_model)
    slow_model = _ensemble().double()
    slow_model.load_state_dict(fast_model.state_dict())
    features = _features(3, dtype=torch.float64)
    fast = fast_model.train()(features, SIZE)
    slow = slow_model.train().naive_forward(features, SIZE)
    assert (fast - slow).abs().max() < 1e-10
    for a, b in zip(fast_model.state_dict().values(), slow_model.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-12)


def test_factorised_gradients_equal_naive():
    ensemble = _ensemble(members=2).eval()
    weights = torch.randn(2, 2, 3, *SIZE, generator=torch.Generator().manual_seed(5))
    grads = []
    for forward in (ensemble.forward, ensemble.naive_forward):
        features = [f.requires_grad_(True) for f in _features(2)]
        ensemble.zero_grad()
        (forward(features, SIZE) * weights).sum().backward()
        grads.append(([m[0].weight.grad.clone() for m in ensemble.members], [f.grad for f in features]))
    (w_fast, f_fast), (w_slow, f_slow) = grads
    for a, b in zip(w_fast + f_fast, w_slow + f_slow):
        scale = max(1.0, b.abs().max().item())
        assert (a - b).abs().max() / scale < 1e-5
    assert all(g.abs().sum() > 0 for g in f_fast)  # every level receives gradient


def test_first_layer_factorisation_on_its_own():
    features = _features(2, seed=3)
    weight = torch.randn(7, sum(CHANNELS))
    bias = torch.randn(7)
    reference = torch.einsum("od,ndhw->nohw", weight, upsample_concat(features, SIZE)) + bias[None, :, None, None]
    assert (factorised_first_layer(features, weight, bias, SIZE) - reference).abs().max() < 1e-5
    with pytest.raises(ValueError, match="channels"):
        factorised_first_layer(features, weight[:, 1:], bias, SIZE)


# -- pixel gather (training path) ---------------------------------------------------------------------


@pytest.mark.parametrize("out_len, in_len", [(16, 4), (24, 8), (20, 3), (7, 7), (5, 13), (1, 6), (9, 1)])
def test_bilinear_taps_match_interpolate(out_len, in_len):
    x = torch.randn(in_len, dtype=torch.float64)
    i0, i1, w0, w1 = bilinear_taps(out_len, in_len)
    ours = w0.double() * x[i0] + w1.double() * x[i1]
    theirs = F.interpolate(x.view(1, 1, in_len, 1), size=(out_len, 1), mode="bilinear", align_corners=False).flatten()
    assert torch.allclose(ours, theirs, atol=1e-6)


def test_gather_equals_indexing_the_upsampled_concatenation():
    features = _features(3, seed=1)
    full = upsample_concat(features, SIZE)  # (3, D, H, W)
    g = torch.Generator().manual_seed(2)
    image = torch.randint(0, 3, (200,), generator=g)
    y = torch.randint(0, SIZE[0], (200,), generator=g)
    x = torch.randint(0, SIZE[1], (200,), generator=g)
    got = gather_pixels(features, image, y, x, SIZE)
    assert got.shape == (200, sum(CHANNELS))
    assert (got - full[image, :, y, x]).abs().max() < 1e-5
    # every pixel through the flat index, with float16 storage (half the memory, float32 out)
    bank = PixelFeatureBank([[f[k:k + 1].half() for f in features] for k in range(3)], SIZE)
    every = bank.gather_flat(torch.arange(3 * SIZE[0] * SIZE[1]))
    reference = upsample_concat([f.half().float() for f in features], SIZE).permute(0, 2, 3, 1).reshape(-1, bank.dim)
    assert every.dtype == torch.float32
    assert (every - reference).abs().max() < 1e-5


# -- training -----------------------------------------------------------------------------------------


def _shapes_problem(count: int, seed: int, size: int = 24) -> tuple[list[list[torch.Tensor]], torch.Tensor]:
    """Masks with a rectangle (1) and a disc (2); features = noisy random projections of the
    mask's one-hot at 6, 12 and 24 px (the features determine the label, up to noise)."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    masks = torch.zeros(count, size, size, dtype=torch.long)
    for k in range(count):
        top, left = torch.randint(0, size // 2, (2,), generator=g).tolist()
        masks[k, top:top + size // 3, left:left + size // 3] = 1
        cy, cx = torch.randint(size // 4, 3 * size // 4, (2,), generator=g).tolist()
        masks[k][(yy - cy) ** 2 + (xx - cx) ** 2 <= (size // 6) ** 2] = 2
    onehot = F.one_hot(masks, 3).permute(0, 3, 1, 2).float()
    projections = [torch.randn(c, 3, generator=torch.Generator().manual_seed(100 + c)) for c in (8, 6, 4)]
    features = []
    for k in range(count):
        levels = []
        for projection, res in zip(projections, (size // 4, size // 2, size)):
            down = F.interpolate(onehot[k:k + 1], size=(res, res), mode="bilinear", align_corners=False)
            levels.append(torch.einsum("oc,nchw->nohw", projection, down) + 0.3 * torch.randn(1, len(projection), res, res, generator=g))
        features.append(levels)
    return features, masks


def test_fit_learns_a_problem_the_features_determine():
    features, masks = _shapes_problem(4, seed=0)
    cfg = InterpreterConfig(num_classes=3, ensemble_size=2, max_epochs=3, patience=2)
    before = torch.get_rng_state()
    ensemble = fit_interpreter(features, masks, cfg)
    assert torch.equal(torch.get_rng_state(), before)  # the global RNG is neither used nor reseeded
    assert not ensemble.training and len(ensemble.history) == 2
    test_features, test_masks = _shapes_problem(4, seed=1)  # unseen images
    batched = [torch.cat([f[level] for f in test_features]) for level in range(3)]
    prediction = ensemble.predict(batched, tuple(test_masks.shape[1:]))
    accuracy = (prediction.labels == test_masks).float().mean().item()
    assert accuracy > 0.97, accuracy  # background alone is 0.8
    for part in (1, 2):
        recall = (prediction.labels[test_masks == part] == part).float().mean().item()
        assert recall > 0.9, (part, recall)
    assert prediction.uncertainty.shape == test_masks.shape and prediction.scores.shape == (4,)
    # members start from different seeds and end different
    assert not torch.equal(ensemble.members[0][0].weight, ensemble.members[1][0].weight)


def test_fit_is_deterministic_per_seed():
    features, masks = _shapes_problem(1, seed=0, size=12)
    cfg = InterpreterConfig(num_classes=3, ensemble_size=1, max_epochs=2, pixels_per_epoch=256)
    first, again = fit_interpreter(features, masks, cfg), fit_interpreter(features, masks, cfg)
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values()))
    other = fit_interpreter(features, masks, dataclasses.replace(cfg, seed=1))
    assert not torch.equal(first.members[0][0].weight, other.members[0][0].weight)


def test_early_stopping_stops_and_keeps_the_best_epoch():
    g = torch.Generator().manual_seed(0)
    features = [[torch.randn(1, 4, 4, 4, generator=g), torch.randn(1, 3, 8, 8, generator=g)] for _ in range(2)]
    masks = torch.randint(0, 2, (2, 8, 8), generator=g)  # labels unrelated to the features
    cfg = InterpreterConfig(num_classes=2, ensemble_size=2, max_epochs=40, patience=2, val_fraction=0.25, lr=1e-2)
    ensemble = fit_interpreter(features, masks, cfg)
    for history in ensemble.history:
        assert history.stopped_early and history.epochs < 40
        assert history.best_epoch == min(range(history.epochs), key=history.val_loss.__getitem__)
        assert history.epochs == history.best_epoch + cfg.patience + 1
        assert len(history.val_loss) == len(history.train_loss) == len(history.val_accuracy) == history.epochs


def test_no_held_out_pixels_trains_every_epoch():
    features, masks = _shapes_problem(1, seed=2, size=12)
    cfg = InterpreterConfig(num_classes=3, ensemble_size=1, max_epochs=3, val_fraction=0.0, pixels_per_epoch=64)
    history = fit_interpreter(features, masks, cfg).history[0]
    assert history.epochs == 3 and not history.stopped_early and history.val_loss == ()


def test_ignore_index_leaves_unlabelled_pixels_out():
    features, masks = _shapes_problem(2, seed=5, size=12)
    partial = masks.clone()
    partial[:, :, :6] = 255  # the left half unlabelled
    cfg = InterpreterConfig(num_classes=3, ensemble_size=1, max_epochs=3, ignore_index=255, val_fraction=0.2)
    ensemble = fit_interpreter(features, partial, cfg)  # a 255 target would fail inside cross-entropy
    assert ensemble.history[0].epochs == 3
    with pytest.raises(ValueError, match="masks contains class 255"):
        fit_interpreter(features, partial, dataclasses.replace(cfg, ignore_index=None))
    with pytest.raises(ValueError, match="no labelled pixel"):
        fit_interpreter(features, torch.full_like(masks, 255), cfg)


def test_predict_chunks_and_dtypes_agree():
    ensemble = _ensemble(num_classes=4, members=3).eval()
    features = _features(5, seed=4)
    whole = ensemble.predict(features, SIZE)
    one = ensemble.predict(features, SIZE, chunk=2)
    assert torch.equal(whole.labels, one.labels)
    assert torch.allclose(whole.uncertainty, one.uncertainty, atol=1e-6)
    logits = ensemble(features, SIZE)
    counts = F.one_hot(logits.argmax(2), 4).sum(0)  # (n, H, W, C)
    assert torch.equal(whole.labels, counts.argmax(-1))
    ensemble.train()
    half = ensemble.predict([f.half() for f in features], SIZE)  # features cast to the model's dtype
    assert ensemble.training  # restored
    assert (half.labels == whole.labels).float().mean() > 0.95


def test_architecture_follows_the_paper():
    small = _ensemble(num_classes=3, members=1)
    kinds = [type(m).__name__ for m in small.members[0]]
    assert kinds == ["Linear", "ReLU", "BatchNorm1d", "Linear", "ReLU", "BatchNorm1d", "Linear"]
    assert [m.out_features for m in small.members[0] if isinstance(m, nn.Linear)] == [128, 32, 3]
    assert small.members[0][0].in_features == sum(CHANNELS)
    big = _ensemble(num_classes=34, members=1)
    assert [m.out_features for m in big.members[0] if isinstance(m, nn.Linear)] == [256, 128, 34]
    assert len(_ensemble(members=10).members) == 10 and InterpreterConfig(num_classes=2).ensemble_size == 10


# -- files ----------------------------------------------------------------------------------------------


def test_save_load_round_trip(tmp_path):
    features, masks = _shapes_problem(2, seed=3, size=12)
    ensemble = fit_interpreter(features, masks, InterpreterConfig(num_classes=3, ensemble_size=2, max_epochs=2,
                                                                  hidden=(16, 8)))
    path = save_interpreter(ensemble, tmp_path / "interpreter.pt")
    meta = json.loads((tmp_path / "interpreter.json").read_text())
    assert meta["channels"] == [8, 6, 4] and meta["config"]["hidden"] == [16, 8]
    loaded = load_interpreter(path, channels=[8, 6, 4])
    batched = [torch.cat([f[level] for f in features]) for level in range(3)]
    assert torch.equal(loaded(batched, (12, 12)), ensemble(batched, (12, 12)))
    assert loaded.cfg == ensemble.cfg and loaded.history == ensemble.history

    with pytest.raises(ValueError, match=r"trained on feature channels \[8, 6, 4\]"):
        load_interpreter(path, channels=[8, 6, 5])
    meta["channels"] = [8, 6, 5]
    (tmp_path / "interpreter.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="members.0.0.weight"):
        load_interpreter(path)
    meta["channels"] = [8, 6, 4]
    meta["config"]["colour"] = 1
    (tmp_path / "interpreter.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="colour"):
        load_interpreter(path)
    with pytest.raises(ValueError, match=r"\.pt"):
        save_interpreter(ensemble, tmp_path / "interpreter.pth")
    with pytest.raises(FileNotFoundError):
        load_interpreter(tmp_path / "missing.pt")


def test_load_refuses_pickled_code(tmp_path):
    ensemble = _ensemble(members=1)
    path = save_interpreter(ensemble, tmp_path / "i.pt")
    torch.save({"bad": math.gcd}, path)  # a function reference: the restricted unpickler refuses it
    with pytest.raises(ValueError, match="weights_only"):
        load_interpreter(path)


def test_save_never_writes_through_a_link(tmp_path):
    victim = tmp_path / "victim.bin"
    victim.write_bytes(b"keep")
    (tmp_path / "i.pt").symlink_to(victim)
    with pytest.raises(OSError):
        save_interpreter(_ensemble(members=1), tmp_path / "i.pt")
    assert victim.read_bytes() == b"keep"


# -- bad input --------------------------------------------------------------------------------------------


def test_bad_training_inputs_name_the_argument():
    features, masks = _shapes_problem(2, seed=0, size=12)
    cfg = InterpreterConfig(num_classes=3, ensemble_size=1, max_epochs=1)
    with pytest.raises(ValueError, match="masks holds 1"):
        fit_interpreter(features, masks[:1], cfg)
    with pytest.raises(ValueError, match=r"masks must have shape \(K, H, W\)"):
        fit_interpreter(features, masks[0], cfg)
    with pytest.raises(ValueError, match="masks contains class 3"):
        fit_interpreter(features, masks.clamp(max=2) + (masks == 2).long(), cfg)
    with pytest.raises(ValueError, match="masks contains class -1"):
        fit_interpreter(features, masks - 1, cfg)
    with pytest.raises(TypeError, match="masks"):
        fit_interpreter(features, masks.float(), cfg)
    with pytest.raises(ValueError, match=r"features\[1\] has 2 feature levels"):
        fit_interpreter([features[0], features[1][:2]], masks, cfg)
    with pytest.raises(ValueError, match=r"features\[1\]\[2\] has 5 channels"):
        fit_interpreter([features[0], [*features[1][:2], torch.zeros(1, 5, 12, 12)]], masks, cfg)
    with pytest.raises(ValueError, match=r"features\[1\]\[2\] has shape"):
        fit_interpreter([features[0], [*features[1][:2], torch.zeros(1, 4, 10, 12)]], masks, cfg)
    with pytest.raises(ValueError, match=r"features\[0\]\[0\] holds 2 images"):
        fit_interpreter([[torch.zeros(2, 8, 3, 3), *features[0][1:]], features[1]], masks, cfg)
    with pytest.raises(TypeError, match="cfg"):
        fit_interpreter(features, masks, {"num_classes": 3})


def test_bad_forward_inputs_name_the_argument():
    ensemble = _ensemble()
    features = _features(1)
    with pytest.raises(ValueError, match="features has 5 feature levels"):
        ensemble(features[:-1], SIZE)
    with pytest.raises(ValueError, match=r"features\[2\] has 3 channels"):
        ensemble.predict([*features[:2], features[2][:, :3], *features[3:]], SIZE)
    with pytest.raises(ValueError, match=r"features\[1\] holds 2 images"):
        ensemble([features[0], torch.cat([features[1]] * 2), *features[2:]], SIZE)
    with pytest.raises(ValueError, match="size"):
        ensemble(features, (24,))
    with pytest.raises(ValueError, match="chunk"):
        ensemble.predict(features, SIZE, chunk=0)
    with pytest.raises(ValueError, match="channels"):
        InterpreterEnsemble([4, 0], InterpreterConfig(num_classes=2))


@pytest.mark.parametrize("field, value", [("num_classes", 1), ("ensemble_size", 0), ("batch_pixels", 1),
                                          ("lr", 0.0), ("val_fraction", 1.0), ("patience", True),
                                          ("hidden", ()), ("seed", -1), ("pixels_per_epoch", 1),
                                          ("ignore_index", 2)])
def test_bad_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        InterpreterConfig(**{"num_classes": 3, field: value})


def test_config_round_trips_through_dict():
    cfg = InterpreterConfig(num_classes=40, hidden=[64, 32], seed=7, pixels_per_epoch=1000)
    assert cfg.hidden == (64, 32)
    assert InterpreterConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="allowed"):
        InterpreterConfig.from_dict({"num_classes": 3, "epochs": 2})

"""ViT builders and the one-call logits + features forward used by the negative losses."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.models import vision_transformer as tv_vit

from pipelines.train.models.vit_models import build_vit, forward_with_features, normalize_images, vit_patch_size


def tiny(**kw):
    torch.manual_seed(0)
    options = dict(image_size=32, num_classes=5, patch_size=8, depth=2, hidden_dim=32, num_heads=2, mlp_dim=64)
    return build_vit(**{**options, **kw})


@pytest.fixture
def ddp(tmp_path):
    """A one-process gloo group, so models can be wrapped in a real DistributedDataParallel."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        yield lambda module: nn.parallel.DistributedDataParallel(module)
    finally:
        dist.destroy_process_group()


def test_features_are_the_heads_input_and_logits_the_model_output(ddp):
    model = tiny()
    nn.init.normal_(model.heads.head.weight)  # torchvision initialises the head to zero
    x = torch.randn(3, 3, 32, 32)
    wrapped = ddp(model)
    calls = []
    wrapped.register_forward_pre_hook(lambda _m, _a: calls.append(1))
    logits, features = forward_with_features(wrapped, x)
    assert calls == [1]  # through the DDP wrapper's forward (its gradient hooks), once
    (logits.sum() + features.sum()).backward()
    assert model.conv_proj.weight.grad is not None
    assert features.shape == (3, 32)
    # the logits are torchvision's own forward of the same weights
    torch.testing.assert_close(logits, tv_vit.VisionTransformer.forward(model, x))
    torch.testing.assert_close(model.heads(features), logits)
    # by hand: class token after the encoder (position embedding, blocks, final LayerNorm)
    tokens = torch.cat([model.class_token.expand(3, -1, -1), model._process_input(x)], dim=1)
    torch.testing.assert_close(features, model.encoder(tokens)[:, 0])


def test_gradients_reach_the_encoder_through_the_features():
    model = tiny()
    _, features = forward_with_features(model, torch.randn(2, 3, 32, 32))
    features.pow(2).sum().backward()
    assert model.conv_proj.weight.grad is not None and model.conv_proj.weight.grad.abs().sum() > 0


def test_patch_size_through_a_ddp_wrapper(ddp):
    model = tiny(patch_size=4)
    assert vit_patch_size(ddp(model)) == 4
    with pytest.raises(TypeError, match="VisionTransformer"):
        vit_patch_size(nn.Linear(2, 2))
    with pytest.raises(TypeError, match="FeatureViT"):
        forward_with_features(nn.Linear(2, 2), torch.zeros(1, 2))


def test_named_architecture_has_torchvisions_parameters_and_keys():
    model = build_vit("vit_b_32", image_size=32, num_classes=7)
    assert isinstance(model, tv_vit.VisionTransformer)
    reference = tv_vit.vit_b_32(weights=None, image_size=32, num_classes=7)
    ours, theirs = model.state_dict(), reference.state_dict()
    assert list(ours) == list(theirs)
    assert all(ours[k].shape == theirs[k].shape for k in ours)
    model.load_state_dict(theirs)  # torchvision's weights load as they are
    model.eval(), reference.eval()
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(model(x), reference(x))


@pytest.mark.parametrize("kwargs, message", [
    (dict(arch="resnet"), "arch must be"),
    (dict(image_size=30), "multiple of patch_size"),
    (dict(hidden_dim=30, num_heads=4), "divisible by num_heads"),
    (dict(depth=0), "depth must be a positive int"),
    (dict(arch="vit_b_16", image_size=40), "multiple of vit_b_16"),
    (dict(dropout=1.0), "dropout"),
])
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tiny(**kwargs)


def test_normalize_uint8_and_unit_float_agree():
    images = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8)
    a = normalize_images(images)
    b = normalize_images(images.float() / 255)
    torch.testing.assert_close(a, b)
    assert a[0, 0, 0, 0].item() == pytest.approx((images[0, 0, 0, 0].item() / 255 - 0.485) / 0.229, rel=1e-5)
    with pytest.raises(ValueError, match="channels"):
        normalize_images(torch.zeros(1, 1, 2, 2))

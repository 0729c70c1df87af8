"""The MAE model: visible-token encoding, masked-patch loss with normalised targets, decoder
unshuffling, linear-probe features."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from pipelines.train.models.mae_model import MaskedAutoencoder, mae_loss, patchify, sincos_pos_embed_2d, unpatchify
from pipelines.train.models.vit_models import build_vit


def tiny_mae(mask_ratio: float = 0.75, image_size: int = 32, patch_size: int = 4) -> MaskedAutoencoder:
    torch.manual_seed(0)
    encoder = build_vit(image_size=image_size, num_classes=10, patch_size=patch_size, depth=2, hidden_dim=32,
                        num_heads=2, mlp_dim=64)
    return MaskedAutoencoder(encoder, decoder_dim=16, decoder_depth=1, decoder_heads=2, mask_ratio=mask_ratio)


@pytest.mark.parametrize("ratio, visible", [(0.75, 16), (0.5, 32), (0.0, 64)])
def test_encoder_blocks_see_only_the_visible_tokens(ratio, visible):
    mae = tiny_mae(ratio)
    lengths = []
    for block in mae.encoder.encoder.layers:
        block.register_forward_pre_hook(lambda _m, args: lengths.append(args[0].shape[1]))
    loss, pred, mask = mae(torch.randn(3, 3, 32, 32))
    # 64 patches; the blocks see the class token plus int(64 * (1 - ratio)) patches, every block
    assert lengths == [1 + visible] * 2
    assert mask.shape == (3, 64) and mask.sum(dim=1).tolist() == [64 - visible] * 3
    assert pred.shape == (3, 64, 4 * 4 * 3) and loss.ndim == 0


def test_loss_on_masked_patches_only_with_normalised_targets_hand_computed():
    # one image, one channel, 2x4 pixels, patch 2 -> patch 0 = [1, 2, 3, 4], patch 1 = [5, 5, 5, 5]
    images = torch.tensor([[[[1.0, 2.0, 5.0, 5.0], [3.0, 4.0, 5.0, 5.0]]]])
    assert patchify(images, 2).tolist() == [[[1.0, 2.0, 3.0, 4.0], [5.0, 5.0, 5.0, 5.0]]]
    pred = torch.zeros(1, 2, 4)
    # patch 0: mean 2.5, unbiased variance (2.25 + 0.25 + 0.25 + 2.25) / 3 = 5/3; target (x - 2.5) / sqrt(5/3 + 1e-6);
    # MSE against 0 = mean((x - 2.5)^2) / (5/3 + 1e-6) = 1.25 / (5/3 + 1e-6). Patch 1 is constant -> target 0.
    patch0 = 1.25 / (5 / 3 + 1e-6)
    assert mae_loss(images, pred, torch.tensor([[1, 0]]), 2).item() == pytest.approx(patch0, rel=1e-6)
    assert mae_loss(images, pred, torch.tensor([[0, 1]]), 2).item() == pytest.approx(0.0, abs=1e-7)
    assert mae_loss(images, pred, torch.tensor([[1, 1]]), 2).item() == pytest.approx(patch0 / 2, rel=1e-6)
    # raw pixels: patch 0 -> mean(1, 4, 9, 16) = 7.5, patch 1 -> 25
    assert mae_loss(images, pred, torch.tensor([[0, 1]]), 2, norm_pix=False).item() == pytest.approx(25.0)
    assert mae_loss(images, pred, torch.tensor([[1, 1]]), 2, norm_pix=False).item() == pytest.approx(16.25)


def test_predictions_on_visible_patches_do_not_change_the_loss():
    images = torch.randn(2, 3, 8, 8)
    mask = torch.tensor([[1, 0, 0, 1], [0, 1, 1, 1]])
    pred = torch.randn(2, 4, 48)
    changed = pred.clone()
    changed[mask == 0] += 10.0
    assert torch.equal(mae_loss(images, pred, mask, 4), mae_loss(images, changed, mask, 4))
    changed[0, 0] += 1.0  # a masked patch
    assert not torch.equal(mae_loss(images, pred, mask, 4), mae_loss(images, changed, mask, 4))


def test_decoder_puts_visible_tokens_back_at_their_positions_and_mask_tokens_elsewhere():
    mae = tiny_mae(0.75)
    mae.decoder_blocks, mae.decoder_norm, mae.decoder_pred = nn.Sequential(), nn.Identity(), nn.Identity()
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        latent, mask, ids_restore = mae.forward_encoder(images, generator=torch.Generator().manual_seed(3))
        out = mae.forward_decoder(latent, ids_restore)
        embedded = mae.decoder_embed(latent[:, 1:])
    ids_shuffle = ids_restore.argsort(dim=1)
    pos = mae.decoder_pos_embed[0]
    for b in range(2):
        for rank, position in enumerate(ids_shuffle[b, :16].tolist()):
            assert mask[b, position] == 0
            torch.testing.assert_close(out[b, position], embedded[b, rank] + pos[position])
        for position in ids_shuffle[b, 16:].tolist():
            assert mask[b, position] == 1
            torch.testing.assert_close(out[b, position], mae.mask_token[0, 0] + pos[position])


def test_every_parameter_gets_a_gradient_so_ddp_needs_no_unused_parameter_search():
    mae = tiny_mae()
    loss, _, _ = mae(torch.randn(2, 3, 32, 32))
    loss.backward()
    missing = [name for name, p in mae.named_parameters() if p.grad is None]
    assert not missing


def test_probe_features_equal_the_torchvision_forward_of_the_encoder():
    mae = tiny_mae()
    mae.eval()
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        # heads are emptied, so the encoder's own forward returns the class-token features
        torch.testing.assert_close(mae.features(images), mae.encoder(images))
    assert not any(key.startswith("encoder.heads") for key in mae.state_dict())


def test_patchify_round_trip_and_token_order_matches_the_patch_embedding():
    images = torch.randn(2, 3, 16, 16)
    assert torch.equal(unpatchify(patchify(images, 4), 4), images)
    # token l of the encoder is the conv over patch l of patchify: compare with a linear map
    encoder = build_vit(image_size=16, num_classes=2, patch_size=4, depth=1, hidden_dim=8, num_heads=2, mlp_dim=8)
    conv = encoder.conv_proj
    weight = conv.weight.permute(0, 2, 3, 1).reshape(8, -1)  # (row, column, channel) order like patchify
    with torch.no_grad():
        expected = patchify(images, 4) @ weight.T + conv.bias
        torch.testing.assert_close(encoder._process_input(images), expected, rtol=1e-4, atol=1e-5)


def test_sincos_embedding_values_and_argument_checks():
    table = sincos_pos_embed_2d(8, 3)
    assert table.shape == (9, 8)
    # token 4 is row 1, column 1: the first quarter of channels are sin(col * omega), omega = [1, 1e-2]
    assert table[4, :2].tolist() == pytest.approx([math.sin(1.0), math.sin(0.01)])
    assert table[4, 2:4].tolist() == pytest.approx([math.cos(1.0), math.cos(0.01)])
    assert table[1, 4:6].tolist() == pytest.approx([0.0, 0.0])  # row 0
    with pytest.raises(ValueError, match="multiple of 4"):
        sincos_pos_embed_2d(6, 2)
    with pytest.raises(ValueError, match="not divisible"):
        patchify(torch.zeros(1, 3, 6, 8), 4)
    with pytest.raises(ValueError, match="mask must have shape"):
        mae_loss(torch.zeros(1, 3, 8, 8), torch.zeros(1, 4, 48), torch.zeros(1, 3), 4)
    with pytest.raises(ValueError, match="ratio"):
        tiny_mae(1.0)

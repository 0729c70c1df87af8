"""The ``vatt`` trainer's parts on small tensors: the hashing tokenizer, the voxel/segment
tokenizers and factorised positions, DropToken shortening what the encoders see (counted by a
hook on the first block), NCE and MIL-NCE against sums written out by hand, the retrieval and
probe measures, the clip transform and the config checks."""

from __future__ import annotations

import math

import pytest
import torch

from loaders.schema import KEY
from pipelines.train.config import load_config
from pipelines.train.models.vatt_model import VATT, VideoTokenizer, segment_audio, voxelize
from pipelines.train.text_tokens import PAD_ID, HashTokenizer
from pipelines.train.vatt import VattConfig, build_vatt, droptoken_step_times
from pipelines.train.vatt_data import ClipTransform, normalize_video
from pipelines.train.vatt_eval import average_precision, chance_levels, multilabel_probe, recall_at, retrieval_ranks
from pipelines.train.vatt_losses import mil_nce, nce, vatt_loss

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = dict(frames=4, size=16, patch_frames=2, patch_size=8, audio_samples=512, audio_segment=64, vocab_size=97,
             max_words=6, dim=16, depth=1, num_heads=2, mlp_dim=32, va_dim=12, vt_dim=8)


def small_model(**changes) -> VATT:
    torch.manual_seed(0)
    return VATT(**{**SMALL, **changes})


def inputs(batch: int = 4, bag: int = 3, generator_seed: int = 1):
    g = torch.Generator().manual_seed(generator_seed)
    video = torch.rand(batch, 4, 3, 16, 16, generator=g) * 2 - 1
    audio = torch.randn(batch, 512, generator=g)
    ids = torch.randint(1, 97, (batch, bag, 6), generator=g)
    mask = torch.ones(batch, bag, dtype=torch.bool)
    return video, audio, ids, mask


# -- tokenizer ---------------------------------------------------------------------------------


def test_hash_tokenizer_is_stable_case_folded_bounded_and_pads():
    tok = HashTokenizer(vocab_size=50, max_words=4)
    assert tok.words("Don't STOP, the Red-star!") == ["don", "t", "stop", "the"]
    ids = tok.encode("Red star")
    assert ids.dtype == torch.int64 and ids.shape == (4,)
    assert ids[2:].tolist() == [PAD_ID, PAD_ID] and all(1 <= i < 50 for i in ids[:2].tolist())
    assert torch.equal(ids, tok.encode("red   STAR"))  # case and spacing do not matter
    # the id is a fixed function of the word (blake2b), not of the process: recompute it by hand
    import hashlib

    expected = 1 + int.from_bytes(hashlib.blake2b(b"red", digest_size=8).digest(), "little") % 49
    assert tok.word_id("red") == expected == int(ids[0])
    # a huge caption costs max_words words
    assert tok.encode("word " * 100000).ne(PAD_ID).sum() == 4
    bag, mask = tok.encode_bag(["a red star", "", "?!"], bag_size=4)
    assert bag.shape == (4, 4) and mask.tolist() == [True, False, False, False]
    bag, mask = tok.encode_bag(None, bag_size=2)
    assert not mask.any() and not bag.any()
    assert tok.encode_bag("one caption", 2)[1].tolist() == [True, False]
    with pytest.raises(TypeError, match="caption 1"):
        tok.encode_bag(["ok", 3], 2)
    with pytest.raises(ValueError, match="vocab_size"):
        HashTokenizer(1, 4)


# -- tokenizers and the model -------------------------------------------------------------------


def test_voxels_and_audio_segments_are_the_pixels_and_samples_in_order():
    video = torch.arange(2 * 4 * 3 * 4 * 6, dtype=torch.float32).reshape(2, 4, 3, 4, 6)
    voxels = voxelize(video, 2, 2)
    assert voxels.shape == (2, 2 * 2 * 3, 2 * 2 * 2 * 3)
    # voxel (i=1, j=0, k=2) of clip 1: frames 2-3, rows 0-1, columns 4-5, ordered (frame, row, column, channel)
    expected = video[1, 2:4, :, 0:2, 4:6].permute(0, 2, 3, 1).reshape(-1)
    assert torch.equal(voxels[1, 1 * 6 + 0 * 3 + 2], expected)
    audio = torch.arange(12.0).reshape(1, 12)
    assert segment_audio(audio, 4)[0, 2].tolist() == [8.0, 9.0, 10.0, 11.0]
    with pytest.raises(ValueError, match="not divisible by the patch"):
        voxelize(video, 3, 2)
    with pytest.raises(ValueError, match="segment length 5"):
        segment_audio(audio, 5)


def test_video_positions_are_factorised_sums():
    tok = VideoTokenizer(frames=4, size=16, patch_frames=2, patch_size=8, dim=5)
    pos = tok.position_embeddings()
    assert pos.shape == (2 * 2 * 2, 5)
    for i in range(2):
        for j in range(2):
            for k in range(2):
                assert torch.allclose(pos[i * 4 + j * 2 + k], tok.pos_t[i] + tok.pos_h[j] + tok.pos_w[k])
    assert sum(p.numel() for p in (tok.pos_t, tok.pos_h, tok.pos_w)) == 6 * 5  # not 8 * 5


@pytest.mark.parametrize("shared", [False, True])
def test_droptoken_shortens_what_the_encoders_see_in_training_only(shared):
    model = small_model(drop_rate=0.5, drop_shared=shared)
    seen: dict[str, list[int]] = {"video": [], "audio": [], "text": []}
    blocks = {m: model.encoder_of(m).blocks[0] for m in seen}
    assert len({id(b) for b in blocks.values()}) == 3
    for modality, block in blocks.items():
        block.register_forward_pre_hook(lambda module, args, m=modality: seen[m].append(args[0].shape[1]))
    video, audio, ids, mask = inputs()
    model.train()
    model(video, audio, ids, mask)
    # video 2x2x2 = 8 voxel tokens -> 4 kept; audio 512/64 = 8 -> 4; text never dropped; +1 aggregation token
    assert seen == {"video": [1 + 4], "audio": [1 + 4], "text": [1 + 6]}
    model.eval()
    model(video, audio, ids, mask)
    assert seen["video"][-1] == 1 + 8 and seen["audio"][-1] == 1 + 8
    model.train()
    model.drop_token.rate = 0.75
    model(video, audio, ids, mask)
    assert seen["video"][-1] == 1 + 2 and seen["audio"][-1] == 1 + 2


def test_shared_encoder_runs_every_modality_through_one_stack():
    model = small_model(shared_encoder=True)
    separate = small_model()
    calls = []
    model.encoder.blocks[0].register_forward_pre_hook(lambda module, args: calls.append(args[0].shape[1]))
    model.eval()
    model(*inputs())
    assert calls == [1 + 8, 1 + 8, 1 + 6]
    blocks = sum(p.numel() for n, p in model.named_parameters() if ".blocks." in n)
    assert blocks * 3 == sum(p.numel() for n, p in separate.named_parameters() if ".blocks." in n)


def test_forward_outputs_heads_and_text_masking():
    model = small_model()
    video, audio, ids, mask = inputs()
    mask[1] = torch.tensor([True, False, False])
    mask[2] = False
    model.train()
    out = model(video, audio, ids, mask)
    assert out["video_va"].shape == (4, 12) and out["audio_va"].shape == (4, 12)
    assert out["video_vt"].shape == (4, 8) and out["text_vt"].shape == (4, 3, 8)
    assert not out["text_vt"][2].any() and not out["text_vt"][1, 1:].any() and out["text_vt"][0].abs().sum() > 0
    # the video-text embedding is the video-audio one through ReLU + linear + BN
    model.eval()
    out = model(video, audio, ids, mask)
    assert torch.allclose(out["video_vt"], model.va_to_vt.bn(model.va_to_vt.linear(out["video_va"].relu())))
    # padding is never attended to: changing what sits at padded positions changes nothing
    short, longer = torch.tensor([[5, 6, 0, 0, 0, 0]]), torch.tensor([[5, 6, 7, 0, 0, 0]])
    before = model.embed_text(short), model.embed_text(longer)
    with torch.no_grad():
        model.text_tokens.pos[2:] += torch.randn(4, 16, generator=torch.Generator().manual_seed(5))
    assert torch.allclose(model.embed_text(short), before[0], atol=1e-6)
    assert not torch.allclose(model.embed_text(longer), before[1], atol=1e-3)


def test_a_batch_without_text_still_gives_every_parameter_a_gradient():
    model = small_model()
    video, audio, ids, mask = inputs()
    model.train()
    out = model(video, audio, ids, torch.zeros_like(mask))
    loss, parts = vatt_loss(out)
    assert parts["mil_nce"] == 0.0 and parts["text_clips"] == 0.0
    (loss + out["unused"]).backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []
    text_grads = [p.grad for n, p in model.named_parameters() if n.startswith(("text_tokens", "encoders.text"))]
    assert all(not g.any() for g in text_grads)  # zero: the text path adds nothing to the loss


# -- losses, written out by hand -----------------------------------------------------------------


def _unit(v):
    norm = math.sqrt(sum(x * x for x in v))
    return [x / norm for x in v]


def _dot(a, b):
    return sum(x * y for x, y in zip(a, b))


def _hand_mil_nce(videos, bags, masks, tau):
    """The formula by loops: for each clip with a candidate, -log(sum_P exp / sum_D exp)."""
    videos = [_unit(v) for v in videos]
    bags = [[_unit(c) for c in bag] for bag in bags]
    losses = []
    for i, v in enumerate(videos):
        if not any(masks[i]):
            continue
        positives = sum(math.exp(_dot(v, c) / tau) for c, m in zip(bags[i], masks[i]) if m)
        row = sum(math.exp(_dot(v, c) / tau) for j in range(len(bags)) for c, m in zip(bags[j], masks[j]) if m)
        column = sum(math.exp(_dot(videos[j], c) / tau) for j in range(len(videos)) for c, m in zip(bags[i], masks[i]) if m)
        losses.append(-math.log(positives / (row + column)))
    return sum(losses) / len(losses)


def test_nce_equals_the_hand_computed_value():
    video = [[1.0, 0.0], [0.6, 0.8], [0.0, -2.0]]
    audio = [[2.0, 0.1], [0.5, 0.5], [0.3, -1.0]]
    expected = _hand_mil_nce(video, [[a] for a in audio], [[True]] * 3, 0.07)
    got = nce(torch.tensor(video), torch.tensor(audio), temperature=0.07)
    assert got.dtype == torch.float32 and math.isclose(float(got), expected, rel_tol=1e-5)
    # two clips, tau = 1: -log(e^{s11} / (e^{s11} + e^{s12} + e^{s11} + e^{s21})) for clip 1, written out
    v, a = [[1.0, 0.0], [0.0, 1.0]], [[1.0, 1.0], [0.0, 1.0]]
    s11, s12, s21, s22 = (_dot(_unit(x), _unit(y)) for x, y in ((v[0], a[0]), (v[0], a[1]), (v[1], a[0]), (v[1], a[1])))
    first = -math.log(math.exp(s11) / (2 * math.exp(s11) + math.exp(s12) + math.exp(s21)))
    second = -math.log(math.exp(s22) / (2 * math.exp(s22) + math.exp(s21) + math.exp(s12)))
    assert math.isclose(float(nce(torch.tensor(v), torch.tensor(a), temperature=1.0)), (first + second) / 2, rel_tol=1e-6)


def test_mil_nce_equals_the_hand_computed_value_with_masked_candidates():
    videos = [[1.0, 0.2, 0.0], [0.0, 1.0, 0.5], [0.3, 0.3, -1.0], [-1.0, 0.1, 0.2]]
    bags = [[[1.0, 0.0, 0.1], [0.9, 0.3, 0.0]], [[0.1, 1.0, 0.4], [5.0, 5.0, 5.0]],
            [[0.0, 0.0, 1.0], [0.2, 0.2, -0.9]], [[1.0, 1.0, 1.0], [-1.0, 0.0, 0.0]]]
    masks = [[True, True], [True, False], [False, False], [True, True]]
    for tau in (0.07, 0.5):
        expected = _hand_mil_nce(videos, bags, masks, tau)
        got = mil_nce(torch.tensor(videos), torch.tensor(bags), torch.tensor(masks), temperature=tau)
        assert math.isclose(float(got), expected, rel_tol=1e-5), (tau, float(got), expected)
    # a masked candidate is ignored whatever it holds; a clip without candidates adds no term
    changed = [bag[:] for bag in bags]
    changed[1][1] = [-7.0, 2.0, 0.0]
    changed[2] = [[9.0, 0.0, 0.0], [0.0, 9.0, 0.0]]
    assert math.isclose(float(mil_nce(torch.tensor(videos), torch.tensor(changed), torch.tensor(masks))),
                        float(mil_nce(torch.tensor(videos), torch.tensor(bags), torch.tensor(masks))), rel_tol=1e-6)
    # no candidate at all: an exact zero with a graph; gradients finite
    video = torch.tensor(videos, requires_grad=True)
    zero = mil_nce(video, torch.tensor(bags), torch.zeros(4, 2, dtype=torch.bool))
    zero.backward()
    assert zero.item() == 0.0 and torch.isfinite(video.grad).all()
    with pytest.raises(ValueError, match="temperature"):
        mil_nce(torch.tensor(videos), torch.tensor(bags), torch.tensor(masks), temperature=0)
    with pytest.raises(ValueError, match="mask must be bool"):
        mil_nce(torch.tensor(videos), torch.tensor(bags), torch.ones(4, 3, dtype=torch.bool))


def test_vatt_loss_weights_the_terms():
    g = torch.Generator().manual_seed(0)
    out = {"video_va": torch.randn(5, 6, generator=g), "audio_va": torch.randn(5, 6, generator=g),
           "video_vt": torch.randn(5, 4, generator=g), "text_vt": torch.randn(5, 2, 4, generator=g),
           "text_mask": torch.tensor([[True, True], [True, False], [False, False], [True, True], [False, True]])}
    a = nce(out["video_va"], out["audio_va"], 0.1)
    b = mil_nce(out["video_vt"], out["text_vt"], out["text_mask"], 0.1)
    loss, parts = vatt_loss(out, temperature=0.1, nce_weight=0.5, mil_nce_weight=2.0)
    assert math.isclose(float(loss), 0.5 * float(a) + 2.0 * float(b), rel_tol=1e-6)
    assert parts == {"nce": float(a), "mil_nce": float(b), "text_clips": 4.0}
    loss, parts = vatt_loss(out, temperature=0.1, nce_weight=0.0)
    assert "nce" not in parts and math.isclose(float(loss), float(b), rel_tol=1e-6)


# -- evaluation measures -------------------------------------------------------------------------


def test_retrieval_ranks_recalls_and_chance():
    gallery = torch.eye(4)
    queries = torch.tensor([[1.0, 0, 0, 0], [0.9, 0.1, 0, 0], [0, 0, 0, 1.0], [0, 0, 0, 1.0]])
    ranks = retrieval_ranks(queries, gallery)
    assert ranks.tolist() == [1, 2, 2, 1]
    assert recall_at(ranks, "t2v") == {"t2v_r1": 0.5, "t2v_r5": 1.0, "t2v_r10": 1.0, "t2v_median_rank": 1.5}
    assert chance_levels(20) == {"chance_r1": 0.05, "chance_r5": 0.25, "chance_r10": 0.5, "chance_median_rank": 10.5}
    assert retrieval_ranks(torch.ones(3, 2), torch.ones(3, 2)).tolist() == [1, 1, 1]  # ties favour the match
    with pytest.raises(ValueError, match="query i matches item i"):
        retrieval_ranks(torch.ones(3, 2), torch.ones(2, 2))


def test_average_precision_and_the_multilabel_probe():
    ap = average_precision(torch.tensor([0.9, 0.8, 0.7, 0.1]), torch.tensor([1.0, 0.0, 1.0, 0.0]))
    assert ap == pytest.approx((1 + 2 / 3) / 2)  # precision 1/1 at the first positive, 2/3 at the second
    assert math.isnan(average_precision(torch.tensor([0.5, 0.2]), torch.tensor([0.0, 0.0])))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(120, 6, generator=g)
    y = torch.stack([(x[:, 0] > 0), (x[:, 1] + x[:, 2] > 0), (x[:, 3] < -0.5)], dim=1).float()
    y_train = y[:80].clone()
    y_train[::7, 1] = float("nan")  # unknown labels are left out of the fit
    out = multilabel_probe(x[:80], y_train, x[80:], y[80:], steps=50)
    assert out["probe_classes"] == 3.0 and out["probe_map"] > 0.9
    noise = multilabel_probe(torch.randn(80, 6, generator=g), y[:80], torch.randn(40, 6, generator=g), y[80:], steps=50)
    assert noise["probe_map"] < out["probe_map"] - 0.2


# -- the clip transform --------------------------------------------------------------------------


def clip_sample(frames=12, size=(20, 28), channels=3, samples=1200, text=("a red star moving left", "the red star")):
    g = torch.Generator().manual_seed(3)
    sample = {KEY: "clip_1", "video": torch.randint(0, 256, (frames, channels, *size), dtype=torch.uint8, generator=g),
              "audio": torch.randn(2, samples, generator=g), "label": 4, "meta": {"sample_rate": 4000}}
    if text is not None:
        sample["text"] = list(text)
    return sample


def test_clip_transform_crops_aligns_audio_and_tokenizes():
    tok = HashTokenizer(97, 6)
    train = ClipTransform(4, 16, 256, tok, 3, train=True, probe="label")
    torch.manual_seed(0)
    sample = clip_sample()
    out = train(dict(sample))
    assert out["video"].shape == (4, 3, 16, 16) and out["video"].dtype == torch.uint8
    assert out["audio"].shape == (256,) and out["audio"].dtype == torch.float32
    assert out["text_ids"].shape == (3, 6) and out["text_mask"].tolist() == [True, True, False]
    assert out["query"] == 0 and out["caption"] == "a red star moving left" and out["label"] == 4
    # evaluation: centred frames 4..7 of 12 and the audio from 4/12 of the clip on, channels averaged
    evaluate = ClipTransform(4, 20, 256, tok, 3, train=False)
    out = evaluate({**sample, "video": sample["video"][:, :, :, :20]})
    assert torch.equal(out["video"], sample["video"][4:8, :, :, :20])
    assert torch.allclose(out["audio"], sample["audio"].mean(0)[400:656])
    assert out["video_frames_held"] == 0 and out["audio_samples_padded"] == 0
    # short clips: the last frame repeats, the audio is zero-padded; grey becomes RGB
    out = evaluate(clip_sample(frames=2, size=(20, 20), channels=1, samples=100, text=None))
    assert torch.equal(out["video"][3], out["video"][1]) and torch.equal(out["video"][:, 0], out["video"][:, 2])
    assert out["audio"][100:].abs().sum() == 0 and not out["text_mask"].any() and out["caption"] == ""
    assert out["video_frames_held"] == 2 and out["audio_samples_padded"] == 156  # said, not silent
    # HowTo100M: the anchor caption is the retrieval query
    anchored = clip_sample(text=("one", "two", "three"))
    anchored["meta"] = {"anchor": 11, "caption_indices": [10, 13]}
    assert evaluate(anchored)["query"] == 1


def test_clip_transform_errors_name_the_sample_and_field():
    tok = HashTokenizer(97, 6)
    transform = ClipTransform(4, 16, 256, tok, 3, train=False, sample_rate=8000, probe="label")
    with pytest.raises(ValueError, match="clip_1.*4000 Hz"):
        transform(clip_sample())
    transform = ClipTransform(4, 16, 256, tok, 3, train=False, probe="label")
    with pytest.raises(ValueError, match="clip_1.*'video' must be a uint8"):
        transform({**clip_sample(), "video": torch.zeros(4, 3, 16, 16)})
    with pytest.raises(ValueError, match="clip_1.*no 'audio' field"):
        transform({k: v for k, v in clip_sample().items() if k != "audio"})
    with pytest.raises(ValueError, match="clip_1.*'text'"):
        transform({**clip_sample(), "text": ["fine", 7]})
    with pytest.raises(ValueError, match="clip_1.*'label'"):
        transform({**clip_sample(), "label": "cat"})
    assert normalize_video(torch.tensor([0, 255], dtype=torch.uint8)).tolist() == [-1.0, 1.0]


# -- config and the speed helper -----------------------------------------------------------------


@pytest.mark.parametrize("override, message", [
    ("frame_size=30", "frame_size"),
    ("audio_samples=1000", "audio_samples"),
    ("num_frames=7", "num_frames"),
    ("drop_rate=1.0", "drop_rate"),
    ("temperature=0", "temperature"),
    ("probe=top1", "probe"),
    ("hidden_dim=30", "hidden_dim"),
    ("vocab_size=1", "vocab_size"),
])
def test_bad_configs_name_the_key(override, message):
    with pytest.raises(ValueError, match=message):
        load_config(VattConfig, overrides=[override])
    with pytest.raises(ValueError, match="nce_weight"):
        load_config(VattConfig, overrides=["nce_weight=0", "mil_nce_weight=0"])


def test_droptoken_step_times_report_the_tokens_seen():
    cfg = load_config(VattConfig, overrides=["num_frames=4", "frame_size=16", "patch_size=8", "audio_samples=512",
                                             "audio_segment=64", "vocab_size=97", "max_words=6", "hidden_dim=16",
                                             "depth=1", "num_heads=2", "mlp_dim=32", "va_dim=12", "vt_dim=8",
                                             "batch_size=4", "bag_size=2"])
    assert isinstance(build_vatt(cfg), VATT)
    out = droptoken_step_times(cfg, (0.0, 0.5, 0.75), steps=1)
    assert [(r["video_tokens"], r["audio_tokens"]) for r in out.values()] == [(9.0, 9.0), (5.0, 5.0), (3.0, 3.0)]
    assert all(r["seconds"] > 0 for r in out.values())

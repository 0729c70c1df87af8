"""Optional embedding near duplicates: a torchvision model built with random weights (no download)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import loaders
from datafactory.audit import Embedder, audit
from datafactory.audit.embed import cosine_pairs, prepare_image


def test_embedder_features_are_normalised_and_equal_for_equal_pixels(pictures):
    torch.manual_seed(0)
    embedder = Embedder("mobilenet_v3_small", None, size=64, batch_size=4)
    images = [torch.from_numpy(pictures.photo(s, 48)).permute(2, 0, 1) for s in range(5)]
    grey16 = images[0][:1].to(torch.int32).mul(257).to(torch.uint16)  # 16-bit grey is scaled, replicated
    features = embedder.embed(images + [images[0].clone(), grey16])
    assert features.shape == (7, 1024)  # classifier[-1] removed: the 1024-d hidden layer and np.allclose(np.linalg.norm(features, axis=1), 1.0, atol=1e-5)
    assert np.allclose(features[0], features[5], atol=1e-6)
    assert prepare_image(grey16, 32).shape == (3, 32, 32)
    with pytest.raises(ValueError, match="unknown torchvision classification model"):
        Embedder("not_a_model")


def test_cosine_pairs_match_a_full_similarity_matrix():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(30, 8)), rng.normal(size=(50, 8))
    a, b = a / np.linalg.norm(a, axis=1, keepdims=True), b / np.linalg.norm(b, axis=1, keepdims=True)
    b[7] = a[3]
    q, j, s = cosine_pairs(a, b, 0.6)
    full = a @ b.T
    assert set(zip(q.tolist(), j.tolist())) == set(zip(*np.nonzero(full >= 0.6)))
    assert (3, 7) in set(zip(q.tolist(), j.tolist())) and np.allclose(s, full[q, j])
    q, j, _ = cosine_pairs(b, b, 0.999, self_join=True)
    assert set(zip(q.tolist(), j.tolist())) == set()
    with pytest.raises(ValueError, match="cosine similarity"):
        cosine_pairs(a, b, 1.5)


def test_audit_with_embeddings_reports_the_exact_copies(planted):
    torch.manual_seed(0)
    report = audit(loaders.open_dataset("folder", planted["train"]), loaders.open_dataset("folder", planted["test"]),
                   progress=False, embedding_model="mobilenet_v3_small", embedding_threshold=0.9999, embedding_size=64)
    embedding = report.data["near_duplicates"]["embedding"]
    assert embedding["model"] == "mobilenet_v3_small" and embedding["weights"] is None
    pairs = {(p["query"], p["match"]) for p in embedding["listed"]}
    expected = planted["expected"]
    assert {("alpha/copy_bytes", expected["alpha/copy_bytes"]), ("beta/copy_pixels", expected["beta/copy_pixels"])} <= pairs


def test_interpolation_rate_in_embedding_space(pictures):
    from datafactory.audit import interpolation_rate

    torch.manual_seed(0)
    embedder = Embedder("mobilenet_v3_small", None, size=32)
    images = torch.stack([torch.from_numpy(pictures.photo(s, 32)).permute(2, 0, 1) for s in range(24)])
    result = interpolation_rate(images[:20], images[20:], dims=[1, 1024], embedder=embedder)
    assert result.reduce == "first" and result.actual_dims == [1, 1024] and "mobilenet_v3_small" in result.embedder
    assert result.rates[1] == 0.0  # 20 points span at most 19 of 1024 dimensions
    # a training image is inside (a vertex) in embedding space too -- given the same embedding; embedded in
    # another batch it may differ by float32 rounding, which takes it off a 19-dimensional hull in 1024-d
    vectors = embedder.embed(list(images))
    assert interpolation_rate(vectors[:20], vectors[:2], dims=[1024]).rates == [1.0]

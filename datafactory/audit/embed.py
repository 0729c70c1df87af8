"""Image embeddings from a torchvision classifier, and near-duplicate pairs by cosine similarity.

Off by default: an audit runs no model unless asked. :class:`Embedder` builds a torchvision
classification model by name (``torchvision.models.get_model``) with the weights asked for --
``None`` for random initialisation (no download; useful only for tests), or a weights name such
as ``"DEFAULT"`` or ``"IMAGENET1K_V1"``, which torchvision downloads to its cache on first use --
and replaces its last ``Linear`` layer by the identity, so it returns the penultimate features
(resnet ``fc``, efficientnet/mobilenet/convnext ``classifier[-1]``, vit ``heads.head``...).
Images are resized whole (no crop: a duplicate's border matters) to ``size`` x ``size``, scaled
to [0, 1] from their dtype, grey replicated to RGB, alpha dropped, and normalised with the
ImageNet mean and standard deviation. Embeddings are L2-normalised, so a dot product is the
cosine similarity.

:func:`cosine_pairs` compares every query with every indexed vector (chunked matrix products):
quadratic, unlike the pHash index, so it is meant as a second opinion on a subset or on
moderate splits.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["Embedder", "cosine_pairs", "prepare_image"]

_MEAN = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
_STD = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
_PAIR_CHUNK = 1 << 24  # similarities held at once


def prepare_image(image: torch.Tensor, size: int) -> torch.Tensor:
    """A decoded ``[C,H,W]`` image as the float ``[3, size, size]`` a torchvision classifier takes."""
    if image.ndim != 3 or image.shape[0] not in (1, 2, 3, 4):
        raise ValueError(f"image must be [C,H,W] with C in 1..4, got shape {tuple(image.shape)}")
    scale = float(torch.iinfo(image.dtype).max) if not image.dtype.is_floating_point else 1.0
    x = image.float() / scale
    x = x[:1].expand(3, -1, -1) if x.shape[0] < 3 else x[:3]
    x = torch.nn.functional.interpolate(x[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]
    return (x - _MEAN) / _STD


def _drop_last_linear(model: torch.nn.Module, name: str) -> torch.nn.Module:
    last = None
    for path, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            last = path
    if last is None:
        raise ValueError(f"model {name!r} has no Linear layer to remove; pick a classification model")
    parent_path, _, attribute = last.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, attribute, torch.nn.Identity())
    return model


class Embedder:
    """Penultimate-layer features of a torchvision classifier.

    Args:
        model: a name from ``torchvision.models.list_models(torchvision.models)`` (``"resnet18"``...).
        weights: ``None`` (random weights, no download) or a weights name of that model
            (``"DEFAULT"``, ``"IMAGENET1K_V1"``...), downloaded by torchvision when not cached.
        size: input side in pixels.
        batch_size: images per forward pass.
        device: where the model runs (``"cpu"`` by default; ``"cuda"`` when available and asked).
    """

    def __init__(self, model: str = "resnet18", weights: str | None = None, *, size: int = 224, batch_size: int = 64,
                 device: str | torch.device = "cpu") -> None:
        import torchvision

        known = torchvision.models.list_models(torchvision.models)
        if model not in known:
            raise ValueError(f"unknown torchvision classification model {model!r}; known: {', '.join(known)}")
        if weights is not None and not isinstance(weights, str):
            raise TypeError(f"weights must be None or a weights name, got {type(weights).__name__}")
        for argument, value in (("size", size), ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{argument} must be an int >= 1, got {value!r}")
        self.name, self.weights, self.size, self.batch_size = model, weights, size, batch_size
        self.device = torch.device(device)
        network = torchvision.models.get_model(model, weights=weights)
        self.model = _drop_last_linear(network, model).eval().to(self.device)

    def __repr__(self) -> str:
        return f"Embedder(model={self.name!r}, weights={self.weights!r}, size={self.size})"

    @torch.inference_mode()
    def embed_prepared(self, batch: torch.Tensor) -> np.ndarray:
        """L2-normalised float32 features ``[B, D]`` of prepared images ``[B, 3, size, size]``."""
        outputs = []
        for start in range(0, len(batch), self.batch_size):
            features = self.model(batch[start : start + self.batch_size].to(self.device)).flatten(1).float()
            outputs.append(torch.nn.functional.normalize(features, dim=1).cpu())
        return torch.cat(outputs).numpy() if outputs else np.zeros((0, 0), dtype=np.float32)

    def embed(self, images: Sequence[torch.Tensor]) -> np.ndarray:
        """L2-normalised float32 features ``[N, D]`` of decoded ``[C,H,W]`` images."""
        if not len(images):
            return np.zeros((0, 0), dtype=np.float32)
        return self.embed_prepared(torch.stack([prepare_image(image, self.size) for image in images]))


def cosine_pairs(queries: np.ndarray, index: np.ndarray, threshold: float, *,
                 self_join: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(query i, index j, similarity)`` for every pair with cosine similarity >= ``threshold``.

    Args:
        queries, index: L2-normalised ``[M, D]`` and ``[N, D]`` embeddings.
        threshold: in ``[-1, 1]``.
        self_join: ``queries`` is ``index``: report each unordered pair once (``i < j``).
    """
    if not isinstance(threshold, (int, float)) or isinstance(threshold, bool) or not -1.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be a cosine similarity in [-1, 1], got {threshold!r}")
    queries, index = np.asarray(queries, dtype=np.float32), np.asarray(index, dtype=np.float32)
    if queries.ndim != 2 or index.ndim != 2 or (len(queries) and len(index) and queries.shape[1] != index.shape[1]):
        raise ValueError(f"embeddings must be [count, dims] with equal dims, got {queries.shape} and {index.shape}")
    chunk = max(1, _PAIR_CHUNK // max(len(index), 1))
    found_q, found_j, found_s = [], [], []
    for start in range(0, len(queries), chunk):
        similarity = queries[start : start + chunk] @ index.T
        if self_join:
            rows = np.arange(start, start + len(similarity))[:, None]
            similarity = np.where(np.arange(len(index))[None, :] > rows, similarity, -np.inf)
        q, j = np.nonzero(similarity >= threshold)
        found_q.append(q.astype(np.int64) + start)
        found_j.append(j.astype(np.int64))
        found_s.append(similarity[q, j].astype(np.float64))
    if not found_q:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64)
    return np.concatenate(found_q), np.concatenate(found_j), np.concatenate(found_s)

"""How good is a generator on the ``shapes`` demo domain? Measured without any download.

There is no pretrained Inception network to hand (FID, Heusel et al., 2017, arXiv:1706.08500,
needs one), so the domain's own tools stand in:

- **part fractions**: :func:`loaders.shapes.annotate_parts` labels every pixel of a ``shapes``
  image as background / body / outline / marking from its colour. The fraction of pixels in
  each part over generated images vs real ones (and their L1 distance) tells whether the
  generator draws saturated bodies with dark outlines on a grey textured ground in the right
  proportions;
- **a shape classifier** (a small CNN trained here on real training images, labels = the shape
  of the largest object): its accuracy on held-out real images, its mean confidence (max
  softmax) on generated vs real images, and the entropy of its predicted-class histogram
  (diversity over the six shapes);
- **Fréchet distance** between Gaussians fitted to the classifier's penultimate features of
  generated and of real held-out images (FID's formula on a domain-specific network), next to
  the same distance between two disjoint real sets (the floor for that sample size).

Build the reference once (:func:`shapes_reference`), then call :func:`gan_quality` per generator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .generator import Generator

__all__ = ["QualityReference", "ShapeClassifier", "shapes_reference", "gan_quality", "frechet_distance",
           "part_fractions", "part_coherence", "high_frequency"]


class ShapeClassifier(nn.Module):
    """A small CNN: three conv stages (32, 64, 128 channels), global average pool, linear head."""

    def __init__(self, num_classes: int = 6) -> None:
        super().__init__()
        chans = [3, 32, 64, 128]
        layers: list[nn.Module] = []
        for a, b in zip(chans[:-1], chans[1:]):
            layers += [nn.Conv2d(a, b, 3, padding=1), nn.BatchNorm2d(b), nn.ReLU(), nn.MaxPool2d(2)]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(chans[-1], num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def part_fractions(images: torch.Tensor) -> torch.Tensor:
    """Fraction of pixels per ``shapes`` part (background, body, outline, marking) over ``images``
    in ``[-1, 1]``."""
    from loaders.shapes import PART_CLASSES, annotate_parts

    parts = annotate_parts(((images.float() + 1) / 2).clamp(0, 1))
    return torch.bincount(parts.flatten(), minlength=len(PART_CLASSES)).double() / parts.numel()


def part_coherence(images: torch.Tensor) -> float:
    """Spatial agreement of the oracle's part labels beyond chance: Cohen's kappa between each
    pixel's part and its right / lower neighbour's, ``(p_same - p_chance) / (1 - p_chance)`` with
    ``p_chance = sum_k f_k^2`` from the part fractions. About 0 for speckle or noise, high for
    solid regions."""
    from loaders.shapes import annotate_parts

    parts = annotate_parts(((images.float() + 1) / 2).clamp(0, 1))
    same = total = 0
    for a, b in ((parts[..., :, 1:], parts[..., :, :-1]), (parts[..., 1:, :], parts[..., :-1, :])):
        same += int((a == b).sum())
        total += a.numel()
    f = torch.bincount(parts.flatten(), minlength=4).double() / parts.numel()
    chance = float((f**2).sum())
    return (same / total - chance) / max(1 - chance, 1e-12)


def high_frequency(images: torch.Tensor) -> float:
    """Mean absolute 4-neighbour Laplacian of images in ``[-1, 1]`` mapped to ``[0, 1]``."""
    x = (images.float() + 1) / 2
    lap = 4 * x[..., 1:-1, 1:-1] - x[..., :-2, 1:-1] - x[..., 2:, 1:-1] - x[..., 1:-1, :-2] - x[..., 1:-1, 2:]
    return float(lap.abs().mean())


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """``||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2))`` of Gaussians fitted to rows."""
    from scipy import linalg

    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s_a @ s_b)
    if not np.isfinite(covmean).all():  # singular product: regularise as FID implementations do
        offset = np.eye(len(s_a)) * 1e-6
        covmean = linalg.sqrtm((s_a + offset) @ (s_b + offset))
    covmean = covmean.real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a) + np.trace(s_b) - 2 * np.trace(covmean))


@dataclass
class QualityReference:
    """The trained classifier and the held-out real images with their statistics."""

    classifier: ShapeClassifier
    real_images: torch.Tensor      # (N, 3, R, R) float in [-1, 1], held out from classifier training
    real_labels: torch.Tensor      # (N,)
    resolution: int
    classifier_accuracy: float     # on real_images
    info: dict[str, Any]


def _to_float(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 127.5 - 1.0


def _load_shapes(split: str, size: int, resolution: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    from loaders import open_dataset

    ds = open_dataset("shapes", split=split, size=size, resolution=resolution, seed=seed)
    samples = [ds[i] for i in range(len(ds))]
    return torch.stack([s["image"] for s in samples]), torch.tensor([s["label"] for s in samples])


def shapes_reference(resolution: int = 32, *, train_size: int = 1000, reference_size: int = 500, epochs: int = 15,
                     seed: int = 0) -> QualityReference:
    """Train the shape classifier on the ``shapes`` train split; hold out ``reference_size`` images
    of the ``val`` split as the real reference (deterministic by ``seed``)."""
    train_x, train_y = _load_shapes("train", train_size, resolution, 0)
    ref_x, ref_y = _load_shapes("val", reference_size, resolution, 0)
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        clf = ShapeClassifier()
    opt = torch.optim.Adam(clf.parameters(), lr=2e-3)
    x_all, clf_steps = _to_float(train_x), 0
    clf.train()
    for _ in range(epochs):
        order = torch.randperm(len(x_all), generator=gen)
        for start in range(0, len(order), 64):
            idx = order[start : start + 64]
            x = x_all[idx]
            flip = torch.rand(len(idx), generator=gen) < 0.5  # shapes are mirror-symmetric classes
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
            loss = F.cross_entropy(clf(x), train_y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            clf_steps += 1
    clf.eval()
    ref = _to_float(ref_x)
    with torch.no_grad():
        acc = float((clf(ref).argmax(1) == ref_y).float().mean())
    return QualityReference(classifier=clf, real_images=ref, real_labels=ref_y, resolution=resolution,
                            classifier_accuracy=acc,
                            info={"train_size": train_size, "reference_size": reference_size, "epochs": epochs,
                                  "classifier_steps": clf_steps, "seed": seed})


def _classifier_stats(clf: ShapeClassifier, images: torch.Tensor) -> tuple[np.ndarray, torch.Tensor]:
    feats, probs = [], []
    with torch.no_grad():
        for start in range(0, len(images), 256):
            f = clf.features(images[start : start + 256].float())
            feats.append(f)
            probs.append(clf.head(f).softmax(1))
    return torch.cat(feats).double().numpy(), torch.cat(probs)


def _entropy(p: torch.Tensor) -> float:
    p = p[p > 0]
    return float(-(p * p.log()).sum() / math.log(6))


def gan_quality(generator: Generator, reference: QualityReference, n: int = 500, seed: int = 0) -> dict[str, Any]:
    """Compare ``n`` images of ``generator`` (seeds ``seed ..``) with the real reference.

    Returns a dict: ``parts_fake`` / ``parts_real`` (pixel fractions per part), ``parts_l1``,
    ``confidence_fake`` / ``confidence_real`` (mean max softmax), ``class_entropy_fake`` /
    ``class_entropy_real`` (normalised entropy of the predicted-class histogram, 1 = uniform),
    ``frechet`` (generated vs real features), ``frechet_real_floor`` (two disjoint halves of the
    real reference), ``coherence_fake`` / ``coherence_real`` (:func:`part_coherence`),
    ``high_freq_fake`` / ``high_freq_real`` (:func:`high_frequency`), ``classifier_accuracy``.

    Pixel fractions and the Fréchet distance alone can be fooled: images of coloured noise
    spread their pixels over the parts and land near the real feature mean. Coherence and
    high-frequency energy tell such images apart; read all the numbers together.
    """
    if generator.resolution != reference.resolution:
        raise ValueError(f"generator resolution {generator.resolution} != reference resolution {reference.resolution}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be an int >= 2, got {n!r}")
    chunks = [generator.sample(min(64, n - s), seed + s).images.cpu() for s in range(0, n, 64)]
    fake = torch.cat(chunks)
    real = reference.real_images
    f_fake, p_fake = _classifier_stats(reference.classifier, fake)
    f_real, p_real = _classifier_stats(reference.classifier, real)
    half = len(real) // 2
    parts_fake, parts_real = part_fractions(fake), part_fractions(real)
    hist = lambda p: torch.bincount(p.argmax(1), minlength=6).double() / len(p)  # noqa: E731
    return {
        "n": n,
        "parts_fake": [round(float(v), 4) for v in parts_fake],
        "parts_real": [round(float(v), 4) for v in parts_real],
        "parts_l1": float((parts_fake - parts_real).abs().sum()),
        "confidence_fake": float(p_fake.max(1).values.mean()),
        "confidence_real": float(p_real.max(1).values.mean()),
        "class_entropy_fake": _entropy(hist(p_fake)),
        "class_entropy_real": _entropy(hist(p_real)),
        "frechet": frechet_distance(f_fake, f_real),
        "frechet_real_floor": frechet_distance(f_real[:half], f_real[half : 2 * half]),
        "coherence_fake": part_coherence(fake),
        "coherence_real": part_coherence(real),
        "high_freq_fake": high_frequency(fake),
        "high_freq_real": high_frequency(real),
        "classifier_accuracy": reference.classifier_accuracy,
    }

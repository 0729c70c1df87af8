"""``datafactory.gan``: DatasetGAN -- a labeled-data factory built on a generative model.

Zhang et al., "DatasetGAN: Efficient Labeled Data Factory with Minimal Human Effort",
CVPR 2021, arXiv:2104.06490. A generator (StyleGAN2, Karras et al., CVPR 2020,
arXiv:1912.04958) is trained on unlabeled images; a person annotates a handful of its samples;
a small ensemble of pixel classifiers (the "style interpreter") learns to map the generator's
per-pixel features to labels; the generator then produces an unlimited stream of images with
labels, the most uncertain of which (Jensen-Shannon disagreement of the ensemble) are dropped.

Modules: :mod:`~datafactory.gan.generator` (the generator protocol, hooks, loading),
:mod:`~datafactory.gan.stylegan` and :mod:`~datafactory.gan.gan_train` (the bundled
StyleGAN2 and its training), :mod:`~datafactory.gan.interpreter` and
:mod:`~datafactory.gan.uncertainty` (the interpreter ensemble),
:mod:`~datafactory.gan.annotate` (sampling for annotation, importing masks),
:mod:`~datafactory.gan.generate` (generation straight to shards) and
:mod:`~datafactory.gan.factory` (the whole chain, and the demo).

The package imports its modules lazily: ``import datafactory.gan`` loads no torch code;
``from datafactory.gan import run_factory`` loads the module that defines it.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> defining submodule (loaded on first attribute access)
_EXPORTS: dict[str, str] = {
    # generator
    "Generator": "generator",
    "GeneratorSample": "generator",
    "HookedGenerator": "generator",
    "checkpoint_sha256": "generator",
    "latents_for_seeds": "generator",
    "load_generator": "generator",
    # bundled network and its trainer
    "BundledGenerator": "stylegan",
    "StyleGAN2Config": "stylegan",
    "GanTrainConfig": "gan_train",
    "GanTrainResult": "gan_train",
    "train_gan": "gan_train",
    # interpreter
    "EnsemblePrediction": "interpreter",
    "InterpreterConfig": "interpreter",
    "InterpreterEnsemble": "interpreter",
    "fit_interpreter": "interpreter",
    "load_interpreter": "interpreter",
    "save_interpreter": "interpreter",
    "image_scores": "uncertainty",
    "js_uncertainty": "uncertainty",
    "keep_least_uncertain": "uncertainty",
    "majority_vote": "uncertainty",
    # annotation
    "AnnotationSet": "annotate",
    "import_annotations": "annotate",
    "oracle_annotate": "annotate",
    "sample_for_annotation": "annotate",
    # generation / factory
    "GenerateConfig": "generate",
    "GenerateResult": "generate",
    "GeneratedSamples": "generate",
    "ScoredCandidates": "generate",
    "generate_shards": "generate",
    "FactoryResult": "factory",
    "fit_interpreter_from_annotations": "factory",
    "run_factory": "factory",
    "run_gan_demo": "factory",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'datafactory.gan' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"datafactory.gan.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))

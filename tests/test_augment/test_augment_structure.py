"""The structure of ``augment``: ``augment.functional`` draws no random numbers (its source holds
no random call, and every public kernel gives the same output under any global seed), and the
class modules import the public ``augment.functional`` namespace only, never its private modules.
Each source check also runs on snippets it must reject, so it is known to catch what it claims."""

from __future__ import annotations

import ast
import contextlib
import inspect
import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms.v2 import InterpolationMode

import augment
from augment import functional as F

AUGMENT = Path(augment.__file__).parent
FUNCTIONAL = Path(F.__file__).parent

# -- no randomness in augment.functional --------------------------------------------------------

#: functions and tensor methods that draw random numbers (torch, numpy, random) or seed a generator
_RNG_NAMES = frozenset({
    "rand", "rand_like", "randn", "randn_like", "randint", "randint_like", "randperm", "multinomial", "bernoulli",
    "normal", "poisson", "binomial", "uniform", "choice", "shuffle", "permutation", "default_rng", "Generator",
    "manual_seed", "seed", "initial_seed", "get_rng_state", "set_rng_state", "fork_rng",
    "uniform_", "normal_", "random_", "bernoulli_", "exponential_", "geometric_", "cauchy_", "log_normal_",
})
#: modules (and attributes such as ``np.random``) that exist to draw random numbers
_RNG_MODULES = frozenset({"random", "secrets", "distributions", "numpy.random", "torch.random", "torch.distributions",
                          "augment._sampling", "_sampling"})
#: parameter and keyword names that pass a source of randomness in
_RNG_ARGUMENTS = frozenset({"generator", "rng", "seed", "random_state"})


def rng_uses(source: str) -> list[str]:
    """Every random draw, RNG import or RNG parameter in ``source``, as ``"line: what"``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        what = None
        if isinstance(node, ast.Attribute) and (node.attr in _RNG_NAMES or node.attr in _RNG_MODULES):
            what = f".{node.attr}"
        elif isinstance(node, ast.Import):
            hits = [a.name for a in node.names if a.name in _RNG_MODULES or a.name.split(".")[-1] in _RNG_MODULES]
            what = f"import {', '.join(hits)}" if hits else None
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            hits = [a.name for a in node.names if a.name in _RNG_NAMES or a.name in _RNG_MODULES]
            if module in _RNG_MODULES or module.split(".")[-1] in _RNG_MODULES or hits:
                what = f"from {module} import {', '.join(a.name for a in node.names)}"
        elif isinstance(node, ast.keyword) and node.arg in _RNG_ARGUMENTS:
            what = f"{node.arg}= argument"
        elif isinstance(node, ast.arg) and node.arg in _RNG_ARGUMENTS:
            what = f"parameter {node.arg}"
        if what:
            found.append(f"{getattr(node, 'lineno', '?')}: {what}")
    return found


@pytest.mark.parametrize("snippet", [
    "noise = torch.rand(3)",
    "noise = torch.randn_like(x)",
    "index = torch.randperm(9, device=x.device)",
    "x.uniform_(0, 1)",
    "x.normal_()",
    "y = x.bernoulli_(0.5)",
    "k = torch.multinomial(w, 2, replacement=True)",
    "rng = np.random.default_rng()",
    "v = numpy.random.rand(3)",
    "import random",
    "from numpy import random",
    "from numpy.random import default_rng",
    "from torch import randint",
    "from torch.distributions import Beta",
    "from augment._sampling import sample_beta",
    "from augment import _sampling",
    "torch.manual_seed(0)",
    "def kernel(x, generator=None):\n    return x",
    "def kernel(x, rng):\n    return x",
    "y = kernel(x, generator=g)",
    "g = torch.Generator()",
])
def test_the_source_check_catches_random_draws(snippet):
    assert rng_uses(snippet), f"the check missed a random draw in {snippet!r}"


def test_the_source_check_passes_pure_code():
    pure = ("import torch\nfrom augment.functional._alloc import empty_like\n\n"
            "def random_masking(tokens, noise, ratio):\n"
            "    ids = noise.argsort(dim=1)\n    return tokens.gather(1, ids[..., None].expand_as(tokens)), ids\n")
    assert rng_uses(pure) == []


def test_functional_source_draws_no_random_numbers():
    modules = sorted(FUNCTIONAL.glob("*.py"))
    assert len(modules) >= 8, modules  # the package's modules were found
    uses = {path.name: rng_uses(path.read_text(encoding="utf-8")) for path in modules}
    assert not any(uses.values()), {name: hits for name, hits in uses.items() if hits}


def test_functional_signatures_take_no_generator():
    for name in F.__all__:
        obj = getattr(F, name)
        if callable(obj):
            assert not set(inspect.signature(obj).parameters) & _RNG_ARGUMENTS, name


@contextlib.contextmanager
def _global_seeds(seed: int) -> Iterator[None]:
    """Seed torch, numpy and random globally for the block; restore their states after it."""
    states = torch.get_rng_state(), np.random.get_state(), random.getstate()
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    try:
        yield
    finally:
        torch.set_rng_state(states[0])
        np.random.set_state(states[1])
        random.setstate(states[2])


def _same(a: object, b: object) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, (tuple, list)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


def _kernel_calls(images: torch.Tensor, masks: torch.Tensor) -> dict[str, list]:
    """public kernel name -> calls (zero-argument functions) covering it; inputs drawn here, once."""
    g = torch.Generator().manual_seed(0)
    batch, (height, width) = images.shape[0], images.shape[-2:]
    rows, cols = F.check_patch_size(height, width, 8)
    tokens = torch.randn(batch, 10, 6, generator=g)
    noise = torch.rand(batch, 10, generator=g)
    kept, _, ids_restore = F.random_masking(tokens, noise, 0.5)
    lam = torch.rand(batch, generator=g, dtype=torch.float64)
    partner = torch.randperm(batch, generator=g)
    centers = torch.rand(batch, 2, generator=g, dtype=torch.float64)
    box_draws = torch.rand(batch, 4, generator=g, dtype=torch.float64)
    boxes, _ = F.cutmix_boxes(lam, height, width, centers)
    crop = torch.tensor([[0, 0, height, width], [2, 3, 20, 30], [5, 1, 10, 40], [1, 8, 31, 24]])[:batch]
    ops = torch.randint(-1, len(F.OPS), (batch, 3), generator=g)
    magnitudes = torch.rand(batch, 3, generator=g, dtype=torch.float64) * 0.5
    chains = torch.randint(-1, len(F.OPS), (batch, 2, 2), generator=g)
    chain_magnitudes = torch.rand(batch, 2, 2, generator=g, dtype=torch.float64) * 0.5
    mix = torch.tensor([[0.3, 0.7]]).repeat(batch, 1)
    weights = torch.tensor([[0.4, 0.6]]).repeat(batch, 1)
    regions = F.infill_regions(rows, cols, torch.rand(batch, generator=g, dtype=torch.float64) * 0.4)
    sources = F.infill_sources(rows, cols, regions, torch.rand(batch, rows * cols, generator=g, dtype=torch.float64))
    permutation = torch.rand(batch, rows * cols, generator=g).argsort(dim=1)
    turns = torch.randint(0, 4, (batch, rows * cols), generator=g)
    targets = F.smooth_targets(torch.arange(batch) % 3, 3, 0.1)
    magnitude = {"Posterize": 4, "TranslateX": 5.0, "TranslateY": -5.0}
    return {
        "apply_op": [lambda op=op: F.apply_op(images, op, magnitude.get(op, 0.3)) for op in F.OPS]
        + [lambda: F.apply_op(images.float() / 255, "Rotate", 12.5, InterpolationMode.BILINEAR, fill=[1, 2, 3])],
        "apply_op_to_target": [lambda: F.apply_op_to_target(tv_tensors.Mask(masks[:1]), "ShearX", 0.2)],
        "apply_ops": [lambda: F.apply_ops(images, ops, magnitudes)],
        "apply_ops_to_target": [lambda: F.apply_ops_to_target(tv_tensors.Mask(masks[:1]), ops[0], magnitudes[0])],
        "augmix": [lambda: F.augmix(images, chains, chain_magnitudes, mix, weights)],
        "check_cutmix_minmax": [lambda: F.check_cutmix_minmax((0.2, 0.8))],
        "check_fill": [lambda: F.check_fill([1, 2, 3])],
        "check_infill_grid": [lambda: F.check_infill_grid(rows, cols)],
        "check_patch_size": [lambda: F.check_patch_size(height, width, 8)],
        "cutmix": [lambda: F.cutmix(images, images, boxes, partner), lambda: F.cutmix(masks, masks, boxes, partner)],
        "cutmix_boxes": [lambda: F.cutmix_boxes(lam, height, width, centers)],
        "cutmix_boxes_minmax": [lambda: F.cutmix_boxes_minmax(height, width, (0.2, 0.8), box_draws)],
        "fill_values": [lambda: F.fill_values(7, 3)],
        "gather_tokens": [lambda: F.gather_tokens(tokens, ids_restore[:, :4])],
        "hflip": [lambda: F.hflip(images, torch.arange(batch) % 2 == 0)],
        "infill_region": [lambda: F.infill_region(rows, cols, 0.25)],
        "infill_regions": [lambda: F.infill_regions(rows, cols, torch.tensor([0.1, 0.3]))],
        "infill_sources": [lambda: F.infill_sources(rows, cols, regions, torch.linspace(0, 0.99, rows * cols).repeat(batch, 1))],
        "magnitude_bins": [lambda: F.magnitude_bins(F.TRIVIALAUGMENT_SPACE, 31, height, width)],
        "mix_targets": [lambda: F.mix_targets(targets, lam, partner)],
        "mixup": [lambda: F.mixup(images, images, lam, partner), lambda: F.mixup(images.float(), images.float(), lam)],
        "patch_gather": [lambda: F.patch_gather(images, sources, 8)],
        "patch_infill": [lambda: F.patch_infill(images, sources, 8)],
        "patch_rotate": [lambda: F.patch_rotate(images, turns, 8), lambda: F.patch_rotate(masks, turns, 8)],
        "patch_shuffle": [lambda: F.patch_shuffle(images, permutation, 8)],
        "random_masking": [lambda: F.random_masking(tokens, noise, 0.75)],
        "resized_crop": [lambda: F.resized_crop(images, crop, (16, 24))],
        "resized_crop_masks": [lambda: F.resized_crop_masks(masks, crop, (16, 24))],
        "smooth_targets": [lambda: F.smooth_targets(torch.arange(batch) % 3, 3, 0.2)],
        "unshuffle_tokens": [lambda: F.unshuffle_tokens(kept, ids_restore, torch.zeros(6))],
    }


def test_every_public_kernel_ignores_the_global_seeds(images, masks):
    calls = _kernel_calls(images, masks)
    kernels = {name for name in F.__all__ if callable(getattr(F, name))}
    assert set(calls) == kernels, f"kernels without a call here: {sorted(kernels - set(calls))}"
    for name, fns in calls.items():
        for fn in fns:
            with _global_seeds(1):
                first = fn()
            with _global_seeds(2):
                second = fn()
            assert _same(first, second), f"augment.functional.{name} depends on the global random state"


# -- class modules import the public augment.functional only ------------------------------------

def private_functional_imports(source: str, public: frozenset[str]) -> list[str]:
    """Every import of a private ``augment.functional`` module, and every name taken from
    ``augment.functional`` (imported, or read as an attribute of its alias) that ``public``
    lacks, as ``"line: what"``."""
    tree = ast.parse(source)
    found, aliases = [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("augment.functional."):
                    found.append(f"{node.lineno}: import {a.name}")
                elif a.name == "augment.functional" and a.asname:
                    aliases.add(a.asname)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.startswith("augment.functional."):
                found.append(f"{node.lineno}: from {node.module} import ...")
            elif node.module == "augment.functional":
                found += [f"{node.lineno}: from augment.functional import {a.name}" for a in node.names if a.name not in public]
            elif node.module == "augment":
                aliases |= {a.asname or a.name for a in node.names if a.name == "functional"}
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                and node.attr not in public):
            found.append(f"{node.lineno}: {node.value.id}.{node.attr}")
    return found


_PUBLIC = frozenset(F.__all__)


@pytest.mark.parametrize("snippet", [
    "from augment.functional._mix import cutmix",
    "from augment.functional import _mix as F",
    "import augment.functional._patch",
    "from augment import functional as F\nF._mix.cutmix(x)",
    "from augment import functional as F\nF._CHUNK",
    "import augment.functional as AF\nAF._aa_ops",
    "from augment.functional import empty_like",
])
def test_the_import_check_catches_private_imports(snippet):
    assert private_functional_imports(snippet, _PUBLIC), f"the check missed a private import in {snippet!r}"


def test_the_import_check_passes_public_imports():
    ok = ("from augment import functional as F\nfrom augment.functional import hflip, OPS\n"
          "import augment.functional as AF\nF.cutmix(x)\nAF.apply_op(x)\n")
    assert private_functional_imports(ok, _PUBLIC) == []


def test_class_modules_import_the_public_functional_namespace_only():
    modules = sorted(AUGMENT.glob("*.py"))
    assert {"autoaugment.py", "mix.py", "patch.py", "tokens.py", "geometry.py"} <= {p.name for p in modules}
    found = {p.name: private_functional_imports(p.read_text(encoding="utf-8"), _PUBLIC) for p in modules}
    assert not any(found.values()), {name: hits for name, hits in found.items() if hits}

"""Random samplers the transforms draw parameters with: gamma, Beta and Dirichlet from a
``torch.Generator``.

torch's own ``Gamma`` / ``Beta`` / ``Dirichlet`` distributions take no generator, so a seeded call
could not reproduce them; these draw from the generator passed in (CPU when none is given, so the
same seed gives the same values whatever the data's device). The transforms' ``make_params``
call these next to torch's own samplers; :mod:`augment.functional` draws nothing (a test checks
it).
"""

from __future__ import annotations

import torch

from augment._transform import draw_device

__all__ = ["sample_beta", "sample_dirichlet", "sample_gamma"]


def sample_gamma(alpha: torch.Tensor, generator: torch.Generator | None = None, rounds: int = 16) -> torch.Tensor:
    """Gamma(alpha, 1) samples drawn from ``generator`` (Marsaglia & Tsang, 2000, "A Simple Method
    for Generating Gamma Variables", vectorised).

    ``alpha < 1`` uses the boost ``Gamma(a) = Gamma(a + 1) * U^(1/a)``. Each value gets ``rounds``
    proposals (acceptance is > 95% per proposal).
    """
    alpha = alpha.to(torch.float64)
    device = draw_device(generator)
    alpha = alpha.to(device)
    boosted = alpha < 1
    a = torch.where(boosted, alpha + 1, alpha)
    d = a - 1.0 / 3.0
    c = 1.0 / torch.sqrt(9.0 * d)
    shape = (rounds, *alpha.shape)
    z = torch.randn(shape, generator=generator, device=device, dtype=torch.float64)
    u = torch.rand(shape, generator=generator, device=device, dtype=torch.float64)
    v = (1.0 + c * z) ** 3
    accept = (v > 0) & (torch.log(u) < 0.5 * z * z + d - d * v + d * torch.log(v.clamp_min(1e-300)))
    first = accept.to(torch.int8).argmax(dim=0, keepdim=True)
    sample = (d * v).gather(0, first)[0]
    sample = torch.where(accept.any(dim=0), sample, d)  # never in practice; the mean as a fallback
    boost = torch.rand(alpha.shape, generator=generator, device=device, dtype=torch.float64)
    return torch.where(boosted, sample * boost.clamp_min(1e-300) ** (1.0 / alpha), sample)


def sample_beta(alpha: float, beta: float, size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``size`` Beta(alpha, beta) samples (float64, CPU or the generator's device)."""
    params = torch.tensor([alpha, beta], dtype=torch.float64).repeat(size, 1)
    gammas = sample_gamma(params, generator)
    return gammas[:, 0] / gammas.sum(dim=1).clamp_min(1e-300)


def sample_dirichlet(alpha: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Dirichlet samples along the last dim of ``alpha`` (float64)."""
    gammas = sample_gamma(alpha, generator)
    return gammas / gammas.sum(dim=-1, keepdim=True).clamp_min(1e-300)

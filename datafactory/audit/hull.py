"""The interpolation-regime test: is a test vector inside the convex hull of the training vectors?

Balestriero, Pesenti and LeCun ("Learning in High Dimension Always Amounts to Extrapolation",
2021, arXiv 2110.09485) define interpolation as a sample falling inside the convex hull of the
training set, and show that beyond a few dozen dimensions test samples almost never do, for
pixels and embeddings alike. Membership of ``x`` in the hull of the rows of ``X`` ``[N, d]`` is
the feasibility of the linear program

    exists lambda in R^N:  lambda >= 0,  sum(lambda) = 1,  X^T lambda = x,

solved here with ``scipy.optimize.linprog`` (HiGHS). Two exact shortcuts come first, because an
LP that must prove *infeasibility* is the slow case and in high dimension almost every point is
outside:

* the bounding box: a coordinate of ``x`` beyond the training range of that coordinate;
* a separating hyperplane: a few Frank-Wolfe (Gilbert, 1966) steps towards the point of the hull
  nearest to ``x``; as soon as the direction ``w = x - p`` has ``max_i w.x_i < w.x`` by more
  than the LP's tolerance can absorb, ``w`` proves ``x`` outside;
* the nearest neighbours: the same LP over the ``k = max(32, 4(d+1))`` training vectors nearest
  to ``x`` only. Their hull lies inside the full hull, so a feasible small LP proves ``x`` inside
  (in low dimension, where most points are inside, this replaces an LP over all ``N`` columns by
  one over ``k``); an infeasible one decides nothing, and the hyperplane search then goes on
  for more steps (1,024 in all) before the full LP.

No shortcut can answer differently from the full LP (up to its tolerance), and a point they cannot
decide goes to the full LP, so the answer is the LP's. The data are centred and scaled into ``[-1, 1]`` first (membership is
affine-invariant) so that HiGHS's absolute tolerances mean the same for pixels and embeddings.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

__all__ = ["HullResult", "hull_membership", "in_hull"]

#: the LP's primal feasibility tolerance, and the margin the shortcuts leave it (scaled data)
FEASIBILITY_TOLERANCE = 1e-9
_SEPARATION_STEPS = 64
_MORE_SEPARATION_STEPS = 1024
_MIN_NEIGHBOURS = 32


@dataclass
class HullResult:
    """Membership of each test vector and how it was decided.

    Attributes:
        inside: bool ``[M]``.
        decided_by: ``{"bbox": n, "hyperplane": n, "neighbours": n, "lp": n}``, adding up to ``M``.
        lp_seconds: wall time spent in ``linprog``.
    """

    inside: np.ndarray
    decided_by: dict[str, int] = field(default_factory=dict)
    lp_seconds: float = 0.0

    @property
    def rate(self) -> float:
        """The proportion of test vectors inside the hull (NaN for no test vector)."""
        return float(self.inside.mean()) if len(self.inside) else float("nan")


def _as_matrix(value: object, name: str) -> np.ndarray:
    array = value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2 or array.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be a real [count, dims] array, got dtype {array.dtype} and shape {array.shape}")
    array = array.astype(np.float64)
    if not np.isfinite(array).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    return array


def _scaled(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre on the training mean and divide by the largest training deviation (affine, so hull
    membership is unchanged), so that absolute LP tolerances are relative to the data."""
    centre = train.mean(axis=0)
    scale = np.abs(train - centre).max()
    scale = scale if scale > 0 else 1.0
    return (train - centre) / scale, (test - centre) / scale


#: solver settings tried in turn: HiGHS's choice (dual simplex here) is fastest; its interior
#: point method settles the rare instance where simplex ends in numerical trouble (status 4)
_ATTEMPTS = (("highs", False), ("highs-ipm", True))


def _lp_inside(train: np.ndarray, point: np.ndarray, where: str) -> bool:
    """The LP itself: feasible (inside) or infeasible (outside); anything else raises, naming ``where``."""
    from scipy.optimize import linprog

    count = len(train)
    problem = {"c": np.zeros(count), "A_eq": np.vstack([train.T, np.ones((1, count))]), "b_eq": np.append(point, 1.0),
               "bounds": (0, None)}
    messages = []
    for method, presolve in _ATTEMPTS:
        result = linprog(**problem, method=method,
                         options={"primal_feasibility_tolerance": FEASIBILITY_TOLERANCE, "presolve": presolve})
        if result.status == 0:
            return True
        if result.status == 2:
            return False
        messages.append(f"{method}: status {result.status}, {result.message}")
    raise RuntimeError(f"{where}: linprog (HiGHS) could not decide hull membership ({'; '.join(messages)})")


def _separated(train: np.ndarray, point: np.ndarray, distances: np.ndarray, steps: int) -> bool:
    """Whether a few Frank-Wolfe steps find a hyperplane that separates ``point`` from the hull.

    Starts at the nearest training vector ``p``; each step takes ``w = point - p``, the training
    vector ``v`` maximising ``w.v`` and, if ``w.v`` is not already below ``w.point`` by more
    than the LP tolerance could bridge (``tol * |w|_1``), moves ``p`` towards ``v`` by exact line
    search. Returns ``False`` (undecided) when no separating ``w`` was found.
    """
    p = train[int(np.argmin(distances))].copy()
    for _ in range(steps):
        w = point - p
        norm1 = np.abs(w).sum()
        if norm1 <= FEASIBILITY_TOLERANCE:
            return False
        support = train @ w
        best = int(np.argmax(support))
        if support[best] < w @ point - 2 * FEASIBILITY_TOLERANCE * norm1:
            return True
        step = train[best] - p
        length = step @ step
        if length <= 0:
            return False
        p = p + min(1.0, max(0.0, (w @ step) / length)) * step
    return False


def hull_membership(train: object, test: object, *, shortcuts: bool = True, progress: bool = False) -> HullResult:
    """Decide for each test vector whether it lies in the convex hull of the training vectors.

    Args:
        train: ``[N, d]`` array-like (numpy, torch, lists) of training vectors.
        test: ``[M, d]`` (or one ``[d]``) test vectors.
        shortcuts: use the exact shortcuts (bounding box, hyperplane, nearest-neighbour LP)
            before the full LP (``False``: one full LP per test vector, e.g. to time the LP itself).
        progress: a tqdm bar over the test vectors.

    Raises:
        ValueError: arrays that are not finite real ``[count, d]`` matrices, an empty training
            set, or dimensions that differ.
        RuntimeError: HiGHS reports neither feasible nor infeasible for a point (named).
    """
    train, test = _as_matrix(train, "train"), _as_matrix(test, "test")
    if len(train) == 0:
        raise ValueError("train must hold at least one vector")
    if train.shape[1] != test.shape[1]:
        raise ValueError(f"train and test must have the same dimension, got {train.shape[1]} and {test.shape[1]}")
    train, test = _scaled(train, test)
    low, high = train.min(axis=0), train.max(axis=0)
    inside = np.zeros(len(test), dtype=bool)
    decided = {"bbox": 0, "hyperplane": 0, "neighbours": 0, "lp": 0}
    neighbours = max(_MIN_NEIGHBOURS, 4 * (train.shape[1] + 1))
    lp_seconds = 0.0
    rows: Iterable[int] = range(len(test))
    if progress:
        from tqdm.auto import tqdm

        rows = tqdm(rows, desc=f"hull test (d={train.shape[1]}, N={len(train)})", unit="point", leave=False)
    for row in rows:
        point = test[row]
        if shortcuts:
            if ((point < low - FEASIBILITY_TOLERANCE) | (point > high + FEASIBILITY_TOLERANCE)).any():
                decided["bbox"] += 1
                continue
            distances = ((train - point) ** 2).sum(axis=1)
            if _separated(train, point, distances, _SEPARATION_STEPS):
                decided["hyperplane"] += 1
                continue
            if len(train) > neighbours:
                began = time.perf_counter()
                nearest = np.argpartition(distances, neighbours)[:neighbours]
                feasible = _lp_inside(train[nearest], point, f"test vector {row} (nearest neighbours)")
                lp_seconds += time.perf_counter() - began
                if feasible:
                    inside[row] = True
                    decided["neighbours"] += 1
                    continue
            if _separated(train, point, distances, _MORE_SEPARATION_STEPS):  # not inside nearby: look harder
                decided["hyperplane"] += 1
                continue
        began = time.perf_counter()
        inside[row] = _lp_inside(train, point, f"test vector {row}")
        lp_seconds += time.perf_counter() - began
        decided["lp"] += 1
    return HullResult(inside, decided, lp_seconds)


def in_hull(train: object, points: object) -> np.ndarray:
    """``bool [M]``: whether each of ``points`` lies in the convex hull of the rows of ``train``."""
    return hull_membership(train, points).inside

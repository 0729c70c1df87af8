"""Convex-hull membership by LP: hand-made 2-D/3-D cases, agreement with scipy's ConvexHull, and
the dimension reductions of ``interpolation_rate``."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy.spatial import ConvexHull

from datafactory.audit import hull_membership, in_hull, interpolation_rate
from datafactory.audit.interpolation import central_crop, smooth_subsample

EPS = 1e-6  # "just outside": far beyond the LP tolerance (1e-9 of the data's range), far below any vertex gap


@pytest.mark.parametrize("shortcuts", [True, False])
def test_triangle_vertex_edge_interior_and_just_outside(shortcuts):
    triangle = np.array([[0.0, 0.0], [4.0, 0.0], [0.0, 3.0]])
    points = {
        "vertex": ([4.0, 0.0], True),
        "edge midpoint": ([2.0, 1.5], True),
        "edge point": ([1.0, 0.0], True),
        "interior": ([1.0, 1.0], True),
        "centroid": ([4 / 3, 1.0], True),
        "just outside the hypotenuse": ([2.0 + EPS, 1.5 + EPS], False),
        "just outside an axis edge": ([1.0, -EPS], False),
        "beyond a vertex": ([4.0 + EPS, 0.0], False),
        "far away": ([10.0, 10.0], False),
    }
    result = hull_membership(triangle, [p for p, _ in points.values()], shortcuts=shortcuts)
    assert dict(zip(points, result.inside.tolist())) == {name: inside for name, (_, inside) in points.items()}
    assert sum(result.decided_by.values()) == len(points)
    if not shortcuts:
        assert result.decided_by["lp"] == len(points)


@pytest.mark.parametrize("shortcuts", [True, False])
def test_cube_and_tetrahedron_in_3d(shortcuts):
    cube = np.array(list(itertools.product([0.0, 1.0], repeat=3)))
    cases = [([1, 1, 1], True), ([0.5, 0.5, 1.0], True), ([0.5, 1.0, 1.0], True), ([0.3, 0.6, 0.2], True),
             ([0.5, 0.5, 1 + EPS], False), ([1 + EPS, 0.5, 0.5], False), ([0.5, -EPS, 0.5], False)]
    assert in_hull(cube, [p for p, _ in cases]).tolist() == [c for _, c in cases] if shortcuts else True
    assert hull_membership(cube, [p for p, _ in cases], shortcuts=shortcuts).inside.tolist() == [c for _, c in cases]
    # the tetrahedron x, y, z >= 0, x + y + z <= 1: the face point (1/3, 1/3, 1/3) is in, a hair beyond it is out
    tetra = np.vstack([np.zeros(3), np.eye(3)])
    cases = [([1 / 3] * 3, True), ([1 / 3 + EPS] * 3, False), ([0.5, 0.5, 0.0], True), ([0.2, 0.2, 0.2], True),
             ([0.0, 0.0, 1.0], True), ([0.0, 0.0, -EPS], False), ([0.6, 0.6, 0.0], False)]
    assert hull_membership(tetra, [p for p, _ in cases], shortcuts=shortcuts).inside.tolist() == [c for _, c in cases]


def test_degenerate_hulls_a_point_and_a_segment():
    assert in_hull([[1.0, 2.0, 3.0]], [[1.0, 2.0, 3.0], [1.0, 2.0, 3.0 + EPS]]).tolist() == [True, False]
    segment = np.array([[0.0, 0.0], [2.0, 2.0]])  # a flat hull: ConvexHull cannot take it, the LP can
    assert in_hull(segment, [[1.0, 1.0], [1.0, 1.0 + EPS], [2.0, 2.0], [3.0, 3.0]]).tolist() == [True, False, True, False]


@pytest.mark.parametrize("dims", [2, 3, 4])
def test_agrees_with_scipy_convex_hull_on_random_sets(dims):
    rng = np.random.default_rng(dims)
    train = rng.normal(size=(40, dims))
    hull = ConvexHull(train)
    test = rng.normal(size=(150, dims)) * 1.4
    slack = (test @ hull.equations[:, :-1].T + hull.equations[:, -1]).max(axis=1)  # <= 0 inside
    test, slack = test[np.abs(slack) > 1e-6], slack[np.abs(slack) > 1e-6]  # no point within 1e-6 of a facet
    expected = slack < 0
    assert 0.1 < expected.mean() < 0.9  # both answers well represented
    for shortcuts in (True, False):
        result = hull_membership(train, test, shortcuts=shortcuts)
        assert (result.inside == expected).all()
    # the vertices themselves are inside
    assert in_hull(train, train[hull.vertices]).all()


def test_the_shortcuts_decide_most_points_in_high_dimension_and_never_differ():
    rng = np.random.default_rng(5)
    train, test = rng.normal(size=(200, 32)), rng.normal(size=(20, 32))
    fast, slow = hull_membership(train, test), hull_membership(train, test, shortcuts=False)
    assert (fast.inside == slow.inside).all() and not fast.inside.any()  # d=32, N=200: extrapolation
    assert fast.decided_by["lp"] < 5 and slow.decided_by == {"bbox": 0, "hyperplane": 0, "neighbours": 0, "lp": 20}
    # points of the hull, in high dimension: convex combinations of training vectors
    weights = rng.dirichlet(np.ones(200), size=5)
    assert in_hull(train, weights @ train).all()


def test_the_nearest_neighbour_lp_decides_inside_points_in_low_dimension():
    rng = np.random.default_rng(6)
    train, test = rng.normal(size=(2000, 3)), rng.normal(size=(60, 3)) * 0.5
    fast, slow = hull_membership(train, test), hull_membership(train, test, shortcuts=False)
    assert (fast.inside == slow.inside).all() and fast.inside.mean() > 0.9
    assert fast.decided_by["neighbours"] > 40 and sum(fast.decided_by.values()) == 60


def test_scaling_makes_tolerances_relative():
    triangle = np.array([[0.0, 0.0], [4.0, 0.0], [0.0, 3.0]])
    for scale in (1e-6, 1.0, 1e6):
        points = np.array([[1.0, 1.0], [1.0, -EPS * 4]]) * scale + 7 * scale
        assert in_hull(triangle * scale + 7 * scale, points).tolist() == [True, False]


def test_bad_arrays_are_refused():
    with pytest.raises(ValueError, match="same dimension"):
        in_hull(np.zeros((3, 2)), np.zeros((1, 3)))
    with pytest.raises(ValueError, match="NaN"):
        in_hull(np.zeros((3, 2)), [[np.nan, 0.0]])
    with pytest.raises(ValueError, match="at least one"):
        in_hull(np.zeros((0, 2)), np.zeros((1, 2)))
    with pytest.raises(ValueError, match=r"\[count, dims\]"):
        in_hull(np.zeros((2, 2, 2)), np.zeros((1, 2)))


def test_central_crop_takes_the_middle_pixels_channels_together():
    image = torch.arange(2 * 6 * 6, dtype=torch.float64).reshape(1, 2, 6, 6)  # 2 channels, 6x6
    # d=8 -> 4 pixels -> a 2x2 window at rows/cols 2-3, flattened pixel by pixel
    expected = [image[0, c, r, q].item() for r in (2, 3) for q in (2, 3) for c in (0, 1)]
    assert central_crop(image, 8)[0].tolist() == expected
    assert central_crop(image, 5)[0].tolist() == expected[:5]
    with pytest.raises(ValueError, match="window"):
        central_crop(image, 2 * 49)


def test_smooth_subsample_averages_blocks():
    image = torch.arange(16, dtype=torch.float64).reshape(1, 1, 4, 4)
    assert smooth_subsample(image, 4)[0].tolist() == [2.5, 4.5, 10.5, 12.5]
    assert smooth_subsample(torch.zeros(2, 3, 8, 8), 12).shape == (2, 12)
    assert smooth_subsample(torch.zeros(2, 3, 8, 8), 13).shape == (2, 12)  # C * s * s nearest to d


def test_interpolation_rate_on_vectors_and_images():
    rng = np.random.default_rng(0)
    train, test = rng.normal(size=(100, 6)), rng.normal(size=(40, 6))
    result = interpolation_rate(train, test, dims=[1, 2])
    lo, hi = train[:, 0].min(), train[:, 0].max()
    assert result.inside[0] == int(((test[:, 0] >= lo) & (test[:, 0] <= hi)).sum())  # d=1: an interval
    assert result.actual_dims == [1, 2] and result.rates[0] >= result.rates[1] and result.reduce == "first"
    assert interpolation_rate(train, test).dims == [6]
    images = torch.from_numpy(rng.integers(0, 256, size=(30, 3, 8, 8), dtype=np.uint8))
    crop = interpolation_rate(images[:20], images[20:], dims=[1, 3, 12])
    assert crop.reduce == "crop" and crop.actual_dims == [1, 3, 12] and crop.n_train == 20 and crop.n_test == 10
    resized = interpolation_rate(images[:20], images[20:], dims=[3, 12], reduce="resize")
    assert resized.actual_dims == [3, 12]
    with pytest.raises(ValueError, match="dims is required"):
        interpolation_rate(images[:20], images[20:])
    with pytest.raises(ValueError, match="does not apply"):
        interpolation_rate(train, test, dims=[2], reduce="crop")
    with pytest.raises(ValueError, match="ints >= 1"):
        interpolation_rate(train, test, dims=[2, "4"])
    with pytest.raises(ValueError, match="reduce must be one of"):
        interpolation_rate(train, test, dims=[2], reduce="pca")


def test_interpolation_plot_is_a_png(tmp_path):
    rng = np.random.default_rng(1)
    result = interpolation_rate(rng.normal(size=(30, 4)), rng.normal(size=(10, 4)), dims=[1, 2, 4])
    result.plot(tmp_path / "curve.png")
    assert (tmp_path / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

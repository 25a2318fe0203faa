"""kmeans: planted clusters, scikit-learn inertia, determinism, empty clusters, group sizes, bad input.

Every test runs the torch backend; ``cpp`` parametrisations run when ``fastdistill._C`` is built. CUDA tests are marked
``cuda``.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch

from fastdistill import _extension
from fastdistill.errors import FastDistillError
from fastdistill.ops import assign_modes, kmeans, kmeans_grouped
from fastdistill.ops.rerank_bound import score_slack

HAS_CPP = _extension.available()
needs_cpp = pytest.mark.skipif(not HAS_CPP, reason="fastdistill._C is not built: only the torch fallback is tested")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
BACKENDS = ["torch", pytest.param("cpp", marks=needs_cpp)]


def planted(groups: int, k: int, dim: int, per_group: int, seed: int = 0):
    """Well-separated Gaussian blobs per group, shuffled; returns points, groups and the planted labels."""
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(groups, k, dim, generator=gen) * 20
    labels = torch.arange(per_group).remainder(k).repeat(groups, 1)  # every cluster populated
    points = centres[torch.arange(groups)[:, None], labels] + torch.randn(groups, per_group, dim, generator=gen)
    group_ids = torch.arange(groups).repeat_interleave(per_group)
    perm = torch.randperm(groups * per_group, generator=gen)
    return points.reshape(-1, dim)[perm], group_ids[perm], labels.reshape(-1)[perm], centres


def inertia(points: torch.Tensor, centroids: torch.Tensor, index: torch.Tensor, groups=None) -> float:
    c = centroids.double() if groups is None else centroids.double()[groups]
    chosen = c[index] if groups is None else c[torch.arange(len(index)), index]
    return float(((points.double() - chosen) ** 2).sum())


def same_partition(a: torch.Tensor, b: torch.Tensor) -> bool:
    pairs = set(zip(a.tolist(), b.tolist(), strict=True))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("grouped", [False, True])
def test_recovers_planted_clusters(backend, grouped):
    g = 6 if grouped else 1
    points, groups, labels, centres = planted(g, 5, 12, 80)
    centroids, index = kmeans(points, 5, groups if grouped else None, backend=backend)
    assert centroids.shape == ((g, 5, 12) if grouped else (5, 12)) and index.shape == (g * 80,)
    for h in range(g):
        mask = groups == h
        assert same_partition(labels[mask], index[mask]), f"group {h}"
        found = centroids[h] if grouped else centroids
        # each found centroid is the mean of its planted blob: within the noise of 80/5 samples of N(0, 1)
        assert torch.cdist(found, centres[h]).min(1).values.max() < 1.5


@pytest.mark.parametrize("backend", BACKENDS)
def test_groups_clustered_in_several_batches(backend, monkeypatch):
    points, groups, labels, _ = planted(6, 5, 12, 80)  # groups interleaved: the batches gather their rows
    whole, _ = kmeans(points, 5, groups, backend=backend)
    monkeypatch.setattr(importlib.import_module("fastdistill.ops.kmeans"), "_CPU_BATCH_BYTES", 2 * 80 * 12 * 4)
    centroids, index = kmeans(points, 5, groups, backend=backend)  # three batches of two groups
    for h in range(6):
        mask = groups == h
        assert same_partition(labels[mask], index[mask]), f"group {h}"
        assert torch.cdist(centroids[h], whole[h]).min(1).values.max() < 1e-4  # the same clusters' means
    assert torch.equal(index, assign_modes(points, centroids, groups, backend=backend)[0])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_inertia_within_one_percent_of_scikit_learn(backend, seed):
    sklearn = pytest.importorskip("sklearn.cluster")
    from sklearn.datasets import make_blobs

    data = [make_blobs(n_samples=500, centers=8, n_features=16, cluster_std=1.0, center_box=(-25, 25),
                       random_state=seed + 10 * h)[0].astype(np.float32) for h in range(3)]
    theirs = sum(sklearn.KMeans(8, n_init=1, max_iter=50, random_state=seed).fit(x).inertia_ for x in data)
    points = torch.from_numpy(np.concatenate(data))
    groups = torch.arange(3).repeat_interleave(500)
    centroids, index = kmeans(points, 8, groups, iters=50, seed=seed, backend=backend)
    ours = inertia(points, centroids, index, groups)
    assert abs(ours / theirs - 1) <= 0.01, (ours, theirs)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("init", ["k-means++", "random"])
def test_same_seed_same_result(backend, init):
    gen = torch.Generator().manual_seed(9)
    points = torch.randn(900, 24, generator=gen)  # no structure: many iterations, sensitive to any nondeterminism
    groups = torch.randint(0, 4, (900,), generator=gen)
    first = kmeans(points, 7, groups, iters=20, seed=3, init=init, backend=backend)
    second = kmeans(points, 7, groups, iters=20, seed=3, init=init, backend=backend)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("init", ["k-means++", "random"])
def test_empty_clusters_are_reseeded_with_the_farthest_points(backend, init):
    a, b, c = torch.zeros(1, 3), torch.ones(1, 3), torch.full((1, 3), 10.0)
    points = torch.cat([a.repeat(20, 1), b.repeat(20, 1), c])  # 3 distinct points; duplicates make empty clusters
    truth = torch.tensor([0] * 20 + [1] * 20 + [2])
    for seed in range(6):
        centroids, index = kmeans(points, 3, seed=seed, init=init, backend=backend)
        assert same_partition(truth, index), f"seed {seed}"
        assert torch.cdist(centroids, torch.cat([a, b, c])).min(1).values.max() == 0


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_points(backend, dtype):
    points, groups, labels, _ = planted(3, 4, 8, 40, seed=1)
    centroids, index = kmeans(points.to(dtype), 4, groups, backend=backend)
    assert centroids.dtype == dtype
    for h in range(3):
        assert same_partition(labels[groups == h], index[groups == h])


@needs_cpp
def test_backends_agree():
    points, groups, _, _ = planted(4, 6, 10, 60, seed=2)
    c_cpp, i_cpp = kmeans(points, 6, groups, backend="cpp")
    c_torch, i_torch = kmeans(points, 6, groups, backend="torch")
    assert same_partition(groups * 6 + i_cpp, groups * 6 + i_torch)
    for h in range(4):  # the same centroids, possibly in another order
        torch.testing.assert_close(torch.cdist(c_cpp[h], c_torch[h]).min(1).values, torch.zeros(6), atol=1e-4,
                                   rtol=0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("budget", [None, 2 * 80 * 12 * 4])  # one batch of all groups; three batches of two
def test_grouped_from_a_reader_equals_kmeans_bit_for_bit(backend, budget, monkeypatch):
    points, groups, _, _ = planted(6, 5, 12, 80, seed=4)
    half = points.half()  # the latent cache's dtype: read as float16, clustered in float32
    if budget is not None:
        monkeypatch.setattr(importlib.import_module("fastdistill.ops.kmeans"), "_CPU_BATCH_BYTES", budget)
    whole, _ = kmeans(half.float(), 5, groups, seed=7, backend=backend)
    order = torch.argsort(groups, stable=True)
    reads = []

    def rows(lo: int, hi: int) -> torch.Tensor:
        reads.append((lo, hi))
        return half[order[lo:hi]]

    counts = torch.bincount(groups).tolist()
    centroids = kmeans_grouped(rows, counts, 12, 5, seed=7, backend=backend)
    assert centroids.dtype == torch.float32 and torch.equal(centroids, whole)
    assert len(reads) == (1 if budget is None else 3) and reads[-1][1] == len(points)
    with pytest.raises(FastDistillError, match="group 0 has 80 points, fewer than k=90"):
        kmeans_grouped(rows, counts, 12, 90)
    nan = half.clone()
    nan[order[100], 3] = float("nan")
    with pytest.raises(FastDistillError, match="NaN or Inf .first at row 100"):
        kmeans_grouped(lambda lo, hi: nan[order[lo:hi]], counts, 12, 5)


def test_k_larger_than_a_group_names_the_group():
    points = torch.randn(23, 4)
    groups = torch.tensor([0] * 10 + [1] * 3 + [2] * 10)
    with pytest.raises(FastDistillError, match="group 1 has 3 points, fewer than k=5"):
        kmeans(points, 5, groups)
    with pytest.raises(FastDistillError, match="k=30 is larger than the number of points"):
        kmeans(points, 30)


def _bad_calls():
    x = torch.randn(20, 3)
    nan = x.clone()
    nan[4, 1] = float("nan")
    return {
        "nan": ((nan, 2), {}, "NaN or Inf"),
        "k-zero": ((x, 0), {}, "k must be a positive integer"),
        "k-float": ((x, 2.5), {}, "k must be a positive integer"),
        "iters-zero": ((x, 2), {"iters": 0}, "iters must be"),
        "tol-negative": ((x, 2), {"tol": -1.0}, "tol must be"),
        "init": ((x, 2), {"init": "kmeans||"}, "init must be one of"),
        "groups-int32": ((x, 2), {"groups": torch.zeros(20, dtype=torch.int32)}, "int64"),
        "groups-shape": ((x, 2), {"groups": torch.zeros(5, dtype=torch.int64)}, "shape"),
        "groups-negative": ((x, 2), {"groups": torch.full((20,), -1)}, ">= 0"),
        "empty": ((torch.randn(0, 3), 2), {}, "empty"),
        "float64": ((x.double(), 2), {}, "float32, float16 or bfloat16"),
        "points-1d": ((torch.randn(20), 2), {}, r"\[N, D\]"),
    }


BAD = _bad_calls()


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_input_raises_a_one_line_error(case):
    args, kwargs, message = BAD[case]
    with pytest.raises(FastDistillError, match=message) as err:
        kmeans(*args, **kwargs)
    assert "\n" not in str(err.value)


@needs_cpp
@pytest.mark.parametrize("op", ["kmeans_step", "group_dots"])
def test_opcheck(op):
    gen = torch.Generator().manual_seed(10)
    points = torch.randn(40, 6, generator=gen)
    for args in [(points, torch.randn(3, 6, generator=gen), None),
                 (points, torch.randn(2, 3, 6, generator=gen), torch.randint(0, 2, (40,), generator=gen))]:
        kwargs = {"slack": score_slack(6)} if op == "kmeans_step" else {}
        torch.library.opcheck(getattr(torch.ops.fastdistill, op).default, args, kwargs,
                              test_utils=("test_schema", "test_autograd_registration", "test_faketensor",
                                          "test_aot_dispatch_dynamic"))


@needs_cpp
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_group_dots_matches_matmul(dtype):
    gen = torch.Generator().manual_seed(12)
    points = torch.randn(77, 35, generator=gen).to(dtype)
    centroids = torch.randn(3, 5, 35, generator=gen).to(dtype)
    groups = torch.randint(0, 3, (77,), generator=gen)
    want = torch.einsum("nd,nkd->nk", points.double(), centroids.double()[groups]).float()
    torch.testing.assert_close(torch.ops.fastdistill.group_dots(points, centroids, groups), want, rtol=1e-5,
                               atol=1e-4)


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("backend", BACKENDS)
def test_cuda_kmeans(backend):
    points, groups, labels, _ = planted(8, 5, 32, 100, seed=3)
    centroids, index = kmeans(points.cuda(), 5, groups.cuda(), backend=backend)
    assert centroids.is_cuda and index.is_cuda
    for h in range(8):
        assert same_partition(labels[groups == h], index.cpu()[groups == h])
    cpu = kmeans(points, 5, groups, backend=backend)
    torch.testing.assert_close(centroids.cpu(), cpu[0], rtol=1e-5, atol=1e-5)


@pytest.mark.cuda
@needs_cuda
@needs_cpp
def test_cuda_kmeans_is_deterministic():
    gen = torch.Generator().manual_seed(11)
    points = torch.randn(20000, 64, generator=gen).cuda()
    groups = torch.randint(0, 10, (20000,), generator=gen).cuda()
    first = kmeans(points, 16, groups, iters=10, backend="cpp")
    second = kmeans(points, 16, groups, iters=10, backend="cpp")
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])

"""assign_modes and kmeans against their baselines on the same data in the same run (issue 4); CPU always, CUDA too.

Data: C classes x 1300 points (C = 100), D in {256, 1024, 4096}, K in {10, 50}; each class is a mixture of K Gaussian
blobs (centres ~ N(0, 1), unit noise) in fp32, points stored class by class. One pytest-benchmark group per
(op, device, K, D); providers:

- ``assign/...`` (centroids: K points of each class)
  ``reference``      the per-class torch loop: ``torch.cdist(x[groups == g], centroids[g]).argmin(1)`` for every g
  ``cdist-batched``  one ``torch.cdist`` over the [C, 1300, D] batch, then ``argmin``
  ``fastdistill``    ``assign_modes(points, centroids, groups)``
- ``kmeans/...`` (k = K, ``iters`` = 50 = scikit-learn's ``max_iter``, tol 1e-4, k-means++, one init, seed 0)
  ``reference``      scikit-learn ``KMeans`` class by class (CPU only)
  ``fastdistill``    ``kmeans(points, K, groups)``: every class in one call
  ``faiss``          ``faiss.Kmeans`` class by class, when faiss is installed (CPU only)
  ``extra_info`` holds the total inertia (sum over classes) and the iterations: compare speed at equal inertia.

Run from the repository root (CUDA timings synchronise inside the timed call):
    python -m pytest benchmarks/bench_modes.py --benchmark-enable --benchmark-json modes.json
    python benchmarks/summarize.py modes.json
Environment: FASTDISTILL_BENCH_CLASSES (default 100), FASTDISTILL_BENCH_DEVICES (default "cpu,cuda"; CUDA only when
available), FASTDISTILL_BENCH_THREADS (torch CPU threads). ``-k "assign and K50"`` etc. select a subset.
"""

from __future__ import annotations

import functools
import os
import platform

import numpy as np
import pytest
import torch

from fastdistill import _extension
from fastdistill.ops import assign_modes, kmeans

CLASSES = int(os.environ.get("FASTDISTILL_BENCH_CLASSES", "100"))
PER_CLASS = 1300
ITERS = 50
SHAPES = [(k, d) for k in (10, 50) for d in (256, 1024, 4096)]
DEVICES = [d for d in os.environ.get("FASTDISTILL_BENCH_DEVICES", "cpu,cuda").split(",")
           if d == "cpu" or (d == "cuda" and torch.cuda.is_available())]
if os.environ.get("FASTDISTILL_BENCH_THREADS"):
    torch.set_num_threads(int(os.environ["FASTDISTILL_BENCH_THREADS"]))

try:
    import faiss
except ImportError:
    faiss = None

ASSIGN = ["reference", "cdist-batched", "fastdistill"]
KMEANS = ["reference", "fastdistill", "faiss"]


@functools.lru_cache(maxsize=1)
def dataset(k: int, d: int, device: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Points [C * 1300, D] (class-sorted), groups [C * 1300] and K starting centroids per class [C, K, D]."""
    gen = torch.Generator().manual_seed(k * 10007 + d)
    centres = torch.randn(CLASSES, k, d, generator=gen)
    labels = torch.randint(0, k, (CLASSES, PER_CLASS), generator=gen)
    points = centres[torch.arange(CLASSES)[:, None], labels]
    points += torch.randn(points.shape, generator=gen)
    start = points[:, torch.randperm(PER_CLASS, generator=gen)[:k]]
    groups = torch.arange(CLASSES).repeat_interleave(PER_CLASS)
    return points.reshape(-1, d).to(device), groups.to(device), start.to(device)


def device_name(device: str) -> str:
    return torch.cuda.get_device_name() if device == "cuda" else (platform.processor() or platform.machine())


def timed(benchmark, fn, device: str, rounds: int, warmup: int, **extra_info) -> object:
    """pytest-benchmark pedantic timing; CUDA work is synchronised inside the timed call."""
    def call():
        out = fn()
        if device == "cuda":
            torch.cuda.synchronize()
        return out

    benchmark.extra_info.update(extra_info, device=device_name(device), torch=torch.__version__,
                                threads=torch.get_num_threads(), calls_per_round=1)
    return benchmark.pedantic(call, rounds=rounds, warmup_rounds=warmup, iterations=1)


def per_class_loop(points: torch.Tensor, centroids: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    index = torch.empty(points.shape[0], dtype=torch.int64, device=points.device)
    for g in range(centroids.shape[0]):
        mask = groups == g
        index[mask] = torch.cdist(points[mask], centroids[g]).argmin(1)
    return index


def cdist_batched(points: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    return torch.cdist(points.view(centroids.shape[0], -1, points.shape[1]), centroids).argmin(2).view(-1)


@pytest.mark.parametrize("provider", ASSIGN)
@pytest.mark.parametrize("shape", SHAPES, ids=[f"K{k}-D{d}" for k, d in SHAPES])
@pytest.mark.parametrize("device", DEVICES)
def test_assign(benchmark, device, shape, provider):
    k, d = shape
    if provider == "fastdistill" and not _extension.available():
        pytest.skip("fastdistill._C is not built (the torch fallback is what 'reference' measures)")
    points, groups, centroids = dataset(k, d, device)
    if provider == "reference":
        fn = functools.partial(per_class_loop, points, centroids, groups)
    elif provider == "cdist-batched":
        fn = functools.partial(cdist_batched, points, centroids)
    else:
        fn = functools.partial(assign_modes, points, centroids, groups)
    benchmark.group = f"assign/{device}/K{k}/D{d}"
    timed(benchmark, fn, device, rounds=5 if device == "cuda" else 3, warmup=1, op="assign_modes", provider=provider,
          shape=[CLASSES, PER_CLASS, k, d])


def _sklearn(points: np.ndarray, k: int) -> dict:
    from sklearn.cluster import KMeans

    inertia, iters = 0.0, 0
    for block in np.split(points, CLASSES):
        fit = KMeans(k, n_init=1, max_iter=ITERS, tol=1e-4, init="k-means++", random_state=0).fit(block)
        inertia += float(fit.inertia_)
        iters += fit.n_iter_
    return {"inertia": inertia, "iterations": iters / CLASSES}


def _faiss(points: np.ndarray, k: int) -> dict:
    inertia = 0.0
    for block in np.split(points, CLASSES):
        block = np.ascontiguousarray(block)
        km = faiss.Kmeans(block.shape[1], k, niter=ITERS, seed=0, nredo=1, verbose=False)
        km.train(block)
        dist, _ = km.index.search(block, 1)
        inertia += float(dist.sum())
    return {"inertia": inertia, "iterations": ITERS}


@pytest.mark.parametrize("provider", KMEANS)
@pytest.mark.parametrize("shape", SHAPES, ids=[f"K{k}-D{d}" for k, d in SHAPES])
@pytest.mark.parametrize("device", DEVICES)
def test_kmeans(benchmark, device, shape, provider):
    k, d = shape
    if provider != "fastdistill" and device != "cpu":
        pytest.skip(f"{provider} runs on the CPU only")
    if provider == "reference":
        pytest.importorskip("sklearn")
    if provider == "faiss" and faiss is None:
        pytest.skip("faiss is not installed")
    points, groups, _ = dataset(k, d, device)
    if provider == "reference":
        fn = functools.partial(_sklearn, points.cpu().numpy(), k)
    elif provider == "faiss":
        fn = functools.partial(_faiss, points.cpu().numpy(), k)
    else:
        fn = functools.partial(kmeans, points, k, groups, iters=ITERS, tol=1e-4, seed=0)
    benchmark.group = f"kmeans/{device}/K{k}/D{d}"
    out = timed(benchmark, fn, device, rounds=1, warmup=0, op="kmeans", provider=provider,
                shape=[CLASSES, PER_CLASS, k, d])
    if provider == "fastdistill":  # total inertia, from the exact float64 distances of a final assignment
        out = {"inertia": float(assign_modes(points, out[0], groups)[1].double().sum())}
    benchmark.extra_info.update(out)

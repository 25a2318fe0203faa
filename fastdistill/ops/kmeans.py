"""``kmeans``: Lloyd's algorithm with greedy k-means++ seeding, batched over groups (every class in one call).

Groups are clustered in batches of consecutive groups of about 32 MB of points (the CPU's last-level cache; 1 GB on
CUDA), each from seeding to convergence while it stays in cache. Each Lloyd iteration is one pass over a batch:
``fastdistill::kmeans_step`` (backend ``cpp``) assigns every point as ``assign_modes`` does and accumulates the
per-centroid float64 sums in a fixed order, so results are bit-reproducible for a seed. The ``torch`` backend
(``kmeans_torch``, used without the extension) does the same with ``assign_modes_torch`` and ``index_add_``; on CUDA
``index_add_`` uses atomics, so only the ``cpp`` backend is reproducible there. ``kmeans_grouped`` is the same
clustering for points read one batch of groups at a time (e.g. class by class from a memory-mapped latent cache).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence

import torch

from fastdistill.errors import FastDistillError
from fastdistill.ops.assign_modes import DTYPES, assign_modes
from fastdistill.ops.kmeans_torch import kmeans_step_torch
from fastdistill.ops.registry import backend_for
from fastdistill.ops.rerank_bound import kernel_slack

INITS = ("k-means++", "random")
_CHECK_ELEMENTS = 1 << 22
_CPU_BATCH_BYTES = 32 << 20  # about the last-level cache
_CUDA_BATCH_BYTES = 1 << 30


def kmeans(points: torch.Tensor, k: int, groups: torch.Tensor | None = None, iters: int = 50, tol: float = 1e-4,
           seed: int = 0, init: str = "k-means++", backend: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """k-means of ``points``, separately within every group, in one call.

    Args:
        points: [N, D] float32, float16 or bfloat16 (clustering runs in float32).
        k: clusters per group; every group needs at least ``k`` points.
        groups: optional int64 [N] group id per point (values in [0, G), G = max + 1).
        iters: maximum Lloyd iterations.
        tol: a group has converged when the squared shift of its centroids is at most ``tol`` times its mean
            per-feature variance (scikit-learn's rule), or when no assignment changed. A batch of groups stops
            when every group in it has converged.
        seed: seeds the initialisation; the same seed gives the same result on the same device and backend.
        init: ``"k-means++"`` (greedy, 2 + ln k trials per centre, as scikit-learn) or ``"random"`` (k distinct points).
        backend: ``"cpp"`` or ``"torch"`` to force one.

    Returns:
        ``(centroids, index)``: [k, D] (or [G, k, D] with groups) in the dtype of ``points``, and int64 [N], the cluster
        of each point within its group, consistent with the returned centroids. Empty clusters are re-seeded with the
        points farthest from their centroid, as in scikit-learn.
    """
    num_groups, counts = _check(points, k, groups, iters, tol, init)
    order = None
    if groups is not None and not bool((groups[1:] >= groups[:-1]).all()):
        order = torch.argsort(groups, stable=True)

    def positions(lo: int, hi: int) -> torch.Tensor | slice:
        return order[lo:hi] if order is not None else slice(lo, hi)

    centroids = torch.empty(num_groups, k, points.shape[1], dtype=points.dtype, device=points.device)
    index = torch.empty(points.shape[0], dtype=torch.int64, device=points.device)
    for (lo, hi), (g0, g1), found, assigned in _cluster(lambda lo, hi: points[positions(lo, hi)], counts,
                                                         points.shape[1], points.device, k, groups is not None,
                                                         iters, tol, seed, init, backend):
        centroids[g0:g1] = found.to(points.dtype)
        index[positions(lo, hi)] = assigned
    return (centroids if groups is not None else centroids[0]), index


def kmeans_grouped(rows: Callable[[int, int], torch.Tensor], counts: Sequence[int], dim: int, k: int,
                   iters: int = 50, tol: float = 1e-4, seed: int = 0, init: str = "k-means++",
                   backend: str | None = None, device: torch.device | str = "cpu",
                   part: tuple[int, int] = (0, 1)) -> torch.Tensor:
    """:func:`kmeans` with groups, for points that are never all in memory: ``rows(lo, hi)`` returns the points at
    positions ``lo:hi`` of the group-sorted order ([hi - lo, dim], float32, float16 or bfloat16), ``counts[g]``
    the number of points of group ``g``. Rows are read one batch of groups at a time (see ``_batches``: about 32 MB
    of float32 points on the CPU), and the centroids, float32 [G, k, dim], are bit for bit those of ``kmeans(points,
    k, groups)`` with the same seed, device and backend.

    ``part=(i, n)`` clusters only batches ``i, i + n, i + 2n, ...`` (the others' rows are never read, their random
    draws are skipped and their centroids are NaN): n processes that take one part each and keep each other's
    non-NaN groups have exactly the centroids of one process."""
    _check_settings(k, iters, tol, init)
    counts = torch.as_tensor(list(counts), dtype=torch.int64)
    if counts.numel() == 0 or dim < 1:
        raise FastDistillError(f"kmeans: no points to cluster ({counts.numel()} groups of dimension {dim})")
    _check_counts(counts, k)
    device = torch.device(device)
    centroids = torch.full((counts.shape[0], k, dim), math.nan, dtype=torch.float32, device=device)
    for _, (g0, g1), found, _ in _cluster(rows, counts.to(device), dim, device, k, True, iters, tol, seed, init,
                                           backend, part):
        centroids[g0:g1] = found
    return centroids


def _cluster(rows: Callable[[int, int], torch.Tensor], counts: torch.Tensor, dim: int, device: torch.device, k: int,
             grouped: bool, iters: int, tol: float, seed: int, init: str, backend: str | None,
             part: tuple[int, int] = (0, 1)) -> Iterator[tuple[tuple[int, int], tuple[int, int], torch.Tensor,
                                                               torch.Tensor]]:
    """Cluster batch after batch of consecutive groups (``rows(lo, hi)``: group-sorted points): yields the rows
    ``(lo, hi)`` and groups ``(g0, g1)`` of each batch, its float32 centroids and the cluster of each of its points.
    ``part=(i, n)``: only batches ``i, i + n, ...``; the random draws of the others are skipped."""
    use_cpp = backend_for("kmeans", device, backend) == "cpp"
    offsets = [0, *torch.cumsum(counts, 0).tolist()]
    generator = torch.Generator().manual_seed(seed)
    batches = _batches(dim, device.type == "cuda", offsets)
    # One float32 buffer for every batch (centred in place there; a fresh allocation per batch costs page faults).
    buffer = torch.empty(max(offsets[g1] - offsets[g0] for g0, g1 in batches), dim, dtype=torch.float32,
                         device=device)
    for b, (g0, g1) in enumerate(batches):
        if b % part[1] != part[0]:
            _skip_draws(counts[g0:g1], k, init, generator)
            continue
        lo, hi = offsets[g0], offsets[g1]
        local = [o - lo for o in offsets[g0:g1 + 1]]
        ids = None
        if grouped:
            ids = torch.repeat_interleave(torch.arange(g1 - g0, device=device), counts[g0:g1])
        x = buffer[:hi - lo].copy_(rows(lo, hi))
        _check_finite(x, lo)
        found, assigned = _kmeans_batch(x, counts[g0:g1], local, ids, k, iters, tol, init, generator, use_cpp)
        yield (lo, hi), (g0, g1), found, assigned


def _skip_draws(counts: torch.Tensor, k: int, init: str, generator: torch.Generator) -> None:
    """Advance ``generator`` past the draws that clustering a batch of groups with ``counts`` takes (the
    initialisation's; Lloyd's iterations draw nothing): the same calls as ``_kmeanspp`` / ``_random_init``."""
    if init == "k-means++":
        torch.rand(counts.shape[0], generator=generator, dtype=torch.float64)
        for _ in range(1, k):
            torch.rand(counts.shape[0], 2 + int(math.log(k)), generator=generator, dtype=torch.float64)
    else:
        torch.rand(counts.shape[0], int(counts.max()), generator=generator, dtype=torch.float64)


def _batches(dim: int, cuda: bool, offsets: list[int]) -> list[tuple[int, int]]:
    """Consecutive groups [g0, g1) whose points take at most 32 MB (about the CPU's last-level cache; 1 GB on CUDA),
    or one group when it alone is larger: each batch is clustered from start to end while it stays in cache."""
    budget = _CUDA_BATCH_BYTES if cuda else _CPU_BATCH_BYTES
    row = dim * 4
    out, g0 = [], 0
    while g0 < len(offsets) - 1:
        g1 = g0 + 1
        while g1 < len(offsets) - 1 and (offsets[g1 + 1] - offsets[g0]) * row <= budget:
            g1 += 1
        out.append((g0, g1))
        g0 = g1
    return out


def _kmeans_batch(x: torch.Tensor, counts: torch.Tensor, offsets: list[int], groups: torch.Tensor | None, k: int,
                  iters: int, tol: float, init: str, generator: torch.Generator,
                  use_cpp: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """k-means of a batch of group-sorted float32 points ``x`` (``groups``: ids 0..G-1, or None for one group), which
    it centres in place (the error bound of the scores shrinks with ||x||): centroids [G, k, D] and the index of each
    point."""
    means = torch.empty(counts.shape[0], x.shape[1], dtype=torch.float32, device=x.device)
    tols = torch.empty(counts.shape[0], dtype=torch.float64, device=x.device)
    for g in range(counts.shape[0]):  # fp32 reductions (pairwise): centring needs no more than that
        block = x[offsets[g]:offsets[g + 1]]
        means[g] = block.mean(0)
        block.sub_(means[g])
        tols[g] = tol * torch.linalg.vector_norm(block).double().square() / block.numel()
    if init == "k-means++":
        centroids = _kmeanspp(x, counts, offsets, k, generator, use_cpp and not x.is_cuda)
    else:
        centroids = _random_init(x, counts, offsets, k, generator)

    step = _kmeans_step_cpp if use_cpp else kmeans_step_torch
    previous = None
    stable = False
    for _ in range(iters):
        index, dist, sums, sizes = step(x, centroids, groups)
        _relocate_empty(x, offsets, index, dist, sums, sizes)
        updated = sums.div_(sizes.clamp_min(1)[..., None]).float()
        empty = sizes == 0  # only if relocation could not fill a cluster: keep its centroid
        if bool(empty.any()):
            updated[empty] = centroids[empty]
        shift = (updated - centroids).square().sum((1, 2)).double()
        centroids = updated
        stable = previous is not None and torch.equal(index, previous)
        if stable or bool((shift <= tols).all()):
            break
        previous = index
    if not stable:
        index, _ = assign_modes(x, centroids if groups is not None else centroids[0], groups,
                                backend="cpp" if use_cpp else "torch")
    return centroids + means[:, None, :], index


def _check(points: torch.Tensor, k: int, groups: torch.Tensor | None, iters: int, tol: float,
           init: str) -> tuple[int, torch.Tensor]:
    """Validate the arguments; return the number of groups and the point count of each."""
    if not isinstance(points, torch.Tensor) or points.dim() != 2:
        got = tuple(points.shape) if isinstance(points, torch.Tensor) else type(points).__name__
        raise FastDistillError(f"kmeans: points must be a [N, D] tensor, got {got}")
    if points.shape[0] == 0 or points.shape[1] == 0:
        raise FastDistillError(f"kmeans: points is empty (shape {tuple(points.shape)})")
    if points.dtype not in DTYPES:
        raise FastDistillError(f"kmeans: points must be float32, float16 or bfloat16, got {points.dtype}")
    _check_settings(k, iters, tol, init)
    step = max(1, _CHECK_ELEMENTS // points.shape[1])  # in slices: no [N, D] boolean temporary
    for lo in range(0, points.shape[0], step):
        _check_finite(points[lo:lo + step], lo)
    if groups is None:
        if points.shape[0] < k:
            raise FastDistillError(f"kmeans: k={k} is larger than the number of points ({points.shape[0]})")
        return 1, torch.tensor([points.shape[0]], device=points.device)
    if not isinstance(groups, torch.Tensor) or groups.dtype != torch.int64 or groups.shape != points.shape[:1]:
        got = f"{groups.dtype} {tuple(groups.shape)}" if isinstance(groups, torch.Tensor) else type(groups).__name__
        raise FastDistillError(f"kmeans: groups must be an int64 tensor of shape [{points.shape[0]}], got {got}")
    if groups.device != points.device:
        raise FastDistillError(f"kmeans: groups are on {groups.device} but points are on {points.device}")
    if int(groups.min()) < 0:
        raise FastDistillError(f"kmeans: group ids must be >= 0, got {int(groups.min())}")
    counts = torch.bincount(groups)
    _check_counts(counts, k)
    return counts.shape[0], counts


def _check_settings(k: int, iters: int, tol: float, init: str) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise FastDistillError(f"kmeans: k must be a positive integer, got {k!r}")
    if isinstance(iters, bool) or not isinstance(iters, int) or iters < 1:
        raise FastDistillError(f"kmeans: iters must be a positive integer, got {iters!r}")
    if not isinstance(tol, (int, float)) or not math.isfinite(tol) or tol < 0:
        raise FastDistillError(f"kmeans: tol must be a finite number >= 0, got {tol!r}")
    if init not in INITS:
        raise FastDistillError(f"kmeans: init must be one of {', '.join(INITS)}, got {init!r}")


def _check_finite(block: torch.Tensor, first_row: int) -> None:
    """Refuse NaN or Inf in ``block`` (rows ``first_row`` onwards), naming the first bad row."""
    if bool(torch.isfinite(block.sum(dtype=torch.float32))):  # non-finite if any element is (or if it overflows)
        return
    bad = ~torch.isfinite(block).all(1)
    if bool(bad.any()):
        row = first_row + int(bad.nonzero()[0, 0])
        raise FastDistillError(f"kmeans: points contain NaN or Inf (first at row {row}); drop or fix those rows")


def _check_counts(counts: torch.Tensor, k: int) -> None:
    small = (counts < k).nonzero()[:, 0].tolist()
    if small:
        g = small[0]
        more = f" (and {len(small) - 1} more groups)" if len(small) > 1 else ""
        raise FastDistillError(f"kmeans: group {g} has {int(counts[g])} points, fewer than k={k}{more}; "
                               "lower k or drop the group")


def _padded(x: torch.Tensor, counts: torch.Tensor, offsets: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Group-sorted rows as [G, n_max, D] (a view when all groups have the same size) and the valid-row mask."""
    num_groups, longest = counts.shape[0], int(counts.max())
    valid = torch.arange(longest, device=x.device)[None, :] < counts[:, None]
    rows = x[offsets[0]:offsets[-1]]
    if bool((counts == longest).all()):
        return rows.view(num_groups, longest, x.shape[1]), valid
    padded = x.new_zeros(num_groups, longest, x.shape[1])
    for g in range(num_groups):
        padded[g, :offsets[g + 1] - offsets[g]] = x[offsets[g]:offsets[g + 1]]
    return padded, valid


def _kmeanspp(x: torch.Tensor, counts: torch.Tensor, offsets: list[int], k: int, generator: torch.Generator,
              use_cpp: bool) -> torch.Tensor:
    """Greedy k-means++ (each new centre is the best of 2 + ln k candidates drawn with probability proportional to the
    squared distance to the nearest centre so far) for a batch of groups (see ``_batches``). The dot products with the
    candidates are a skinny matmul, which ``fastdistill::group_dots`` computes on the CPU (cpp backend)."""
    xp, valid = _padded(x, counts, offsets)
    flat = x[offsets[0]:offsets[-1]]
    local = torch.repeat_interleave(torch.arange(counts.shape[0], device=x.device), counts)
    num_groups, longest, dim = xp.shape
    trials = 2 + int(math.log(k))
    rows = torch.arange(num_groups, device=x.device)
    last = (counts - 1)[:, None]
    norms = torch.linalg.vector_norm(xp, dim=2).square()
    centroids = x.new_empty(num_groups, k, dim)

    def sq_dist(c: torch.Tensor) -> torch.Tensor:  # [G, n_max, T] squared distances to c [G, T, D], 0 on padding
        if use_cpp:
            dots = torch.ops.fastdistill.group_dots(flat, c, local)
            dots = dots.view(xp.shape[0], xp.shape[1], -1) if bool(valid.all()) else _pad_rows(dots, valid)
        else:
            dots = torch.bmm(xp, c.transpose(1, 2))
        d = (norms[:, :, None] + c.square().sum(2)[:, None, :]).sub_(dots, alpha=2.0)
        return d.clamp_min_(0).mul_(valid[:, :, None])

    first = (torch.rand(num_groups, generator=generator, dtype=torch.float64).to(x.device) * counts).long()
    centroids[:, 0] = xp[rows, first]
    closest = sq_dist(centroids[:, :1])[:, :, 0]
    potential = closest.sum(1, dtype=torch.float64)
    for c in range(1, k):
        draws = torch.rand(num_groups, trials, generator=generator, dtype=torch.float64).to(x.device)
        cumulative = closest.double().cumsum(1)
        picks = torch.searchsorted(cumulative, draws * potential[:, None]).clamp_(max=last)
        candidates = xp[rows[:, None], picks]
        d = torch.minimum(sq_dist(candidates), closest[:, :, None])
        trial_potential = d.sum(1, dtype=torch.float64)
        best = trial_potential.argmin(1)
        centroids[:, c] = candidates[rows, best]
        closest = d[rows, :, best]
        potential = trial_potential[rows, best]
    return centroids


def _pad_rows(rows: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Group-sorted rows [n, T] laid out as [G, n_max, T] (zeros where ``valid`` is False)."""
    out = rows.new_zeros(*valid.shape, rows.shape[1])
    out[valid] = rows
    return out


def _random_init(x: torch.Tensor, counts: torch.Tensor, offsets: list[int], k: int,
                 generator: torch.Generator) -> torch.Tensor:
    """k distinct points of every group, uniformly at random."""
    keys = torch.rand(counts.shape[0], int(counts.max()), generator=generator, dtype=torch.float64).to(x.device)
    keys.masked_fill_(torch.arange(keys.shape[1], device=x.device)[None, :] >= counts[:, None], math.inf)
    picks = keys.topk(k, dim=1, largest=False).indices
    start = torch.tensor(offsets[:-1], device=x.device)
    return x[start[:, None] + picks]


def _kmeans_step_cpp(x: torch.Tensor, centroids: torch.Tensor, groups: torch.Tensor | None):
    index, dist, sums, sizes = torch.ops.fastdistill.kmeans_step(x, centroids if groups is not None else centroids[0],
                                                                groups, slack=kernel_slack(x))
    return index, dist, sums.view(centroids.shape), sizes.view(centroids.shape[:2])


def _relocate_empty(x: torch.Tensor, offsets: list[int], index: torch.Tensor, dist: torch.Tensor, sums: torch.Tensor,
                    sizes: torch.Tensor) -> None:
    """Give every empty cluster one of its group's points farthest from their centroid (in place)."""
    empty = (sizes == 0).nonzero().tolist()
    for g in sorted({g for g, _ in empty}):
        targets = [c for h, c in empty if h == g]
        lo = offsets[g]
        far = torch.argsort(dist[lo:offsets[g + 1]], descending=True, stable=True)[:len(targets)].tolist()
        for c, p in zip(targets, far, strict=True):
            row, old = lo + p, int(index[lo + p])
            sums[g, old] -= x[row].double()
            sizes[g, old] -= 1
            sums[g, c] = x[row].double()
            sizes[g, c] = 1
            index[row] = c
            dist[row] = 0.0

"""Torch backend of ``assign_modes`` (and its fallback without ``fastdistill._C``): per group, one chunked matmul and a
top-2, then the re-ranking rule of ``rerank_bound`` in float64."""

from __future__ import annotations

import math

import torch

from fastdistill.ops.rerank_bound import matmul_input_rounding, score_slack

_CHUNK_ELEMENTS = 1 << 23  # bound on the temporaries (elements per chunk)


def assign_modes_torch(points: torch.Tensor, centroids: torch.Tensor,
                       groups: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``assign_modes`` (inputs already checked) in torch: (index int64 [N], dist float32 [N])."""
    if groups is None:
        return _nearest(points, centroids)
    index = torch.empty(points.shape[0], dtype=torch.int64, device=points.device)
    dist = torch.empty(points.shape[0], dtype=torch.float32, device=points.device)
    order = torch.argsort(groups, stable=True)
    start = 0
    for g, count in enumerate(torch.bincount(groups, minlength=centroids.shape[0]).tolist()):
        if count:
            rows = order[start:start + count]
            index[rows], dist[rows] = _nearest(points[rows], centroids[g])
            start += count
    return index, dist


def _nearest(x: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest of K centroids c [K, D] for every row of x [n, D] (one group)."""
    n, d = x.shape
    k = c.shape[0]
    cf = c.float()
    c64 = c.double()
    cnorm = c64.square().sum(1)
    cmax = float(cnorm.max().sqrt())
    slack = score_slack(d, matmul_input_rounding())
    index = torch.empty(n, dtype=torch.int64, device=x.device)
    dist = torch.empty(n, dtype=torch.float32, device=x.device)
    step = max(1, _CHUNK_ELEMENTS // max(k, d))
    for lo in range(0, n, step):
        xc = x[lo:lo + step]
        scores = torch.addmm(cnorm.float(), xc.float(), cf.T, alpha=-2.0)  # ||c||^2 - 2 x.c
        if k == 1:
            best = torch.zeros(xc.shape[0], dtype=torch.int64, device=x.device)
        else:
            top, pos = scores.topk(2, dim=1, largest=False)
            best = pos[:, 0]
        exact = (xc.double() - c64[best]).square().sum(1)
        if k > 1:
            window = slack * (2 * cmax + exact.sqrt()).square()
            near = (top[:, 1].double() - top[:, 0].double()) <= window
            if bool(near.any()):
                rows = near.nonzero()[:, 0]
                best[rows], exact[rows] = _rerank(xc[rows], c64, scores[rows], top[rows, 0], window[rows])
        index[lo:lo + step] = best
        dist[lo:lo + step] = exact.float()
    return index, dist


def _rerank(x: torch.Tensor, c64: torch.Tensor, scores: torch.Tensor, low: torch.Tensor,
            window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Among centroids scoring within ``window`` of the best, the float64-nearest one (lowest index on ties)."""
    limit = low.double() + window
    exact = torch.cdist(x.double(), c64, compute_mode="donot_use_mm_for_euclid_dist").square()
    exact = torch.where(scores.double() <= limit[:, None], exact, math.inf)
    best = exact.argmin(1)  # first occurrence of the minimum: the lowest index among ties
    return best, exact.gather(1, best[:, None])[:, 0]

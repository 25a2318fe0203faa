"""Mode discovery: IPC modes per class in the generator's latent space (spec §1).

- ``kmeans`` (default): centroids of k-means with K = IPC on the class's real latents (``fastdistill.ops.kmeans``);
- ``gmm``: component means of a diagonal Gaussian mixture (scikit-learn), the best variant in the paper's Tab. 7;
- ``random``: IPC random real latents of the class.
``closest_real`` snaps every mode to its nearest real latent (``fastdistill.ops.assign_modes``). Mode k of class c
guides exactly one sample (row (c, k)).

Under torchrun the k-means batches of classes are dealt to the ranks (each skips the others' random draws, see
``kmeans_grouped(part=...)``), as are the classes of the per-class work (GMM, random picks, closest-real snapping);
every rank ends with all the modes, bit for bit those of one process.
"""

from __future__ import annotations

import math

import torch

from fastdistill.errors import FastDistillError
from fastdistill.pipelines.mgd.latents import LatentCache
from fastdistill.utils import distributed

METHODS = ("kmeans", "gmm", "random")


def _class_modes(points: torch.Tensor, k: int, method: str, seed: int) -> torch.Tensor:
    if method == "gmm":
        from sklearn.mixture import GaussianMixture

        gmm = GaussianMixture(n_components=k, covariance_type="diag", reg_covar=1e-4, random_state=seed)
        gmm.fit(points.double().numpy())
        return torch.from_numpy(gmm.means_).float()
    g = torch.Generator().manual_seed(seed)
    return points[torch.randperm(points.shape[0], generator=g)[:k]].clone()


def discover_modes(latents: torch.Tensor | LatentCache, labels: torch.Tensor, class_names: tuple[str, ...] | list[str],
                   ipc: int, method: str = "kmeans", closest_real: bool = False, seed: int = 0) -> torch.Tensor:
    """Modes [num_classes, ipc, *latent_shape] (fp32) from real ``latents`` [N, *latent_shape] (a tensor, or a
    memory-mapped :class:`LatentCache`) with ``labels`` [N] in memory. Rows are read class by class (k-means: one
    batch of consecutive classes at a time, see ``fastdistill.ops.kmeans_grouped``); the whole set is never
    converted to fp32."""
    if method not in METHODS:
        raise FastDistillError(f"--modes must be one of {', '.join(METHODS)}, got {method}")
    shape = latents.shape[1:]
    dim = math.prod(shape)
    labels = labels.long().cpu()
    take = latents.take if isinstance(latents, LatentCache) else latents.__getitem__
    counts = torch.bincount(labels, minlength=len(class_names))
    for name, n in zip(class_names, counts.tolist(), strict=True):
        if n < ipc:
            raise FastDistillError(f"--ipc {ipc} is larger than class {name!r} ({n} training images); lower --ipc")
    order = torch.argsort(labels, stable=True)
    offsets = [0, *torch.cumsum(counts, 0).tolist()]

    def rows(lo: int, hi: int) -> torch.Tensor:  # latents at positions lo:hi of the class-sorted order
        return take(order[lo:hi]).reshape(hi - lo, dim)

    w = distributed.world()
    if method == "kmeans":  # the same centroids as one batched kmeans(all latents, groups=labels)
        from fastdistill.ops import kmeans_grouped

        centroids = kmeans_grouped(rows, counts.tolist(), dim, ipc, seed=seed, part=(w.rank, w.size))
        if w.size > 1:  # each rank clustered its batches of classes (NaN elsewhere)
            mine = (~centroids[:, 0, 0].isnan()).nonzero().flatten().tolist()
            for share in distributed.gather({g: centroids[g] for g in mine}):
                for g, found in share.items():
                    centroids[g] = found
        if not closest_real:
            return centroids.reshape(len(class_names), ipc, *shape)
    out = {}
    for c in distributed.deal(range(len(class_names))):
        points = rows(offsets[c], offsets[c + 1]).float()
        modes = centroids[c] if method == "kmeans" else _class_modes(points, ipc, method, seed + c)
        if closest_real:
            from fastdistill.ops import assign_modes

            nearest, _ = assign_modes(modes, points)
            modes = points[nearest]
        out[c] = modes.reshape(ipc, *shape)
    for share in distributed.gather(out) if w.size > 1 else ():
        out.update(share)
    return torch.stack([out[c] for c in range(len(class_names))])

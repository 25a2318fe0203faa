"""Networks as flat parameter vectors, and many of them trained at once.

:class:`FlatModel` runs a module from one flat parameter vector through ``torch.func.functional_call`` (MTT's
``ReparamModule`` without a wrapper class). :func:`train_networks` trains a stack of K such vectors with SGD, one
``vmap``-ed step per minibatch on CUDA: the expert buffer, the transition networks of PDD+MTT and the conditioned
network pools of PDD+DM/DC/DSA all go through it instead of a Python loop over networks. On the CPU, vmap's batched
convolutions and group norm are slower than a loop (measured: ~3x for ConvNet-1 at 8x8), so the CPU path loops over
the networks with exactly the same draws (shuffles, DSA parameters); both paths give the same result.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad_and_value, vmap

from fastdistill.augment.dsa import DSAConfig, DSAParams, apply_dsa, sample_dsa_params
from fastdistill.errors import FastDistillError
from fastdistill.models.accuracy import Batches, count_correct
from fastdistill.utils import distributed

if TYPE_CHECKING:
    from fastdistill.methods.realdata import RealImages


class _Features(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.features(x)


class FlatModel:
    """A classifier evaluated from a flat parameter vector ``[P]`` (parameters in ``named_parameters`` order)."""

    def __init__(self, model: nn.Module):
        if any(True for _ in model.buffers()):
            raise FastDistillError("matching networks must not keep running statistics (batch norm); use convnet3 "
                                   "(instance norm) or convnet3-none")
        self.model = model.requires_grad_(False)
        self._features = _Features(model)
        named = list(model.named_parameters())
        self.names = [n for n, _ in named]
        self.shapes = [p.shape for _, p in named]
        self.numels = [p.numel() for _, p in named]
        self.numel = sum(self.numels)

    def flatten(self) -> torch.Tensor:
        """The template module's current parameters as one vector."""
        return torch.cat([p.detach().reshape(-1) for p in self.model.parameters()])

    def unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        return {n: t.view(s) for n, t, s in zip(self.names, flat.split(self.numels), self.shapes, strict=True)}

    def logits(self, flat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.model, self.unflatten(flat), (x,))

    def features(self, flat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The embedding before the classifier (``model.features``)."""
        params = {f"model.{k}": v for k, v in self.unflatten(flat).items()}
        return functional_call(self._features, params, (x,))

    def weight_names(self) -> list[str]:
        """Parameters with more than one dimension (conv and linear weights): the ones gradient matching compares."""
        return [n for n, s in zip(self.names, self.shapes, strict=True) if len(s) > 1]

    def random_init(self, generator: torch.Generator) -> torch.Tensor:
        """A fresh default (PyTorch) initialisation, seeded from ``generator``; the global RNG is left untouched."""
        seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
        device = next(self.model.parameters()).device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            for module in self.model.modules():
                if hasattr(module, "reset_parameters"):
                    module.reset_parameters()
        return self.flatten()

    def random_inits(self, k: int, generator: torch.Generator) -> torch.Tensor:
        return torch.stack([self.random_init(generator) for _ in range(k)])


def batched_by_default(device: torch.device) -> bool:
    """vmap over networks / classes on CUDA, a Python loop on the CPU (see the module docstring)."""
    return device.type == "cuda"


def sgd_update(p: torch.Tensor, g: torch.Tensor, buf: torch.Tensor | None, lr: float, momentum: float,
               weight_decay: float) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One ``torch.optim.SGD`` step (weight decay added to the gradient, then momentum) on stacked vectors."""
    if weight_decay:
        g = g + weight_decay * p
    if momentum:
        buf = g if buf is None else momentum * buf + g
        g = buf
    return p - lr * g, buf


def train_networks(fm: FlatModel, flats: torch.Tensor, x: torch.Tensor | RealImages, y: torch.Tensor, epochs: int,
                   *, lr: float, generator: torch.Generator, momentum: float = 0.0, weight_decay: float = 0.0,
                   batch_size: int = 256, dsa: DSAConfig | None = None, halve_at: bool = False,
                   record: bool = False, chunk: int | None = None,
                   on_epoch: Callable[[int], None] | None = None, batched: bool | None = None,
                   spread: bool = False) -> torch.Tensor:
    """Train K networks ``flats [K, P]`` on ``(x, y)`` for ``epochs`` epochs, every network on its own shuffle and its
    own per-sample DSA draws, one vmapped step per minibatch. ``x`` is a normalized float tensor or real images
    converted batch by batch (:class:`~fastdistill.methods.realdata.RealImages`).

    ``halve_at`` multiplies the LR by 0.1 from epoch ``epochs // 2`` (the DC evaluation schedule). Returns the final
    parameters ``[K, P]``, or with ``record`` the trajectory ``[K, epochs + 1, P]`` (start and after every epoch,
    on the CPU). ``chunk`` bounds how many networks train at once (memory: activations of ``chunk x batch`` images);
    ``on_epoch(k)`` is called after every epoch of a chunk of ``k`` networks. ``batched`` picks vmap (default on CUDA)
    or a loop over networks (default on the CPU); both use the same random draws. ``spread``: under torchrun each
    rank trains a contiguous block of every chunk's networks (making every draw, applying only its own) and the
    trained networks (or trajectories) are gathered, so every rank returns what one process trains.
    """
    batched = batched_by_default(flats.device) if batched is None else batched
    k_total = flats.shape[0]
    chunk = chunk or k_total
    outs = []
    for start in range(0, k_total, chunk):
        outs.append(_train_chunk(fm, flats[start:start + chunk], x, y, epochs, lr, generator, momentum,
                                 weight_decay, batch_size, dsa, halve_at, record, on_epoch, batched, spread))
    return torch.cat(outs)


def _train_chunk(fm: FlatModel, flats: torch.Tensor, x: torch.Tensor | RealImages, y: torch.Tensor, epochs: int,
                 lr: float, generator: torch.Generator, momentum: float, weight_decay: float, batch_size: int,
                 dsa: DSAConfig | None, halve_at: bool, record: bool,
                 on_epoch: Callable[[int], None] | None, batched: bool, spread: bool = False) -> torch.Tensor:
    def loss(flat: torch.Tensor, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(fm.logits(flat, xb), yb)

    one = grad_and_value(loss)
    many = vmap(one)

    def step(p: torch.Tensor, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        if batched:
            return many(p, xb, yb)[0]
        return torch.stack([one(p[i], xb[i], yb[i])[0] for i in range(p.shape[0])])
    k, n = flats.shape[0], x.shape[0]
    num_batches = math.ceil(n / min(batch_size, n))
    mine = distributed.block(k) if spread else range(k)  # the networks this rank trains
    p, buf = flats[mine.start:mine.stop].detach().clone(), None
    trajectory = [p.cpu()] if record else []
    for epoch in range(epochs):
        rate = lr * (0.1 if halve_at and epoch >= epochs // 2 else 1.0)
        perm = torch.rand(k, n, generator=generator, device=generator.device).argsort(1)
        for idx in torch.tensor_split(perm, num_batches, dim=1):
            b = idx.shape[1]
            if dsa is not None:  # drawn for all K networks, whichever this rank trains
                params = sample_dsa_params(k * b, x.shape[-2:], generator=generator, config=dsa)
            if not mine:
                continue
            idx = idx[mine.start:mine.stop]
            xb, yb = x[idx], y[idx]  # [K, b, ...]
            if dsa is not None:
                if len(mine) < k:
                    params = _take_rows(params, mine.start * b, mine.stop * b)
                xb = apply_dsa(xb.flatten(0, 1), params).view_as(xb)
            g = step(p, xb, yb)
            p, buf = sgd_update(p, g, buf, rate, momentum, weight_decay)
        if record:
            trajectory.append(p.cpu())
        if on_epoch is not None:
            on_epoch(k)
    out = torch.stack(trajectory, 1) if record else p
    if spread and distributed.world().size > 1:
        out = torch.cat([share.to(out.device) for share in distributed.gather(out.cpu())])
    return out


def _take_rows(params: DSAParams, lo: int, hi: int) -> DSAParams:
    """The draws of images ``lo:hi`` of a per-image DSA draw."""
    return DSAParams(params.groups, {k: v[lo:hi] for k, v in params.values.items()}, params.config, params.size)


@torch.no_grad()
def stacked_accuracy(fm: FlatModel, flats: torch.Tensor, batches: Batches,
                     prepare: Callable[[torch.Tensor], torch.Tensor] = lambda x: x) -> torch.Tensor:
    """Top-1 accuracy (percent) of each of K networks on ``prepare(images)`` of ``batches`` of ``(images, labels)``
    (e.g. :func:`~fastdistill.models.accuracy.split_batches`): ``[K]``."""
    logits = vmap(fm.logits, in_dims=(0, None))
    correct, total = count_correct(lambda xb: logits(flats, prepare(xb)), batches)
    return 100.0 * correct.float() / max(1, total)

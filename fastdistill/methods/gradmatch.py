"""DC (Zhao et al., ICLR 2021) and DSA (Zhao & Bilen, ICML 2021): layer-wise gradient matching.

For every class c, the gradients of CE w.r.t. each weight tensor (conv and linear; biases and norm parameters
contribute 0) on a real batch and on the synthetic images of c are compared with

    d(G_s, G_r) = Σ_rows (1 − ⟨g_s, g_r⟩ / (‖g_s‖ ‖g_r‖ + 1e-6)),  rows = output units (G reshaped to [out, −1]),

summed over layers and classes. DSA applies siamese augmentation (one draw per class, shared by real and synthetic).
Each iteration starts a network (random, or a conditioned pool member under PDD), then ``outer_loop`` times: one
image step, then ``inner_loop`` epochs of training the network on the synthetic set (SGD ``lr_net``).
The reference computes the per-class gradients in a Python loop over classes; on CUDA ``vmap`` computes them for
all classes at once (one real and one synthetic pass).

Under torchrun each rank matches a contiguous block of classes (every rank makes all the random draws, reads and
augments only its classes); the image gradients are summed over the ranks, and the network's inner-loop training on
the whole synthetic set runs on every rank from the same images and draws, so the ranks stay identical.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

from fastdistill.methods.base import PooledMethod
from fastdistill.methods.functional import FlatModel, batched_by_default, train_networks
from fastdistill.methods.siamese import siamese_per_class
from fastdistill.methods.synset import StageImages
from fastdistill.utils import distributed

# DC's (outer_loop, inner_loop) by images per class (DatasetCondensation utils.get_loops).
LOOPS = {1: (1, 1), 10: (10, 50), 20: (20, 25), 30: (30, 20), 40: (40, 15), 50: (50, 10)}


def default_loops(ipc: int) -> tuple[int, int]:
    """DC's loops for ``ipc``; IPCs outside the table take the nearest listed one."""
    return LOOPS[min(LOOPS, key=lambda k: (abs(k - ipc), k))]


def gradient_distance(syn_grads: list[torch.Tensor], real_grads: list[torch.Tensor]) -> torch.Tensor:
    """DC's distance summed over layers and classes, for per-class gradients ``[C, out, ...]`` of weight tensors."""
    total = syn_grads[0].new_zeros(())
    for gs, gr in zip(syn_grads, real_grads, strict=True):
        gs, gr = gs.flatten(2), gr.flatten(2)
        cos = (gs * gr).sum(-1) / (gs.norm(dim=-1) * gr.norm(dim=-1) + 1e-6)
        total = total + (1 - cos).sum()
    return total


def per_class_weight_grads(fm: FlatModel, flat: torch.Tensor, x: torch.Tensor,
                           batched: bool | None = None, first_class: int = 0) -> list[torch.Tensor]:
    """∇_W CE(f(x[c]), c) for every class c of a class-major batch ``x [C, n, ...]`` and every weight tensor W:
    a list of ``[C, *W.shape]`` (differentiable in ``x``). ``batched``: one vmapped pass over classes (default on
    CUDA) or a loop over classes (default on the CPU, where vmap is slower). ``first_class``: the label of ``x[0]``
    (``x`` holds classes ``first_class ...``)."""
    params = fm.unflatten(flat)
    names = fm.weight_names()
    weights = {n: params[n] for n in names}
    rest = {n: p for n, p in params.items() if n not in weights}

    def loss(w: dict[str, torch.Tensor], xc: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        logits = functional_call(fm.model, {**rest, **w}, (xc,))
        return F.cross_entropy(logits, c.expand(xc.shape[0]))

    classes = torch.arange(first_class, first_class + x.shape[0], device=x.device)
    if batched_by_default(x.device) if batched is None else batched:
        grads = vmap(grad(loss), in_dims=(None, 0, 0))(weights, x, classes)
        return [grads[n] for n in names]
    per_class = [grad(loss)(weights, x[c], classes[c]) for c in range(x.shape[0])]
    return [torch.stack([g[n] for g in per_class]) for n in names]


class GradientMatching(PooledMethod):
    """DC when ``dsa`` is None, DSA otherwise (``name`` follows ``cfg.method``)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.name = self.cfg.method

    def step(self, images: StageImages) -> float:
        cfg = self.cfg
        flat = self.network()
        total = 0.0
        mine = distributed.block(images.num_classes)
        for outer in range(cfg.outer_loop):
            real = self.data.per_class(cfg.batch_real, self.generator, mine)
            syn = images.union()[mine.start:mine.stop]
            if self.dsa is not None:
                real, syn = siamese_per_class(real, syn, self.generator, self.dsa, images.num_classes, mine)
            real_grads = [g.detach() for g in per_class_weight_grads(self.fm, flat, real, first_class=mine.start)]
            loss = gradient_distance(per_class_weight_grads(self.fm, flat, syn, first_class=mine.start), real_grads)
            images.zero_grad()
            loss.backward()
            images.sum_grads()
            images.step()
            total += float(distributed.sum_shares_(loss.detach()))
            if outer == cfg.outer_loop - 1:
                break
            x, y = images.flat_union()
            flat = train_networks(self.fm, flat[None], x.detach(), y, cfg.inner_loop, lr=cfg.lr_net,
                                  batch_size=cfg.batch_train, dsa=self.dsa, generator=self.generator)[0]
        return total / cfg.outer_loop

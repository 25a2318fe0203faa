"""The upstream loops, one class (or one network) at a time, as DatasetCondensation and mtt-distillation run them.

They are the oracles of the tests and the baselines of ``benchmarks/bench_pdd_bases.py``: same maths as the batched
methods, none of the batching. DSA draws come from ``fastdistill.augment.dsa`` (one ``shared`` draw per class and
call, as the reference's per-class seed).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fastdistill.augment.dsa import DSAConfig, apply_dsa, sample_dsa_params
from fastdistill.methods.functional import FlatModel


def dm_loss_reference(net: nn.Module, real: list[torch.Tensor], syn: list[torch.Tensor]) -> torch.Tensor:
    """Σ_c ‖mean ψ(real_c) − mean ψ(syn_c)‖², one class at a time (DatasetCondensation main_DM.py)."""
    loss = syn[0].new_zeros(())
    for c, real_c in enumerate(real):
        out_real = net.features(real_c).detach()
        out_syn = net.features(syn[c])
        loss = loss + ((out_real.mean(0) - out_syn.mean(0)) ** 2).sum()
    return loss


def distance_wb(gs: torch.Tensor, gr: torch.Tensor) -> torch.Tensor:
    """DC's per-layer distance: rows of the gradient (output units), 1 − cosine, summed; 1-D tensors give 0."""
    if gs.dim() == 1:
        return gs.new_zeros(())
    gs, gr = gs.reshape(gs.shape[0], -1), gr.reshape(gr.shape[0], -1)
    return (1 - (gs * gr).sum(-1) / (gs.norm(dim=-1) * gr.norm(dim=-1) + 1e-6)).sum()


def dc_match_reference(net: nn.Module, real: list[torch.Tensor], syn: list[torch.Tensor]) -> torch.Tensor:
    """Σ_c Σ_layers distance_wb(∇CE(syn_c), ∇CE(real_c)) over every parameter, one class at a time (DC main.py)."""
    params = list(net.parameters())
    loss = syn[0].new_zeros(())
    for c, (real_c, syn_c) in enumerate(zip(real, syn, strict=True)):
        lab_real = torch.full((real_c.shape[0],), c, device=real_c.device)
        gw_real = [g.detach() for g in torch.autograd.grad(F.cross_entropy(net(real_c), lab_real), params)]
        lab_syn = torch.full((syn_c.shape[0],), c, device=syn_c.device)
        gw_syn = torch.autograd.grad(F.cross_entropy(net(syn_c), lab_syn), params, create_graph=True)
        loss = loss + sum(distance_wb(a, b) for a, b in zip(gw_syn, gw_real, strict=True))
    return loss


def _siamese(real_c: torch.Tensor, syn_c: torch.Tensor, dsa: DSAConfig | None,
             g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    if dsa is None:
        return real_c, syn_c
    params = sample_dsa_params(1, real_c.shape[-2:], generator=g, config=dsa, shared=True)
    return apply_dsa(real_c, params), apply_dsa(syn_c, params)


def dm_iteration_reference(net: nn.Module, real: list[torch.Tensor], syn: torch.Tensor,
                           optimizer: torch.optim.Optimizer, dsa: DSAConfig | None, g: torch.Generator) -> float:
    """One DM iteration: per class, siamese DSA, embed, accumulate; one image step."""
    pairs = [_siamese(real_c, syn[c], dsa, g) for c, real_c in enumerate(real)]
    loss = dm_loss_reference(net, [r for r, _ in pairs], [s for _, s in pairs])
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def dc_iteration_reference(net: nn.Module, real: list[torch.Tensor], syn: torch.Tensor,
                           optimizer: torch.optim.Optimizer, dsa: DSAConfig | None, g: torch.Generator,
                           outer_loop: int, inner_loop: int, lr_net: float, batch_train: int = 256) -> float:
    """One DC/DSA iteration: ``outer_loop`` x [per-class matching, image step, ``inner_loop`` epochs on syn]."""
    params = list(net.parameters())
    net_opt = torch.optim.SGD(params, lr=lr_net)
    total = 0.0
    for outer in range(outer_loop):
        pairs = [_siamese(real_c, syn[c], dsa, g) for c, real_c in enumerate(real)]
        loss = dc_match_reference(net, [r for r, _ in pairs], [s for _, s in pairs])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += float(loss.detach())
        if outer == outer_loop - 1:
            break
        x = syn.detach().flatten(0, 1)
        y = torch.arange(syn.shape[0], device=x.device).repeat_interleave(syn.shape[1])
        for _ in range(inner_loop):
            perm = torch.randperm(x.shape[0], generator=g, device=g.device)
            for idx in perm.split(batch_train):
                xb = x[idx]
                if dsa is not None:
                    xb = apply_dsa(xb, sample_dsa_params(xb.shape[0], xb.shape[-2:], generator=g, config=dsa))
                net_opt.zero_grad()
                F.cross_entropy(net(xb), y[idx]).backward()
                net_opt.step()
    return total / outer_loop


def mtt_iteration_reference(fm: FlatModel, start: torch.Tensor, target: torch.Tensor, syn: torch.Tensor,
                            y: torch.Tensor, syn_lr: torch.Tensor, syn_steps: int, batch_syn: int,
                            optimizers: list[torch.optim.Optimizer], dsa: DSAConfig | None,
                            g: torch.Generator) -> float:
    """One MTT iteration as distill.py: a list of student parameter vectors, per-sample DSA, full graph."""
    student = [start.detach().clone().requires_grad_(True)]
    x_all = syn.flatten(0, 1)
    chunks: list[torch.Tensor] = []
    for _ in range(syn_steps):
        if not chunks:
            chunks = list(torch.randperm(x_all.shape[0], generator=g, device=g.device).split(batch_syn))
        idx = chunks.pop()
        x = x_all[idx]
        if dsa is not None:
            x = apply_dsa(x, sample_dsa_params(x.shape[0], x.shape[-2:], generator=g, config=dsa))
        ce = F.cross_entropy(fm.logits(student[-1], x), y[idx])
        grad = torch.autograd.grad(ce, student[-1], create_graph=True)[0]
        student.append(student[-1] - syn_lr * grad)
    n = start.numel()
    loss = F.mse_loss(student[-1], target, reduction="sum") / n
    loss = loss / (F.mse_loss(start, target, reduction="sum") / n)
    for opt in optimizers:
        opt.zero_grad()
    loss.backward()
    for opt in optimizers:
        opt.step()
    return float(loss.detach())

"""MTT (Cazenavette et al., CVPR 2022): match a segment of an expert's training trajectory.

Per iteration: expert e and start epoch s ~ U{0..T−1}; θ_0 = θ*_{e,s}; N unrolled SGD steps on minibatches of the
synthetic union, θ_{k+1} = θ_k − α ∇_θ CE(f(A(X_{b_k}); θ_k)) with a learnable α; loss
L = ‖θ_N − θ*_{e,s+M}‖² / ‖θ*_{e,s} − θ*_{e,s+M}‖²; SGD (momentum 0.5) on the new images and on α.

Memory. ``full`` keeps the autograd graph of the whole unroll (the reference): memory grows linearly with
``syn_steps × batch_syn`` (every step's activations and its double-backward graph; ≈ 2.8 MiB per image-step for
ConvNet-3 at 32², spec §7.1). ``lean`` stores only θ_0..θ_N (``syn_steps × P`` floats) and the minibatch plan, and
computes the same meta-gradient by reverse accumulation, recomputing one step's graph at a time: memory grows
linearly with ``syn_steps × P`` plus one step's graph (``batch_syn`` images), for about one extra forward/backward per
step. Both give the same gradient up to float rounding (tested).

Under torchrun every inner step's minibatch is split over the ranks (data parallel): each rank computes the gradient
of its part (summed, divided by the whole minibatch) at the replicated θ_k, the parts are summed into the step, and
the meta-gradient flows back the same way (the θ-adjoint's per-part contributions are summed over the ranks; each
rank's image gradient covers its parts and these are summed). θ, α and the loss are the same on every rank; the images
equal one process's up to float rounding (the sums are grouped differently).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from fastdistill.augment.dsa import DSAConfig, DSAParams, apply_dsa, sample_dsa_params
from fastdistill.errors import FastDistillError
from fastdistill.methods.base import Method
from fastdistill.methods.buffer import Buffer, regenerate
from fastdistill.methods.functional import FlatModel
from fastdistill.methods.synset import StageImages
from fastdistill.utils import distributed
from fastdistill.utils.io import torch_load, torch_save


@dataclass
class Step:
    """One inner step: which union images, and their (per-sample) DSA draw."""

    index: torch.Tensor
    aug: DSAParams | None


def plan_steps(n: int, steps: int, batch: int, generator: torch.Generator, dsa: DSAConfig | None,
               size: tuple[int, int]) -> list[Step]:
    """The reference's minibatch order (chunks of a permutation, reshuffled when used up), drawn up front."""
    plan: list[Step] = []
    chunks: list[torch.Tensor] = []
    for _ in range(steps):
        if not chunks:
            perm = torch.randperm(n, generator=generator, device=generator.device)
            chunks = list(torch.split(perm, batch))
        index = chunks.pop()
        aug = None if dsa is None else sample_dsa_params(index.shape[0], size, generator=generator, config=dsa)
        plan.append(Step(index, aug))
    return plan


def _inner_grad(fm: FlatModel, theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor, step: Step,
                create_graph: bool) -> torch.Tensor:
    if distributed.world().size > 1:
        return _shared_inner_grad(fm, theta, x, y, step, create_graph)
    xb = x[step.index]
    if step.aug is not None:
        xb = apply_dsa(xb, step.aug)
    loss = F.cross_entropy(fm.logits(theta, xb), y[step.index])
    return torch.autograd.grad(loss, theta, create_graph=create_graph)[0]


def _shared_inner_grad(fm: FlatModel, theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor, step: Step,
                       create_graph: bool) -> torch.Tensor:
    """``_inner_grad`` with the minibatch split over the torchrun ranks (a contiguous block of it each)."""
    mine = distributed.block(step.index.shape[0])
    index = step.index[mine.start:mine.stop]
    theta_in = distributed.sum_backward(theta)
    xb = x[index]
    if step.aug is not None:
        values = {k: v[mine.start:mine.stop] for k, v in step.aug.values.items()}
        xb = apply_dsa(xb, DSAParams(step.aug.groups, values, step.aug.config, step.aug.size))
    loss = F.cross_entropy(fm.logits(theta_in, xb), y[index], reduction="sum") / step.index.shape[0]
    return distributed.sum_forward(torch.autograd.grad(loss, theta_in, create_graph=create_graph)[0])


def unroll(fm: FlatModel, start: torch.Tensor, x: torch.Tensor, y: torch.Tensor, lr: torch.Tensor,
           plan: list[Step]) -> torch.Tensor:
    """θ_N with the full graph to ``x`` and ``lr``."""
    theta = start.detach().requires_grad_(True)
    for step in plan:
        theta = theta - lr * _inner_grad(fm, theta, x, y, step, create_graph=True)
    return theta


def param_loss(theta_n: torch.Tensor, start: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """‖θ_N − θ*_{s+M}‖² / ‖θ*_s − θ*_{s+M}‖²."""
    return (theta_n - target).pow(2).sum() / (start - target).pow(2).sum()


def lean_meta_gradient(fm: FlatModel, start: torch.Tensor, target: torch.Tensor, images: StageImages,
                       lr: torch.Tensor, plan: list[Step]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, dL/d images.new, dL/d lr) by reverse accumulation over stored θ_k, one step's graph at a time."""
    x0, y = images.flat_union()
    x0 = x0.detach()
    thetas = [start.detach()]
    for step in plan:
        theta = thetas[-1].requires_grad_(True)
        g = _inner_grad(fm, theta, x0, y, step, create_graph=False)
        thetas.append((theta - lr.detach() * g).detach())
        theta.requires_grad_(False)
    denom = (start - target).pow(2).sum()
    loss = (thetas[-1] - target).pow(2).sum() / denom
    adjoint = 2 * (thetas[-1] - target) / denom
    grad_new = torch.zeros_like(images.new)
    grad_lr = torch.zeros_like(lr)
    for k in reversed(range(len(plan))):
        theta = thetas[k].requires_grad_(True)
        x, _ = images.flat_union()
        nxt = theta - lr * _inner_grad(fm, theta, x, y, plan[k], create_graph=True)
        adjoint, g_new, g_lr = torch.autograd.grad(nxt, [theta, images.new, lr], grad_outputs=adjoint,
                                                   allow_unused=True, materialize_grads=True)
        grad_new += g_new
        grad_lr += g_lr
        theta.requires_grad_(False)
    return loss.detach(), grad_new, grad_lr


class MTT(Method):
    name = "mtt"

    def __init__(self, *args, buffer: Buffer, **kwargs):
        super().__init__(*args, **kwargs)
        self.trajectories = buffer.trajectories.to(self.data.x.device)
        self.real_batch = int(buffer.meta.get("batch_size", 256))
        self.trajectories_file: str | None = None
        needed = self.cfg.max_start_epoch + self.cfg.expert_epochs
        if buffer.epochs < needed:
            raise FastDistillError(f"the buffer holds {buffer.epochs} epochs per expert; max_start_epoch + "
                                   f"expert_epochs = {needed} need at least that many (rebuild it with --epochs "
                                   f"{needed} or lower --max-start-epoch)")
        self.syn_lr = torch.tensor(self.cfg.lr_teacher, device=self.data.x.device, requires_grad=True)
        self.lr_optimizer = torch.optim.SGD([self.syn_lr], lr=self.cfg.lr_lr, momentum=0.5)

    def start_stage(self, stage: int) -> None:
        """The reference re-initialises the learnable LR (and its optimizer) at every stage."""
        with torch.no_grad():
            self.syn_lr.fill_(self.cfg.lr_teacher)
        self.lr_optimizer = torch.optim.SGD([self.syn_lr], lr=self.cfg.lr_lr, momentum=0.5)

    def step(self, images: StageImages) -> float:
        cfg, g = self.cfg, self.generator
        experts, length = self.trajectories.shape[:2]
        e = int(torch.randint(experts, (1,), generator=g, device=g.device))
        s = int(torch.randint(min(cfg.max_start_epoch, length - 1 - cfg.expert_epochs), (1,), generator=g,
                              device=g.device))
        start, target = self.trajectories[e, s], self.trajectories[e, s + cfg.expert_epochs]
        x, y = images.flat_union()
        plan = plan_steps(x.shape[0], cfg.syn_steps, cfg.batch_syn or x.shape[0], g, self.dsa, tuple(x.shape[-2:]))
        images.zero_grad()
        self.lr_optimizer.zero_grad(set_to_none=True)
        if cfg.memory == "lean":
            loss, images.new.grad, self.syn_lr.grad = lean_meta_gradient(self.fm, start, target, images,
                                                                         self.syn_lr, plan)
        else:
            loss = param_loss(unroll(self.fm, start, x, y, self.syn_lr, plan), start, target)
            loss.backward()
        images.sum_grads()  # each rank's share of the image gradient (α's is the same on every rank)
        images.step()
        self.lr_optimizer.step()
        return float(loss.detach())

    def transition(self, stage: int, x: torch.Tensor, y: torch.Tensor, progress: bool) -> None:
        """PDD+MTT: every expert trains on the union from slot 0 of its trajectory (lr = the learned α), then on real
        data; the recorded run replaces the buffer for the next stage."""
        trajectories = regenerate(self.fm, self.trajectories[:, 0], x, y, self.data, self.cfg,
                                  lr_union=float(self.syn_lr.detach()), real_batch=self.real_batch,
                                  generator=self.generator, dsa=self.dsa, progress=progress)
        self.trajectories_file = f"trajectories_stage{stage + 1}.pt"
        if distributed.is_main():
            torch_save(self.workdir / self.trajectories_file, trajectories)
        self.trajectories = trajectories.to(self.data.x.device)

    def eval_lr(self) -> float:
        return float(self.syn_lr.detach())

    def state_dict(self) -> dict:
        """Small state only; regenerated trajectories are files in ``workdir`` written at each transition."""
        return {"syn_lr": self.syn_lr.detach().clone(), "lr_optimizer": self.lr_optimizer.state_dict(),
                "trajectories_file": self.trajectories_file}

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            self.syn_lr.copy_(state["syn_lr"])
        self.lr_optimizer.load_state_dict(state["lr_optimizer"])
        self.trajectories_file = state["trajectories_file"]
        if self.trajectories_file is not None:
            how = f"delete {self.workdir / 'checkpoint.pt'} to restart the run"
            self.trajectories = torch_load(self.workdir / self.trajectories_file, how).to(self.data.x.device)

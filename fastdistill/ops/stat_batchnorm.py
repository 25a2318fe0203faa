"""Eval-mode BatchNorm2d that also returns the BN-statistic matching loss of its input, and a model-wide swap.

``StatBatchNorm2d`` replaces a frozen teacher's ``nn.BatchNorm2d``: one pass over x computes the normalised output
(with the running statistics, as in eval mode) and the per-group batch statistics; the backward adds the loss gradient
to BN's own input gradient in the same pass:
    dx = dy * w / sqrt(rv + eps) + grad_g * (coef_mu + coef_var * (x - mean_g))   (see ``bn_stat_loss``).
``bn_stat_matching(model)`` swaps every BatchNorm2d of a model for it, collects the per-layer losses with the
first-layer multiplier, and undoes the swap on ``restore()`` / context exit.

    with bn_stat_matching(teacher, groups=G, first_multiplier=10.0) as bn:
        logits = teacher(x)              # x: [G * n, C, H, W], group g = rows g*n ... (g+1)*n - 1
        loss_bn = bn.loss()              # Tensor[G]: sum_l w_l (||mean_l,g - rm_l|| + ||var_l,g - rv_l||)
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from fastdistill.errors import FastDistillError
from fastdistill.ops.bn_stat_loss import check_bn_input, fp32_statistic
from fastdistill.ops.bn_stat_loss_torch import torch_bn_stat_loss_backward, torch_bn_stat_loss_forward
from fastdistill.ops.bn_stat_loss_triton import bn_stat_loss_backward, bn_stat_loss_forward
from fastdistill.ops.registry import backend_for


class _BNConstants(NamedTuple):
    """fp32 contiguous [C] tensors of a frozen BatchNorm2d (y = x * scale + shift) on one device."""

    running_mean: torch.Tensor
    running_var: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor
    scale: torch.Tensor  # weight / sqrt(running_var + eps)
    shift: torch.Tensor  # bias - running_mean * scale
    eps: float


def _bn_constants(x: torch.Tensor, running_mean: torch.Tensor, running_var: torch.Tensor, weight: torch.Tensor,
                  bias: torch.Tensor, eps: float, op: str) -> _BNConstants:
    c = x.shape[1]
    rm, rv, w, b = (fp32_statistic(t.detach(), c, x.device, name, op) for name, t in
                    (("running_mean", running_mean), ("running_var", running_var), ("weight", weight), ("bias", bias)))
    scale = w / torch.sqrt(rv + eps)
    return _BNConstants(rm, rv, w, b, scale, b - rm * scale, float(eps))


class _LayerCache(NamedTuple):
    """What a StatBatchNorm2d derives from its tensors for one device, and the versions it was derived from."""

    device: torch.device
    sources: tuple[torch.Tensor, ...]  # running_mean, running_var, weight, bias (the module's own tensors)
    versions: tuple[int, ...]
    constants: _BNConstants
    backend: str


class StatBatchNormFunction(torch.autograd.Function):
    """(y, loss [G]) = (eval BatchNorm(x), bn_stat_loss(x)); one backward pass gives dx for both outputs.

    Triton: one launch for y and the partial statistics, one for the loss and coefficients, one backward launch.
    y and dx have x's dtype (bf16 under autocast); statistics, loss and coefficients are fp32.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, k: _BNConstants, groups: int, backend: str):
        if backend == "triton":
            loss, stats, y = bn_stat_loss_forward(x, k.running_mean, k.running_var, groups, (k.scale, k.shift))
        else:
            loss, stats, _ = torch_bn_stat_loss_forward(x, k.running_mean, k.running_var, groups)
            y = F.batch_norm(x, k.running_mean, k.running_var, k.weight, k.bias, False, 0.0, k.eps)
        ctx.save_for_backward(x, stats)
        ctx.scale, ctx.backend = k.scale, backend
        return y, loss

    @staticmethod
    def backward(ctx, dy: torch.Tensor, grad_loss: torch.Tensor):
        x, stats = ctx.saved_tensors
        impl = bn_stat_loss_backward if ctx.backend == "triton" else torch_bn_stat_loss_backward
        return impl(x, grad_loss, stats, dy, ctx.scale), None, None, None


def stat_batch_norm(x: torch.Tensor, running_mean: torch.Tensor, running_var: torch.Tensor, weight: torch.Tensor,
                    bias: torch.Tensor, eps: float = 1e-5, groups: int = 1,
                    backend: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode batch norm of x and the per-group statistic loss of x: (y like x, fp32 Tensor[groups]).

    Differentiable in x only (the BN parameters and statistics are constants). Same input rules as ``bn_stat_loss``.
    """
    check_bn_input(x, groups, "stat_batch_norm")
    k = _bn_constants(x, running_mean, running_var, weight, bias, eps, "stat_batch_norm")
    return StatBatchNormFunction.apply(x, k, groups, backend_for("bn_stat_loss", x.device, backend))


class StatBatchNorm2d(nn.Module):
    """A frozen BatchNorm2d (running statistics, no parameter gradients) that records its input's statistic loss.

    Built from an ``nn.BatchNorm2d`` whose parameters and buffers it shares (same tensors, same state-dict names).
    After each forward, ``last_loss`` is the fp32 Tensor[groups] of ``bn_stat_loss`` of the input.
    At its first forward on a device the layer derives its fp32 constants (statistics, scale, shift) and picks its
    backend; it derives them again after ``.to()`` / ``.cuda()`` / ``.float()`` or an in-place change of a BN tensor
    (not one made through ``.data``), so a forward reads no device value and makes no extra launch for them.
    """

    def __init__(self, bn: nn.BatchNorm2d, groups: int = 1, backend: str | None = None):
        super().__init__()
        if bn.running_mean is None or bn.running_var is None:
            raise FastDistillError("StatBatchNorm2d needs a BatchNorm2d with running statistics "
                                   "(track_running_stats=True)")
        self.num_features, self.eps = bn.num_features, bn.eps
        self.weight, self.bias = bn.weight, bn.bias
        self.register_buffer("running_mean", bn.running_mean)
        self.register_buffer("running_var", bn.running_var)
        self.register_buffer("num_batches_tracked", bn.num_batches_tracked)
        if bn.weight is None:  # affine=False: the identity affine map, kept with the module across .to(device)
            self.register_buffer("_unit_weight", torch.ones_like(bn.running_var), persistent=False)
            self.register_buffer("_zero_bias", torch.zeros_like(bn.running_mean), persistent=False)
        self.groups, self.backend = groups, backend
        self.train(bn.training)
        self.last_loss: torch.Tensor | None = None
        self._cache: _LayerCache | None = None

    def _apply(self, fn, recurse=True):
        self._cache = None  # .to() / .cuda() / .float() may replace the tensors the cache was derived from
        return super()._apply(fn, recurse)

    def _layer_cache(self, x: torch.Tensor) -> _LayerCache:
        cache = self._cache
        sources = (self.running_mean, self.running_var,
                   self.weight if self.weight is not None else self._unit_weight,
                   self.bias if self.bias is not None else self._zero_bias)
        if torch.compiler.is_compiling():
            # torch.compile cannot read tensor versions (a graph break): the constants become a few [C] ops of the
            # graph instead, derived from the current tensors at every call; only the backend choice is reused
            backend = (cache.backend if cache is not None and cache.device == x.device
                       else backend_for("bn_stat_loss", x.device, self.backend))
            return _LayerCache(x.device, sources, (), _bn_constants(x, *sources, self.eps, "StatBatchNorm2d"), backend)
        if (cache is not None and cache.device == x.device
                and tuple(t._version for t in cache.sources) == cache.versions):
            return cache
        versions = tuple(t._version for t in sources)
        constants = _bn_constants(x, *sources, self.eps, "StatBatchNorm2d")
        self._cache = _LayerCache(x.device, sources, versions, constants,
                                  backend_for("bn_stat_loss", x.device, self.backend))
        return self._cache

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            raise FastDistillError("StatBatchNorm2d normalises with the running statistics of a frozen teacher: "
                                   "call model.eval() first")
        if check_bn_input(x, self.groups, "StatBatchNorm2d") != self.num_features:
            raise FastDistillError(f"StatBatchNorm2d: x has {x.shape[1]} channels, the layer {self.num_features}")
        cache = self._layer_cache(x)
        if torch.is_grad_enabled() and (cache.sources[2].requires_grad or cache.sources[3].requires_grad):
            raise FastDistillError("StatBatchNorm2d computes no gradient for BN weights: freeze the teacher "
                                   "(model.requires_grad_(False))")
        y, loss = StatBatchNormFunction.apply(x, cache.constants, self.groups, cache.backend)
        self.__dict__["last_loss"] = loss  # a plain attribute: skips nn.Module.__setattr__'s registry checks
        return y

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, groups={self.groups}"


class BNStatMatching:
    """The swapped model's BN layers; ``loss()`` is the weighted per-group sum of their statistic losses.

    Create it with ``bn_stat_matching``. Use as a context manager, or call ``restore()`` to put the original
    BatchNorm2d modules back.
    """

    def __init__(self, model: nn.Module, groups: int, first_multiplier: float, backend: str | None):
        if isinstance(model, nn.BatchNorm2d):
            raise FastDistillError("bn_stat_matching takes a model containing BatchNorm2d layers, not a layer")
        self.model = model
        self.first_multiplier = first_multiplier
        self._slots: list[tuple[nn.Module, str, nn.BatchNorm2d]] = []
        stat_of: dict[int, StatBatchNorm2d] = {}  # a BN reachable by several paths gets one replacement
        found = [(path, m) for path, m in model.named_modules(remove_duplicate=False) if isinstance(m, nn.BatchNorm2d)]
        for path, bn in found:
            parent_path, _, name = path.rpartition(".")
            parent = model.get_submodule(parent_path)
            if id(bn) not in stat_of:
                stat_of[id(bn)] = StatBatchNorm2d(bn, groups, backend)
            setattr(parent, name, stat_of[id(bn)])
            self._slots.append((parent, name, bn))
        if not stat_of:
            raise FastDistillError(f"{type(model).__name__} has no BatchNorm2d layer to match statistics of")
        self.layers: list[StatBatchNorm2d] = list(stat_of.values())
        self._groups = groups

    @property
    def groups(self) -> int:
        """Number of equal contiguous batch groups with their own statistics (settable between forwards)."""
        return self._groups

    @groups.setter
    def groups(self, value: int) -> None:
        self._groups = value
        for layer in self.layers:
            layer.groups = value

    def layer_losses(self) -> list[torch.Tensor]:
        """Unweighted Tensor[groups] per BN layer (``model.modules()`` order) from the last forward."""
        missing = [i for i, layer in enumerate(self.layers) if layer.last_loss is None]
        if missing:
            raise FastDistillError(f"BN layers {missing} have no statistics yet: run the model forward first")
        return [layer.last_loss for layer in self.layers]

    def loss(self) -> torch.Tensor:
        """sum_l w_l * loss_l (fp32 Tensor[groups]); w_1 = first_multiplier for the first BN layer, 1 for the rest."""
        losses = self.layer_losses()
        return torch.stack(losses).sum(0).add_(losses[0], alpha=self.first_multiplier - 1.0)  # 3 launches for any L

    def restore(self) -> None:
        """Put the original BatchNorm2d modules back (idempotent)."""
        for parent, name, bn in reversed(self._slots):
            setattr(parent, name, bn)
        self._slots.clear()
        for layer in self.layers:
            layer.last_loss = None

    def __enter__(self) -> BNStatMatching:
        return self

    def __exit__(self, *exc) -> None:
        self.restore()


def bn_stat_matching(model: nn.Module, groups: int = 1, first_multiplier: float = 10.0,
                     backend: str | None = None) -> BNStatMatching:
    """Swap every ``nn.BatchNorm2d`` of ``model`` (in place) for a ``StatBatchNorm2d`` sharing its tensors.

    The model must be in eval mode with frozen parameters when it runs. Returns the collector; the layer order and the
    first-layer multiplier follow ``model.modules()`` (w_1 = ``first_multiplier``, as the reference's first BN hook).
    """
    return BNStatMatching(model, groups, first_multiplier, backend)

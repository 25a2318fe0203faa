"""K ConvNet-D students as one network: grouped convolutions, per-channel norms, one batched classifier.

Student k's batch enters as channels ``[k*C, (k+1)*C)`` of one ``[B, K*C, H, W]`` input; every convolution has
``groups=K``, so student k's output channels see only its own inputs. Instance norm (GroupNorm with one channel per
group), batch norm (statistics per channel over the batch) and average pooling are per channel, so each student's
activations are exactly its own network's up to float rounding. The classifier is a batched matmul. Gradients do not
mix: the loss is the sum of the students' losses and parameter k only feeds student k::

    stacked = StackedConvNet([convnet_a, convnet_b])      # copies their weights, buffers and train/eval mode
    logits = stacked([xa, xb])                            # [2, B, classes]
    stacked.unstack_into([convnet_a, convnet_b])          # trained weights and BN running statistics back
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from fastdistill.models.convnet import ConvNet


def _stack_layer(layers: Sequence[nn.Module]) -> nn.Module:
    first, k = layers[0], len(layers)
    if isinstance(first, nn.Conv2d):
        out = nn.Conv2d(first.in_channels * k, first.out_channels * k, first.kernel_size, first.stride,
                        first.padding, groups=k, bias=first.bias is not None)
    elif isinstance(first, nn.GroupNorm):
        if first.num_groups != first.num_channels:
            raise ValueError("only GroupNorm with one channel per group (instance norm) stacks per channel")
        out = nn.GroupNorm(first.num_channels * k, first.num_channels * k, first.eps, first.affine)
    elif isinstance(first, nn.BatchNorm2d):
        out = nn.BatchNorm2d(first.num_features * k, first.eps, first.momentum, first.affine,
                             first.track_running_stats)
    elif isinstance(first, (nn.ReLU, nn.AvgPool2d, nn.Identity)):
        return first
    else:
        raise ValueError(f"cannot stack a {type(first).__name__} layer")
    with torch.no_grad():
        for name, value in out.named_parameters(recurse=False):
            value.copy_(torch.cat([getattr(m, name) for m in layers]))
        for name, value in out.named_buffers(recurse=False):
            if name == "num_batches_tracked":
                value.copy_(getattr(first, name))
            else:
                value.copy_(torch.cat([getattr(m, name) for m in layers]))
    return out


class StackedConvNet(nn.Module):
    """``len(models)`` ConvNets of one shape trained as one module (see the module docstring)."""

    def __init__(self, models: Sequence[ConvNet]):
        super().__init__()
        if not models or not all(isinstance(m, ConvNet) for m in models):
            raise ValueError("StackedConvNet stacks ConvNet models only")
        shapes = {tuple((n, tuple(p.shape)) for n, p in m.state_dict().items()) for m in models}
        if len(shapes) != 1:
            raise ValueError("the stacked ConvNets must have the same architecture")
        self.k = len(models)
        first = models[0]
        self.body = nn.Sequential(*(_stack_layer([m.body[i] for m in models]) for i in range(len(first.body))))
        classifiers = [m.classifier for m in models]
        self.weight = nn.Parameter(torch.stack([c.weight.detach() for c in classifiers]).clone())  # [K, classes, F]
        self.bias = nn.Parameter(torch.cat([c.bias.detach() for c in classifiers]).clone())  # [K * classes], 1-D
        self.train(first.training)
        self.to(first.classifier.weight)  # its device and dtype

    def forward(self, xs: Sequence[torch.Tensor]) -> torch.Tensor:
        """``K`` batches [B, C, H, W] (same B) -> logits [K, B, classes]."""
        if len(xs) != self.k:
            raise ValueError(f"expected {self.k} batches, got {len(xs)}")
        h = self.body(torch.cat(list(xs), dim=1))
        features = h.reshape(h.shape[0], self.k, -1)  # student k's channels, flattened as ConvNet.features does
        logits = torch.einsum("bkf,kcf->kbc", features, self.weight)
        return logits + self.bias.view(self.k, 1, -1)

    @torch.no_grad()
    def unstack_into(self, models: Sequence[ConvNet]) -> None:
        """Copy student k's parameters and buffers into ``models[k]``."""
        for i, layer in enumerate(self.body):
            for name, value in [*layer.named_parameters(recurse=False), *layer.named_buffers(recurse=False)]:
                for k, m in enumerate(models):
                    target = getattr(m.body[i], name)
                    target.copy_(value if name == "num_batches_tracked" else value.chunk(self.k)[k])
        for k, m in enumerate(models):
            m.classifier.weight.copy_(self.weight[k])
            m.classifier.bias.copy_(self.bias.view(self.k, -1)[k])

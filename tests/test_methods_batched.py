"""The vmapped paths (CUDA default) equal the loops (CPU default) with the same draws."""

from __future__ import annotations

import torch

from fastdistill.augment.dsa import DSAConfig
from fastdistill.methods.functional import FlatModel, train_networks
from fastdistill.methods.gradmatch import per_class_weight_grads
from fastdistill.models.convnet import ConvNet
from fastdistill.utils.seed import generator


def _fm():
    torch.manual_seed(0)
    return FlatModel(ConvNet(1, 3, 8, depth=1, width=4))


def test_vmapped_network_training_equals_the_loop():
    fm = _fm()
    starts = fm.random_inits(3, generator(0))
    x, y = torch.randn(10, 1, 8, 8), torch.arange(10) % 3
    runs = [train_networks(fm, starts, x, y, 2, lr=0.1, momentum=0.9, weight_decay=5e-4, batch_size=4,
                           dsa=DSAConfig(strategy="color_crop_scale"), generator=generator(1), record=True,
                           batched=batched) for batched in (True, False)]
    torch.testing.assert_close(runs[0], runs[1], rtol=1e-4, atol=1e-5)
    assert runs[0].shape == (3, 3, fm.numel) and not torch.equal(runs[0][:, 0], runs[0][:, -1])


def test_vmapped_per_class_gradients_equal_the_loop():
    fm = _fm()
    x = torch.randn(3, 5, 1, 8, 8)
    batched = per_class_weight_grads(fm, fm.flatten(), x, batched=True)
    looped = per_class_weight_grads(fm, fm.flatten(), x, batched=False)
    assert len(batched) == len(fm.weight_names()) == 2
    for a, b in zip(batched, looped, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)

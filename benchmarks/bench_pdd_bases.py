"""Per-iteration cost of each PDD base (DM, DC, DSA, MTT): fastdistill vs the reference loop, in the same run.

    pytest benchmarks/bench_pdd_bases.py --benchmark-enable --benchmark-group-by=param:device,group \
        --benchmark-json bench_pdd.json

``reference`` is :mod:`fastdistill.methods.reference` (one class / one network at a time, nn.Module forwards, as the
upstream code); ``fastdistill`` is the method's ``step``. Shapes: digits-like (8x8) on the CPU, Fashion-MNIST-like
(28x28, 256 real images per class) on CUDA; ConvNet-3, 10 classes, IPC 10. On CUDA every timed call ends with
``torch.cuda.synchronize()``. CPU timings on a shared machine are noisy: compare the two providers of one run.
"""

from __future__ import annotations

import pytest
import torch

from fastdistill.augment.dsa import DSAConfig
from fastdistill.data.base import DatasetInfo, Split
from fastdistill.methods import RealData, build_method, flat_model
from fastdistill.methods.buffer import Buffer
from fastdistill.methods.config import MethodConfig
from fastdistill.methods.mtt import MTT
from fastdistill.methods.reference import dc_iteration_reference, dm_iteration_reference, mtt_iteration_reference
from fastdistill.methods.synset import StageImages
from fastdistill.utils.seed import generator

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
SHAPES = {"cpu": {"size": 8, "real": 32, "syn_steps": 5}, "cuda": {"size": 28, "real": 256, "syn_steps": 30}}
CLASSES, IPC = 10, 10


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _setup(device: str, method: str, **extra: object):
    shape = SHAPES[device]
    size = shape["size"]
    g = generator(0, device)
    images = torch.randint(0, 256, (CLASSES * 300, 1, size, size), dtype=torch.uint8, generator=generator(0))
    info = DatasetInfo("bench", tuple(str(c) for c in range(CLASSES)), 1, size, (0.5,), (0.25,))
    data = RealData(Split(images, torch.arange(CLASSES).repeat_interleave(300)), info, device)
    cfg = MethodConfig(method=method, ipc=IPC, batch_real=shape["real"], dsa=method != "dc", outer_loop=2,
                       inner_loop=2, syn_steps=shape["syn_steps"], max_start_epoch=1, expert_epochs=1, lr_img=0.1,
                       **extra)
    images = StageImages(torch.zeros(CLASSES, 0, 1, size, size, device=device), data.init_images(IPC, g), info,
                         lr=cfg.lr_img, momentum=0.5)
    return cfg, data, images, g


def _timed(benchmark, device: str, fn) -> None:
    def call():
        fn()
        _sync(device)

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    benchmark.pedantic(call, rounds=5 if device == "cuda" else 2, iterations=1, warmup_rounds=1)
    if device == "cuda":
        benchmark.extra_info["peak_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("provider", ["fastdistill", "reference"])
@pytest.mark.parametrize("method", ["dm", "dc", "dsa"])
def test_matching_iteration(benchmark, device, provider, method):
    benchmark.group = method
    cfg, data, images, g = _setup(device, method)
    base = build_method(cfg, data, g)
    if provider == "fastdistill":
        _timed(benchmark, device, lambda: base.step(images))
        return
    net = base.fm.model.requires_grad_(method != "dm")
    real = lambda: list(data.per_class(cfg.batch_real, g))  # noqa: E731
    dsa = base.dsa
    if method == "dm":
        _timed(benchmark, device, lambda: dm_iteration_reference(net, real(), images.new, images.optimizer, dsa, g))
    else:
        _timed(benchmark, device, lambda: dc_iteration_reference(net, real(), images.new, images.optimizer, dsa, g,
                                                                 cfg.outer_loop, cfg.inner_loop, cfg.lr_net))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("provider", ["fastdistill-full", "fastdistill-lean", "reference"])
def test_mtt_iteration(benchmark, device, provider):
    benchmark.group = "mtt"
    memory = "lean" if provider == "fastdistill-lean" else "full"
    cfg, data, images, g = _setup(device, "mtt", memory=memory)
    fm = flat_model("convnet3", data.info, device)
    trajectories = torch.stack([fm.random_inits(3, g) for _ in range(2)])  # 2 experts x 3 epochs
    base = MTT(cfg, fm, data, g, DSAConfig(), buffer=Buffer(trajectories, {}))
    if provider != "reference":
        _timed(benchmark, device, lambda: base.step(images))
        return
    lr_opt = torch.optim.SGD([base.syn_lr], lr=cfg.lr_lr, momentum=0.5)
    y = torch.arange(CLASSES, device=device).repeat_interleave(IPC)
    opts = [images.optimizer, lr_opt]
    _timed(benchmark, device, lambda: mtt_iteration_reference(fm, trajectories[0, 0].to(device),
                                                              trajectories[0, 1].to(device), images.new, y,
                                                              base.syn_lr, cfg.syn_steps, CLASSES * IPC, opts,
                                                              DSAConfig(), g))

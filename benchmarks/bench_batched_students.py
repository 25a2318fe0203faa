"""Six ConvNet students trained one after another vs together (:class:`fastdistill.eval.batched.BatchedStudents`).

    python -m pytest benchmarks/bench_batched_students.py --benchmark-enable --benchmark-group-by=group \
        --benchmark-json bench_batched.json

The evaluation harness's unit of work: one (protocol, architecture) pair, 3 seeds x (distilled set, random real
subset) = 6 students on IPC 10 sets (100 images), the hard protocol (SGD, DSA augmentation) with ConvNet-3 and the
soft one (AdamW, crop/flip/CutMix, teacher logits) with ConvNet-3-BN; digits (8x8) and Fashion-MNIST (28x28,
skipped without Debian's dataset-fashion-mnist). Both providers draw the same batches on the same per-student
generators; each round trains the 6 students ``EPOCHS`` epochs from scratch (20; ``FASTDISTILL_BENCH_EPOCHS``
overrides). On CUDA every round ends with ``torch.cuda.synchronize()``.
"""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

from fastdistill.data import load_dataset
from fastdistill.errors import FastDistillError
from fastdistill.eval import StudentTrainer, make_protocol, random_real_subset
from fastdistill.eval.batched import BatchedStudents

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
EPOCHS = int(os.environ.get("FASTDISTILL_BENCH_EPOCHS", "20"))
STUDENTS, IPC = 6, 10
CASES = [("hard", "convnet3"), ("soft", "convnet3-bn")]


def _dataset(name: str):
    try:
        return load_dataset(name)
    except FastDistillError as exc:
        pytest.skip(f"{name}: {exc}")


def _setup(name: str, kind: str, arch: str):
    data = _dataset(name)
    info = data.info
    labels = torch.arange(info.num_classes).repeat_interleave(IPC)
    sets = [random_real_subset(data.train, labels, seed) for seed in range(STUDENTS)]
    proto = make_protocol(kind, info, len(labels), EPOCHS, student=arch)
    torch.manual_seed(0)  # a fixed random linear teacher: the soft protocol's cost, not its quality
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(info.channels * info.image_size**2, info.num_classes))
    teacher = teacher.to(DEVICE).eval().requires_grad_(False)

    def trainers():
        return [StudentTrainer(info, proto, student=arch, teacher=teacher if kind == "soft" else None, seed=s,
                               device=DEVICE) for s in range(STUDENTS)]

    return sets, trainers


@pytest.mark.parametrize("provider", ["one-by-one", "batched"])
@pytest.mark.parametrize(("kind", "arch"), CASES)
@pytest.mark.parametrize("dataset", ["digits", "fashion-mnist"])
def test_students(benchmark, dataset, kind, arch, provider):
    sets, trainers = _setup(dataset, kind, arch)

    def one_by_one():
        for t, (x, y) in zip(trainers(), sets, strict=True):
            t.fit(x, y)

    def batched():
        BatchedStudents(trainers()).fit(sets)

    fn = one_by_one if provider == "one-by-one" else batched

    def call():
        fn()
        if DEVICE == "cuda":
            torch.cuda.synchronize()

    benchmark.group = f"{dataset} {kind} {arch} x{STUDENTS}, {EPOCHS} epochs, {DEVICE}"
    benchmark.extra_info.update(op="students", provider=provider, dataset=dataset, protocol=kind, arch=arch,
                                students=STUDENTS, epochs=EPOCHS, device=DEVICE, threads=torch.get_num_threads())
    benchmark.pedantic(call, rounds=3, iterations=1, warmup_rounds=0)

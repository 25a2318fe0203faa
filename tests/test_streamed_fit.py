"""``StudentTrainer.fit(stream=True)`` (the DD-Ranking full-data student) converts batch by batch and trains exactly
as the up-front conversion does."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fastdistill.data import load_dataset
from fastdistill.eval import StudentTrainer, make_protocol
from fastdistill.methods.realdata import RealImages


@pytest.mark.parametrize(("kind", "arch"), [("hard", "convnet3"), ("soft", "convnet2-bn")])
def test_streamed_fit_equals_the_in_memory_fit(kind, arch):
    data = load_dataset("digits")
    info = data.info
    images, labels = data.train.images[:300], data.train.labels[:300]
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(info.channels * info.image_size**2, info.num_classes)).eval()
    proto = make_protocol(kind, info, 300, epochs=2)

    def train(stream: bool) -> StudentTrainer:
        t = StudentTrainer(info, proto, student=arch, teacher=teacher if kind == "soft" else None, seed=3)
        t.fit(images, labels, stream=stream)
        return t

    lazy, _, _ = StudentTrainer(info, proto, student=arch, teacher=teacher).prepare(images, labels, 1, stream=True)
    assert isinstance(lazy, RealImages) and lazy.source.dtype == torch.uint8  # nothing converted up front
    memory, streamed = train(False), train(True)
    assert streamed.steps == memory.steps > 2
    assert streamed.losses == memory.losses
    for (name, a), b in zip(memory.model.state_dict().items(), streamed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name

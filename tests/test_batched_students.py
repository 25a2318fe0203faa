"""Batched students: a StackedConvNet equals its ConvNets (values and gradients), and BatchedStudents trains the
same students as one-by-one StudentTrainers (same batches, augmentation, losses and weights up to float rounding)."""

from __future__ import annotations

import pytest
import torch

from fastdistill.errors import FastDistillError
from fastdistill.eval import StudentTrainer, evaluate_distilled, make_protocol, random_real_subset
from fastdistill.eval.batched import BatchedStudents, can_batch, stackable
from fastdistill.eval.harness import _PlainTrainer
from fastdistill.models.convnet import ConvNet
from fastdistill.models.stacked_convnet import StackedConvNet

# dtype -> (rtol, atol) of stacked vs separate forward/backward (the grouped convolution sums in another order)
TOL = {torch.float32: (1e-5, 1e-5), torch.float64: (1e-12, 1e-12)}
# weights after several optimizer steps: rounding differences grow with every step
TRAINED_TOL = {"atol": 1e-4, "rtol": 1e-3}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("norm", ["instance", "batch", "none"])
def test_stacked_convnet_equals_its_convnets_values_and_gradients(norm, dtype):
    k, batch, channels, size, classes = 3, 5, 2, 13, 7  # odd shapes: pooling floors 13 -> 6 -> 3
    g = torch.Generator().manual_seed(int(torch.randint(0, 2**31, (1,))))
    models = []
    for _ in range(k):
        torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=g)))
        models.append(ConvNet(channels, classes, size, depth=2, width=6, norm=norm).to(dtype))
    stacked = StackedConvNet(models)
    xs = [torch.randn(batch, channels, size, size, generator=g, dtype=dtype, requires_grad=True) for _ in range(k)]
    xs_stacked = [x.detach().clone().requires_grad_(True) for x in xs]
    weights = torch.randn(k, batch, classes, generator=g, dtype=dtype)

    separate = torch.stack([m(x) for m, x in zip(models, xs, strict=True)])
    together = stacked(xs_stacked)
    rtol, atol = TOL[dtype]
    torch.testing.assert_close(together, separate, rtol=rtol, atol=atol)
    (separate * weights).sum().backward()
    (together * weights).sum().backward()
    for x, xt in zip(xs, xs_stacked, strict=True):
        torch.testing.assert_close(xt.grad, x.grad, rtol=rtol, atol=atol)
    conv_grad = stacked.body[0].weight.grad.chunk(k)
    for i, m in enumerate(models):
        torch.testing.assert_close(conv_grad[i], m.body[0].weight.grad, rtol=rtol, atol=atol)
        torch.testing.assert_close(stacked.weight.grad[i], m.classifier.weight.grad, rtol=rtol, atol=atol)
        torch.testing.assert_close(stacked.bias.grad.view(k, -1)[i], m.classifier.bias.grad, rtol=rtol, atol=atol)


def test_unstack_round_trip_and_bn_running_statistics():
    models = [ConvNet(1, 4, 8, depth=2, width=5, norm="batch") for _ in range(2)]
    stacked = StackedConvNet(models)
    xs = [torch.randn(6, 1, 8, 8) for _ in range(2)]
    stacked(xs)  # train mode: updates the stacked running statistics
    for m, x in zip(models, xs, strict=True):
        m(x)
    copies = [ConvNet(1, 4, 8, depth=2, width=5, norm="batch") for _ in range(2)]
    stacked.unstack_into(copies)
    for m, c in zip(models, copies, strict=True):
        for (name, a), b in zip(m.state_dict().items(), c.state_dict().values(), strict=True):
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6, msg=name)


def _sets(digits, ipc: int, seeds: list[int]):
    labels = torch.arange(digits.info.num_classes).repeat_interleave(ipc)
    return [random_real_subset(digits.train, labels, 100 + s) for s in seeds]


def _assert_same_students(one_by_one, batched):
    for a, b in zip(one_by_one, batched, strict=True):
        assert (a.epochs_done, a.steps) == (b.epochs_done, b.steps)
        torch.testing.assert_close(torch.tensor(b.losses), torch.tensor(a.losses), rtol=1e-4, atol=1e-5)
        for (name, p), q in zip(a.model.state_dict().items(), b.model.state_dict().values(), strict=True):
            torch.testing.assert_close(q, p, msg=name, **TRAINED_TOL)


@pytest.mark.parametrize(("kind", "arch", "trainer"), [("hard", "convnet3", StudentTrainer),
                                                       ("hard", "convnet3-bn", StudentTrainer),
                                                       ("soft", "convnet3-bn", StudentTrainer),
                                                       ("hard", "convnet2", _PlainTrainer)])
def test_batched_students_train_like_one_by_one(digits, linear_teacher, kind, arch, trainer):
    info, seeds = digits.info, [0, 1, 2]
    sets = _sets(digits, 3, seeds)
    proto = make_protocol(kind, info, len(sets[0][1]), epochs=3)  # hard: DSA augmentation on each generator
    teacher = linear_teacher if kind == "soft" else None

    def make():
        return [trainer(info, proto, student=arch, teacher=teacher, seed=s) for s in seeds]

    one_by_one, batched = make(), make()
    for t, (x, y) in zip(one_by_one, sets, strict=True):
        t.fit(x, y, eval_on=digits.test, eval_every=2)
    BatchedStudents(batched).fit(sets, eval_on=digits.test, eval_every=2)
    _assert_same_students(one_by_one, batched)
    assert [h for h, _ in batched[0].history] == [h for h, _ in one_by_one[0].history] == [2, 3]
    for a, b in zip(one_by_one, batched, strict=True):
        assert abs(a.accuracy(digits.test) - b.accuracy(digits.test)) <= 0.5


def test_batching_rules(digits):
    info = digits.info
    proto = make_protocol("hard", info, 20, epochs=1)
    other = make_protocol("hard", info, 20, epochs=2)
    assert stackable("convnet3", info) and stackable("convnet4-bn", info) and not stackable("resnet18-cifar", info)
    convnets = [StudentTrainer(info, proto, student="convnet3", seed=s) for s in range(2)]
    assert can_batch(convnets)
    assert not can_batch(convnets[:1])
    assert not can_batch([convnets[0], StudentTrainer(info, other, student="convnet3", seed=1)])
    assert not can_batch([convnets[0], StudentTrainer(info, proto, student="convnet3-bn", seed=1)])
    assert not can_batch([StudentTrainer(info, proto, student="resnet18-cifar", seed=s) for s in range(2)])
    with pytest.raises(FastDistillError, match="same size"):
        BatchedStudents(convnets).fit(_sets(digits, 2, [0]) + _sets(digits, 3, [1]))
    with pytest.raises(FastDistillError, match="one architecture"):
        BatchedStudents(convnets[:1])


def test_evaluate_distilled_batched_matches_one_by_one(digits, linear_teacher):
    x, y = _sets(digits, 2, [9])[0]
    kwargs = dict(teacher=linear_teacher, seeds=2, epochs=2, progress=False, diversity=False)
    plain = evaluate_distilled(x, y, digits, batch_students=False, **kwargs)
    batched = evaluate_distilled(x, y, digits, batch_students=True, **kwargs)
    assert plain["batch_students"] is False and batched["batch_students"] is True
    for kind in ("hard", "soft"):
        for which in ("distilled", "random_real"):
            for a, b in zip(plain["protocols"][kind][which]["runs"], batched["protocols"][kind][which]["runs"],
                            strict=True):
                assert "batched" not in a and b["batched"] == 4  # 2 seeds x (distilled, random real)
                assert (a["seed"], a["steps"]) == (b["seed"], b["steps"])
                assert abs(a["top1"] - b["top1"]) <= 0.5
                torch.testing.assert_close(torch.tensor(b["curve"]["loss"]), torch.tensor(a["curve"]["loss"]),
                                           rtol=1e-4, atol=1e-5)

"""Evaluation measures wired into the harness: diversity of the distilled and random sets, DD-Ranking's scores with
the cached full-data accuracy, cross-architecture tables, and the `evaluate` options for them."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from fastdistill.cli import main
from fastdistill.data import DatasetInfo, load_dataset, to_float
from fastdistill.data.base import Dataset, Split
from fastdistill.errors import FastDistillError
from fastdistill.eval import evaluate_distilled, format_table, make_protocol, random_real_subset
from fastdistill.eval.ddranking import full_data_accuracy, score_row
from fastdistill.eval.diversity import FeatureModel, diversity_results, load_feature_model, pairwise_scores
from fastdistill.eval.harness import _PlainTrainer, measure_diversity
from fastdistill.eval.students import parse_students, reference_lr
from fastdistill.eval.trainer import StudentTrainer
from fastdistill.models import build_model
from fastdistill.models.teacher import save_teacher
from fastdistill.pipelines.outputs import save_distilled

PLAIN = DatasetInfo("plain", ("a", "b"), 1, 4, (0.0,), (1.0,))  # pixels / 255 are the features


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _one_hot_images(positions: list[int], value: int = 200) -> torch.Tensor:
    x = torch.zeros(len(positions), 1, 4, 4, dtype=torch.uint8)
    for i, p in enumerate(positions):
        x[i, 0, p // 4, p % 4] = value
    return x


# ---------------------------------------------------------------- diversity


def test_identical_images_score_one_and_orthogonal_zero():
    pixels = FeatureModel("pixels", PLAIN)
    same = _one_hot_images([3, 3, 3])                       # class 0: one image three times
    orthogonal = _one_hot_images([0, 5, 10])                # class 1: disjoint pixels -> orthogonal features
    images, labels = torch.cat([same, orthogonal]), torch.tensor([0, 0, 0, 1, 1, 1])
    div = diversity_results(pixels, images, labels, [(0, images, labels)], (images, labels))
    for which in ("distilled", "random_real"):
        got = div[which]
        assert got["intra_class_cosine"]["per_class"] == [pytest.approx(1.0), pytest.approx(0.0, abs=1e-12)]
        assert got["intra_class_cosine"]["mean"] == pytest.approx(0.5)
        assert got["intra_class_cosine"]["std"] == pytest.approx(0.5)
        assert got["mgd_diversity"]["per_class"] == [pytest.approx(0.0, abs=1e-12), pytest.approx(1.0)]
        assert got["representativeness"]["per_class"] == [pytest.approx(1.0), pytest.approx(1.0)]
    # a class with one image has no pairs: None, and the mean over classes skips it
    one = diversity_results(pixels, images[:4], labels[:4], [], (images, labels))["distilled"]
    assert one["intra_class_cosine"]["per_class"] == [pytest.approx(1.0), None]
    assert one["intra_class_cosine"]["mean"] == pytest.approx(1.0)
    assert one["representativeness"]["per_class"][1] == pytest.approx(1.0)
    assert pairwise_scores(pixels(images), labels, 2)["mgd_diversity"][1] == pytest.approx(1.0)


def test_diversity_results_equal_a_direct_computation(digits):
    pixels = load_feature_model("pixels", digits.info)
    labels = torch.arange(10).repeat_interleave(3)
    x, y = random_real_subset(digits.train, labels, 99)
    div = measure_diversity(x, y, digits, pixels, [0, 1])

    def direct(images, lab, c):
        f = digits.info.normalize(to_float(images[lab == c])).flatten(1).double().numpy()
        f = f / np.linalg.norm(f, axis=1, keepdims=True)
        sim = f @ f.T
        off = sim[~np.eye(len(f), dtype=bool)]
        real = digits.info.normalize(to_float(digits.test.images[digits.test.labels == c])).flatten(1).double().numpy()
        real = real / np.linalg.norm(real, axis=1, keepdims=True)
        return off.mean(), 1 - off.max(), (f @ real.T).max(axis=1).min()

    want = [direct(x, y, c) for c in range(10)]
    for k, key in enumerate(("intra_class_cosine", "mgd_diversity", "representativeness")):
        got = div["distilled"][key]
        assert got["per_class"] == pytest.approx([w[k] for w in want])
        assert got["mean"] == pytest.approx(np.mean([w[k] for w in want]))
        assert got["std"] == pytest.approx(np.std([w[k] for w in want]))
    # the random real reference: the evaluation's subsets of seeds 0 and 1, per-class values averaged over seeds
    subsets = [random_real_subset(digits.train, y, s) for s in (0, 1)]
    mean0 = np.mean([[direct(sx, sy, c)[0] for c in range(10)] for sx, sy in subsets], axis=0)
    assert div["random_real"]["intra_class_cosine"]["per_class"] == pytest.approx(mean0.tolist())
    assert div["random_real"]["seeds"] == [0, 1] and div["feature_model"] == "pixels"
    json.dumps(div)


def test_feature_models(tmp_path, digits):
    info = digits.info
    torch.manual_seed(0)
    net = build_model("convnet3-bn", 10, 1, 8).eval()
    folder = save_teacher(tmp_path / "t", net, "convnet3-bn", info)
    images = digits.test.images[:5]
    got = load_feature_model(str(folder), info)(images)
    with torch.no_grad():
        want = net.body(info.normalize(to_float(images))).flatten(1)
    torch.testing.assert_close(got, want)
    # torchvision:NAME with a weights file, any class count, gray images repeated to RGB
    import torchvision

    tv = torchvision.models.resnet18(num_classes=7)
    save_file(tv.state_dict(), str(tmp_path / "r18.safetensors"))
    feats = load_feature_model("torchvision:resnet18", info, weights=str(tmp_path / "r18.safetensors"))(images)
    assert feats.shape == (5, 512) and torch.isfinite(feats).all()
    with pytest.raises(FastDistillError, match="teacher weights not found"):
        load_feature_model(str(tmp_path / "missing"), info)


# ---------------------------------------------------------------- DD-Ranking


def _ddranking_code(full, syn_hard, syn, rdm, lam=0.5):
    """DD-Ranking b8b0966 ddranking/metrics/soft_label.py L561-564, transcribed (on fractions)."""
    hlr = 1.00 * (full - syn_hard)
    ior = 1.00 * (syn - rdm)
    alpha = lam * ior - (1 - lam) * hlr
    return hlr, ior, (np.exp(alpha) - np.exp(-1)) / (np.exp(1) - np.exp(-1))


def _entry(syn, rdm):
    runs = lambda values: {"mean": float(np.mean(values)),  # noqa: E731
                           "runs": [{"seed": s, "top1": v} for s, v in enumerate(values)]}
    return {"distilled": runs(syn), "random_real": runs(rdm)}


def test_score_row_equals_ddranking_formulas():
    soft, hard = _entry([61.2, 59.8, 62.0], [38.8, 40.1, 39.0]), _entry([47.3, 45.1, 48.0], [44.0, 43.2, 45.5])
    plain = _entry([50.0, 52.5, 49.0], [41.0, 42.0, 40.5])
    full = {"top1": 84.2, "source": "test"}
    row = score_row("convnet3-bn", "soft", soft, hard, full, plain)
    per_seed = [_ddranking_code(0.842, h / 100, s / 100, r / 100) for h, s, r in
                zip([47.3, 45.1, 48.0], [61.2, 59.8, 62.0], [38.8, 40.1, 39.0], strict=True)]
    for k, name in enumerate(("hlr", "ior", "lrs")):
        assert row[name] == pytest.approx(np.mean([p[k] for p in per_seed]))
        assert row["std"][name] == pytest.approx(np.std([p[k] for p in per_seed]))
    # ARS: aug_robust.py L577-580 on fractions
    ars = [(np.exp(b) - np.exp(-1)) / (np.exp(1) - np.exp(-1)) for b in
           (0.5 * (s - r) / 100 + 0.5 * (ps - pr) / 100 for s, r, ps, pr in
            zip([61.2, 59.8, 62.0], [38.8, 40.1, 39.0], [50.0, 52.5, 49.0], [41.0, 42.0, 40.5], strict=True))]
    assert row["ars"] == pytest.approx(np.mean(ars))
    assert row["accuracy"]["full_data_hard"] == 84.2 and row["accuracy"]["distilled_hard"] == pytest.approx(46.8)
    bare = score_row("convnet3", "hard", hard, hard, {"top1": None, "source": "skipped"})
    assert bare["lrs"] is None and bare["ars"] is None and bare["ior"] is not None
    assert set(bare["missing"]) == {"hlr", "lrs", "ars"}


def _tiny(digits, n_train: int = 60) -> Dataset:
    idx = torch.arange(n_train)
    return Dataset(digits.info, Split(digits.train.images[idx], digits.train.labels[idx]),
                   Split(digits.test.images[:50], digits.test.labels[:50]))


def test_full_data_accuracy_is_trained_once_and_cached(tmp_path, digits):
    data = _tiny(digits)
    proto = make_protocol("hard", data.info, len(data.train), epochs=1)
    first = full_data_accuracy(data, "convnet3", proto, cache_dir=tmp_path, log=lambda _: None)
    assert first["source"].startswith("trained") and 0 <= first["top1"] <= 100
    again = full_data_accuracy(data, "convnet3", proto, mode="cached", cache_dir=tmp_path)
    assert again["top1"] == first["top1"] and again["source"].startswith("cache ")
    other = full_data_accuracy(data, "convnet3", make_protocol("hard", data.info, 60, epochs=2), mode="cached",
                               cache_dir=tmp_path)
    assert other["top1"] is None and "not in the cache" in other["source"]
    assert full_data_accuracy(data, "convnet3", proto, mode="skip")["top1"] is None
    with pytest.raises(FastDistillError):
        full_data_accuracy(data, "convnet3", proto, mode="sometimes")


# ---------------------------------------------------------------- students


def test_reference_learning_rates():
    assert reference_lr("soft", "convnet4-bn") == 1e-3 and reference_lr("soft", "mobilenet_v2") == 2.5e-3
    assert reference_lr("soft", "vgg11") == 5e-4 and reference_lr("soft", "vit_b_16") == 1e-4
    assert reference_lr("soft", "efficientnet_b0") == 2e-3 and reference_lr("soft", "densenet121") is None
    assert reference_lr("hard", "vgg11") is None
    assert parse_students(" convnet3, resnet18-cifar,convnet3") == ("convnet3", "resnet18-cifar")
    with pytest.raises(FastDistillError):
        parse_students(" , ")


def test_plain_trainer_trains_without_augmentation(digits):
    x, y = digits.train.images[:20], digits.train.labels[:20]
    proto = make_protocol("hard", digits.info, 20, epochs=2)
    plain = _PlainTrainer(digits.info, proto, seed=3)
    plain.fit(x, y)
    off = StudentTrainer(digits.info, make_protocol("hard", digits.info, 20, epochs=2, dsa_strategy=""), seed=3)
    off.fit(x, y)
    for a, b in zip(plain.model.parameters(), off.model.parameters(), strict=True):
        torch.testing.assert_close(a, b)


def test_cross_architecture_table(digits):
    data = _tiny(digits, 200)
    x, y = random_real_subset(data.train, torch.arange(10).repeat_interleave(2), 5)
    res = evaluate_distilled(x, y, data, protocols=["hard"], students=["convnet3", "convnet2-bn"], seeds=1,
                             epochs=1, progress=False, feature_model="pixels", ars=True)
    assert list(res["students"]) == ["convnet3", "convnet2-bn"]
    assert res["protocols"]["hard"] is not None and res["protocols"]["hard"]["student"] == "convnet3"
    assert "no_augmentation" in res["students"]["convnet2-bn"]["hard"]
    scores = res["ddranking"]["scores"]
    assert [(r["student"], r["protocol"]) for r in scores] == [("convnet3", "hard"), ("convnet2-bn", "hard")]
    assert all(r["ars"] is not None and r["lrs"] is None for r in scores)
    assert res["diversity"]["feature_model"] == "pixels"
    table = format_table(res)
    assert "convnet2-bn" in table and "intra-class cosine" in table and "DD-Ranking" in table
    json.dumps(res)
    with pytest.raises(FastDistillError):
        evaluate_distilled(x, y, data, protocols=["hard"], students=["convnet3", "convnet3"], progress=False)


def test_evaluate_command_measures(tmp_path, digits, monkeypatch):
    x, y = random_real_subset(digits.train, torch.arange(10).repeat_interleave(2), 7)
    folder = tmp_path / "run"
    save_distilled(folder, to_float(x), y, digits.info)
    torch.manual_seed(0)
    teacher = save_teacher(tmp_path / "t", build_model("convnet3-bn", 10, 1, 8), "convnet3-bn", digits.info)
    cache = tmp_path / "cache"
    args = ["evaluate", str(folder), "--epochs", "1", "--seeds", "1", "--quiet", "--teacher", str(teacher),
            "--students", "convnet3-bn", "--full-data-epochs", "1", "--cache-dir", str(cache)]
    assert main(args) == 0
    res = json.loads((folder / "results.json").read_text())
    assert set(res["students"]["convnet3-bn"]) == {"hard", "soft"}
    assert res["diversity"]["feature_model"] == f"teacher {teacher}"
    rows = res["ddranking"]["scores"]
    assert [r["protocol"] for r in rows] == ["hard", "soft"] and all(math.isfinite(r["lrs"]) for r in rows)
    assert res["ddranking"]["protocol"] == "soft" and res["ddranking"]["lrs"] == rows[1]["lrs"]
    assert len(list((cache / "full-data").iterdir())) == 1
    # the run's teacher is missing and only hard labels are asked for: diversity is skipped, not an error
    assert main(["evaluate", str(folder), "--epochs", "1", "--seeds", "1", "--quiet", "--protocols", "hard",
                 "--full-data", "skip"]) == 0
    res = json.loads((folder / "results.json").read_text())
    assert "diversity" in res["skipped"] and res["ddranking"]["full_data"] == {}
    assert main(["evaluate", str(folder), "--student", "convnet3", "--students", "convnet3"]) == 2


def test_matching_pipeline_reports_diversity(tmp_path):
    out = tmp_path / "dm"
    assert main(["distill", "--method", "dm", "--ipc", "2", "--iterations", "2", "--eval-epochs", "1",
                 "--eval-seeds", "1", "--eval-feature-model", "pixels", "--device", "cpu", "--quiet",
                 "--output", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["diversity"]["feature_model"] == "pixels" and res["diversity"]["random_real"]["seeds"] == [0]
    assert len(res["diversity"]["distilled"]["intra_class_cosine"]["per_class"]) == 10


def test_given_full_data_accuracy_replaces_training(tmp_path, digits, capsys):
    data = _tiny(digits, 200)
    x, y = random_real_subset(data.train, torch.arange(10).repeat_interleave(2), 5)
    teacher = build_model("convnet2-bn", 10, 1, 8).eval()
    res = evaluate_distilled(x, y, data, protocols=["soft"], student="convnet2-bn", teacher=teacher, seeds=1,
                             epochs=1, progress=False, diversity=False, full_data="train", cache_dir=tmp_path,
                             full_data_top1={"convnet2-bn": 91.5})
    full = res["ddranking"]["full_data"]["convnet2-bn"]
    assert full["top1"] == 91.5 and full["source"].startswith("given")
    assert not list(tmp_path.iterdir())  # nothing trained, nothing cached
    row = res["ddranking"]["scores"][0]
    hard = res["students"]["convnet2-bn"]["soft"]["hard_labels_for_hlr"]["distilled"]["mean"]
    assert row["hlr"] == pytest.approx(0.915 - hard / 100)  # the soft student's HLR uses its own hard-label run
    folder = tmp_path / "run"
    save_distilled(folder, to_float(x), y, digits.info)
    assert main(["evaluate", str(folder), "--full-data-accuracy", "convnet3=abc", "--quiet"]) == 2
    assert "--full-data-accuracy takes ARCH=TOP1" in capsys.readouterr().err

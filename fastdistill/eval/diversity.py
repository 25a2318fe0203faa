"""Diversity of a distilled set, measured on penultimate-layer features.

- DELT's measure (spec delt.md §9.4): per class, the mean pairwise cosine similarity of the L2-normalised features of
  that class's images over pairs i != j (the diagonal, always 1, is excluded); lower = more diverse. Reported per
  class and as mean ± population std over classes.
- MGD³'s Minimax-style scores (spec mgd.md, "Diversity/representativeness"): diversity = 1 - the largest
  off-diagonal cosine among a class's synthetic images; representativeness = the smallest, over the class's
  synthetic images, of the largest cosine to any real image of the class.

Features come from :func:`penultimate_features`: the input of the model's last ``nn.Linear``, on uint8 images
normalised like the model's training data, in eval mode and without gradients. :func:`load_feature_model` names the
model (a teacher folder, ``torchvision:NAME`` with its weights, or ``pixels``); :func:`diversity_results` scores a
distilled set and the random real subsets of the evaluation with it, against the held-out test images.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from fastdistill.data import DatasetInfo, to_float
from fastdistill.errors import FastDistillError
from fastdistill.models.teacher import load_teacher
from fastdistill.models.torchvision_teacher import Renormalized, is_torchvision, load_pretrained

PIXELS = "pixels"


def _last_linear(model: nn.Module) -> nn.Linear:
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise FastDistillError(f"{type(model).__name__} has no nn.Linear classifier to take penultimate features from")
    return linears[-1]


@torch.no_grad()
def penultimate_features(model: nn.Module, images: torch.Tensor, info: DatasetInfo, batch_size: int = 256,
                         device: torch.device | str | None = None) -> torch.Tensor:
    """Features entering the last ``nn.Linear`` of ``model`` for uint8 ``images`` (N, C, H, W), as float32 on CPU.

    Images are scaled to [0, 1] and normalised with ``info``'s mean/std; the model runs in eval mode (its previous
    mode is restored) in batches of ``batch_size`` on ``device`` (default: where the model's parameters are).
    """
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise FastDistillError(f"expected uint8 images of shape (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
    if batch_size < 1:
        raise FastDistillError(f"batch_size must be >= 1, got {batch_size}")
    if device is None:
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
    captured: list[torch.Tensor] = []
    hook = _last_linear(model).register_forward_pre_hook(lambda _m, args: captured.append(args[0].flatten(1)))
    was_training = model.training
    model.eval()
    try:
        out = []
        for start in range(0, images.shape[0], batch_size):
            batch = info.normalize(to_float(images[start:start + batch_size].to(device)))
            captured.clear()
            model(batch)
            if not captured:
                raise FastDistillError(f"the last nn.Linear of {type(model).__name__} is not used in its forward")
            out.append(captured[-1].float().cpu())
    finally:
        hook.remove()
        model.train(was_training)
    if not out:
        raise FastDistillError("no images to take features from")
    return torch.cat(out)


def cosine_matrix(a: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """Cosine similarities between the rows of ``a`` and of ``b`` (default ``a``), after L2 normalisation."""
    a = F.normalize(a.flatten(1).double(), dim=1)
    b = a if b is None else F.normalize(b.flatten(1).double(), dim=1)
    return a @ b.T


def _off_diagonal(features: torch.Tensor) -> torch.Tensor:
    if features.shape[0] < 2:
        raise FastDistillError(f"pairwise similarity needs at least 2 images, got {features.shape[0]}")
    sim = cosine_matrix(features)
    return sim[~torch.eye(sim.shape[0], dtype=torch.bool)]


def mean_pairwise_cosine(features: torch.Tensor) -> float:
    """DELT's intra-class similarity: mean cosine over ordered pairs i != j of one class's features."""
    return _off_diagonal(features).mean().item()


def mgd_diversity(features: torch.Tensor) -> float:
    """MGD³'s diversity of one class: 1 - the largest cosine between two different synthetic images."""
    return 1.0 - _off_diagonal(features).max().item()


def mgd_representativeness(synthetic: torch.Tensor, real: torch.Tensor) -> float:
    """MGD³'s representativeness of one class: min over synthetic images of the max cosine to any real image."""
    if synthetic.shape[0] == 0 or real.shape[0] == 0:
        raise FastDistillError("representativeness needs at least one synthetic and one real image of the class")
    return cosine_matrix(synthetic, real).max(dim=1).values.min().item()


@dataclass(frozen=True)
class PerClass:
    """A score per class (keyed by class index) and its mean ± population std over classes."""

    values: dict[int, float]

    @property
    def mean(self) -> float:
        return sum(self.values.values()) / len(self.values)

    @property
    def std(self) -> float:
        mean = self.mean
        return math.sqrt(sum((v - mean) ** 2 for v in self.values.values()) / len(self.values))

    def to_dict(self) -> dict:
        return {"mean": self.mean, "std": self.std, "per_class": {str(c): v for c, v in self.values.items()}}


def per_class(score: Callable[[torch.Tensor], float], features: torch.Tensor, labels: torch.Tensor) -> PerClass:
    """``score`` applied to the features of each class present in ``labels``."""
    if features.shape[0] != labels.shape[0]:
        raise FastDistillError(f"{features.shape[0]} feature rows but {labels.shape[0]} labels")
    if labels.numel() == 0:
        raise FastDistillError("no images to score")
    return PerClass({int(c): score(features[labels == c]) for c in labels.unique().tolist()})


def intra_class_similarity(features: torch.Tensor, labels: torch.Tensor) -> PerClass:
    """DELT's diversity measure per class (lower = more diverse)."""
    return per_class(mean_pairwise_cosine, features, labels)


def representativeness(synthetic: torch.Tensor, synthetic_labels: torch.Tensor, real: torch.Tensor,
                       real_labels: torch.Tensor) -> PerClass:
    """MGD³'s representativeness per class of the synthetic set, against the real images of the same class."""
    if synthetic.shape[0] != synthetic_labels.shape[0] or real.shape[0] != real_labels.shape[0]:
        raise FastDistillError("each feature row needs one label (synthetic and real)")
    if synthetic_labels.numel() == 0:
        raise FastDistillError("no images to score")
    return PerClass({int(c): mgd_representativeness(synthetic[synthetic_labels == c], real[real_labels == c])
                     for c in synthetic_labels.unique().tolist()})


class _RepeatGray(nn.Module):
    """A 3-channel model fed 1-channel images (the gray channel repeated)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.expand(-1, 3, -1, -1))


@dataclass(frozen=True)
class FeatureModel:
    """A named feature extractor: penultimate features of ``model`` (or normalised pixels when ``model`` is None)."""

    name: str
    info: DatasetInfo
    model: nn.Module | None = None

    def __call__(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        if self.model is None:
            return self.info.normalize(to_float(images)).flatten(1)
        return penultimate_features(self.model, images, self.info, batch_size)


def load_feature_model(model: str | nn.Module, info: DatasetInfo, device: torch.device | str = "cpu",
                       weights: str | None = None, name: str | None = None) -> FeatureModel:
    """The feature model ``model`` names for images of ``info``: a ready module, a `squeeze` teacher folder,
    ``torchvision:NAME`` (its pretrained weights from the hub cache or ``weights``, any class count, inputs
    re-normalised to its mean/std and gray images repeated to RGB), or ``pixels`` (normalised pixels, flattened)."""
    if isinstance(model, nn.Module):
        return FeatureModel(name or type(model).__name__, info, model.to(device).eval())
    spec = str(model)
    if spec == PIXELS:
        return FeatureModel(PIXELS, info)
    if is_torchvision(spec):
        net, mean, std = load_pretrained(spec, weights)
        if info.channels not in (1, 3):
            raise FastDistillError(f"{spec} takes RGB images, {info.name} has {info.channels} channels")
        if (tuple(info.mean), tuple(info.std)) != (mean, std):
            net = Renormalized(net, info.mean * (3 // info.channels), info.std * (3 // info.channels), mean, std)
        if info.channels == 1:
            net = _RepeatGray(net)
        return FeatureModel(spec, info, net.to(device).eval().requires_grad_(False))
    net, _ = load_teacher(spec, info, device, weights)
    return FeatureModel(name or spec, info, net)


def _class_scores(score: Callable[..., float], labels: torch.Tensor, num_classes: int, min_count: int,
                  *tensors: torch.Tensor) -> list[float | None]:
    """``score(*(t[labels == c] for t in tensors))`` per class index; None where a class has < ``min_count`` images."""
    return [score(*(t[labels == c] for t in tensors)) if int((labels == c).sum()) >= min_count else None
            for c in range(num_classes)]


def _summary(values: list[float | None]) -> dict:
    present = [v for v in values if v is not None]
    if not present:
        return {"mean": None, "std": None, "per_class": values}
    mean = sum(present) / len(present)
    return {"mean": mean, "std": math.sqrt(sum((v - mean) ** 2 for v in present) / len(present)), "per_class": values}


def _average(runs: list[list[float | None]]) -> list[float | None]:
    """Per-class mean over runs (seeds); None where a class has no value."""
    out = []
    for column in zip(*runs, strict=True):
        present = [v for v in column if v is not None]
        out.append(sum(present) / len(present) if present else None)
    return out


def pairwise_scores(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> dict[str, list[float | None]]:
    """Per-class ``intra_class_cosine`` (DELT) and ``mgd_diversity`` (MGD³) of one set; None for a class with fewer
    than 2 images (no pair)."""
    labels = labels.cpu()
    return {"intra_class_cosine": _class_scores(mean_pairwise_cosine, labels, num_classes, 2, features),
            "mgd_diversity": _class_scores(mgd_diversity, labels, num_classes, 2, features)}


def diversity_results(extractor: FeatureModel, images: torch.Tensor, labels: torch.Tensor,
                      random_sets: list[tuple[int, torch.Tensor, torch.Tensor]],
                      reference: tuple[torch.Tensor, torch.Tensor]) -> dict:
    """The ``diversity`` entry of results.json: the scores of the distilled set and of the random real subsets
    (``(seed, images, labels)``; per-class values averaged over seeds), each reported per class and as mean ± std
    over classes; representativeness against ``reference`` (held-out real images and labels; their features are
    computed one class at a time, so the reference never has to fit in memory as features)."""
    num_classes = extractor.info.num_classes
    sets = [(extractor(images), labels.cpu())] + [(extractor(x), y.cpu()) for _, x, y in random_sets]
    scores = [pairwise_scores(f, y, num_classes) for f, y in sets]
    for s in scores:
        s["representativeness"] = [None] * num_classes
    real_x, real_y = reference
    real_y = real_y.cpu()
    for c in range(num_classes):
        index = (real_y == c).nonzero().flatten()
        if index.numel() == 0 or not any(bool((y == c).any()) for _, y in sets):
            continue
        real = extractor(real_x[index])
        for s, (f, y) in zip(scores, sets, strict=True):
            if bool((y == c).any()):
                s["representativeness"][c] = mgd_representativeness(f[y == c], real)
    distilled, runs = scores[0], scores[1:]
    random_real = {k: _average([r[k] for r in runs]) for k in distilled}
    return {"feature_model": extractor.name,
            "features": "L2-normalised penultimate features" if extractor.model is not None else
                        "L2-normalised normalised pixels",
            "representativeness_reference": f"test split ({real_x.shape[0]} images)",
            "distilled": {k: _summary(v) for k, v in distilled.items()},
            "random_real": {**{k: _summary(v) for k, v in random_real.items()},
                            "seeds": [s for s, _, _ in random_sets]}}

"""The two student-training protocols (label kinds), their per-dataset defaults, and the named protocols.

- ``hard``: the DC protocol (Zhao et al.; DC-Bench): cross-entropy on the stored labels, SGD lr 0.01, momentum 0.9,
  weight decay 5e-4, LR x0.1 for the second half of the epochs, batch 256, DSA augmentation (per-sample draws, one
  transform group per batch), 300 epochs.
- ``soft``: the RDED/DELT protocol: the teacher relabels every augmented batch and the student minimises
  KL(batchmean)(log_softmax(z_s/T) || softmax(z_t/T)), T = 20, no T² factor, no hard-label term; AdamW lr 1e-3,
  betas (0.9, 0.999), weight decay 0.01 on parameters with more than one dimension; LR ½(1 + cos(π e / 2E)) per
  epoch (half cosine, ends at ½ lr); RandomResizedCrop scale (0.25, 1) + flip, then CutMix (Beta(1, 1)); batch by
  DELT's IPC rule; 300 epochs.

Differences from the references (kept deliberately): DELT's RandAugment is not applied (``delt`` below applies
it); flips are off for digit datasets (digits, MNIST) in both protocols, as in DC; batches are balanced splits of a
shuffled epoch (no batch of one); DC's optimizer re-creation at the LR drop (which zeroes momentum) and its extra
epoch are not reproduced.
Tiny datasets (``digits``) default to fewer epochs so a whole pipeline stays within minutes on a CPU: their specs'
``eval_epochs`` (:mod:`fastdistill.data.specs`).

**Named protocols** (:data:`NAMED_PROTOCOLS`, ``evaluate --protocol NAME``) are the recipes of the papers: each fixes
its label kind (``hard`` or ``soft``, above) and its training settings, and uses the paper's epochs whatever the
dataset (``epochs`` overrides them). Sources: spec delt.md §7, pdd.md §2 and §4, mgd.md §6.

- ``delt``: ``soft`` + RandAugment m6 n2 per image before the crop (:mod:`fastdistill.augment.randaugment`), 300
  epochs; reported: the best of the test evaluations every 10 epochs and after the last (DELT's "best of ≈ 31").
- ``sre2l``: ``soft`` with SRe2L's ImageNet settings: full cosine to 0, batch 1024 (at most the set), RandomResizedCrop
  scale (0.08, 1), 300 epochs, best of the evaluations every 10 epochs. (SRe2L's relabel stores the crops and
  teacher logits; here the teacher labels every batch live, as ``relabel`` + ``--soft-labels stored`` would replay.)
- ``rded``: ``soft`` + RDED's ShufflePatches(2) after the crop and flip, RandomResizedCrop scale (1/2, 1), 300 epochs;
  evaluations every 10 epochs only in the last 20% of the epochs (and after the last), best reported. Factor 2 (RDED's
  default ``--factor``) for every dataset.
- ``dc``: ``hard`` (DC/DSA: SGD 0.01, x0.1 at half, DSA, batch 256), 1000 epochs, final.
- ``mtt``: ``dc`` with MTT's learned synthetic learning rate for the distilled set (the run's ``eval_lr``; the random
  real subset keeps 0.01); a run without one needs ``lr``. Final after the last epoch (MTT's "max over evaluations"
  is over distillation iterations, not student epochs).
- ``pdd``: ``hard`` on PDD's cumulative unions U_1, ..., U_P, 500 epochs per stage, each stage at its learned LR (else
  0.01), x0.1 at half of every stage, optimizer state carried (PDD+MTT's evaluate_mtt.py); final after U_P. A set
  without stages is one stage.
- ``minimax``: Minimax Diffusion / IDC / MGD³'s hard labels: RandomResizedCrop scale (0.5, 1), flip, ColorJitter 0.4
  and PCA lighting 0.1 (:mod:`fastdistill.augment.color_jitter`, :mod:`fastdistill.augment.lighting`), then CutMix
  (Beta(1, 1), every batch) with the labels mixed by the pasted area; SGD 0.01, momentum 0.9, wd 5e-4, batch 64,
  LR x0.2 at 2/3 and 5/6 of the epochs; epochs by Minimax's ``ipc_epoch`` (IPC 1: 3000, ≤ 10: 2000, ≤ 50: 1500,
  ≤ 200: 1000, ≤ 500: 500, else 300; x2/3 rounded down to hundreds for 100 classes); best of the evaluations every
  E/100 epochs.

Kept from the ``hard``/``soft`` protocols in all of them: no flips on digit datasets, the balanced batches, and the
per-architecture AdamW rates of DELT's table for every soft recipe. Best-of numbers saw the test set during training
(optimistic, as the papers report them); the final-epoch accuracy is kept next to them (``final_top1``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from fastdistill.augment.dsa import dsa_strategy_for
from fastdistill.data.base import DatasetInfo
from fastdistill.data.specs import dataset_presets
from fastdistill.errors import FastDistillError

PROTOCOLS = ("hard", "soft")
DEFAULT_EPOCHS = 300
NAMED_PROTOCOLS = {"delt": "soft", "sre2l": "soft", "rded": "soft", "dc": "hard", "mtt": "hard", "pdd": "hard",
                   "minimax": "hard"}  # name -> label kind


@dataclass(frozen=True)
class Protocol:
    """Everything that defines how a student is trained; stored with every result."""

    kind: str
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    optimizer: str
    schedule: str
    momentum: float = 0.0
    temperature: float = 0.0
    dsa_strategy: str = ""
    flip: bool = True
    rrc_scale: tuple[float, float] = (0.25, 1.0)
    cutmix: bool = False
    # named protocols only (NAMED_PROTOCOLS); the defaults leave the hard/soft protocols as they were
    name: str = ""
    randaugment: tuple[int, int] | None = None  # (magnitude of 10, operations per image)
    shuffle_patches: int = 1  # RDED's factor; 1 = off
    color_jitter: float = 0.0
    lighting: float = 0.0  # PCA lighting alphastd
    milestones: tuple[float, ...] = ()  # "multistep": fractions of the epochs where the LR is multiplied by gamma
    gamma: float = 0.1
    report: str = "final"  # "final" | "best" (of the evaluations on the test set)
    eval_every: int = 0  # epochs between evaluations of a best-of protocol
    eval_from: float = 0.0  # evaluate only after this fraction of the epochs (RDED: 0.8)

    @property
    def pixel_pipeline(self) -> bool:
        """Whether batches go through :func:`fastdistill.eval.recipebatches.recipe_batch` (pixel-space augmentation
        of the named protocols) rather than DSA (hard) or the drawn crop/flip/CutMix (soft)."""
        return bool(self.name) and (self.randaugment is not None or self.shuffle_patches > 1 or self.color_jitter > 0
                                    or self.lighting > 0 or (self.kind == "hard" and not self.dsa_strategy))

    def to_dict(self) -> dict:
        """The fields that matter for this protocol (hard: momentum, DSA; soft: temperature, RRC, flip, CutMix; a
        named protocol: its name and every setting it uses)."""
        out = dataclasses.asdict(self)
        if not self.name:
            skip = ("temperature", "rrc_scale", "flip", "cutmix") if self.kind == "hard" else ("momentum",
                                                                                               "dsa_strategy")
            return {k: v for k, v in out.items() if k not in skip and k not in _NAMED_FIELDS}
        unused = {"temperature": self.kind == "hard", "momentum": self.optimizer != "sgd",
                  "dsa_strategy": not self.dsa_strategy, "rrc_scale": bool(self.dsa_strategy),
                  "cutmix": bool(self.dsa_strategy), "randaugment": self.randaugment is None,
                  "shuffle_patches": self.shuffle_patches <= 1, "color_jitter": not self.color_jitter,
                  "lighting": not self.lighting, "milestones": self.schedule != "multistep",
                  "gamma": self.schedule != "multistep", "eval_every": self.report != "best",
                  "eval_from": not self.eval_from}
        return {"name": self.name, **{k: v for k, v in out.items() if k != "name" and not unused.get(k, False)}}

    def lr_factor(self, epoch: int, epochs: int) -> float:
        """Multiplier of the base LR in ``epoch`` (0-based) of a run of ``epochs``."""
        return lr_factor(self.schedule, epoch, epochs, self.milestones, self.gamma)

    def evaluates(self, done: int, epochs: int, every: int) -> bool:
        """Whether the test set is evaluated after ``done`` of ``epochs`` epochs, every ``every`` epochs and after
        the last, never before ``eval_from`` of the epochs."""
        return every > 0 and (done % every == 0 or done == epochs) and done > self.eval_from * epochs

    def reported(self) -> str:
        """What the headline accuracy is, in words."""
        if self.report != "best":
            return "final epoch"
        start = f" in the last {round(100 * (1 - self.eval_from))}% of the epochs" if self.eval_from else ""
        every = "epoch" if self.eval_every == 1 else f"{self.eval_every} epochs"
        return f"best of the evaluations every {every}{start} and after the last"


_NAMED_FIELDS = ("name", "randaugment", "shuffle_patches", "color_jitter", "lighting", "milestones", "gamma",
                 "report", "eval_every", "eval_from")


def default_epochs(kind: str, dataset: str) -> int:
    """300 (DC-Bench, DELT), or the dataset spec's ``eval_epochs`` (a reduced budget for tiny datasets)."""
    return dataset_presets(dataset).eval_epochs.get(kind, DEFAULT_EPOCHS)


# Dataset names of DELT's evaluation/argument.py batch rule (fastdistill spellings and the reference's).
TINY_IMAGENET_NAMES = ("tiny-imagenet", "tinyimagenet")
IMAGENET_1K_100_NAMES = ("imagenet-1k", "imagenet-100")


def soft_batch_size(ipc: int, num_classes: int, num_images: int, dataset: str = "", student: str = "") -> int:
    """DELT's rule (evaluation/argument.py; spec delt.md §7), in its order: base 10 for IPC 1, 50 for IPC 10/20,
    100 for IPC 30/40/50/100; x2 for exactly 100 or 1000 classes; halved for a ``resnet101`` student on
    ImageNet-1K/-100; 100 for Tiny-ImageNet whatever came before; at most the set size.

    DELT leaves other IPCs undefined (batch 0); here they take the nearest lower bracket (IPC < 10: 10, < 30: 50,
    else 100). Not reproduced: its one-off CIFAR-100 conv3-teacher/conv3-student batch of 25 (with lr 2e-3).
    """
    base = 10 if ipc < 10 else 50 if ipc < 30 else 100
    if num_classes in (100, 1000):
        base *= 2
    if dataset in IMAGENET_1K_100_NAMES and student == "resnet101":
        base //= 2
    if dataset in TINY_IMAGENET_NAMES:
        base = 100
    return max(1, min(base, num_images))


def make_protocol(kind: str, info: DatasetInfo, num_images: int, epochs: int | None = None, student: str = "",
                  **overrides: object) -> Protocol:
    """The protocol ``kind`` (``hard`` | ``soft``) with the defaults for ``info``, a set of ``num_images`` and the
    ``student`` architecture (the soft batch rule halves for ResNet-101).

    ``overrides`` replace any :class:`Protocol` field (e.g. ``lr=0.005``, ``batch_size=128``).
    """
    if kind not in PROTOCOLS:
        raise FastDistillError(f"unknown evaluation protocol {kind!r}; use one of {', '.join(PROTOCOLS)}")
    if epochs is not None and epochs <= 0:
        raise FastDistillError(f"epochs must be positive, got {epochs}")
    epochs = epochs or default_epochs(kind, info.name)
    flip = "flip" in dsa_strategy_for(info.name)
    if kind == "hard":
        proto = Protocol("hard", epochs, 256, 0.01, 5e-4, "sgd", "step", momentum=0.9,
                         dsa_strategy=dsa_strategy_for(info.name), flip=flip)
    else:
        ipc = max(1, round(num_images / info.num_classes))
        proto = Protocol("soft", epochs, soft_batch_size(ipc, info.num_classes, num_images, info.name, student),
                         1e-3, 0.01, "adamw", "half_cosine", temperature=20.0, flip=flip, cutmix=True)
    try:
        return dataclasses.replace(proto, **overrides)
    except TypeError as exc:
        raise FastDistillError(f"bad protocol override: {exc}") from exc


def lr_factor(schedule: str, epoch: int, epochs: int, milestones: tuple[float, ...] = (),
              gamma: float = 0.1) -> float:
    """Multiplier of the base LR in ``epoch`` (0-based) of a run of ``epochs``: ``step`` x0.1 from half on,
    ``half_cosine`` ½(1 + cos(π e / 2E)), ``cosine`` ½(1 + cos(π e / E)), ``multistep`` x``gamma`` from each
    ``floor(m·E)`` of ``milestones`` on (PyTorch's MultiStepLR stepped per epoch), ``constant``."""
    if schedule == "step":
        return 0.1 if epoch >= (epochs + 1) // 2 else 1.0
    if schedule == "half_cosine":
        return 0.5 * (1 + math.cos(math.pi * epoch / (2 * epochs)))
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * epoch / epochs))
    if schedule == "multistep":
        return gamma ** sum(epoch >= math.floor(m * epochs + 1e-9) for m in milestones)
    if schedule == "constant":
        return 1.0
    raise FastDistillError(f"unknown LR schedule {schedule!r}; use step, half_cosine, cosine, multistep or constant")


def unknown_protocol(name: str) -> FastDistillError:
    """The one-line error for a name that is not in :data:`NAMED_PROTOCOLS`."""
    return FastDistillError(f"unknown protocol {name!r}; use one of {', '.join(NAMED_PROTOCOLS)}")


def minimax_epochs(ipc: int, num_classes: int) -> int:
    """Minimax Diffusion's ``ipc_epoch`` (spec mgd.md §6): IPC 1 -> 3000, ≤ 10 -> 2000, ≤ 50 -> 1500, ≤ 200 -> 1000,
    ≤ 500 -> 500, else 300; for 100 classes x2/3 rounded down to a multiple of 100."""
    epochs = 3000 if ipc <= 1 else 2000 if ipc <= 10 else 1500 if ipc <= 50 else 1000 if ipc <= 200 else \
        500 if ipc <= 500 else 300
    return epochs * 2 // 3 // 100 * 100 if num_classes == 100 else epochs


def named_protocol(name: str, info: DatasetInfo, num_images: int, epochs: int | None = None, student: str = "",
                   **overrides: object) -> Protocol:
    """The named protocol ``name`` (:data:`NAMED_PROTOCOLS`; settings in this module's docstring) for ``info``, a
    set of ``num_images`` and the ``student`` architecture; ``epochs`` replaces the paper's, ``overrides`` any field."""
    if name not in NAMED_PROTOCOLS:
        raise unknown_protocol(name)
    if epochs is not None and epochs <= 0:
        raise FastDistillError(f"epochs must be positive, got {epochs}")
    kind = NAMED_PROTOCOLS[name]
    ipc = max(1, round(num_images / info.num_classes))
    paper = {"dc": 1000, "mtt": 1000, "pdd": 500, "minimax": minimax_epochs(ipc, info.num_classes)}.get(name, 300)
    epochs = epochs or paper
    base = make_protocol(kind, info, num_images, epochs, student=student)
    best = {"report": "best", "eval_every": 10}
    settings: dict = {
        "delt": {"randaugment": (6, 2), **best},
        "sre2l": {"schedule": "cosine", "batch_size": max(1, min(1024, num_images)), "rrc_scale": (0.08, 1.0),
                  **best},
        "rded": {"shuffle_patches": 2, "rrc_scale": (0.5, 1.0), "eval_from": 0.8, **best},
        "dc": {}, "mtt": {}, "pdd": {},
        "minimax": {"batch_size": 64, "schedule": "multistep", "milestones": (2 / 3, 5 / 6), "gamma": 0.2,
                    "dsa_strategy": "", "rrc_scale": (0.5, 1.0), "cutmix": True, "color_jitter": 0.4,
                    "lighting": 0.1, "report": "best", "eval_every": max(1, epochs // 100)},
    }[name]
    try:
        return dataclasses.replace(base, name=name, **{**settings, **overrides})
    except TypeError as exc:
        raise FastDistillError(f"bad protocol override: {exc}") from exc


def protocol_staging(name: str, num_images: int, stage: torch.Tensor | None,
                     eval_lr: Sequence[float | None] | None, lr_given: bool
                     ) -> tuple[torch.Tensor | None, list[float | None] | None]:
    """The ``stages`` and ``stage_lrs`` a run's evaluation under the named protocol ``name`` uses, from the run's
    per-image ``stage`` and per-stage learned ``eval_lr``: ``pdd`` both (progressive), ``mtt`` one stage at the last
    learned rate (none needed when ``lr_given``), the others neither (the whole set at once)."""
    if name == "pdd":
        return stage, None if stage is None or not eval_lr else list(eval_lr)
    if name == "mtt" and not lr_given:
        learned = [v for v in eval_lr or [] if v is not None]
        if not learned:
            raise FastDistillError("--protocol mtt trains the distilled set at the learning rate MTT learned (eval_lr "
                                   "in distilled.pt), and this run has none: pass --lr, or use --protocol dc")
        return torch.ones(num_images, dtype=torch.int64), [float(learned[-1])]
    return None, None


def check_named_protocol(name: str | None, teacher: bool, lr_given: bool) -> None:
    """Refuse, before a pipeline starts, a named evaluation protocol it could not run at its end: a soft-label one
    without a teacher, ``mtt`` without a learned or given learning rate (pipelines other than MTT record none)."""
    if name is None:
        return
    if name not in NAMED_PROTOCOLS:
        raise unknown_protocol(name)
    if NAMED_PROTOCOLS[name] == "soft" and not teacher:
        raise FastDistillError(f"protocol {name!r} trains with soft labels and needs a teacher (pass --teacher DIR)")
    protocol_staging(name, 1, None, None, lr_given)

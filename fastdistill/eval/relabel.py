"""Stored soft labels (SRe2L/FKD relabel): the soft-label protocol's draws and the teacher's logits, written once,
replayed by students that train without the teacher.

    manifest = relabel(images, labels, dataset, teacher, "runs/x/relabel", seeds=[0, 1, 2])
    stored = StoredLabels("runs/x/relabel")              # evaluate_distilled(..., stored_labels=stored)

For each set (the distilled set and the seeded random real subset the harness compares it with), each student seed
and each epoch, the folder holds what live training draws on that seed's generator (:mod:`fastdistill.eval.
softbatches`): the epoch's order, per image its RandomResizedCrop box and flip, per batch its CutMix box and
partners, and the teacher's raw logits on every augmented batch. A student trained from them with the same seed
sees exactly the inputs of the live protocol; only the logits' rounding (float16 by default) differs. Draws are made
on the generator of the device ``relabel`` runs on, as a live student's on that device type.

Layout: ``relabel.json`` (what the labels were made for) and ``<set>-seed<S>/epochs-<a>-<b>.pt``, one file per chunk
of epochs, written atomically, with the generator state after the chunk so an interrupted run resumes at the first
missing chunk. Per image and epoch: order int32, box int16 x 4, flip bool, CutMix partner int32, logits K x 2 bytes
(float16); per batch a CutMix box int16 x 4.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from fastdistill.augment.cropmix import CropMix
from fastdistill.augment.cutmix import CutMixParams
from fastdistill.data.base import Dataset
from fastdistill.errors import FastDistillError
from fastdistill.eval.harness import random_real_subset
from fastdistill.eval.protocols import Protocol, make_protocol
from fastdistill.eval.softbatches import SoftBatch, draw_soft_epoch, label_batches, num_batches
from fastdistill.eval.trainer import model_inputs
from fastdistill.utils.io import human_bytes, read_json, torch_load, torch_load_checkpoint, torch_save, write_json
from fastdistill.utils.seed import generator

MANIFEST = "relabel.json"
FORMAT = 1
SETS = ("distilled", "random_real")
LABEL_FIELDS = ("epochs", "batch_size", "rrc_scale", "flip", "cutmix")  # the protocol fields that shape the labels
LOGITS_DTYPES = {"float16": torch.float16, "float32": torch.float32}
DEFAULT_CHUNK_EPOCHS = 10


def images_sha256(images: torch.Tensor, stages: torch.Tensor | None = None) -> str:
    """sha256 of a set's pixels (and its stage per image, if any)."""
    digest = hashlib.sha256(str(tuple(images.shape)).encode())
    digest.update(images.detach().cpu().contiguous().numpy().tobytes())
    if stages is not None:
        digest.update(stages.detach().cpu().long().numpy().tobytes())
    return digest.hexdigest()


def part_sizes(num_images: int, stages: torch.Tensor | None) -> list[int]:
    """Images per training part: the whole set, or the cumulative unions of a staged (PDD) set, as the harness
    trains them."""
    if stages is None:
        return [num_images]
    return [int((stages <= s).sum()) for s in stages.unique().tolist()]


def epoch_bytes(n: int, num_classes: int, protocol: Protocol, logits_dtype: str = "float16") -> int:
    """Stored bytes of one epoch over ``n`` images: n · (4 + 8 + flip + partner + K · logit) + per batch 8."""
    per_image = 4 + 8 + (1 if protocol.flip else 0) + (4 if protocol.cutmix else 0)
    per_image += num_classes * LOGITS_DTYPES[logits_dtype].itemsize
    return n * per_image + (8 * num_batches(n, protocol.batch_size) if protocol.cutmix else 0)


def storage_bytes(parts: Sequence[int], num_classes: int, protocol: Protocol, seeds: int,
                  logits_dtype: str = "float16") -> int:
    """Bytes of the whole folder's tensors: both sets, every seed, every part's ``protocol.epochs`` epochs."""
    per_seed = sum(protocol.epochs * epoch_bytes(n, num_classes, protocol, logits_dtype) for n in parts)
    return len(SETS) * seeds * per_seed


def _label_settings(protocol: Protocol) -> dict:
    settings = {k: getattr(protocol, k) for k in LABEL_FIELDS}
    settings["rrc_scale"] = list(settings["rrc_scale"])
    return settings


def _chunks(total: int, chunk_epochs: int) -> list[tuple[int, int]]:
    return [(a, min(a + chunk_epochs, total)) for a in range(0, total, chunk_epochs)]


def _chunk_file(folder: Path, which: str, seed: int, first: int, stop: int) -> Path:
    return folder / f"{which}-seed{seed}" / f"epochs-{first:05d}-{stop - 1:05d}.pt"


def _pack(epochs: list[list[SoftBatch]], logits_dtype: torch.dtype) -> dict:
    """One chunk's epochs as flat CPU tensors (the layout in the module docstring)."""
    batches = [b for epoch in epochs for b in epoch]
    out = {"n": torch.tensor([sum(len(b.index) for b in epoch) for epoch in epochs]),
           "order": torch.cat([b.index for b in batches]).int().cpu(),
           "boxes": torch.cat([b.aug.boxes for b in batches]).short().cpu(),
           "logits": torch.cat([b.logits for b in batches]).to(logits_dtype).cpu()}
    if batches[0].aug.flips is not None:
        out["flips"] = torch.cat([b.aug.flips for b in batches]).cpu()
    if batches[0].aug.mix is not None:
        out["mix_boxes"] = torch.stack([b.aug.mix.box for b in batches]).short().cpu()
        out["mix_perm"] = torch.cat([b.aug.mix.perm for b in batches]).int().cpu()
    return out


def relabel(images: torch.Tensor, labels: torch.Tensor, dataset: Dataset, teacher: nn.Module,
            output: str | Path, *, seeds: Sequence[int], epochs: int | None = None, student: str = "convnet3-bn",
            stages: torch.Tensor | None = None, chunk_epochs: int = DEFAULT_CHUNK_EPOCHS,
            logits_dtype: str = "float16", device: torch.device | str = "cpu", teacher_name: str = "",
            teacher_sha256: str = "", resume: bool = False, progress: bool = True,
            log: Callable[[str], None] = print) -> dict:
    """Store the soft-label protocol's draws and ``teacher``'s logits for ``images`` and its random real subsets.

    The protocol is the harness's (``make_protocol("soft", ...)`` with ``epochs`` and ``student``, whose batch rule
    it follows); students of seed S replay ``<set>-seed<S>``. ``output`` must not hold other stored labels; with
    ``resume`` it may hold an interrupted run of the same settings, whose finished chunks are kept. Returns the
    manifest (also written to ``output/relabel.json``).
    """
    info, device = dataset.info, torch.device(device)
    if logits_dtype not in LOGITS_DTYPES:
        raise FastDistillError(f"unknown logits dtype {logits_dtype!r}; use {' or '.join(LOGITS_DTYPES)}")
    if chunk_epochs < 1:
        raise FastDistillError(f"--chunk-epochs must be >= 1, got {chunk_epochs}")
    if not seeds:
        raise FastDistillError("relabel needs at least one seed")
    labels = labels.cpu().long()
    stages = None if stages is None else stages.cpu().long()
    protocol = make_protocol("soft", info, int(labels.numel()), epochs, student=student)
    parts = part_sizes(int(labels.numel()), stages)
    real = {seed: random_real_subset(dataset.train, labels, seed)[0] for seed in seeds}
    manifest = {"format": FORMAT, "images_sha256": images_sha256(images, stages), "num_images": int(labels.numel()),
                "num_classes": info.num_classes, "dataset": info.name, "parts": parts, "sets": list(SETS),
                "seeds": [int(s) for s in seeds], "protocol": _label_settings(protocol), "student": student,
                "random_real_sha256": {str(s): images_sha256(x) for s, x in real.items()},
                "teacher": teacher_name, "teacher_sha256": teacher_sha256, "logits_dtype": logits_dtype,
                "chunk_epochs": chunk_epochs, "draw_device": device.type,
                "bytes": storage_bytes(parts, info.num_classes, protocol, len(seeds), logits_dtype)}
    folder = Path(output)
    _start(folder, manifest, resume)
    total = protocol.epochs * len(parts)
    chunks = _chunks(total, chunk_epochs)
    if resume and all(_chunk_file(folder, w, s, a, b).is_file() for s in seeds for w in SETS for a, b in chunks):
        log(f"{folder} is already complete; nothing to do (use a new --output to relabel again)")
        return {**manifest, "already_complete": True}
    log(f"relabel: {len(SETS)} sets x {len(seeds)} seed(s) x {protocol.epochs} epochs x {'+'.join(map(str, parts))} "
        f"images, {info.num_classes} classes, {logits_dtype} logits, batch {protocol.batch_size}: "
        f"{human_bytes(manifest['bytes'])} in {folder}")
    teacher = teacher.to(device).eval().requires_grad_(False)
    bar = tqdm(total=len(SETS) * len(seeds) * total, desc="relabel", unit="ep", disable=not progress)
    for seed in seeds:
        for which, x_set in (("distilled", images), ("random_real", real[seed])):
            x = model_inputs(info, x_set, device)
            xs = [x] if stages is None else [x[(stages <= s).to(device)] for s in stages.unique().tolist()]
            g = generator(seed, device)
            for first, stop in chunks:
                path = _chunk_file(folder, which, seed, first, stop)
                done = torch_load_checkpoint(path) if resume else None
                if done is not None and "rng" in done:
                    g.set_state(done["rng"])
                else:
                    epochs_drawn = []
                    for e in range(first, stop):
                        xe = xs[e // protocol.epochs]
                        drawn = draw_soft_epoch(xe.shape[0], xe.shape[-2:], protocol, g)
                        epochs_drawn.append([b for _, b in label_batches(xe, drawn, teacher)])
                    torch_save(path, {**_pack(epochs_drawn, LOGITS_DTYPES[logits_dtype]), "rng": g.get_state()})
                bar.update(stop - first)
    bar.close()
    return manifest


def _start(folder: Path, manifest: dict, resume: bool) -> None:
    """Write the manifest, or on ``resume`` check it equals the interrupted run's."""
    path = folder / MANIFEST
    if path.exists():
        if not resume:
            raise FastDistillError(f"{folder} already holds stored labels; pass --resume to finish them or choose "
                                   "another --output")
        old = read_json(path)
        changed = [k for k in manifest if k != "teacher" and old.get(k) != manifest[k]]  # (its sha256 counts)
        if changed:
            detail = ", ".join(f"{k}: {old.get(k)!r} -> {manifest[k]!r}" for k in changed)[:300]
            raise FastDistillError(f"--resume with different settings ({detail}); use the original ones or a new "
                                   "--output")
        return
    if resume:
        raise FastDistillError(f"--resume: {folder} holds no interrupted relabel ({MANIFEST}); drop --resume")
    write_json(path, {**manifest, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")})


class StoredLabels:
    """A finished relabel folder, checked against what an evaluation is about to train."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        path = self.folder / MANIFEST
        if not path.is_file():
            raise FastDistillError(f"no stored soft labels in {self.folder} ({MANIFEST} missing); run `fastdistill "
                                   "relabel RUN --teacher T` first")
        self.manifest = read_json(path)
        if not isinstance(self.manifest, dict) or self.manifest.get("format") != FORMAT:
            raise FastDistillError(f"{path} is not a fastdistill relabel manifest (format {FORMAT}); run relabel "
                                   "again")
        m = self.manifest
        total = m["protocol"]["epochs"] * len(m["parts"])
        missing = [p for seed in m["seeds"] for which in m["sets"] for a, b in _chunks(total, m["chunk_epochs"])
                   if not (p := _chunk_file(self.folder, which, seed, a, b)).is_file()]
        if missing:
            raise FastDistillError(f"stored labels in {self.folder} are incomplete ({len(missing)} chunk(s) missing, "
                                   f"e.g. {missing[0].name}); finish them with `fastdistill relabel ... --resume`")

    @property
    def teacher_sha256(self) -> str:
        return self.manifest["teacher_sha256"]

    def describe(self) -> str:
        return f"stored soft labels {self.folder} (teacher {self.manifest['teacher']})"

    def check(self, images: torch.Tensor, stages: torch.Tensor | None, protocol: Protocol,
              seeds: Sequence[int]) -> None:
        """Refuse (one line) labels made for other images, other seeds, or another epochs/batch/augmentation."""
        m, where = self.manifest, f"stored soft labels in {self.folder}"
        if images_sha256(images, stages) != m["images_sha256"]:
            raise FastDistillError(f"{where} were made for other images; run `fastdistill relabel` on this run")
        now = _label_settings(protocol)
        changed = [k for k in LABEL_FIELDS if now[k] != m["protocol"][k]]
        if changed:
            detail = ", ".join(f"{k} {m['protocol'][k]} (this evaluation: {now[k]})" for k in changed)
            raise FastDistillError(f"{where} were made for {detail}; evaluate with the same settings or relabel "
                                   "with these")
        absent = [s for s in seeds if s not in m["seeds"]]
        if absent:
            raise FastDistillError(f"{where} hold seeds {m['seeds']}, not {absent}; evaluate with --seed/--seeds "
                                   "among them or relabel with these seeds")

    def stream(self, which: str, seed: int, images: torch.Tensor, device: torch.device | str = "cpu"
               ) -> StoredStream:
        """The batches of the student of ``seed`` on ``which`` set (``images``, checked against the manifest)."""
        if which == "random_real" and images_sha256(images) != self.manifest["random_real_sha256"].get(str(seed)):
            raise FastDistillError(f"the random real subset of seed {seed} differs from the one labelled in "
                                   f"{self.folder} (other training data?); relabel with this data")
        return StoredStream(self, which, seed, device)


class StoredStream:
    """Epochs of one student, read chunk by chunk (one chunk in memory) onto ``device``."""

    def __init__(self, stored: StoredLabels, which: str, seed: int, device: torch.device | str = "cpu"):
        self.stored, self.which, self.seed, self.device = stored, which, seed, torch.device(device)
        m = stored.manifest
        self.epochs, self.parts = m["protocol"]["epochs"], m["parts"]
        self.batch_size = m["protocol"]["batch_size"]
        self.chunks = _chunks(self.epochs * len(self.parts), m["chunk_epochs"])
        self._loaded: tuple[int, dict] | None = None

    def _chunk(self, index: int) -> tuple[int, dict]:
        for first, stop in self.chunks:
            if first <= index < stop:
                if self._loaded is None or self._loaded[0] != first:
                    path = _chunk_file(self.stored.folder, self.which, self.seed, first, stop)
                    data = torch_load(path, "delete it and run `fastdistill relabel ... --resume` to write it again")
                    self._loaded = first, {k: v.to(self.device) for k, v in data.items() if k != "rng"}
                return self._loaded
        raise FastDistillError(f"{self.stored.describe()} hold {self.chunks[-1][1]} epochs; this student asks for "
                               f"epoch {index + 1}: evaluate with the epochs the labels were made for")

    def epoch(self, index: int, n: int) -> list[SoftBatch]:
        """The batches of epoch ``index`` (0-based, counted over all training parts) of a set of ``n`` images."""
        first, data = self._chunk(index)
        sizes = data["n"].tolist()
        k = index - first
        if sizes[k] != n:
            raise FastDistillError(f"{self.stored.describe()} hold {sizes[k]} images in epoch {index + 1}, this "
                                   f"student trains on {n}; relabel this run")
        start = sum(sizes[:k])
        batch_start = sum(num_batches(s, self.batch_size) for s in sizes[:k])
        count = num_batches(n, self.batch_size)
        out = []
        for j in range(count):  # torch.tensor_split's sizes: the first n % count batches hold one more
            size = n // count + (1 if j < n % count else 0)
            rows = slice(start, start + size)
            start += size
            mix = None
            if "mix_boxes" in data:
                mix = CutMixParams(data["mix_boxes"][batch_start + j].long(), data["mix_perm"][rows].long())
            aug = CropMix(data["boxes"][rows].float(), data["flips"][rows] if "flips" in data else None, mix)
            out.append(SoftBatch(data["order"][rows].long(), aug, data["logits"][rows]))
        return out

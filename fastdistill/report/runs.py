"""What a report reads from a run folder, and the measures it finds in ``results.json``.

A run folder (any pipeline's ``--output``) holds ``config.json``, ``summary.json``, ``results.json`` (after an
evaluation), ``grid.png`` and ``distilled.pt``; the report reads what is there and marks the rest as not measured.
``results.json`` comes in two layouts: the harness's (``protocols: {kind: entry}``, from ``delt``, ``mgd`` and
``evaluate``) and the progressive one of ``pdd``/``distill`` (``rows`` plus the harness results under ``harness``).
Accuracy entries are found wherever they sit (a dict whose ``distilled`` and ``random_real`` summaries hold ``mean``
and ``runs``), so layouts that add students or protocols are read too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from fastdistill.errors import FastDistillError
from fastdistill.pipelines.outputs import TENSORS
from fastdistill.utils.io import UNREADABLE, read_json

CONFIG, RESULTS, SUMMARY, GRID = "config.json", "results.json", "summary.json", "grid.png"
_NOT_ACCURACY = ("diversity", "ddranking", "rows", "options")  # result keys that never hold accuracy entries
METHODS = {"delt": "DELT", "mgd": "MGD³"}


@dataclass
class AccuracyEntry:
    """One protocol x student evaluation: the distilled set and the random real subset, summaries as the harness
    writes them (``mean``, ``std``, ``runs`` with one dict per seed)."""

    label: str
    kind: str
    student: str
    protocol: dict
    distilled: dict
    random_real: dict
    headline: bool = True  # False for the extra budgets of a progressive evaluation

    @property
    def key(self) -> str:
        """What identifies the column of this entry in a side-by-side table."""
        return f"{self.kind} {self.student}".strip()

    @property
    def epochs(self) -> int | None:
        runs = self.distilled.get("runs") or [{}]
        return runs[0].get("epochs", self.protocol.get("epochs"))

    def per_class(self, which: str) -> list[float | None] | None:
        """Per-class top-1 (%) averaged over seeds, or None when the runs did not record it."""
        runs = getattr(self, which).get("runs") or []
        lists = [r["per_class_top1"] for r in runs if isinstance(r.get("per_class_top1"), list)]
        if not lists or len(lists) != len(runs):
            return None
        out: list[float | None] = []
        for values in zip(*lists, strict=True):
            known = [v for v in values if isinstance(v, (int, float))]
            out.append(sum(known) / len(known) if known else None)
        return out

    def curves(self, which: str) -> list[dict]:
        """The ``curve`` dict of every run that recorded one."""
        return [r["curve"] for r in getattr(self, which).get("runs") or [] if isinstance(r.get("curve"), dict)]


@dataclass
class Run:
    """What the report knows of one run folder."""

    path: Path
    config: dict = field(default_factory=dict)  # config.json's options, with its resolved settings on top
    record: dict = field(default_factory=dict)  # config.json as written (command, versions, devices, ...)
    results: dict | None = None
    summary: dict | None = None
    classes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.path.resolve().name

    @property
    def command(self) -> str:
        return str(self.record.get("command") or "?")

    @property
    def method(self) -> str:
        """A short name of the method: DELT, MGD³, PDD+DM, DC, ..."""
        if self.command == "pdd":
            return f"PDD+{str(self.config.get('base', '?')).upper()}"
        if self.command == "distill":
            return str(self.config.get("method", "?")).upper()
        return METHODS.get(self.command, self.command)

    @property
    def dataset(self) -> str:
        if self.results and self.results.get("dataset"):
            return str(self.results["dataset"])
        return str(self.config.get("dataset", "?"))

    @property
    def ipc(self) -> str:
        value = (self.results or {}).get("ipc", self.config.get("ipc"))
        return "?" if value is None else f"{value:g}" if isinstance(value, float) else str(value)

    @property
    def grid(self) -> Path | None:
        path = self.path / GRID
        return path if path.is_file() else None

    def accuracy(self) -> list[AccuracyEntry]:
        return accuracy_entries(self.results) if self.results else []


def _read(path: Path) -> dict | None:
    if not path.is_file():
        return None
    data = read_json(path)
    if not isinstance(data, dict):
        raise FastDistillError(f"{path} is not a JSON object; rerun the command that wrote it")
    return data


def mapped_record(run_dir: Path) -> dict | None:
    """``distilled.pt`` memory-mapped (tensors are read only where indexed), or None when absent or unreadable."""
    file = run_dir / TENSORS
    if not file.is_file():
        return None
    try:
        record = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
    except UNREADABLE:
        return None
    ok = isinstance(record, dict) and all(k in record for k in ("images", "labels", "classes"))
    return record if ok else None


def _classes(run_dir: Path, count: int) -> list[str]:
    """Class names from ``distilled.pt``, else ``0 .. count-1``."""
    record = mapped_record(run_dir)
    if record is not None and record["classes"]:
        return [str(c) for c in record["classes"]]
    return [str(c) for c in range(count)]


def load_run(path: str | Path) -> Run:
    """Read a run folder; a folder without ``config.json``, ``results.json`` or ``distilled.pt`` is refused."""
    path = Path(path)
    if not path.is_dir():
        raise FastDistillError(f"run folder {path} not found; pass the --output folder of a pipeline run")
    if not any((path / name).is_file() for name in (CONFIG, RESULTS, TENSORS)):
        raise FastDistillError(f"{path} holds no fastdistill run (no {CONFIG}, {RESULTS} or {TENSORS}); pass the "
                               "--output folder of a pipeline run")
    record = _read(path / CONFIG) or {}
    config = {**(record.get("config") or {}), **(record.get("resolved") or {})}
    results = _read(path / RESULTS)
    counts = (results or {}).get("per_class") or []
    return Run(path, config, record, results, _read(path / SUMMARY), _classes(path, len(counts)))


def _is_entry(node: dict) -> bool:
    return all(isinstance(node.get(k), dict) and isinstance(node[k].get("mean"), (int, float))
               and isinstance(node[k].get("runs"), list) for k in ("distilled", "random_real"))


def _found(node: object, path: tuple[str, ...], out: list[tuple[tuple[str, ...], dict]]) -> None:
    if not isinstance(node, dict):
        return
    if _is_entry(node):
        out.append((path, node))
        return
    for key, value in node.items():
        if key not in _NOT_ACCURACY:
            _found(value, (*path, str(key)), out)


def accuracy_entries(results: dict) -> list[AccuracyEntry]:
    """Every accuracy entry in ``results``, in file order. Progressive results are labelled with the row names of
    their budget (rows trained once because their budgets coincide are joined with " = "); only the first budget is
    a headline entry."""
    found: list[tuple[tuple[str, ...], dict]] = []
    _found(results, (), found)
    if isinstance(results.get("students"), dict):  # ``protocols.<kind>`` repeats a ``students.<arch>.<kind>`` entry
        found = [(path, node) for path, node in found if path[:1] != ("protocols",)]
    rows = [r for r in results.get("rows") or [] if isinstance(r, dict)]
    budgets = list((results.get("harness") or {}).keys()) if isinstance(results.get("harness"), dict) else []
    entries = []
    for path, node in found:
        protocol = node.get("protocol") if isinstance(node.get("protocol"), dict) else {}
        kind = str(protocol.get("kind") or (path[-1] if path else "?"))
        student = str(node.get("student") or node.get("arch") or results.get("arch") or "")
        label, headline = kind, True
        if path and path[0] == "harness" and len(path) > 1:
            first = (node["distilled"]["runs"] or [{}])[0]
            staged = (results["harness"][path[1]].get("stages") or 1) > 1
            names = [r.get("name", "") for i, r in enumerate(rows)  # rows[0] is the progressive one if any is
                     if r.get("epochs") == first.get("epochs") and r.get("steps") == first.get("steps")
                     and staged == (i == 0 and len(rows) > 1)]
            label = " = ".join(names) or path[1]
            headline = bool(budgets) and path[1] == budgets[0]
        entries.append(AccuracyEntry(label, kind, student, protocol, node["distilled"], node["random_real"], headline))
    labels = [(e.label, e.student) for e in entries]
    for entry, (path, _) in zip(entries, found, strict=True):
        if labels.count((entry.label, entry.student)) > 1:
            entry.label = f"{entry.label} ({'/'.join(path)})"
    return entries


def number(value: object) -> float | None:
    """``value`` as a finite float, or None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)

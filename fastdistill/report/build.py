"""The report's content: for each run its grid, accuracy against the random real subset, protocol, per-class
accuracy, diversity, DD-Ranking scores and training curves, and a side-by-side table when there are several runs.
Whatever a run did not measure is named as such."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from fastdistill.report import plots
from fastdistill.report.document import Block, Heading, Image, Table, Text
from fastdistill.report.runs import AccuracyEntry, Run, number

SETS = (("distilled", "distilled"), ("random_real", "random real"))
DIVERSITY_NAMES = {
    "intra_class_cosine": "intra-class cosine (mean pairwise; lower = more diverse)",
    "mgd_diversity": "MGD³ diversity (1 - max pairwise cosine; higher = more diverse)",
    "representativeness": "representativeness (min over images of the max cosine to a real image)",
}
EVALUATE_HINT = "`python -m fastdistill evaluate RUN`"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


def _acc(summary: dict, key: str = "mean") -> str:
    mean, std = number(summary.get(key)), number(summary.get(key.replace("mean", "std")))
    if mean is None:
        return "-"
    return f"{mean:.2f}" if std is None else f"{mean:.2f} ± {std:.2f}"


def _value(value: object, digits: int = 4) -> str:
    """A measure: a number, ``{mean, std}``, or anything else as text."""
    if isinstance(value, dict) and "mean" in value:
        mean, std = number(value.get("mean")), number(value.get("std"))
        if mean is None:
            return "-"
        return f"{mean:.{digits}f}" + ("" if std is None else f" ± {std:.{digits}f}")
    if number(value) is not None and not isinstance(value, int):
        return f"{value:.{digits}f}"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    return "-" if value is None else str(value)


def _setting(value: object) -> str:
    """A protocol setting as written (``0.001``, ``1e-05``, ``True``)."""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(_setting, value))
    return "-" if value is None else str(value)


def _flat(d: dict, prefix: str = "") -> list[tuple[str, object]]:
    """Scalar settings of a nested dict as dotted keys; long lists (per-class values) are left out."""
    out: list[tuple[str, object]] = []
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out += _flat(value, name + ".")
        elif not isinstance(value, (list, tuple)) or len(value) <= 4:
            out.append((name, value))
    return out


def _not_measured(what: str, hint: str = "") -> Text:
    return Text(f"{what}: not measured{f' ({hint})' if hint else ''}.")


class _Builder:
    """Collects blocks; a plot becomes an image, or a line saying why it is missing."""

    def __init__(self) -> None:
        self.blocks: list[Block] = []
        self.can_plot = plots.available()

    def add(self, *blocks: Block) -> None:
        self.blocks.extend(blocks)

    def plot(self, file: str, alt: str, draw: Callable[..., bytes], *args: object) -> None:
        if not self.can_plot:
            self.add(Text(f"{alt}: {plots.INSTALL_HINT}."))
            return
        try:
            self.add(Image(file, draw(*args), alt))
        except Exception as exc:  # a plotting failure costs that plot only, never the report or the run
            self.add(Text(f"{alt}: plot not drawn ({type(exc).__name__}: {exc})."))


def _overview(run: Run) -> Table:
    versions = run.record.get("versions") or {}
    summary = run.summary or {}
    rows = [("run folder", str(run.path)), ("command", run.command), ("method", run.method),
            ("dataset", run.dataset), ("images per class", run.ipc),
            ("seed", str(run.config.get("seed", "-"))), ("created", str(run.record.get("created", "-"))),
            ("teacher", str(run.config.get("teacher") or (run.results or {}).get("teacher") or "-")),
            ("evaluated on", str((run.results or {}).get("device", "-"))),
            ("fastdistill / torch", f"{versions.get('fastdistill', '-')} / {versions.get('torch', '-')}")]
    seconds = number(summary.get("total_seconds", summary.get("recover_seconds")))
    if seconds is not None:
        rows.append(("distillation time", f"{seconds:.1f} s"))
    return Table(("run", ""), rows)


def _accuracy(b: _Builder, run: Run, entries: list[AccuracyEntry]) -> None:
    b.add(Heading("Accuracy against the random real subset", 3))
    if not entries:
        b.add(_not_measured("Accuracy", f"the run was not evaluated; {EVALUATE_HINT}"))
        return
    best = any("best_mean" in e.distilled for e in entries)
    header = ["evaluation", "protocol", "student", "epochs", "seeds", "distilled", "random real", "delta"]
    if best:
        header += ["best distilled", "best random real"]
    rows = []
    for e in entries:
        delta = number(e.distilled.get("mean")), number(e.random_real.get("mean"))
        name = e.protocol.get("name")  # a named protocol (evaluate --protocol): its name and its label kind
        row = [e.label, f"{name} ({e.kind})" if name else e.kind, e.student or "-", str(e.epochs or "-"),
               str(len(e.distilled.get("runs") or [])),
               _acc(e.distilled), _acc(e.random_real),
               "-" if None in delta else f"{delta[0] - delta[1]:+.2f}"]
        if best:
            row += [_acc(e.distilled, "best_mean"), _acc(e.random_real, "best_mean")]
        rows.append(row)
    b.add(Table(header, rows))
    results = run.results or {}
    metric = results.get("metric", "test top-1 % after the last epoch; mean ± population std over seeds")
    b.add(Text(f"On {run.dataset}: {metric}. The random real subset has the same labels at every position and "
               "shares each seed's student initialisation and augmentation."
               + (" Best-of columns are optimistic (test set seen during training)." if best else "")))
    for kind, reason in (results.get("skipped") or {}).items():
        b.add(Text(f"{kind}: skipped ({reason})."))


def _protocol(b: _Builder, run: Run, entries: list[AccuracyEntry]) -> None:
    b.add(Heading("Protocol", 3))
    named = (run.results or {}).get("protocol")
    if isinstance(named, dict):
        b.add(Table(("setting", "value"), [(k, _setting(v)) for k, v in _flat(named)]))
    shown = [e for e in entries if e.headline and e.protocol]
    if not shown:
        if not isinstance(named, dict):
            b.add(_not_measured("Protocol", "no evaluation recorded"))
        return
    settings = list(dict.fromkeys(k for e in shown for k, _ in _flat(e.protocol)))
    rows = []
    for key in settings:
        values = [dict(_flat(e.protocol)).get(key) for e in shown]
        rows.append([key, *(_setting(v) for v in values)])
    b.add(Table(["setting", *(f"{e.label} ({e.student})" if e.student else e.label for e in shown)], rows))


def _per_class_accuracy(b: _Builder, run: Run, entries: list[AccuracyEntry], prefix: str) -> None:
    b.add(Heading("Per-class accuracy", 3))
    drawn = False
    for e in entries:
        series = {name: e.per_class(which) for which, name in SETS}
        if not e.headline or any(v is None for v in series.values()):
            continue
        drawn = True
        classes = run.classes if len(run.classes) == len(series["distilled"]) else \
            [str(c) for c in range(len(series["distilled"]))]
        b.plot(f"{prefix}per-class-accuracy-{_slug(e.key)}.png", f"per-class test top-1, {e.label} ({e.student})",
               plots.per_class, f"per-class test top-1 %: {e.label}, {e.student} (mean over seeds)", classes, series,
               "test top-1 %")
    if not drawn:
        b.add(_not_measured("Per-class accuracy", f"not in results.json; {EVALUATE_HINT} records it"
                            if entries else EVALUATE_HINT))


def _diversity(b: _Builder, run: Run, prefix: str) -> None:
    b.add(Heading("Diversity", 3))
    div = (run.results or {}).get("diversity")
    if not isinstance(div, dict) or not div:
        b.add(_not_measured("Diversity"))
        return
    sets = [(which, name) for which, name in SETS if isinstance(div.get(which), dict)]
    rest = [(k, v) for k, v in _flat({k: v for k, v in div.items() if k not in dict(SETS)})]
    if rest:
        b.add(Text("; ".join(f"{k.replace('_', ' ')}: {_value(v)}" for k, v in rest) + "."))
    if not sets:
        return
    measures = list(dict.fromkeys(m for which, _ in sets for m in div[which]))
    b.add(Table(["measure", *(name for _, name in sets)],
                [[DIVERSITY_NAMES.get(m, m), *(_value(div[which].get(m)) for which, _ in sets)] for m in measures]))
    b.add(Text("Cosine similarities of L2-normalised penultimate-layer features, per class, then mean ± std over "
               "classes."))
    for m in measures:
        series = {}
        for which, name in sets:
            values = div[which].get(m)
            per = values.get("per_class") if isinstance(values, dict) else None
            if isinstance(per, list):
                series[name] = [number(v) for v in per]
        if series and len({len(v) for v in series.values()}) == 1:
            n = len(next(iter(series.values())))
            classes = run.classes if len(run.classes) == n else [str(c) for c in range(n)]
            b.plot(f"{prefix}diversity-{_slug(m)}.png", f"per-class {m.replace('_', ' ')}", plots.per_class,
                   f"per-class {DIVERSITY_NAMES.get(m, m)}", classes, series, m.replace("_", " "))


def _ddranking(b: _Builder, run: Run) -> None:
    b.add(Heading("DD-Ranking scores", 3))
    scores = (run.results or {}).get("ddranking")
    if not isinstance(scores, dict) or not scores:
        b.add(_not_measured("DD-Ranking scores"))
        return
    rows = [r for r in scores.get("scores") or [] if isinstance(r, dict)]
    if rows:  # one row per student and protocol
        keys = ("hlr", "ior", "lrs", "ars")
        b.add(Table(("student", "protocol", *keys),
                    [[str(r.get("student", "")), str(r.get("protocol", "")), *(_value(r.get(k)) for k in keys)]
                     for r in rows]))
    else:
        b.add(Table(("score", "value"), [(k, _value(v)) for k, v in _flat(scores)]))
    b.add(Text("HLR: full-data hard-label accuracy minus the distilled set's; IOR: distilled minus random real; "
               "LRS = squash(0.5 IOR - 0.5 HLR); ARS = squash(γ·Δ with augmentation + (1-γ)·Δ without), γ = 0.5; "
               "accuracies as fractions, scores in [0, 1] (DD-Ranking's definitions)."))


def _curves(b: _Builder, entries: list[AccuracyEntry], prefix: str) -> None:
    b.add(Heading("Student training curves", 3))
    drawn = False
    for e in entries:
        loss = {name: [c["loss"] for c in e.curves(which) if isinstance(c.get("loss"), list) and c["loss"]]
                for which, name in SETS}
        test = {name: [c["test_top1"] for c in e.curves(which) if isinstance(c.get("test_top1"), list)]
                for which, name in SETS}
        if not e.headline or not any(loss.values()):
            continue
        drawn = True
        b.plot(f"{prefix}curves-{_slug(e.key)}.png", f"training curves, {e.label} ({e.student})", plots.curves,
               f"{e.label}, {e.student}", loss, {k: v for k, v in test.items() if v})
    if not drawn:
        b.add(_not_measured("Training curves", f"not in results.json; {EVALUATE_HINT} records them"
                            if entries else EVALUATE_HINT))


def _side_by_side(b: _Builder, runs: Sequence[Run]) -> None:
    b.add(Heading("Side by side", 2))
    heads = [{e.key: e for e in run.accuracy() if e.headline} for run in runs]
    keys = list(dict.fromkeys(k for h in heads for k in h))
    div_keys = list(dict.fromkeys(m for run in runs if isinstance((run.results or {}).get("diversity"), dict)
                                  for which, _ in SETS
                                  for m in ((run.results or {})["diversity"].get(which) or {})))
    score_keys = list(dict.fromkeys(k for run in runs if isinstance((run.results or {}).get("ddranking"), dict)
                                    for k, _ in _flat(run.results["ddranking"])
                                    if k.rsplit(".", 1)[-1] in ("lrs", "ars")))
    header = ["run", "method", "dataset", "IPC", *(f"{k}: distilled / random real" for k in keys),
              *(f"{m.replace('_', ' ')}: distilled / random real" for m in div_keys), *score_keys]
    rows = []
    for run, head in zip(runs, heads, strict=True):
        row = [run.name, run.method, run.dataset, run.ipc]
        row += [f"{_acc(head[k].distilled)} / {_acc(head[k].random_real)}" if k in head else "not measured"
                for k in keys]
        div = (run.results or {}).get("diversity")
        div = div if isinstance(div, dict) else {}
        row += [" / ".join(_value((div.get(which) or {}).get(m), 3) for which, _ in SETS) if div else "not measured"
                for m in div_keys]
        scores = dict(_flat(run.results["ddranking"])) if isinstance((run.results or {}).get("ddranking"), dict) \
            else {}
        row += [_value(scores.get(k)) if k in scores else "not measured" for k in score_keys]
        rows.append(row)
    b.add(Table(header, rows))
    b.add(Text("Accuracy cells: test top-1 %, mean ± std over seeds (progressive PDD runs: their first budget, see "
               "each run's table). Diversity: lower intra-class cosine = more diverse."))


def run_title(run: Run) -> str:
    return f"{run.method} on {run.dataset}, IPC {run.ipc}"


def build(runs: Sequence[Run], grids: Sequence[tuple[bytes | None, str]]) -> tuple[str, list[Block]]:
    """The report's title and blocks; ``grids`` holds each run's labelled grid PNG (None: none found) and a note."""
    b = _Builder()
    title = f"fastdistill report: {run_title(runs[0])}" if len(runs) == 1 else \
        f"fastdistill report: {' vs '.join(r.method for r in runs)}"
    b.add(Heading(title, 1))
    if not b.can_plot:
        b.add(Text(f"Tables and image grids only: {plots.INSTALL_HINT}."))
    if len(runs) > 1:
        _side_by_side(b, runs)
    for i, (run, (grid, note)) in enumerate(zip(runs, grids, strict=True)):
        prefix = "" if len(runs) == 1 else f"run{i + 1}-"
        entries = run.accuracy()
        if len(runs) > 1:
            b.add(Heading(f"{run_title(run)} ({run.name})", 2))
        b.add(_overview(run))
        b.add(Heading("Distilled images", 3))
        b.add(Image(f"{prefix}grid.png", grid, f"distilled images of {run.name}, one row per class") if grid
              else _not_measured("Image grid", "no grid.png or distilled.pt in the run folder"))
        if note:
            b.add(Text(f"The grid shows {note}."))
        _accuracy(b, run, entries)
        _protocol(b, run, entries)
        _per_class_accuracy(b, run, entries, prefix)
        _diversity(b, run, prefix)
        _ddranking(b, run)
        _curves(b, entries, prefix)
    return title, b.blocks

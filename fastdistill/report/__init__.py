"""Reports of distillation runs: ``report.html`` (self-contained: images embedded, no external file, script or font)
and ``report.md`` with its PNGs next to it.

    from fastdistill.report import write_report

    write_report(["runs/delt-fmnist", "runs/mgd-fmnist", "runs/pdd-fmnist"], "reports/fmnist")

Every pipeline writes the single-run report into ``RUN/report/`` at its end (:func:`write_run_report`). Plots need
matplotlib (``pip install fastdistill[report]``); without it the report has its tables and grids and says so.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from fastdistill.errors import FastDistillError
from fastdistill.report.build import build
from fastdistill.report.document import Image, to_html, to_markdown
from fastdistill.report.grid import report_grid
from fastdistill.report.runs import load_run
from fastdistill.utils.io import ensure_dir, write_bytes

REPORT_DIR = "report"  # the single-run report inside a run folder
HTML, MARKDOWN = "report.html", "report.md"


def write_report(runs: Sequence[str | Path], output: str | Path) -> Path:
    """Write ``output/report.html`` and ``output/report.md`` (PNGs next to it) for one or more run folders; returns
    the HTML path. Several runs get a side-by-side table first."""
    if not runs:
        raise FastDistillError("name at least one run folder to report on")
    loaded = [load_run(p) for p in runs]
    if any(Path(output).resolve() == run.path.resolve() for run in loaded):
        raise FastDistillError(f"--output {output} is a run folder; write the report into another folder (e.g. "
                               f"{Path(output) / REPORT_DIR})")
    out = ensure_dir(output)
    grids = [report_grid(run.path, out / ("grid.png" if len(loaded) == 1 else f"run{i + 1}-grid.png"))
             for i, run in enumerate(loaded)]
    title, blocks = build(loaded, grids)
    for block in blocks:
        if isinstance(block, Image):
            write_bytes(out / block.file, block.png)
    write_bytes(out / MARKDOWN, to_markdown(blocks).encode())
    write_bytes(out / HTML, to_html(blocks, title).encode())
    return out / HTML


def write_run_report(run_dir: str | Path) -> Path | None:
    """The single-run report in ``run_dir/report/``, written at the end of a pipeline. Cheap (the images are read
    only where grid.png is missing or too large); any failure is one warning, never an error: the run's results are
    already saved."""
    try:
        path = write_report([run_dir], Path(run_dir) / REPORT_DIR)
    except Exception as exc:  # the report must never cost a finished run
        print(f"warning: no report written for {run_dir} ({type(exc).__name__}: {exc}); write one with `python -m "
              f"fastdistill report {run_dir} --output DIR`", file=sys.stderr)
        return None
    print(f"report -> {path}")
    return path


__all__ = ["HTML", "MARKDOWN", "REPORT_DIR", "write_report", "write_run_report"]

"""``python -m fastdistill report RUN [RUN ...] --output DIR``: one report of one or more runs.

Writes ``DIR/report.html`` (self-contained) and ``DIR/report.md`` with its PNGs next to it: each run's labelled grid,
accuracy against the random real subset with the protocol, per-class accuracy and diversity, DD-Ranking scores and
student training curves, and a side-by-side table of the runs (e.g. DELT vs MGD³ vs PDD on one dataset).
"""

from __future__ import annotations

from dataclasses import dataclass

from fastdistill.commands._options import option
from fastdistill.report import MARKDOWN, write_report

NAME = "report"
HELP = "write report.html (self-contained) and report.md of one or more runs, side by side"


@dataclass(kw_only=True)
class Options:
    runs: list[str] = option(None, "run folders (the --output of pipeline runs)", positional=True, required=True,
                             metavar="RUN")
    output: str = option(None, "folder for report.html, report.md and its PNGs", required=True)


def run(options: Options) -> int:
    path = write_report(options.runs, options.output)
    print(f"report -> {path} (and {path.with_name(MARKDOWN)})")
    return 0

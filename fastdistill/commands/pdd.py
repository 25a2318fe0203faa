"""``python -m fastdistill pdd --base dm|dc|dsa|mtt|delt``: progressive dataset distillation (PDD)."""

from __future__ import annotations

import argparse

from fastdistill.commands._matching import add_matching_arguments, run_matching
from fastdistill.methods.presets import PDD_BASES

NAME = "pdd"
HELP = "progressive distillation: P stages, each conditioned on the union of the earlier ones"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--base", required=True, choices=PDD_BASES, help="base method")
    add_matching_arguments(p, stages_default=5)
    p.add_argument("--teacher", default=None, help="teacher folder (needed by --base delt)")


def run(args: argparse.Namespace) -> int:
    return run_matching(args, NAME, args.base, args.stages)

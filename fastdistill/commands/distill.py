"""``python -m fastdistill distill --method dm|dc|dsa|mtt``: one matching-based method, no stages."""

from __future__ import annotations

import argparse

from fastdistill.commands._matching import add_matching_arguments, run_matching
from fastdistill.methods.presets import METHODS

NAME = "distill"
HELP = "distil with DM, DC, DSA or MTT (one stage)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", required=True, choices=METHODS, help="base method")
    add_matching_arguments(p, stages_default=None)


def run(args: argparse.Namespace) -> int:
    return run_matching(args, NAME, args.method, 1)

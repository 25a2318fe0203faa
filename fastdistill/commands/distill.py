"""``python -m fastdistill distill --method dm|dc|dsa|mtt``: one matching-based method, no stages."""

from __future__ import annotations

from dataclasses import dataclass

from fastdistill.commands._matching import MatchingOptions, run_matching
from fastdistill.commands._options import option
from fastdistill.methods.presets import METHODS

NAME = "distill"
HELP = "distil with DM, DC, DSA or MTT (one stage)"


@dataclass(kw_only=True)
class Options(MatchingOptions):
    method: str = option(None, "base method", choices=METHODS, required=True, shapes_result=True)


def run(options: Options) -> int:
    return run_matching(options, NAME, options.method, 1)

"""``python -m fastdistill pdd --base dm|dc|dsa|mtt|delt``: progressive dataset distillation (PDD)."""

from __future__ import annotations

from dataclasses import dataclass

from fastdistill.commands._common import teacher_format_option
from fastdistill.commands._matching import MatchingOptions, run_matching
from fastdistill.commands._options import option
from fastdistill.methods.presets import PDD_BASES

NAME = "pdd"
HELP = "progressive distillation: P stages, each conditioned on the union of the earlier ones"


@dataclass(kw_only=True)
class Options(MatchingOptions):
    base: str = option(None, "base method", choices=PDD_BASES, required=True, shapes_result=True)
    stages: int = option(5, "progressive stages P; each adds ipc/P images per class", ge=1, shapes_result=True)
    teacher: str | None = option(None, "teacher folder, torchvision:NAME or a reference checkpoint (needed by --base "
                                       "delt)")
    teacher_weights: str | None = option(None, "state-dict file of a torchvision:NAME teacher (default: the torch "
                                               "hub cache's)")
    teacher_format: str | None = teacher_format_option()


def run(options: Options) -> int:
    return run_matching(options, NAME, options.base, options.stages)

"""Evaluation of distilled sets: student training under the hard-label (DC) and soft-label (RDED/DELT) protocols
or a paper's named protocol (:data:`~fastdistill.eval.protocols.NAMED_PROTOCOLS`), one or several student
architectures (:mod:`fastdistill.eval.students`), a random-real baseline, diversity (:mod:`fastdistill.eval.diversity`),
DD-Ranking's scores (:mod:`fastdistill.eval.ddranking`), and PDD's progressive comparison
(:mod:`fastdistill.eval.progressive`)."""

from fastdistill.eval.harness import (
    DEFAULT_STUDENTS,
    RESULTS,
    evaluate_distilled,
    format_table,
    random_real_subset,
    write_results,
)
from fastdistill.eval.protocols import (
    NAMED_PROTOCOLS,
    PROTOCOLS,
    Protocol,
    default_epochs,
    make_protocol,
    named_protocol,
    soft_batch_size,
)
from fastdistill.eval.trainer import StudentTrainer

__all__ = [
    "DEFAULT_STUDENTS", "NAMED_PROTOCOLS", "PROTOCOLS", "RESULTS", "Protocol", "StudentTrainer", "default_epochs",
    "evaluate_distilled", "format_table", "make_protocol", "named_protocol", "random_real_subset", "soft_batch_size",
    "write_results",
]

"""Throughput of one job under 1 and N torchrun processes on this machine (one thread per process), and the scaling.

``--job delt``: ``delt`` on digits (default: IPC 20 in groups of 10, i.e. 20 groups, 500 iterations in rounds of
125) with a tiny teacher trained once by ``squeeze`` (or ``--teacher``). One process runs ``python -m fastdistill delt
...``; N processes run the same command under ``python -m torch.distributed.run --standalone --nproc-per-node N``
(gloo). The recover throughput is the run's image-iterations (summary.json) over its recover seconds (the slowest
rank's); the whole run's wall time (teacher loading, the scoring pass, recover, writing) is reported too. Every run
must write the same distilled images as the first one-process run (checked, byte for byte). Runs alternate 1, N, 1,
N, ... ``--repeats`` times; the medians are reported with the load average before and after.

    python benchmarks/bench_distributed.py                    # delt, 1 vs 2 processes, 3 repeats
    python benchmarks/bench_distributed.py --dataset fashion-mnist --processes 4 --repeats 1

A further job is one more entry of ``JOBS``: a function ``(args, work) -> (argv, read)`` giving the command's arguments
for an output folder and a reader of the finished run's ``(work_units, seconds, unit name)``.

Run from the repository root. Prints a JSON report.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
RANK_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "MASTER_ADDR", "MASTER_PORT",
             "TORCHELASTIC_RESTART_COUNT")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in RANK_VARS}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(REPO))
    return env


def fastdistill(argv: list[str], processes: int) -> float:
    """Run ``python -m fastdistill *argv`` as ``processes`` processes (torchrun when more than one); wall seconds."""
    launcher = [] if processes == 1 else ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
                                          str(processes)]
    cmd = [sys.executable, *launcher, "-m", "fastdistill", *argv]
    tic = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - tic


def delt_job(args: argparse.Namespace, work: Path) -> tuple[Callable[[Path], list[str]], Callable[[Path], tuple]]:
    """DELT recover on ``args.dataset``: groups of ``args.batch_size`` images, two EarlyLate rounds at least."""
    teacher = args.teacher
    if teacher is None:
        teacher = str(work / "teacher")
        fastdistill(["squeeze", "--dataset", args.dataset, "--epochs", "1", "--device", "cpu", "--output", teacher], 1)
    common = ["delt", "--dataset", args.dataset, "--teacher", teacher, "--ipc", str(args.ipc), "--batch-size",
              str(args.batch_size), "--iterations", str(args.iterations), "--round-iterations",
              str(args.round_iterations), "--no-eval", "--device", "cpu", "--seed", "0"]

    def argv(out: Path) -> list[str]:
        return [*common, "--output", str(out)]

    def read(out: Path) -> tuple[int, float, str]:
        s = json.loads((out / "summary.json").read_text())
        return s["image_iterations"], s["recover_seconds"], "image-iterations"

    return argv, read


JOBS = {"delt": delt_job}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--job", choices=sorted(JOBS), default="delt")
    p.add_argument("--processes", type=int, default=2, help="processes of the parallel runs")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--dataset", default="digits")
    p.add_argument("--teacher", help="teacher folder (default: one epoch of squeeze, trained once)")
    p.add_argument("--ipc", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=10, help="images per DELT group (digits IPC 20: 20 groups)")
    p.add_argument("--iterations", type=int, default=500)
    p.add_argument("--round-iterations", type=int, default=125)
    p.add_argument("--work", help="folder for the runs (default: a temporary one)")
    args = p.parse_args()

    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        work = Path(tmp)
        argv, read = JOBS[args.job](args, work)
        load_before = os.getloadavg()
        runs: dict[int, list[dict]] = {1: [], args.processes: []}
        reference = None
        for r in range(args.repeats):
            for n in (1, args.processes):
                out = work / f"run-{n}-{r}"
                wall = fastdistill(argv(out), n)
                units, seconds, unit = read(out)
                images = torch.load(out / "distilled.pt")["images"]
                reference = images if reference is None else reference
                if not torch.equal(images, reference):
                    raise SystemExit(f"{out}: the distilled images differ from the first one-process run's")
                runs[n].append({"wall_seconds": round(wall, 2), "seconds": seconds, "per_second": units / seconds})
        load_after = os.getloadavg()

    def median(n: int, key: str) -> float:
        return statistics.median(x[key] for x in runs[n])

    one, many = median(1, "per_second"), median(args.processes, "per_second")
    wall_one, wall_many = median(1, "wall_seconds"), median(args.processes, "wall_seconds")
    report = {
        "job": args.job, "unit": unit, "units_per_run": units, "processes": args.processes,
        "per_second": {"1": round(one, 1), str(args.processes): round(many, 1)},
        "speedup": round(many / one, 3), "efficiency": round(many / one / args.processes, 3),
        "wall_seconds": {"1": wall_one, str(args.processes): wall_many},
        "wall_speedup": round(wall_one / wall_many, 3),
        "runs": {str(k): v for k, v in runs.items()},
        "settings": {k: v for k, v in vars(args).items() if k != "work"},
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "python": platform.python_version(), "torch": torch.__version__},
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()

"""MGD3 sampling throughput under 1 and N torchrun processes on this machine (one thread per process), and the scaling.

The job: ``mgd`` on digits with the tiny pixel model of ``train-diffusion`` (trained once, ``--width 32``, 200 steps),
IPC 10 (100 rows = 10 classes x 10 modes), 50 DDPM steps with mode guidance and CFG, chunks of ``--batch-size`` 10
rows (10 chunks, dealt to the ranks). One process runs ``python -m fastdistill mgd ...``; N processes run the same
command under ``python -m torch.distributed.run --standalone --nproc-per-node N`` (gloo). The throughput is rows over
the run's sampling seconds (printed by ``mgd``: from the first chunk until the slowest rank's last); the whole run's
wall time (start-up, model loading, latent encoding, k-means, sampling, writing) is reported too. Every run must
write the same distilled images as the first one-process run (checked, byte for byte). Runs alternate 1, N, 1, N, ...
``--repeats`` times; the medians are reported with the load average before and after.

    python benchmarks/bench_distributed_mgd.py                 # 1 vs 2 processes, 3 repeats

Its ``mgd_job`` has the shape of a ``JOBS`` entry of ``bench_distributed.py`` (``(args, work) -> (argv, read)``) for
when the two scripts are merged. Run from the repository root. Prints a JSON report.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
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
SAMPLING = re.compile(r"sampling ([0-9.]+) s\)")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in RANK_VARS}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(REPO))
    return env


def fastdistill(argv: list[str], processes: int) -> tuple[float, str]:
    """Run ``python -m fastdistill *argv`` as ``processes`` processes (torchrun when more than one): wall s, stdout."""
    launcher = [] if processes == 1 else ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
                                          str(processes)]
    cmd = [sys.executable, *launcher, "-m", "fastdistill", *argv]
    tic = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - tic, done.stdout


def mgd_job(args: argparse.Namespace, work: Path) -> tuple[Callable[[Path], list[str]],
                                                             Callable[[Path, str], tuple[int, float, str]]]:
    """MGD3 on digits with a tiny pixel diffusion model: ``args.ipc`` modes per class, ``args.steps`` steps."""
    model = work / "pixel"
    fastdistill(["train-diffusion", "--steps", "200", "--batch-size", "32", "--width", "32", "--device", "cpu",
                 "--output", str(model)], 1)
    common = ["mgd", "--diffusion", str(model), "--ipc", str(args.ipc), "--steps", str(args.steps), "--batch-size",
              str(args.batch_size), "--no-eval", "--device", "cpu", "--seed", "0"]

    def argv(out: Path) -> list[str]:
        return [*common, "--output", str(out)]

    def read(out: Path, stdout: str) -> tuple[int, float, str]:
        found = SAMPLING.search(stdout)
        if found is None:
            raise SystemExit(f"no sampling time in the output of {out}:\n{stdout[-2000:]}")
        return int(torch.load(out / "distilled.pt")["labels"].numel()), float(found.group(1)), "rows"

    return argv, read


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--processes", type=int, default=2, help="processes of the parallel runs")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--ipc", type=int, default=10)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=10, help="rows per sampling chunk (IPC 10: 10 chunks)")
    p.add_argument("--work", help="folder for the runs (default: a temporary one)")
    args = p.parse_args()

    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        work = Path(tmp)
        argv, read = mgd_job(args, work)
        load_before = os.getloadavg()
        runs: dict[int, list[dict]] = {1: [], args.processes: []}
        reference = None
        for r in range(args.repeats):
            for n in (1, args.processes):
                out = work / f"run-{n}-{r}"
                wall, stdout = fastdistill(argv(out), n)
                units, seconds, unit = read(out, stdout)
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
        "job": "mgd", "unit": unit, "units_per_run": units, "processes": args.processes,
        "per_second": {"1": round(one, 2), str(args.processes): round(many, 2)},
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

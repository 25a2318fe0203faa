"""Peak host memory of DELT on a streamed image folder at two train-split sizes, and the images/s of its scoring pass
against torchvision ``ImageFolder`` + ``DataLoader`` with the same workers, transform and teacher.

A generated folder of ``--classes`` WordNet-named classes (the ImageNet-1K ids) holds ``--large`` small JPEGs per class
in train/ (one per class in val/); a second root holds the first ``--small`` of them (hard links). For each root a
child process runs ``delt --dataset imagefolder --teacher torchvision:resnet18`` (random weights, DELT's accuracy
sanity check lifted) with tiny settings (IPC 1, one iteration): the streamed selection pass over every train image,
then recover. The peak RSS of each child is ``ru_maxrss`` from ``os.wait4``. Then, each in its own child on a third
root of ``--throughput-per-class`` images per class: the scoring pass (``score_split``) against ``ImageFolder`` +
``DataLoader`` feeding the same teacher, and the two data paths alone (no teacher).

    python benchmarks/bench_stream_memory.py                                  # 1000 classes, 20 vs 100 per class
    python benchmarks/bench_stream_memory.py --classes 50 --small 4 --large 40 --max-ratio 1.5 --no-throughput

Run from the repository root. Prints a JSON report; exits 1 when ``--max-ratio`` is given and the peak RSS of the
large run exceeds that multiple of the small run's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DELT_CHILD = ("import sys; import fastdistill.pipelines.delt.teacher as t; t.SANITY_FACTOR = 0.0; "
              "from fastdistill.cli import main; sys.exit(main(sys.argv[1:]))")


def make_folder(root: Path, classes: int, per_class: int, side: tuple[int, int], seed: int = 0) -> Path:
    """train/<wnid>/*.JPEG (``per_class`` each) and val/<wnid>/ (one each): smooth colour fields with noise."""
    from PIL import Image

    wnids = resources.files("fastdistill.data.classes").joinpath("imagenet1k_wnids.txt").read_text().split()[:classes]
    rng = np.random.default_rng(seed)
    w, h = side
    ramp = np.linspace(-40, 40, w)[None, :, None] + np.linspace(-40, 40, h)[:, None, None]
    for split, n in (("train", per_class), ("val", 1)):
        for wnid in wnids:
            folder = root / split / wnid
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                pixels = rng.integers(40, 216, 3) + ramp * rng.uniform(-1, 1, 3) + rng.normal(0, 8, (h, w, 3))
                Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(folder / f"{wnid}_{i}.JPEG", quality=85)
    return root


def link_subset(src: Path, dst: Path, per_class: int) -> Path:
    """A root whose train/ holds the first ``per_class`` files of each class of ``src`` (hard links)."""
    for split in ("train", "val"):
        for folder in sorted((src / split).iterdir()):
            (dst / split / folder.name).mkdir(parents=True, exist_ok=True)
            files = sorted(folder.iterdir())
            for f in files[:per_class] if split == "train" else files:
                os.link(f, dst / split / folder.name / f.name)
    return dst


def _child(argv: list[str], env: dict) -> tuple[int, float, float, str]:
    """Run ``argv``; (exit status, peak RSS in MiB, seconds, stderr tail)."""
    tic = time.time()
    proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_maxrss / 1024, time.time() - tic, err[-2000:]


def run_delt(root: Path, out: Path, weights: Path, args: argparse.Namespace, env: dict) -> dict:
    argv = [sys.executable, "-c", DELT_CHILD, "delt", "--dataset", "imagefolder", "--data-root", str(root),
            "--image-size", str(args.image_size), "--teacher", "torchvision:resnet18", "--teacher-weights",
            str(weights), "--ipc", "1", "--iterations", "1", "--round-iterations", "1", "--batch-size",
            str(min(args.classes, 100)), "--workers", str(args.workers), "--no-eval", "--device", "cpu",
            "--output", str(out)]
    rc, rss, seconds, err = _child(argv, env)
    if rc != 0:
        raise SystemExit(f"delt on {root} failed ({rc}):\n{err}")
    summary = json.loads((out / "summary.json").read_text())
    images = sum(1 for _ in (root / "train").rglob("*.JPEG"))
    return {"train_images": images, "peak_rss_mib": round(rss, 1), "wall_seconds": round(seconds, 1),
            "selection_seconds": summary["selection_seconds"], "recover_seconds": summary["recover_seconds"],
            "scoring_images_per_s": round(images / summary["selection_seconds"], 1)}


def measure(kind: str, root: Path, size: int, workers: int, weights: str | None, batch: int = 500) -> dict:
    """In this process: images/s of one pass over ``root``/train (``kind``: fastdistill or torchvision)."""
    import torch
    import torchvision
    from torchvision import transforms

    from fastdistill.data import load_dataset
    from fastdistill.methods.delt.selection import score_split

    teacher = None
    if weights:
        state = torch.load(weights, weights_only=True)
        teacher = torchvision.models.resnet18(num_classes=state["fc.weight"].shape[0])
        teacher.load_state_dict(state)
        teacher.eval()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

    def prepare(u8: torch.Tensor) -> torch.Tensor:
        return (u8.float() / 255 - mean) / std

    tic = time.time()
    if kind == "fastdistill":
        split = load_dataset("imagefolder", str(root), image_size=size, workers=workers,
                             cache_dir=tempfile.mkdtemp()).train
        indexed = time.time()
        if teacher is not None:
            n = len(score_split(teacher, split, prepare, batch_size=batch, progress=False)[0])
        else:
            n = sum(len(y) for _, _, y in split.decode_batches(batch))
    else:
        transform = transforms.Compose([transforms.Resize(size, transforms.InterpolationMode.BICUBIC),
                                        transforms.CenterCrop(size), transforms.PILToTensor()])
        dataset = torchvision.datasets.ImageFolder(str(root / "train"), transform=transform)
        indexed = time.time()
        loader = torch.utils.data.DataLoader(dataset, batch_size=batch, num_workers=workers)
        n = 0
        with torch.no_grad():
            for x, y in loader:
                if teacher is not None:
                    teacher(prepare(x)).float().softmax(1).gather(1, y[:, None])
                n += len(y)
    end = time.time()
    return {"images": n, "index_seconds": round(indexed - tic, 2), "pass_seconds": round(end - indexed, 2),
            "images_per_s": round(n / (end - indexed), 1)}


def throughput(root: Path, weights: Path, args: argparse.Namespace, env: dict) -> dict:
    results = {}
    for label, w in (("with_teacher", str(weights)), ("data_only", "")):
        for kind in ("fastdistill", "torchvision"):
            code = (f"import json, sys; sys.path.insert(0, {str(REPO / 'benchmarks')!r}); "
                    "from bench_stream_memory import measure; from pathlib import Path; "
                    f"print(json.dumps(measure({kind!r}, Path({str(root)!r}), {args.image_size}, {args.workers}, "
                    f"{w!r} or None)))")
            proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                raise SystemExit(f"throughput child failed:\n{proc.stderr[-2000:]}")
            results.setdefault(label, {})[kind] = json.loads(proc.stdout.strip().splitlines()[-1])
        pair = results[label]
        pair["ratio"] = round(pair["fastdistill"]["images_per_s"] / pair["torchvision"]["images_per_s"], 2)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--small", type=int, default=20, help="train images per class of the small run")
    parser.add_argument("--large", type=int, default=100, help="train images per class of the large run")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--jpeg-size", default="64x48", help="WxH of the generated JPEGs")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--root", default=None, help="work folder (default: a temporary one, removed at the end)")
    parser.add_argument("--max-ratio", type=float, default=None, help="fail when peak RSS large/small exceeds it")
    parser.add_argument("--no-throughput", action="store_true", help="skip the images/s comparison")
    parser.add_argument("--throughput-per-class", type=int, default=5, help="train images per class it reads")
    args = parser.parse_args()

    import torch
    import torchvision

    work = Path(args.root or tempfile.mkdtemp(prefix="bench-stream-"))
    env = {**os.environ, "FASTDISTILL_CACHE": str(work / "cache"), "PYTHONPATH": str(REPO)}
    try:
        tic = time.time()
        side = tuple(int(v) for v in args.jpeg_size.split("x"))
        large = make_folder(work / "large", args.classes, args.large, side)
        small = link_subset(large, work / "small", args.small)
        subset = link_subset(large, work / "throughput", args.throughput_per_class)
        generated = time.time() - tic
        torch.manual_seed(0)
        weights = work / "resnet18.pth"
        torch.save(torchvision.models.resnet18(num_classes=args.classes).state_dict(), weights)
        runs = {name: run_delt(root, work / f"run-{name}", weights, args, env)
                for name, root in (("small", small), ("large", large))}
        ratio = runs["large"]["peak_rss_mib"] / runs["small"]["peak_rss_mib"]
        report = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": platform.machine(),
                  "cpus": os.cpu_count(), "load_average": os.getloadavg(), "python": platform.python_version(),
                  "torch": torch.__version__, "torchvision": torchvision.__version__,
                  "settings": {k: v for k, v in vars(args).items() if k != "root"},
                  "generate_seconds": round(generated, 1), "delt": runs, "peak_rss_ratio": round(ratio, 3)}
        if not args.no_throughput:
            report["throughput"] = throughput(subset, weights, args, env)
        print(json.dumps(report, indent=1))
    finally:
        if args.root is None:
            shutil.rmtree(work, ignore_errors=True)
    return 1 if args.max_ratio is not None and ratio > args.max_ratio else 0


if __name__ == "__main__":
    sys.exit(main())

"""Measure the CUDA device's copy bandwidth: a large device-to-device copy, timed with CUDA events.

    python benchmarks/copy_bandwidth.py [--gib 2] [--out copy_bandwidth.json]

Reports GB/s counting bytes read + bytes written (2 x the tensor size per copy), the same convention as the
bn_stat_loss GB/s in ``summarize.py``; the best of several timed repetitions is the device's practical peak.
"""

from __future__ import annotations

import argparse
import json

import torch


def copy_gbps(gib: float, repeats: int = 20) -> dict:
    n = int(gib * 2**30) // 4
    src = torch.randn(n, device="cuda")
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        dst.copy_(src)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    nbytes = 2 * src.numel() * src.element_size()
    times.sort()
    return {"device": torch.cuda.get_device_name(), "bytes_per_copy": nbytes, "best_gbps": nbytes / times[0] / 1e9,
            "median_gbps": nbytes / times[len(times) // 2] / 1e9, "torch": torch.__version__}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=2.0, help="size of the copied tensor in GiB")
    parser.add_argument("--out", help="write the result as JSON here")
    args = parser.parse_args()
    result = copy_gbps(args.gib)
    print(json.dumps(result, indent=2))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()

"""Summarise pytest-benchmark JSON files of the fused-kernel benchmarks as a Markdown table.

    python benchmarks/summarize.py results/*.json [--copy-gbps 3000]

For every benchmark group: the median time per call of each provider (the round median divided by
``calls_per_round``), the speedup of each non-reference provider over "reference", and, where ``bytes`` is recorded,
the achieved bandwidth in GB/s; with ``--copy-gbps`` (a device-to-device copy's GB/s, e.g. from
``copy_bandwidth.py``) also that bandwidth as a percentage of the copy's.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict


def load(paths: list[str]) -> dict[str, dict[str, dict]]:
    groups: dict[str, dict[str, dict]] = defaultdict(dict)
    for path in paths:
        with open(path) as f:
            data = json.load(f)
        for bench in data["benchmarks"]:
            info = bench.get("extra_info", {})
            if "provider" not in info:
                continue
            seconds = bench["stats"]["median"] / info.get("calls_per_round", 1)
            groups[bench["group"]][info["provider"]] = {"seconds": seconds, **info}
    return groups


def table(groups: dict[str, dict[str, dict]], copy_gbps: float | None) -> str:
    lines = ["| group | provider | median per call | speedup vs reference | GB/s | % of copy |",
             "|---|---|---|---|---|---|"]
    for group in sorted(groups):
        providers = groups[group]
        ref = providers.get("reference")
        for name in sorted(providers, key=lambda p: (p != "reference", p)):
            entry = providers[name]
            seconds = entry["seconds"]
            speedup = f"{ref['seconds'] / seconds:.2f}x" if ref and name != "reference" else ""
            gbps = entry["bytes"] / seconds / 1e9 if "bytes" in entry and name != "reference" else None
            pct = f"{100 * gbps / copy_gbps:.0f}%" if gbps and copy_gbps else ""
            when = f"{seconds * 1e3:.3f} ms" if seconds >= 1e-3 else f"{seconds * 1e6:.1f} us"
            lines.append(f"| {group} | {name} | {when} | {speedup} | {f'{gbps:.0f}' if gbps else ''} | {pct} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", nargs="+", help="pytest-benchmark --benchmark-json files")
    parser.add_argument("--copy-gbps", type=float, help="device copy bandwidth (read + write GB/s) for the % column")
    args = parser.parse_args()
    print(table(load(args.json), args.copy_gbps))


if __name__ == "__main__":
    main()

"""Summarise pytest-benchmark JSON files of the fused-kernel benchmarks as a Markdown table, and pytest JUnit XML files
as pass/fail counts with the first error lines of every failure.

    python benchmarks/summarize.py results/*.json [--copy-gbps 3000] [--compact] [--junit tests.xml ...]

For every benchmark group: the median time per call of each provider (the round median divided by
``calls_per_round``), the speedup of each non-reference provider over "reference", and, where ``bytes`` is recorded,
the achieved bandwidth in GB/s; with ``--copy-gbps`` (a device-to-device copy's GB/s, e.g. from
``copy_bandwidth.py``) also that bandwidth as a percentage of the copy's. ``--compact`` prints one line per group.
"""

from __future__ import annotations

import argparse
import json
import os
import xml.etree.ElementTree as ET
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


def _time(seconds: float) -> str:
    return f"{seconds * 1e3:.3f} ms" if seconds >= 1e-3 else f"{seconds * 1e6:.1f} us"


def _rows(groups: dict[str, dict[str, dict]], copy_gbps: float | None):
    """(group, provider, time, speedup, GB/s, % of copy) per provider, reference first."""
    for group in sorted(groups):
        providers = groups[group]
        ref = providers.get("reference")
        for name in sorted(providers, key=lambda p: (p != "reference", p)):
            entry = providers[name]
            seconds = entry["seconds"]
            speedup = f"{ref['seconds'] / seconds:.2f}x" if ref and name != "reference" else ""
            gbps = entry["bytes"] / seconds / 1e9 if "bytes" in entry and name != "reference" else None
            pct = f"{100 * gbps / copy_gbps:.0f}%" if gbps and copy_gbps else ""
            yield group, name, _time(seconds), speedup, f"{gbps:.0f}" if gbps else "", pct


def table(groups: dict[str, dict[str, dict]], copy_gbps: float | None) -> str:
    lines = ["| group | provider | median per call | speedup vs reference | GB/s | % of copy |",
             "|---|---|---|---|---|---|"]
    lines += ["| " + " | ".join(row) + " |" for row in _rows(groups, copy_gbps)]
    return "\n".join(lines)


def compact_table(groups: dict[str, dict[str, dict]], copy_gbps: float | None) -> str:
    """One line per group: each provider's time, then its speedup, GB/s and % of copy where they apply."""
    lines: dict[str, list[str]] = defaultdict(list)
    for group, name, when, speedup, gbps, pct in _rows(groups, copy_gbps):
        extra = ", ".join(v for v in (speedup, gbps and f"{gbps} GB/s", pct and f"{pct} of copy") if v)
        lines[group].append(f"{name} {when}" + (f" ({extra})" if extra else ""))
    return "\n".join(f"{group}: " + "; ".join(parts) for group, parts in lines.items())


def junit_summary(path: str, error_lines: int = 6) -> str:
    """Counts, then every failed or erroring test with the first ``error_lines`` lines of its error ('E' lines)."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:
        return f"{os.path.basename(path)}: no JUnit report ({exc})"
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    counts = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    passed = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    lines = [f"{os.path.basename(path)}: {passed} passed, {counts['failures']} failed, {counts['errors']} errors, "
             f"{counts['skipped']} skipped"]
    for case in root.iter("testcase"):
        for problem in [*case.iter("failure"), *case.iter("error")]:
            errors = [line[1:].strip() for line in (problem.text or "").splitlines()
                      if line.startswith("E ") and line[1:].strip()]
            lines.append(f"  {problem.tag.upper()} {case.get('classname')}::{case.get('name')}")
            lines += [f"    {line[:200]}" for line in (errors or [problem.get("message", "")])[:error_lines]]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", nargs="*", help="pytest-benchmark --benchmark-json files")
    parser.add_argument("--copy-gbps", type=float, help="device copy bandwidth (read + write GB/s) for the % column")
    parser.add_argument("--compact", action="store_true", help="one line per benchmark group")
    parser.add_argument("--junit", nargs="+", default=[], help="pytest --junitxml files to summarise first")
    args = parser.parse_args()
    for path in args.junit:
        print(junit_summary(path))
    if args.json:
        groups = load(args.json)
        print((compact_table if args.compact else table)(groups, args.copy_gbps))


if __name__ == "__main__":
    main()

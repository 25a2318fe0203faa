"""``python -m fastdistill info``: versions, devices, and the backend each op will use."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fastdistill.commands._options import option
from fastdistill.commands.provenance import provenance

NAME = "info"
HELP = "print versions, devices and the backend each op will use"


@dataclass(kw_only=True)
class Options:
    json: bool = option(False, "print JSON instead of text")


def run(args: Options) -> int:
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    report = {dev: provenance(dev) for dev in devices}
    if args.json:
        import json

        print(json.dumps(report, indent=2, default=str))
        return 0
    first = report["cpu"]
    print("fastdistill", first["versions"]["fastdistill"] or "(not installed; running from source)")
    for key, value in first["versions"].items():
        if key != "fastdistill":
            print(f"  {key:<13} {value if value is not None else '-'}")
    print("devices")
    for key, value in first["devices"].items():
        print(f"  {key:<13} {value}")
    print(f"extension      {first['extension']}")
    for dev, rep in report.items():
        print(f"backends on {dev}")
        for op, backend in rep["backends"].items():
            print(f"  {op:<18} {backend}")
    return 0

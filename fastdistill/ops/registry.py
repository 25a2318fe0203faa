"""Which backends each public op implements, in order of preference, and the backend it will use on a device."""

from __future__ import annotations

import torch

from fastdistill.backends import select_backend

OP_BACKENDS: dict[str, tuple[str, ...]] = {
    "assign_modes": ("cpp", "torch"),
    "kmeans": ("cpp", "torch"),
    "bn_stat_loss": ("triton", "torch"),
    "subtask_adam_step": ("triton", "torch"),
}


def backend_for(op: str, device: torch.device | str, explicit: str | None = None) -> str:
    """The backend ``op`` uses on ``device`` (``explicit`` or ``FASTDISTILL_BACKEND`` may force one).

    Off CUDA, Triton is never the automatic choice: the interpreter (``TRITON_INTERPRET=1``) is for tests and runs only
    when forced.
    """
    implemented = OP_BACKENDS[op]
    if torch.device(device).type != "cuda":
        implemented = tuple(sorted(implemented, key=lambda name: name == "triton"))
    return select_backend(op, device, implemented, explicit)


def describe(device: torch.device | str) -> dict[str, str]:
    """Human-readable backend per op on ``device``: triton / C++ / CUDA / torch."""
    device = torch.device(device)
    out = {}
    for op in OP_BACKENDS:
        try:
            name = backend_for(op, device)
        except Exception as exc:  # a forced backend that is unavailable: report instead of failing
            out[op] = f"unavailable ({exc})"
            continue
        if name == "cpp":
            name = "CUDA (fastdistill._C)" if device.type == "cuda" else "C++ (fastdistill._C)"
        elif name == "triton":
            name = "triton" + (" (interpreter)" if device.type != "cuda" else "")
        out[op] = name
    return out

"""Backend selection for fastdistill ops.

Every op declares the backends it implements (in preference order per device); ``select_backend`` picks one.
``FASTDISTILL_BACKEND`` (``torch``, ``triton``, ``cpp``) forces a backend for every op that implements it, and an
explicit ``backend=`` argument forces it for one call. Forcing a backend that is unavailable raises; ops that do not
implement the forced backend keep their automatic choice.
"""

from __future__ import annotations

import functools
import os

import torch

from fastdistill.errors import FastDistillError

BACKENDS = ("torch", "triton", "cpp")
ENV_VAR = "FASTDISTILL_BACKEND"


def triton_interpret() -> bool:
    """True when Triton kernels run through the CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET") == "1"


@functools.cache
def triton_importable() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def triton_usable(device: torch.device) -> bool:
    """Triton kernels can run on tensors of ``device``: a CUDA device, or any device under the interpreter."""
    if not triton_importable():
        return False
    return triton_interpret() or device.type == "cuda"


def cpp_usable(device: torch.device) -> bool:
    """The compiled extension is loaded and has kernels for ``device``."""
    from fastdistill import _extension

    if not _extension.available():
        return False
    return device.type == "cpu" or (device.type == "cuda" and _extension.built_with_cuda())


_USABLE = {"torch": lambda device: True, "triton": triton_usable, "cpp": cpp_usable}


def forced_backend() -> str | None:
    value = os.environ.get(ENV_VAR, "").strip().lower()
    if not value:
        return None
    if value not in BACKENDS:
        raise FastDistillError(f"{ENV_VAR}={value!r} is not a backend; use one of {', '.join(BACKENDS)} or unset it")
    return value


def select_backend(
    op: str, device: torch.device | str, implemented: tuple[str, ...], explicit: str | None = None
) -> str:
    """Pick the backend for ``op`` on ``device``.

    ``implemented`` lists the op's backends in order of preference; the first usable one wins unless ``explicit`` or
    ``FASTDISTILL_BACKEND`` forces one.
    """
    device = torch.device(device)
    forced = explicit if explicit not in (None, "auto") else forced_backend()
    if forced is not None and (forced in implemented or explicit not in (None, "auto")):
        if forced not in implemented:
            raise FastDistillError(f"{op} has no {forced!r} backend; it implements {', '.join(implemented)}")
        if not _USABLE[forced](device):
            raise FastDistillError(f"backend {forced!r} was forced for {op} but is unavailable on {device.type} "
                                   f"({_why_unavailable(forced)})")
        return forced
    for name in implemented:
        if _USABLE[name](device):
            return name
    raise FastDistillError(f"no usable backend for {op} on {device.type}")


def _why_unavailable(name: str) -> str:
    if name == "triton":
        if not triton_importable():
            return "triton is not installed"
        return "Triton needs a CUDA tensor, or TRITON_INTERPRET=1 set before fastdistill is imported"
    if name == "cpp":
        from fastdistill import _extension

        return _extension.status()
    return "unknown"

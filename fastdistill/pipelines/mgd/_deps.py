"""diffusers is an optional dependency (``pip install 'fastdistill[diffusion]'``): import it through here."""

from __future__ import annotations

import importlib
from types import ModuleType

from fastdistill.errors import FastDistillError

MIN_VERSION = (0, 30)


def require_diffusers() -> ModuleType:
    """Return the ``diffusers`` module, or raise a one-line error saying how to install it."""
    try:
        module = importlib.import_module("diffusers")
    except ImportError as exc:
        raise FastDistillError("MGD3 needs diffusers: pip install 'fastdistill[diffusion]' "
                               "(or pip install 'diffusers>=0.30')") from exc
    parts = tuple(int(p) for p in module.__version__.split(".")[:2] if p.isdigit())
    if parts < MIN_VERSION:
        raise FastDistillError(f"diffusers {module.__version__} is too old for MGD3 (learned-range variance was fixed "
                               "in 0.30); pip install -U 'diffusers>=0.30'")
    return module

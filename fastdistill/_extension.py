"""Load-or-warn for the compiled extension ``fastdistill._C``.

Nothing loads ``_C`` at import time: the first call that needs it (an op choosing its backend, ``status()``) does, and
then registers the ops' fake implementations (``fastdistill.ops._fake``) for ``torch.compile``. If ``_C`` is missing or
broken, one warning says why and every op uses its torch fallback. Set ``FASTDISTILL_MORE_DETAILS=1`` to see the full
traceback.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import traceback
import warnings

import torch

_STATUS = "not loaded yet"


@functools.cache
def _load() -> dict | None:
    global _STATUS
    try:
        from fastdistill import _C  # noqa: F401  (registers the fastdistill:: ops)

        info = json.loads(torch.ops.fastdistill.build_info())
        importlib.import_module("fastdistill.ops._fake")
    except Exception as exc:  # ImportError, OSError (undefined symbol: torch ABI mismatch), missing build_info
        _STATUS = f"fastdistill._C could not be loaded ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})"
        if os.environ.get("FASTDISTILL_MORE_DETAILS") == "1":
            traceback.print_exc()
        warnings.warn(f"{_STATUS}; using the torch fallback. Rebuild in place with "
                      "`pip install --no-build-isolation -e .` (FASTDISTILL_MORE_DETAILS=1 for the traceback).",
                      RuntimeWarning, stacklevel=3)
        return None
    built_for = info.get("torch", "")
    if built_for and built_for.split("+")[0] != torch.__version__.split("+")[0]:
        warnings.warn(f"fastdistill._C was built for torch {built_for} but torch {torch.__version__} is running; "
                      "rebuild it if ops misbehave.", RuntimeWarning, stacklevel=3)
    _STATUS = "loaded" + (" with CUDA kernels" if info.get("cuda") else " (CPU kernels only)")
    return info


def available() -> bool:
    """True when ``fastdistill._C`` is loaded and its ops are registered."""
    return _load() is not None


def built_with_cuda() -> bool:
    info = _load()
    return bool(info and info.get("cuda"))


def build_info() -> dict:
    """What the extension reports about its build (empty when it is not loaded)."""
    return dict(_load() or {})


def status() -> str:
    _load()
    return _STATUS

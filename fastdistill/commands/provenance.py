"""What produced a run: package versions, devices and the backend each op uses. Stored in every config.json."""

from __future__ import annotations

import importlib.metadata
import platform
import sys

import torch


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def versions() -> dict[str, str | None]:
    out = {"python": sys.version.split()[0], "platform": platform.platform(), "torch": torch.__version__,
           "torch_cuda": torch.version.cuda}
    for dist in ("fastdistill", "torchvision", "triton", "numpy", "scikit-learn", "safetensors", "diffusers"):
        out[dist] = _version(dist)
    return out


def devices() -> dict[str, object]:
    out: dict[str, object] = {"cpu_threads": torch.get_num_threads(), "cuda_available": torch.cuda.is_available()}
    if torch.cuda.is_available():
        out["cuda_devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return out


def provenance(device: torch.device | str) -> dict[str, object]:
    """Versions, devices, extension status and per-op backends, for config.json.

    ``extension_loaded`` is True exactly when ``fastdistill._C`` was imported and registered its ops;
    ``extension_file`` says which shared library that was.
    """
    from fastdistill import _extension
    from fastdistill.ops.registry import describe

    loaded = _extension.available()
    module = sys.modules.get("fastdistill._C") if loaded else None
    return {"versions": versions(), "devices": devices(), "extension_loaded": loaded,
            "extension_file": getattr(module, "__file__", None), "extension": _extension.status(),
            "extension_build": _extension.build_info(), "backends": describe(device)}

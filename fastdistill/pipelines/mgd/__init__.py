"""MGD3 (mode-guided dataset distillation with diffusion models, Chan-Santiago et al., ICML 2025) on diffusers.

See README.md in this folder for the DiT-XL/2 walk-through. Names are imported lazily so that the sampler can be used
without the output/evaluation stack, and diffusers (an optional dependency) only when a model is built or loaded.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Generator": "loading", "load_generator": "loading", "resolve_dtype": "loading",
    "SHIPPED": "mapping", "load_mapping": "mapping", "map_classes": "mapping",
    "METHODS": "modes", "discover_modes": "modes",
    "MGDConfig": "pipeline", "run_mgd": "pipeline",
    "GuidanceConfig": "sampler", "row_noise": "sampler", "row_seed": "sampler", "sample": "sampler",
    "sample_rows": "sampler",
    "build_tables": "schedule", "guidance_weights": "schedule", "guided_step_count": "schedule",
    "stop_index": "schedule",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)

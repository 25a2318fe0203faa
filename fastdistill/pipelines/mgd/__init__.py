"""MGD3 (mode-guided dataset distillation with diffusion models, Chan-Santiago et al., ICML 2025) on diffusers.

See README.md in this folder for the DiT-XL/2 walk-through. diffusers is imported lazily (optional dependency).
"""

from fastdistill.pipelines.mgd.loading import Generator, load_generator, resolve_dtype
from fastdistill.pipelines.mgd.mapping import SHIPPED, load_mapping, map_classes
from fastdistill.pipelines.mgd.modes import METHODS, discover_modes
from fastdistill.pipelines.mgd.pipeline import MGDConfig, run_mgd
from fastdistill.pipelines.mgd.sampler import GuidanceConfig, row_noise, row_seed, sample, sample_rows
from fastdistill.pipelines.mgd.schedule import build_tables, guidance_weights, guided_step_count, stop_index

__all__ = [
    "METHODS", "SHIPPED", "Generator", "GuidanceConfig", "MGDConfig", "build_tables", "discover_modes",
    "guidance_weights", "guided_step_count", "load_generator", "load_mapping", "map_classes", "resolve_dtype",
    "row_noise", "row_seed", "run_mgd", "sample", "sample_rows", "stop_index",
]

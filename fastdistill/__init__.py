"""fastdistill: fast dataset distillation (DELT, PDD, MGD3) with fused kernels and pure-PyTorch fallbacks."""

from fastdistill.errors import FastDistillError

__version__ = "0.1.0"
__all__ = ["FastDistillError", "__version__"]

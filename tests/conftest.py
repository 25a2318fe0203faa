"""Shared test setup.

Without a GPU, Triton kernels run through the CPU interpreter: ``TRITON_INTERPRET=1`` must be set before any module
defining kernels is imported, hence here. Ops on CPU tensors still use their torch backend unless Triton is forced
(``backend="triton"`` or ``FASTDISTILL_BACKEND=triton``), so tests of torch code paths are unaffected.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

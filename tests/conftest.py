"""Shared test setup.

Without a GPU, Triton kernels run through the CPU interpreter: ``TRITON_INTERPRET=1`` must be set before any module
defining kernels is imported, hence here. Ops on CPU tensors still use their torch backend unless Triton is forced
(``backend="triton"`` or ``FASTDISTILL_BACKEND=triton``), so tests of torch code paths are unaffected.
"""

import contextlib
import os
import subprocess

import pytest
import torch
import torch.nn.functional as F
from torch import nn

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture
def tmpfs(tmp_path):
    """``tmpfs(size)``: mount a tmpfs of ``size`` (e.g. "64k") under tmp_path; skips where mounting is not permitted."""
    with contextlib.ExitStack() as mounted:
        def mount(size: str):
            mnt = tmp_path / f"tmpfs-{size}"
            mnt.mkdir()
            args = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)]
            done = subprocess.run(args, capture_output=True)
            if done.returncode != 0:
                pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()[:80]}")
            mounted.callback(subprocess.run, ["umount", str(mnt)], check=True)
            return mnt

        yield mount


@pytest.fixture(autouse=True, scope="session")
def _decoded_cache_in_tmp(tmp_path_factory):
    """Decoded image caches of every test (and its subprocesses) go to a temporary folder, never ~/.cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FASTDISTILL_CACHE", str(tmp_path_factory.mktemp("decoded-cache")))
        yield


@pytest.fixture(scope="session")
def digits():
    from fastdistill.data import load_dataset  # imported after TRITON_INTERPRET is set above

    return load_dataset("digits")


@pytest.fixture(scope="session")
def linear_teacher(digits):
    """A pixel-linear classifier (~97% on digits), trained in well under a second."""
    from fastdistill.data import to_float

    info = digits.info
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(info.channels * info.image_size**2, info.num_classes))
    x = info.normalize(to_float(digits.train.images))
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(100):
        loss = F.cross_entropy(model(x), digits.train.labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval().requires_grad_(False)

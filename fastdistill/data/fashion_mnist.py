"""Fashion-MNIST from its IDX .gz files: ``--data-root``, else Debian's ``dataset-fashion-mnist`` package."""

from __future__ import annotations

import gzip
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from fastdistill.data.base import Dataset, Split
from fastdistill.errors import FastDistillError

if TYPE_CHECKING:
    from fastdistill.data.access import DataAccess
    from fastdistill.data.specs import DatasetSpec

CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
FILES = {"train_x": "train-images-idx3-ubyte", "train_y": "train-labels-idx1-ubyte",
         "test_x": "t10k-images-idx3-ubyte", "test_y": "t10k-labels-idx1-ubyte"}
_DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
_HOW = ("install Debian's package (`apt-get install -y dataset-fashion-mnist`) or pass --data-root DIR holding "
        "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz")


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped) into a numpy array."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as exc:
        raise FastDistillError(f"cannot read IDX file {path} ({exc}); re-download or reinstall it") from exc
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise FastDistillError(f"{path} is not an unsigned-byte IDX file; check the file or re-download it")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise FastDistillError(f"{path} is truncated ({body.size} of {int(np.prod(shape))} bytes); re-download it")
    return body.reshape(shape)


def _debian_dir() -> Path | None:
    if shutil.which("dpkg") is not None:
        out = subprocess.run(["dpkg", "-L", "dataset-fashion-mnist"], capture_output=True, text=True)
        for line in out.stdout.splitlines():
            if line.endswith("train-images-idx3-ubyte.gz"):
                return Path(line).parent
    return _DEBIAN_DIR if _DEBIAN_DIR.exists() else None


def _find(root: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        if (root / name).exists():
            return root / name
    raise FastDistillError(f"Fashion-MNIST file {stem}(.gz) not found in {root}; {_HOW}")


def load_fashion_mnist(spec: DatasetSpec, root: str | None, download: bool, image_size: int | None,
                       access: DataAccess) -> Dataset:
    """From ``root``, else Debian's package, in memory (``download``, ``image_size`` and ``access`` do not apply)."""
    if root is not None:
        base = Path(root)
        if not base.is_dir():
            raise FastDistillError(f"--data-root {root} is not a folder; {_HOW}")
    else:
        found = _debian_dir()
        if found is None:
            raise FastDistillError(f"Fashion-MNIST not found; {_HOW}")
        base = found
    arrays = {key: read_idx(_find(base, stem)) for key, stem in FILES.items()}
    info = spec.info(CLASSES)
    train, test = (
        Split(torch.from_numpy(arrays[f"{s}_x"].copy())[:, None], torch.from_numpy(arrays[f"{s}_y"].astype(np.int64)))
        for s in ("train", "test")
    )
    return Dataset(info, train, test, source=str(base))

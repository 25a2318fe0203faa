"""Run folders: where a command writes its outputs, its config.json and its resumable progress."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import torch

from fastdistill.commands.provenance import provenance
from fastdistill.errors import FastDistillError
from fastdistill.utils import distributed
from fastdistill.utils.io import read_json, write_json
from fastdistill.utils.lock import LOCK_FILE, run_lock

CONFIG = "config.json"
_HELD = contextlib.ExitStack()  # the run folders this command holds (released by ``release_run_dirs``)


def prepare_run_dir(output: str | None, command: str, resume: bool) -> Path:
    """Create (or reopen with ``resume``) the output folder and hold its lock until :func:`release_run_dirs`.

    Refuses to overwrite another finished or partial run, and a folder another process holds. A folder counts as a
    run only once it holds work beyond its ``config.json`` (a run that stopped before its first unit was saved can be
    started again with other settings). Under torchrun every rank must name the same folder; rank 0 creates and
    holds it, and every other rank must see it (a file system all ranks share).
    """
    distributed.same_on_all_ranks(output, "--output folders")
    path = distributed.agree(lambda: _open_run_dir(output, command, resume) if distributed.is_main() else None,
                             broadcast=True)
    distributed.agree(lambda: _check_visible(path))
    return path


def _check_visible(path: Path) -> None:
    if not (path / LOCK_FILE).exists():
        raise FastDistillError(f"cannot see the run folder {path} that rank 0 created; --output must be on a file "
                               "system every rank shares")


def _open_run_dir(output: str | None, command: str, resume: bool) -> Path:
    if output is None:
        if resume:
            raise FastDistillError("--resume needs --output DIR naming the interrupted run")
        path = Path("runs") / f"{command}-{time.strftime('%Y%m%d-%H%M%S')}"
        while path.exists():
            path = path.with_name(path.name + "-1")
    else:
        path = Path(output)
    if str(output).strip() == "":
        raise FastDistillError("--output is empty; name a folder for the run")
    if path.exists() and not path.is_dir():
        raise FastDistillError(f"--output {path} is a file; name a folder for the run")
    if path.exists() and _holds_work(path) and not resume:
        raise FastDistillError(f"{path} already holds a run; pass --resume to continue it or choose another --output")
    if resume and not (path / CONFIG).exists():
        raise FastDistillError(f"--resume: {path} holds no interrupted run (no {CONFIG}); drop --resume to start one")
    _HELD.enter_context(run_lock(path))
    if resume:
        _remove_partial_files(path)
    return path


def _remove_partial_files(path: Path) -> None:
    """Remove the temporary files (``.NAME.*.tmp``) of writes cut short in a run that was killed."""
    for tmp in path.rglob(".*.tmp"):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)


def _holds_work(path: Path) -> bool:
    """Whether ``path`` holds anything but its lock, its config.json and empty folders."""
    return any(p.name not in (LOCK_FILE, CONFIG) and (p.is_file() or _holds_work(p)) for p in path.iterdir())


def release_run_dirs() -> None:
    """Release the locks :func:`prepare_run_dir` took (a folder that received nothing is removed again)."""
    _HELD.close()


def write_config(run_dir: Path, command: str, config: dict, device: torch.device, **extra: object) -> dict:
    """Write config.json: the command, its options (``config``), versions, devices, backends and ``extra`` records."""
    record = {"command": command, "config": config, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              **provenance(device), **extra}
    write_json(run_dir / CONFIG, record)
    return record


def check_resume_config(run_dir: Path, config: dict, keys: tuple[str, ...], inputs: dict[str, str] | None = None
                        ) -> None:
    """On --resume, the settings that shape the result, and the fingerprints of the inputs (teacher, data, ...)
    recorded by both runs, must equal those of the interrupted run."""
    record = read_json(run_dir / CONFIG)
    old = record["config"]
    changed = [k for k in keys if old.get(k) != config.get(k)]
    if changed:
        detail = ", ".join(f"{k}: {old.get(k)!r} -> {config.get(k)!r}" for k in changed)
        raise FastDistillError(f"--resume with different settings ({detail}); use the original ones or a new --output")
    old_inputs = record.get("inputs") or {}
    for name, now in (inputs or {}).items():
        if name in old_inputs and old_inputs[name] != now:
            raise FastDistillError(f"--resume with a different {name} (the run used {_short(old_inputs[name])}, "
                                   f"this one is {_short(now)}); use the original {name} or a new --output")


def _short(fingerprint: str) -> str:
    """A sha256 as ``sha256 1a2b3c4d5e6f``; other fingerprints as they are."""
    if len(fingerprint) == 64 and all(c in "0123456789abcdef" for c in fingerprint):
        return f"sha256 {fingerprint[:12]}"
    return fingerprint

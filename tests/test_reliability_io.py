"""Faults at the file layer end in one line naming the file: unreadable checkpoints are redone, final files refused,
failed writes (disk full, read-only, a file in the way) leave no temporary file behind, teachers are checked."""

from __future__ import annotations

import errno
import io
import json

import pytest
import torch
from safetensors.torch import save_file

import fastdistill.utils.io as fio
from fastdistill.data import DatasetInfo
from fastdistill.errors import FastDistillError
from fastdistill.models import build_model
from fastdistill.models.teacher import load_teacher, save_teacher

INFO = DatasetInfo("toy", ("a", "b", "c"), 1, 8, (0.5,), (0.5,))


def _checkpoint(path, kind: str) -> None:
    fio.torch_save(path, {"images": torch.arange(1000.0)})
    data = path.read_bytes()
    path.write_bytes({"empty": b"", "truncated": data[: len(data) // 2], "garbage": b"not a checkpoint" * 8}[kind])


def _leftovers(folder) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("kind", ["empty", "truncated", "garbage"])
def test_unreadable_checkpoint_is_redone_with_one_warning(tmp_path, capsys, kind):
    path = tmp_path / "group_00000.pt"
    _checkpoint(path, kind)
    assert fio.torch_load_checkpoint(path) is None
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0] and "redoing" in err[0]
    assert ("empty file" in err[0]) == (kind == "empty")


def test_missing_checkpoint_is_silent_and_good_one_loads(tmp_path, capsys):
    assert fio.torch_load_checkpoint(tmp_path / "nope.pt") is None
    fio.torch_save(tmp_path / "ok.pt", {"x": torch.ones(3)})
    assert torch.equal(fio.torch_load_checkpoint(tmp_path / "ok.pt")["x"], torch.ones(3))
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("kind", ["empty", "truncated"])
def test_unreadable_final_file_is_one_line_error(tmp_path, kind):
    path = tmp_path / "distilled.pt"
    _checkpoint(path, kind)
    with pytest.raises(FastDistillError, match="rerun it") as exc:
        fio.torch_load(path, "rerun it")
    assert str(path) in str(exc.value) and "\n" not in str(exc.value)


def test_malformed_json_names_the_file(tmp_path):
    (tmp_path / "config.json").write_text('{"config": ')
    with pytest.raises(FastDistillError, match="config.json is not valid JSON"):
        fio.read_json(tmp_path / "config.json")


class _FullDisk(io.FileIO):
    """A file that takes ``room`` bytes, then fails like a full disk."""

    room = 300

    def write(self, b):
        if self.tell() + len(b) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        return super().write(b)


def test_disk_full_in_torch_save_names_path_and_size(tmp_path, monkeypatch):
    monkeypatch.setattr(fio, "open", _FullDisk, raising=False)
    with pytest.raises(FastDistillError) as exc:
        fio.torch_save(tmp_path / "run" / "group_00000.pt", {"images": torch.zeros(25_000)})
    msg = str(exc.value)
    assert msg.startswith("disk full while writing ") and "group_00000.pt" in msg
    assert "needs about 100.1 KB" in msg and "free" in msg and "\n" not in msg
    assert _leftovers(tmp_path / "run") == [] and not (tmp_path / "run" / "group_00000.pt").exists()


def test_disk_full_in_write_json(tmp_path, monkeypatch):
    def full(self, text):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fio.Path, "write_text", full)
    with pytest.raises(FastDistillError, match=r"disk full while writing .*results.json \(this step needs about 3 B"):
        fio.write_json(tmp_path / "results.json", {})
    assert _leftovers(tmp_path) == []


def test_read_only_file_system(tmp_path, monkeypatch):
    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(fio.tempfile, "mkstemp", read_only)
    with pytest.raises(FastDistillError, match="summary.json: the file system is read-only"):
        fio.write_json(tmp_path / "summary.json", {"a": 1})


def test_output_is_a_file(tmp_path):
    (tmp_path / "out").write_text("a file")
    with pytest.raises(FastDistillError, match=r"out is a file, not a folder; choose another --output"):
        fio.write_json(tmp_path / "out" / "progress" / "config.json", {})
    with pytest.raises(FastDistillError, match="is a file, not a folder"):
        fio.write_bytes(tmp_path / "out" / "0000.png", b"png")
    (tmp_path / "dir.pt").mkdir()
    with pytest.raises(FastDistillError, match="a folder of that name is in the way"):
        fio.torch_save(tmp_path / "dir.pt", {"x": torch.ones(1)})
    assert _leftovers(tmp_path) == []


@pytest.fixture
def small_tmpfs(tmpfs):
    """A 64 KiB tmpfs (skips where mounting is not permitted)."""
    return tmpfs("64k")


def test_disk_full_on_a_real_small_file_system(small_tmpfs):
    with pytest.raises(FastDistillError) as exc:
        fio.torch_save(small_tmpfs / "run" / "selection.pt", {"scores": torch.zeros(100_000)})
    assert "disk full while writing" in str(exc.value) and "needs about 400.1 KB" in str(exc.value)
    assert _leftovers(small_tmpfs / "run") == []
    fio.write_json(small_tmpfs / "run" / "summary.json", {"ok": True})  # small files still fit after the failure
    assert fio.read_json(small_tmpfs / "run" / "summary.json") == {"ok": True}


# --- teachers -------------------------------------------------------------------------------------------------------


def _teacher(folder):
    return save_teacher(folder, build_model("convnet3-bn", 3, 1, 8), "convnet3-bn", INFO)


def test_teacher_with_non_finite_weights_is_refused_when_saved(tmp_path):
    model = build_model("convnet3-bn", 3, 1, 8)
    with torch.no_grad():
        next(model.parameters())[0] = float("nan")
    with pytest.raises(FastDistillError, match=r"refusing to save the teacher to .*teacher.safetensors: .* NaN/inf"):
        save_teacher(tmp_path / "t", model, "convnet3-bn", INFO)
    assert not (tmp_path / "t" / "teacher.safetensors").exists() and not (tmp_path / "t" / "teacher.json").exists()


def test_teacher_with_non_finite_weights_is_refused_when_loaded(tmp_path):
    folder = _teacher(tmp_path / "t")
    state = build_model("convnet3-bn", 3, 1, 8).state_dict()
    state[next(k for k, v in state.items() if v.is_floating_point())].fill_(float("inf"))
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "teacher.safetensors"))
    with pytest.raises(FastDistillError, match=r"teacher.safetensors hold NaN/inf .*retrain"):
        load_teacher(folder, INFO)


@pytest.mark.parametrize("content", [b"", b"partial"])
def test_empty_or_truncated_teacher_weights(tmp_path, content):
    folder = _teacher(tmp_path / "t")
    weights = folder / "teacher.safetensors"
    weights.write_bytes(weights.read_bytes()[:100] if content else b"")
    with pytest.raises(FastDistillError) as exc:
        load_teacher(folder, INFO)
    msg = str(exc.value)
    assert str(weights) in msg and ("(empty)" if not content else "(truncated or corrupt)") in msg
    assert "\n" not in msg


@pytest.mark.parametrize("text", ['{"arch": "convnet3-bn", "dataset": ', "[1, 2]", '{"dataset": {}}'])
def test_malformed_teacher_json(tmp_path, text):
    folder = _teacher(tmp_path / "t")
    (folder / "teacher.json").write_text(text)
    with pytest.raises(FastDistillError, match="teacher.json"):
        load_teacher(folder, INFO)


def test_teacher_round_trip_is_unchanged(tmp_path):
    folder = _teacher(tmp_path / "t")
    meta = json.loads((folder / "teacher.json").read_text())
    assert meta["arch"] == "convnet3-bn"
    model, _ = load_teacher(folder, INFO)
    assert all(torch.isfinite(v).all() for v in model.state_dict().values() if v.is_floating_point())

"""``run_lock``: one process per run folder; a second gets one line naming the holder; stale locks are taken over."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import subprocess
import sys
import textwrap

import pytest

from fastdistill.errors import FastDistillError
from fastdistill.utils.lock import LOCK_FILE, run_lock

HOLDER = textwrap.dedent("""
    import os, sys
    from fastdistill.utils.lock import run_lock
    with run_lock(sys.argv[1]):
        print("locked", flush=True)
        if sys.argv[2] == "die":
            os._exit(0)  # like SIGKILL: no cleanup, the lock file stays
        sys.stdin.readline()
    print("released", flush=True)
""")


def _holder(run_dir, mode: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(run_dir), mode], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, cwd=os.getcwd())
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_two_processes_take_turns(tmp_path):
    run = tmp_path / "run"
    proc = _holder(run, "wait")
    try:
        with pytest.raises(FastDistillError) as exc, run_lock(run):
            pass
        msg = str(exc.value)
        assert msg.startswith(f"{run} is in use by pid {proc.pid} (started ") and "wait for it" in msg
        assert "\n" not in msg
    finally:
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "released"
        proc.wait(timeout=30)
    assert not (run / LOCK_FILE).exists()
    with run_lock(run) as path:  # the first one finished: our turn
        assert json.loads(path.read_text())["pid"] == os.getpid()
    assert not (run / LOCK_FILE).exists()


def test_stale_lock_is_taken_over(tmp_path, capsys):
    run = tmp_path / "run"
    proc = _holder(run, "die")
    proc.wait(timeout=30)
    assert json.loads((run / LOCK_FILE).read_text())["pid"] == proc.pid  # left behind by a dead process
    with run_lock(run) as path:
        assert json.loads(path.read_text())["pid"] == os.getpid()
    assert f"left by pid {proc.pid}" in capsys.readouterr().err
    assert not (run / LOCK_FILE).exists()


def test_garbled_lock_file_is_taken_over(tmp_path):
    (tmp_path / LOCK_FILE).write_text("not json")
    with run_lock(tmp_path) as path:
        assert json.loads(path.read_text())["pid"] == os.getpid()


def test_second_holder_in_the_same_process_is_refused(tmp_path):
    with run_lock(tmp_path), pytest.raises(FastDistillError, match=f"in use by pid {os.getpid()}"), \
            run_lock(tmp_path):
        pass


def test_run_folder_under_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(FastDistillError, match="is a file, not a folder"), run_lock(tmp_path / "f" / "run"):
        pass


def test_folder_made_for_the_lock_is_removed_when_nothing_was_written(tmp_path):
    with run_lock(tmp_path / "new"):
        assert (tmp_path / "new").is_dir()
    assert not (tmp_path / "new").exists()
    with run_lock(tmp_path / "kept"):
        (tmp_path / "kept" / "config.json").write_text("{}")
    assert (tmp_path / "kept" / "config.json").exists() and not (tmp_path / "kept" / LOCK_FILE).exists()
    (tmp_path / "existing").mkdir()
    with run_lock(tmp_path / "existing"):
        pass
    assert (tmp_path / "existing").is_dir()


def test_file_system_without_locks(tmp_path, monkeypatch, capsys):
    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with run_lock(tmp_path) as path:
        assert json.loads(path.read_text())["pid"] == os.getpid()
    assert "cannot lock files" in capsys.readouterr().err

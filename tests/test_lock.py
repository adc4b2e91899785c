"""One study run per results folder: a second is refused with the holder named, or waits."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cloudbench.study.lock import LockedError, StudyLock

HOLD = """
import sys, time
from pathlib import Path
from cloudbench.study.lock import StudyLock
lock = StudyLock(Path(sys.argv[1]), command="study run demo.toml")
lock.acquire()
print("held", flush=True)
time.sleep(float(sys.argv[2]))
lock.release()
"""


def hold(root: Path, seconds: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(root), str(seconds)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_run_is_refused_with_the_holder_named(tmp_path: Path) -> None:
    proc = hold(tmp_path, 30)
    try:
        with pytest.raises(LockedError, match=rf"in use by another study run \(pid {proc.pid} "
                                              r"on .*study run demo\.toml\).*--wait-lock"):
            StudyLock(tmp_path).acquire()
    finally:
        proc.kill()
        proc.wait()


def test_waiting_takes_the_lock_when_the_holder_ends(tmp_path: Path) -> None:
    proc = hold(tmp_path, 1.5)
    waited = []
    lock = StudyLock(tmp_path)
    start = time.monotonic()
    lock.acquire(wait_s=30, on_wait=waited.append)
    try:
        assert time.monotonic() - start >= 0.5 and waited[0]["pid"] == proc.pid
        assert lock.holder()["pid"] == os.getpid()
    finally:
        lock.release()
        proc.wait()


def test_a_killed_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    proc = hold(tmp_path, 30)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with StudyLock(tmp_path) as lock:
        assert lock.took_over is not None and lock.took_over["pid"] == proc.pid
    with pytest.raises(LockedError):
        with StudyLock(tmp_path):
            StudyLock(tmp_path).acquire(wait_s=0)


def test_waiting_has_a_bound(tmp_path: Path) -> None:
    proc = hold(tmp_path, 30)
    try:
        start = time.monotonic()
        with pytest.raises(LockedError):
            StudyLock(tmp_path).acquire(wait_s=1.0)
        assert time.monotonic() - start < 10
    finally:
        proc.kill()
        proc.wait()

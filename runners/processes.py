"""A kernel's process tree: its memory, sampled while it runs, and its end when it must stop.

Shared by the two ways a local runner executes a notebook (runners.local's child process,
runners.inprocess's kernel started from the study's process), and the one way any runner
ends a process it started (the Colab client, a kfp.local task): :func:`kill_tree`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from typing import Any

import psutil

#: How often TreeMemory looks for new processes in the tree. Finding them means reading
#: every process of the machine (psutil's children()), which at 10 samples a second was
#: the harness's largest cost while a run trains (bench/bench_harness_cpu.py).
RESCAN_S = 1.0


class TreeMemory:
    """Resident memory of a process tree, sampled cheaply: each call reads the memory of
    the processes known (one /proc file each), and the tree itself is re-read only every
    ``rescan_s`` seconds, so a process the kernel starts is counted within a second.

    ``root`` gives the tree's root, or None while it has not started (it is asked again
    until it gives one).
    """

    def __init__(self, root: Callable[[], psutil.Process | None], include_root: bool = True,
                 rescan_s: float = RESCAN_S):
        self._root_of = root
        self._root: psutil.Process | None = None
        self._include_root = include_root
        self._rescan_s = rescan_s
        self._procs: list[psutil.Process] = []
        self._scanned = -float("inf")

    def __call__(self) -> float:
        if self._root is None:
            self._root = self._root_of()
            if self._root is None:
                return 0.0
        now = time.monotonic()
        if now - self._scanned >= self._rescan_s:
            try:
                self._procs = self._root.children(recursive=True) + (
                    [self._root] if self._include_root else [])
            except psutil.NoSuchProcess:
                self._procs = []
            self._scanned = now
        total = 0
        alive = []
        for proc in self._procs:
            try:
                total += proc.memory_info().rss
                alive.append(proc)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        self._procs = alive
        return total / 2**20


def kill_tree(root: psutil.Process | subprocess.Popen[Any] | None) -> None:
    """SIGKILL `root` and every descendant, and wait for them (10 s at most).

    A root that leads its own process group (started with ``start_new_session``) takes its
    group with it too: a grandchild whose parent died already is no longer a descendant,
    but it is still in the group.
    """
    if root is None:
        return
    popen = root if isinstance(root, subprocess.Popen) else None
    try:
        process = psutil.Process(root.pid) if popen is not None else root
        assert isinstance(process, psutil.Process)
        victims = process.children(recursive=True) + [process]
    except psutil.NoSuchProcess:
        victims = []
    pid = root.pid
    with contextlib.suppress(OSError):
        if pid != os.getpid() and os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGKILL)
    for victim in victims:
        try:
            victim.kill()
        except psutil.NoSuchProcess:
            pass
    if popen is not None:
        with contextlib.suppress(OSError):
            popen.kill()
    psutil.wait_procs(victims, timeout=10)


#: The variable every process of a run inherits: how its leftovers are found at its end.
RUN_MARK = "CLOUDBENCH_RUN"
_PR_SET_CHILD_SUBREAPER = 36


def adopt_orphans() -> bool:
    """Make this process the reaper of its descendants' orphans (Linux): a process a
    notebook starts with setsid or a double fork then stays our descendant when its parent
    dies, so that :func:`kill_leftovers` finds it. False where the system cannot."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def kill_leftovers(mark: str) -> int:
    """Kill what a run left running (setsid children, double forks): our descendants whose
    environment carries RUN_MARK=`mark`. Returns how many there were."""
    found = []
    for proc in psutil.Process(os.getpid()).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if proc.environ().get(RUN_MARK) == mark:
                found.append(proc)
    for proc in found:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(found, timeout=10)
    return len(found)

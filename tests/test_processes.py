"""The memory sampler's process tree: cheap samples, and a late child still counted."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable

import psutil

from cloudbench.runners.processes import TreeMemory, kill_tree

# A parent that holds ~64 MB itself and, after a moment, starts a child holding ~64 MB more.
# Both write every page of their block: a zero-filled bytearray is not resident until then.
PARENT = """
import subprocess, sys, time
block = bytearray(64 * 2**20)
block[::4096] = bytes(len(block) // 4096)
time.sleep(0.5)
child = subprocess.Popen([sys.executable, "-c", "import time; b = bytearray(64 * 2**20); "
                          "b[::4096] = bytes(len(b) // 4096); time.sleep(60)"])
time.sleep(60)
"""


def _wait_for(predicate: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_a_child_started_later_is_counted_after_the_next_rescan() -> None:
    proc = subprocess.Popen([sys.executable, "-c", PARENT])
    try:
        root = psutil.Process(proc.pid)
        memory = TreeMemory(lambda: root, rescan_s=0.2)
        assert _wait_for(lambda: memory() > 60)
        assert _wait_for(lambda: len(root.children()) == 1)
        assert _wait_for(lambda: memory() > 120), "the late child's memory was never counted"
        without_root = TreeMemory(lambda: root, include_root=False, rescan_s=0.2)
        assert _wait_for(lambda: 60 < without_root() < memory())
    finally:
        kill_tree(psutil.Process(proc.pid))
        proc.wait(timeout=10)


def test_a_root_not_started_yet_reads_zero_and_is_asked_again() -> None:
    roots: list[psutil.Process | None] = [None, psutil.Process()]
    memory = TreeMemory(lambda: roots.pop(0))
    assert memory() == 0.0
    assert memory() > 0
    assert memory() > 0  # the root, once given, is kept: not asked a third time


def test_a_dead_tree_reads_zero() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    root = psutil.Process(proc.pid)
    proc.wait(timeout=10)
    assert TreeMemory(lambda: root, rescan_s=0.0)() == 0.0


def test_kill_tree_takes_a_popen_and_the_orphans_of_its_group() -> None:
    """The one process-tree killer (Colab's client, kfp.local's tasks, kernels): a process
    started as its own group's leader takes the group along, grandchildren whose parent
    died already (no longer its descendants) included."""
    spawn = ("import subprocess, sys; p = subprocess.Popen([sys.executable, '-c', "
             "'import time; time.sleep(60)']); print(p.pid, flush=True)")
    proc = subprocess.Popen([sys.executable, "-c", spawn], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    assert proc.stdout is not None
    orphan = psutil.Process(int(proc.stdout.readline()))
    leader = psutil.Process(proc.pid)
    assert _wait_for(lambda: leader.status() == psutil.STATUS_ZOMBIE)  # exited, not reaped
    assert orphan.is_running() and orphan not in leader.children(recursive=True)
    kill_tree(proc)
    assert _wait_for(lambda: not orphan.is_running() or
                     orphan.status() == psutil.STATUS_ZOMBIE)
    proc.wait(timeout=10)
    proc.stdout.close()


LEAVES_CHILDREN = '''
import os, subprocess, sys, time
marker = f"cloudbench-leftover-{os.getpid()}"
subprocess.Popen(["sleep", "300"], start_new_session=True)  # setsid
if os.fork() == 0:  # a double fork: the grandchild's parent exits at once
    if os.fork() == 0:
        os.setsid()
        time.sleep(300)
    os._exit(0)
os.wait()
'''


def test_processes_a_run_leaves_behind_are_killed_and_counted(tmp_path, quick_study) -> None:
    """A notebook that starts a setsid child and a double-forked grandchild: both outlive
    the kernel, both are found by the run's mark and killed, and the record counts them."""
    import io

    from rich.console import Console

    from cloudbench.runners.processes import RUN_MARK
    from cloudbench.runners.scheduler import run_study
    from cloudbench.study.spec import load_study

    from conftest import write_quick_notebook

    write_quick_notebook(tmp_path / "quick.ipynb", LEAVES_CHILDREN)
    spec = quick_study(name="leaves", repetitions=1, environments='[[environments]]\n'
                                                                   'name = "a"\n')
    [record] = run_study(load_study(spec), output=tmp_path / "out",
                         console=Console(file=io.StringIO())).executed
    assert record["leftover_processes"] == 2
    left = []
    for proc in psutil.process_iter():
        try:
            if str(tmp_path) in proc.environ().get(RUN_MARK, ""):
                left.append(proc)
        except psutil.Error:
            continue
    assert left == []

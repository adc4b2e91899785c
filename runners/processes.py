"""A kernel's process tree: its memory, sampled while it runs, and its end when it must stop.

Shared by the two ways a local runner executes a notebook (runners.local's child process,
runners.inprocess's kernel started from the study's process).
"""

from __future__ import annotations

import psutil


def tree_rss_mb(root: psutil.Process | None, include_root: bool = True) -> float:
    """Resident memory of `root` (unless include_root is False) and all its descendants."""
    if root is None:
        return 0.0
    try:
        procs = root.children(recursive=True) + ([root] if include_root else [])
    except psutil.NoSuchProcess:
        return 0.0
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total / 2**20


def kill_tree(root: psutil.Process | None) -> None:
    """SIGKILL `root` and every descendant, and wait for them (10 s at most)."""
    if root is None:
        return
    try:
        victims = root.children(recursive=True) + [root]
    except psutil.NoSuchProcess:
        return
    for victim in victims:
        try:
            victim.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(victims, timeout=10)

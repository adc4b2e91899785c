"""One `study run` per results folder at a time.

Two runs of one study at once (a timer firing while a person runs it by hand) would run
every job twice on the same cores and delete each other's working folders. The lock is an
advisory `flock` on `<results>/.lock`: the kernel drops it when its holder dies, so a
killed study never leaves a stale lock on this machine. The file also names its holder
(pid, host, command, since when) for the message the second run prints; a lock file
whose holder is gone (a crash on another host sharing the folder) is taken over with a
note.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from cloudbench.errors import InputError

LOCK_NAME = ".lock"
POLL_S = 1.0


class LockedError(InputError, RuntimeError):
    """Another process holds the study's results folder; the message names it."""


def describe(holder: dict[str, Any]) -> str:
    return (f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}, since "
            f"{holder.get('since', '?')}: {holder.get('command', '?')}")


class StudyLock:
    """A context manager: held from `acquire` to `release` (or the process's death)."""

    def __init__(self, root: Path, command: str | None = None):
        self.path = Path(root) / LOCK_NAME
        self.command = command or " ".join(os.path.basename(a) if i == 0 else a
                                           for i, a in enumerate(sys.argv))[:200]
        self._file: TextIO | None = None
        self.took_over: dict[str, Any] | None = None  # a dead holder's record, if any

    def holder(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8") or "null")
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def acquire(self, wait_s: float | None = None, on_wait: Any = None) -> None:
        """Take the lock; LockedError at once (wait_s None) or after wait_s seconds."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = None if wait_s is None else time.monotonic() + wait_s
        handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 (held until release)
        told = False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = self.holder() or {}
                if deadline is None or time.monotonic() >= deadline:
                    handle.close()
                    raise LockedError(
                        f"{self.path.parent} is in use by another study run ({describe(holder)})"
                        "; wait for it to finish, or run with --wait-lock to wait"
                    ) from None
                if on_wait is not None and not told:
                    on_wait(holder)
                    told = True
                time.sleep(POLL_S)
        previous = self.holder()
        if previous and previous.get("host") == socket.gethostname() and previous.get(
                "pid") != os.getpid() and not _alive(previous.get("pid")):
            self.took_over = previous  # flock was free: its holder died without releasing
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "since": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                                 "command": self.command}))
        handle.flush()
        self._file = handle

    def release(self) -> None:
        if self._file is None:
            return
        try:
            self._file.seek(0)
            self._file.truncate()
            fcntl.flock(self._file, fcntl.LOCK_UN)
        finally:
            self._file.close()
            self._file = None

    def __enter__(self) -> StudyLock:
        if self._file is None:
            self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

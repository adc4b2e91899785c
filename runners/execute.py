"""Child process of a runner: execute one notebook with papermill, report what happened.

Running papermill in a child lets the runner enforce a whole-run timeout (papermill's own
cell timeout leaves cells marked complete) and kill the kernel's whole process tree.
Usage: python -m runners.execute JOB.json [PARENT_PID], where JOB holds input, output,
parameters, kernel, cwd, report and, for a remote kernel, kernel_manager_class.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from cloudbench.data.atomic import write_json_atomic
from cloudbench.study.imports import skip_slow_optional_imports


def execute(job: dict[str, Any]) -> dict[str, Any]:
    skip_slow_optional_imports()
    import papermill
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    extra = {}
    if job.get("kernel_manager_class"):
        extra["kernel_manager_class"] = job["kernel_manager_class"]
    try:
        papermill.execute_notebook(
            job["input"], job["output"], parameters=job["parameters"],
            kernel_name=job.get("kernel", "python3"), cwd=job.get("cwd"),
            progress_bar=False, log_output=False, request_save_on_cell_execute=True,
            start_timeout=job.get("start_timeout", 120),
            # The record and the notebook are written when the last cell ends: a kernel
            # that loaded TensorFlow takes a second to exit politely, for nothing.
            shutdown_kernel="immediate", **extra)
    except PapermillExecutionError as exc:
        return {"ok": False, "kind": "cell", "ename": exc.ename, "evalue": exc.evalue,
                "cell": exc.exec_count, "cell_index": exc.cell_index}
    except DeadKernelError as exc:
        return {"ok": False, "kind": "dead_kernel", "ename": "DeadKernelError",
                "evalue": str(exc) or "the kernel died"}
    except CellTimeoutError as exc:
        return {"ok": False, "kind": "timeout", "ename": "CellTimeoutError", "evalue": str(exc)}
    except Exception as exc:  # kernel start, connection and gateway errors: infrastructure
        return {"ok": False, "kind": "infrastructure", "ename": type(exc).__name__,
                "evalue": str(exc)}
    return {"ok": True}


def die_with_parent(parent_pid: int) -> None:
    """Get SIGKILL when the study process dies, even by kill -9 (Linux's PR_SET_PDEATHSIG).

    Set here rather than in a preexec_fn (unsafe in a process with threads). A parent that
    died before the call is caught by comparing the parent's pid afterwards. The kernel
    follows on its own: ipykernel exits when its parent (papermill) goes.
    """
    try:
        import ctypes
        import os
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
        if os.getppid() != parent_pid:
            os._exit(1)
    except (OSError, AttributeError):
        pass


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) > 1:
        die_with_parent(int(args[1]))
    job = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    report = execute(job)
    write_json_atomic(job["report"], report)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

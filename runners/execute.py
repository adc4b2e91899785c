"""Child process of a runner: execute one notebook with papermill, report what happened.

Running papermill in a child lets the runner enforce a whole-run timeout (papermill's own
cell timeout leaves cells marked complete) and kill the kernel's whole process tree.
Usage: python -m runners.execute JOB.json, where JOB holds input, output, parameters,
kernel, cwd, report and, for a remote kernel, kernel_manager_class.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from protocols.cnn_protocol import write_json_atomic


def execute(job: dict[str, Any]) -> dict[str, Any]:
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
            start_timeout=job.get("start_timeout", 120), **extra)
    except PapermillExecutionError as exc:
        return {"ok": False, "kind": "cell", "ename": exc.ename, "evalue": exc.evalue,
                "cell": exc.exec_count}
    except DeadKernelError as exc:
        return {"ok": False, "kind": "dead_kernel", "ename": "DeadKernelError",
                "evalue": str(exc) or "the kernel died"}
    except CellTimeoutError as exc:
        return {"ok": False, "kind": "timeout", "ename": "CellTimeoutError", "evalue": str(exc)}
    except Exception as exc:  # kernel start, connection and gateway errors: infrastructure
        return {"ok": False, "kind": "infrastructure", "ename": type(exc).__name__,
                "evalue": str(exc)}
    return {"ok": True}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    job = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    report = execute(job)
    write_json_atomic(job["report"], report)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

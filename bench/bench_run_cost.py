"""(e) The harness's own cost per run, on a quick notebook (one cell, no TensorFlow).

Per-run overhead = the runner's wall_s minus the notebook's kernel-side total_s: what a run
costs beyond the protocol (kernel start, papermill, the notebook and the record written).
It is set beside the bare start of a kernel's Python, `python -c "import ipykernel"`, as a
ratio, and measured side by side (ABBA pairs) for the in-process path the local runner
takes now and the child-process path it took before (still used for remote kernels).
Target: at most 1.0 s.  Usage: python bench/bench_run_cost.py [PAIRS]
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness import local_runner, side_by_side

from cloudbench.runners.local import LocalRunner

QUICK = {
    "cells": [
        {"cell_type": "code", "id": "p", "metadata": {"tags": ["parameters"]}, "outputs": [],
         "execution_count": None, "source": "seed = 0\n"},
        {"cell_type": "code", "id": "t", "metadata": {"tags": ["phase:train"]}, "outputs": [],
         "execution_count": None, "source": "total = sum(range(100_000))\n"},
    ],
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                "language": "python"}},
    "nbformat": 4, "nbformat_minor": 5,
}


class ChildProcessRunner(LocalRunner):
    """The local runner as it was: papermill in a child Python for every run."""

    def _execute(self, work: Path, record: dict[str, Any]) -> tuple[dict[str, Any], float]:
        return self._execute_child(work, record)


def bare_start() -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import ipykernel"], check=True)
    return time.perf_counter() - start


def main() -> None:
    pairs = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    notebook = Path(tempfile.mkdtemp(prefix="quick-")) / "q.ipynb"
    notebook.write_text(json.dumps(QUICK), encoding="utf-8")
    study = f"""
[study]
name = "bench-run-cost"
repetitions = 1
[protocol]
notebook = "{notebook}"
[[datasets]]
name = "shapes"
images = 60
[[environments]]
name = "pc"
"""
    here, job, _ = local_runner(study, "bench-run-cost-")
    child = ChildProcessRunner(here.study, here.env, here.store)
    attempts = iter(range(1, 100_000))
    overheads: dict[str, list[float]] = {"here": [], "child": []}

    def measure(runner: LocalRunner, key: str) -> float:
        record = runner.run(job, next(attempts))
        assert record["status"] == "ok", record["error"]
        overheads[key].append(record["wall_s"] - record["total_s"])
        return record["wall_s"]

    from cloudbench.runners import inprocess

    inprocess.prepare()  # as a study does once, before its first run
    measure(here, "here")  # warm the file cache; not counted
    overheads["here"].clear()
    side_by_side(pairs, lambda: measure(here, "here"), lambda: measure(child, "child"),
                 "in-process vs child")
    bare = statistics.median(bare_start() for _ in range(pairs))
    now, before = statistics.median(overheads["here"]), statistics.median(overheads["child"])
    print(f"bare kernel Python start (python -c 'import ipykernel'): {bare:.3f} s")
    print(f"per-run overhead, in-process: {now:.3f} s ({now / bare:.2f} x the bare start)")
    print(f"per-run overhead, child process (before): {before:.3f} s "
          f"({before / bare:.2f} x the bare start)")
    print(f"run_overhead_s={now:.3f} run_overhead_over_bare_start={now / bare:.2f} "
          f"child_overhead_s={before:.3f}")


if __name__ == "__main__":
    main()

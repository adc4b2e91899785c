"""(b'') The CPU the harness takes while a run trains: each source counted, not guessed.

Wall-time ratios on this shared machine cannot resolve a 1 % source (the same bare script
varies by 30 % from run to run). CPU time can: this runs the protocol notebook through the
local runner as a study does, with two untimed cells around the fit that read every
thread's CPU time in the kernel (/proc/self/task), and a monitor in this process that reads
the study process's threads every 0.25 s. Over the fit's interval it reports the CPU
seconds of each source: the kernel's own Python threads (IOPub, control, heartbeat, parent
poller, history), the study process's threads (the runner's watch loop with its memory
sampler, papermill's client, the heartbeat and ZeroMQ threads) and, for scale, the fit's
own threads. A source's share of the machine is its CPU seconds over (fit seconds x cores).
Usage: python bench/bench_harness_cpu.py [RUNS]
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import nbformat
import psutil
from bench_train_fidelity import STUDY
from harness import PROTOCOL, local_runner

from cloudbench.runners.processes import RESCAN_S, TreeMemory

FIT = "kernel: the fit (main thread + TensorFlow's native threads)"
SNAPSHOT = """
import json as _json, os as _os, threading as _threading, time as _time
def _thread_cpu():
    names = {t.native_id: t.name for t in _threading.enumerate()}
    out = {}
    for tid in _os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{tid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        name = names.get(int(tid), "native")
        ticks = int(fields[11]) + int(fields[12])
        out[name] = out.get(name, 0.0) + ticks / _os.sysconf("SC_CLK_TCK")
    return out
with open(%r, "a") as _f:
    _f.write(_json.dumps({"at": _time.time(), "cpu": _thread_cpu()}) + "\\n")
"""


def instrumented_notebook(tmp: Path) -> tuple[Path, Path]:
    """The protocol with a snapshot cell just before and just after the fit's cell."""
    snapshots = tmp / "snapshots.jsonl"
    nb = nbformat.read(PROTOCOL, as_version=4)
    fit = next(i for i, c in enumerate(nb.cells) if "net.fit(" in c.source)
    cell = nbformat.v4.new_code_cell(SNAPSHOT % str(snapshots))
    nb.cells[fit + 1:fit + 1] = [cell]
    nb.cells[fit:fit] = [nbformat.v4.new_code_cell(SNAPSHOT % str(snapshots))]
    path = tmp / "instrumented.ipynb"
    nbformat.write(nb, path)
    return path, snapshots


class StudyMonitor(threading.Thread):
    """This process's threads' CPU times, every 0.25 s, by Python thread name."""

    def __init__(self) -> None:
        super().__init__(daemon=True, name="bench monitor")
        self.samples: list[tuple[float, dict[str, float]]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        me = psutil.Process()
        while not self.stop.wait(0.25):
            names = {t.native_id: t.name for t in threading.enumerate()}
            cpu: dict[str, float] = defaultdict(float)
            for t in me.threads():
                cpu[_kind(names.get(t.id, "native"))] += t.user_time + t.system_time
            self.samples.append((time.time(), dict(cpu)))

    def between(self, start: float, end: float) -> dict[str, float]:
        inside = [s for s in self.samples if start <= s[0] <= end]
        if len(inside) < 2:
            return {}
        (t0, a), (t1, b) = inside[0], inside[-1]
        scale = (end - start) / (t1 - t0)  # the samples span a little less than the fit
        return {k: (b.get(k, 0.0) - a.get(k, 0.0)) * scale for k in b}


def _kind(name: str) -> str:
    if name == "MainThread":
        return "study: watch loop + memory sampler (main thread)"
    if name.startswith("papermill"):
        return "study: papermill/nbclient client thread"
    if name == "bench monitor":
        return "bench monitor (not the harness)"
    return f"study: {name if name == 'native' else 'other Python threads'}"


def sample_cost_ms(rescan_s: float, samples: int = 400) -> float:
    """CPU milliseconds per memory sample of a live kernel-like tree (this process and a
    child), with the tree re-read every ``rescan_s`` (0: every sample, as before)."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        memory = TreeMemory(psutil.Process, rescan_s=rescan_s)
        start = time.process_time()
        for _ in range(samples):
            memory()
            time.sleep(0.001)  # rescans are timed, so let a little time pass
        return 1000 * (time.process_time() - start) / samples
    finally:
        child.kill()
        child.wait()


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    tmp = Path(tempfile.mkdtemp(prefix="bench-cpu-"))
    notebook, snapshots = instrumented_notebook(tmp)
    runner, job, _ = local_runner(STUDY.replace(str(PROTOCOL), str(notebook)), "bench-cpu-")
    monitor = StudyMonitor()
    monitor.start()
    shares: dict[str, list[float]] = defaultdict(list)
    for attempt in range(1, runs + 1):
        snapshots.unlink(missing_ok=True)
        record = runner.run(job, attempt=attempt)
        assert record["status"] == "ok", record["error"]
        before, after = (json.loads(line) for line in snapshots.read_text().splitlines())
        fit_s = after["at"] - before["at"]
        kernel = {k: after["cpu"][k] - before["cpu"].get(k, 0.0) for k in after["cpu"]}
        cores = os.cpu_count() or 1
        this_run: dict[str, float] = defaultdict(float)
        for name, cpu in kernel.items():
            this_run[FIT if name in ("MainThread", "native") else f"kernel: {name}"] += cpu
        for name, cpu in monitor.between(before["at"], after["at"]).items():
            this_run[name] += cpu
        for name, cpu in this_run.items():
            shares[name].append(cpu / (fit_s * cores))
        print(f"run {attempt}: train_s {record['train_s']:.3f}", flush=True)
    monitor.stop.set()
    print("source: median share of the machine's CPU during the fit (max)")
    for name in sorted(shares):
        values = shares[name]
        print(f"  {name}: {100 * statistics.median(values):.3f} % "
              f"({100 * max(values):.3f} %)")
    harness = [sum(v[i] for k, v in shares.items()
                   if k != FIT and not k.startswith("bench") and len(v) == runs)
               for i in range(runs)]
    print(f"harness_cpu_share_pct={100 * statistics.median(harness):.3f}")
    every, cached = sample_cost_ms(0.0), sample_cost_ms(RESCAN_S)
    print(f"memory sample: {every:.3f} ms of CPU re-reading the tree each time, "
          f"{cached:.3f} ms with the tree re-read every {RESCAN_S:g} s")
    print(f"sample_cost_ratio={cached / every:.3f}")


if __name__ == "__main__":
    main()

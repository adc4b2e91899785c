"""(b') Where the notebook's extra train_s comes from: each layer of the harness in isolation.

The same parameterised protocol notebook is timed six ways, each in a fresh process:

- script: its code cells as one Python script (no kernel at all), the reference;
- kernel: executed by nbclient in a fresh ipykernel (IOPub, heartbeat and control
  threads, IPython), nothing else;
- kernel_quiet: the same with `verbose=0` in the fit, so no output is streamed;
- papermill: papermill.execute_notebook in this process as the runner calls it (saves
  after each cell), with no memory sampler;
- runner: the local runner as a study runs it (papermill in-process, sampler at 10 Hz);
- runner_unsampled: the same with the sampler waking once every 5 s;
- bare_fit: bench_train_fidelity's bare script (the fit without the notebook's strategy
  scope and epoch-timer callback), which tells the program's share of (b) from the kernel's.

Each measurement also reads the hypervisor's steal time; rounds without any in every
variant are reported apart.

Rounds rotate the order (and reverse it every other round), so drift and position fall on
all alike. Each variant's result is the median over rounds of its train_s divided by the
script's train_s of the same round.
Usage: python bench/bench_fidelity_sources.py [ROUNDS]
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import nbformat
from bench_train_fidelity import BARE, CALM_STEAL, STUDY, run_bare
from harness import local_runner, steal_share

import cloudbench.runners.local as local_module
from cloudbench.runners.execute import execute
from cloudbench.study.imports import skip_slow_optional_imports


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    skip_slow_optional_imports()
    import papermill
    from nbclient import NotebookClient

    runner, job, tmp = local_runner(STUDY, "bench-sources-")
    env = runner.kernel_env()
    record_path = tmp / "record.json"
    prepared = tmp / "prepared.ipynb"
    papermill.execute_notebook(str(runner.study.notebook), str(prepared),
                               parameters=runner.parameters(job, record_path),
                               prepare_only=True, progress_bar=False)
    nb = nbformat.read(prepared, as_version=4)
    code = "\n\n".join(c.source for c in nb.cells if c.cell_type == "code")
    (tmp / "script.py").write_text(code, encoding="utf-8")
    (tmp / "bare.py").write_text(BARE, encoding="utf-8")
    quiet = nbformat.read(prepared, as_version=4)
    for cell in quiet.cells:
        cell.source = cell.source.replace("verbose=2", "verbose=0")
    attempts = iter(range(1, 10_000))

    def train_s() -> float:
        value = json.loads(record_path.read_text(encoding="utf-8"))["train_s"]
        record_path.unlink()
        return value

    def script() -> float:
        subprocess.run([sys.executable, str(tmp / "script.py")], check=True, cwd=tmp, env=env,
                       capture_output=True)
        return train_s()

    def kernel(notebook: nbformat.NotebookNode) -> Callable[[], float]:
        def run() -> float:
            client = NotebookClient(nbformat.from_dict(notebook), kernel_name="python3",
                                    resources={"metadata": {"path": str(tmp)}})
            client.execute(env=env)
            return train_s()
        return run

    def through_papermill() -> float:
        report = execute({"input": str(prepared), "output": str(tmp / "executed.ipynb"),
                          "parameters": {}, "cwd": None})
        assert report["ok"], report
        return train_s()

    def through_runner(sample_interval_s: float) -> Callable[[], float]:
        def run() -> float:
            before = local_module.SAMPLE_INTERVAL_S
            local_module.SAMPLE_INTERVAL_S = sample_interval_s
            try:
                record = runner.run(job, attempt=next(attempts))
            finally:
                local_module.SAMPLE_INTERVAL_S = before
            assert record["status"] == "ok", record["error"]
            return record["train_s"]
        return run

    variants: dict[str, Callable[[], float]] = {
        "script": script, "kernel": kernel(nb), "kernel_quiet": kernel(quiet),
        "papermill": through_papermill, "runner": through_runner(local_module.SAMPLE_INTERVAL_S),
        "runner_unsampled": through_runner(5.0),
        "bare_fit": lambda: run_bare(tmp / "bare.py", env)}
    steal: dict[str, list[float]] = {name: [] for name in variants}
    variants = {name: steal_share(run, steal[name]) for name, run in variants.items()}
    names = list(variants)
    script()  # warm the disk cache and TensorFlow's first import outside the rounds
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        if r % 2:
            order.reverse()
        for name in order:
            times[name].append(variants[name]())
        print(f"round {r + 1}: " + ", ".join(f"{n} {times[n][-1]:.3f}" for n in names),
              flush=True)
        time.sleep(1)
    ratios = {name: [t / s for t, s in zip(times[name], times["script"], strict=True)]
              for name in names}
    print("variant: median train_s, median ratio to script (min to max)")
    for name in names:
        print(f"{name}: {statistics.median(times[name]):.3f} s, "
              f"{_spread(ratios[name])}")
    calm = [r for r in range(rounds) if max(steal[n][r] for n in names) < CALM_STEAL]
    if calm:
        print(f"{len(calm)} rounds with under {100 * CALM_STEAL:g} % steal in every variant:")
        for name in names[1:]:
            print(f"  {name}: median ratio {_spread([ratios[name][r] for r in calm])}")
    for name in names[1:]:
        print(f"{name}_ratio={statistics.median(ratios[name]):.3f}")


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} ({min(values):.3f} to {max(values):.3f})"


if __name__ == "__main__":
    main()

"""Benchmark: `study analyze` on 10,000 runs (4 datasets x 3 environments), target < 2 s.

Generates a synthetic runs.csv shaped like the results store's (log-normal timings, so
Mann-Whitney and the asymptotic Hodges-Lehmann interval are exercised; accuracies), times
``analyze`` in-process (best and median of a few repetitions) and then the whole command
as a user runs it, in a fresh interpreter: ``python -m cloudbench.cli.main analyze`` when the study
command exists, else ``python -m cloudbench.cli.analyze analyze``. The last line is
``analyze_10k_s=<median wall seconds of the whole command>``.

    python bench/bench_analyze.py [--runs 10000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cloudbench.analysis.compare import analyze, load_runs  # noqa: E402

DATASETS = ("shapes", "flowers", "cars", "vehicles")
ENVIRONMENTS = ("pc", "colab-t4", "lab-gpu")
METRICS = ["train_s", "total_s", "test_accuracy"]


def synthetic_runs(n_runs: int, seed: int = 0) -> pd.DataFrame:
    """n_runs rows in interleaved blocks, each block one run per environment x dataset."""
    rng = np.random.default_rng(seed)
    cells = [(e, d) for e in range(len(ENVIRONMENTS)) for d in range(len(DATASETS))]
    rows = []
    for i in range(n_runs):
        e, d = cells[i % len(cells)]
        block = i // len(cells) + 1
        train = (12 + 4 * d) * (1 - 0.05 * e) * rng.lognormal(0, 0.05)
        rows.append({"run_id": f"{ENVIRONMENTS[e]}+{DATASETS[d]}+{block}", "study": "bench",
                     "environment": ENVIRONMENTS[e], "dataset": DATASETS[d], "block": block,
                     "repetition": block, "status": "ok", "wall_s": train + 6.0,
                     "train_s": round(train, 4), "total_s": round(train + 3 + rng.gamma(2, 0.1), 4),
                     "test_accuracy": round(0.8 + 0.01 * e + rng.normal(0, 0.02), 4)})
    return pd.DataFrame(rows)


def _command() -> tuple[list[str], str]:
    if importlib.util.find_spec("cloudbench.cli.main") is not None:
        return [sys.executable, "-m", "cloudbench.cli.main", "analyze"], "cloudbench.cli.main"
    return [sys.executable, "-m", "cloudbench.cli.analyze", "analyze"], "cloudbench.cli.analyze"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "runs.csv"
        synthetic_runs(args.runs).to_csv(csv, index=False)
        print(f"{args.runs} runs: {len(DATASETS)} datasets x {len(ENVIRONMENTS)} environments, "
              f"metrics {', '.join(METRICS)}")

        t0 = time.perf_counter()
        frame = load_runs(csv, METRICS)
        print(f"load_runs: {time.perf_counter() - t0:.3f} s")
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            result = analyze(frame, METRICS)
            times.append(time.perf_counter() - t0)
        print(f"analyze in-process: best {min(times):.3f} s, median "
              f"{statistics.median(times):.3f} s over {args.repeat} "
              f"({len(result.comparisons)} comparisons)")

        command, name = _command()
        walls, cpus = [], []
        for _ in range(args.repeat):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            proc = subprocess.run(command + [str(csv), "--json", str(Path(tmp) / "a.json")]
                                  + [a for m in METRICS for a in ("--metric", m)],
                                  cwd=ROOT, capture_output=True, text=True)
            walls.append(time.perf_counter() - t0)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
            if proc.returncode != 0:
                print(f"{name} analyze failed ({proc.returncode}):\n{proc.stderr}")
                return 1
        wall = statistics.median(walls)
        print(f"python -m {name} analyze (whole command, fresh interpreter): best "
              f"{min(walls):.3f} s, median {wall:.3f} s over {args.repeat}; CPU (user + sys) "
              f"median {statistics.median(cpus):.3f} s")
        load = os.getloadavg()[0]
        if load > (os.cpu_count() or 1):
            print(f"note: load average {load:.1f} on {os.cpu_count()} cores: other work "
                  "inflates the wall time; the CPU time is the steadier figure")
    print(f"analyze_10k_s={wall:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

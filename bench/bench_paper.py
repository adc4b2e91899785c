"""Benchmark: `study paper` when nothing changed, target < 3 s.

Builds the paper once on a synthetic study (runs.csv written by the test suite's
generator, a study file on the real protocol notebook), then times the calls that must
return at once: ``build_paper`` in-process, and the whole command as a user runs it in a
fresh interpreter, ``study paper SPEC`` and ``study paper --runs RUNS.csv``.
The last line is ``paper_nochange_s=<median wall seconds of study paper SPEC>``.

    python bench/bench_paper.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from fixtures.synthetic import synthetic_runs  # noqa: E402

from cloudbench.paper.build import build_count, build_paper  # noqa: E402
from cloudbench.study.spec import load_study  # noqa: E402

STUDY = """\
[study]
name = "bench-paper"
repetitions = 12
seed = 200
warmup = 1

[protocol]
notebook = "{notebook}"
[protocol.parameters]
epochs = 4
batch_size = 32

[[datasets]]
name = "shapes"
source = "shapes"
images = 300

[[datasets]]
name = "digits"
source = "shapes"
images = 300

[[environments]]
name = "pc"

[[environments]]
name = "colab"
runner = "colab"
gpu = "t4"
"""


def _median_wall(cmd: list[str], cwd: Path, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(cmd, cwd=cwd, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _study_command() -> list[str]:
    """`study paper` as a user types it: the console script, else the module.

    The module runs with -P: its working folder holds paper/build/, which must not shadow
    the toolkit's `paper` package.
    """
    script = Path(sys.executable).parent / "study"
    if script.is_file():
        return [str(script), "paper"]
    if importlib.util.find_spec("cloudbench.cli.main") is not None:
        return [sys.executable, "-P", "-m", "cloudbench.cli.main", "paper"]
    return []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-paper-") as tmp:
        work = Path(tmp)
        spec = work / "bench-paper.toml"
        spec.write_text(STUDY.format(notebook=ROOT / "protocols" / "cnn_train.ipynb"),
                        encoding="utf-8")
        runs = synthetic_runs(work / "data" / "results" / "bench-paper" / "runs.csv",
                              study="bench-paper")
        out = work / "paper" / "build"
        study = load_study(spec, check_data=False)

        start = time.perf_counter()
        build_paper(runs, study, out)
        print(f"first build (analysis, figures, latexmk): {time.perf_counter() - start:.2f} s")

        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            build_paper(runs, study, out)
            times.append(time.perf_counter() - start)
        print(f"build_paper, no change, in-process: median {statistics.median(times):.4f} s")

        result = statistics.median(times)
        cmd = _study_command()
        if cmd:
            # Without the study file the inputs differ: its own output folder, built once.
            by_runs_cmd = [*cmd, "--runs", str(runs), "--output", str(work / "by-runs")]
            subprocess.run(by_runs_cmd, cwd=work, check=True, capture_output=True)
            by_runs = _median_wall(by_runs_cmd, work, args.repeat)
            print(f"study paper --runs RUNS.csv, no change: median {by_runs:.3f} s")
            result = _median_wall([*cmd, str(spec)], work, args.repeat)
            print(f"study paper SPEC, no change: median {result:.3f} s")
        builds = build_count(out, "bench-paper")
        if builds != 1 or build_count(work / "by-runs", "bench-paper") > 1:
            print(f"error: latexmk ran {builds} times; expected once", file=sys.stderr)
            return 1
    print(f"paper_nochange_s={result:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

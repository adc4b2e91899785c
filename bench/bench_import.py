"""Benchmark: `study import` of an archive of N runs (a record and a notebook each).

Import time once grew quadratically with the runs (1,000 in 4.5 s, 3,000 in 43 s, 20,000
past ten minutes: every member opened the zip again, and every record was looked up in
lists); the target is 20,000 runs in under a minute with memory that does not grow with
the archive. For each size this writes a synthetic archive (tests/fixtures/archives.py: a
study with a colab environment, its planned runs' records and notebooks), then runs the
whole command as a user does, in a fresh interpreter, into an empty results folder, and
reports its wall time and peak resident memory (the child's ru_maxrss). A second import of
the same archive (nothing to add) is timed too. The last line is
``import_20k_s=<seconds>`` for the largest size.

    python bench/bench_import.py [--runs 1000 3000 20000] [--no-notebooks]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from fixtures.archives import write_archive, write_archive_study  # noqa: E402

CHILD = ("import resource, sys\n"
         "from cloudbench.cli.main import main\n"
         "code = main(sys.argv[1:])\n"
         "print(f'peak_rss_kb={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}', "
         "file=sys.stderr)\n"
         "sys.exit(code)\n")


def timed_import(archive: Path, spec: Path, out: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of `study import` in a fresh interpreter."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, "import", str(archive),
                           "--spec", str(spec), "--output", str(out)],
                          capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"import failed ({proc.returncode}): {proc.stderr[-2000:]}")
    peak = int(proc.stderr.rsplit("peak_rss_kb=", 1)[1].split()[0])
    return seconds, peak / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, nargs="+", default=[1000, 3000, 20000])
    parser.add_argument("--no-notebooks", action="store_true")
    args = parser.parse_args()
    last = None
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.runs:
            datasets = 1 if n <= 10_000 else -(-n // 10_000)
            folder = Path(tmp) / str(n)
            folder.mkdir()
            spec = write_archive_study(folder / "study.toml", repetitions=n // datasets,
                                       datasets=datasets)
            archive = write_archive(folder / "archive.zip", spec,
                                    notebooks=not args.no_notebooks)
            size = archive.stat().st_size / 2**20
            seconds, rss = timed_import(archive, spec, folder / "results")
            again, _ = timed_import(archive, spec, folder / "results")
            print(f"{n} runs ({size:.1f} MB archive): import {seconds:.1f} s, peak RSS "
                  f"{rss:.0f} MB; again (nothing to add) {again:.1f} s", flush=True)
            last = (n, seconds)
    if last:
        print(f"import_{last[0] // 1000}k_s={last[1]:.1f}")


if __name__ == "__main__":
    main()

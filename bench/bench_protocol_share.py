"""(c) On the demo study, the share of the study's wall time spent inside total_s.

The rest is the harness: kernel start, papermill, records, scheduling. Target: >= 0.7.
Usage: python bench/bench_protocol_share.py [REPETITIONS]   (default: the demo's own)
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from harness import ROOT
from rich.console import Console

from cloudbench.runners.scheduler import run_study
from cloudbench.study.spec import load_study


def main() -> None:
    repetitions = int(sys.argv[1]) if len(sys.argv) > 1 else None
    study = load_study(ROOT / "study" / "demo.toml")
    out = Path(tempfile.mkdtemp(prefix="bench-share-"))
    start = time.perf_counter()
    result = run_study(study, output=out, repetitions=repetitions, console=Console(quiet=True))
    wall = time.perf_counter() - start
    ok = [r for r in result.executed if r["status"] == "ok"]
    inside = sum(r["total_s"] for r in ok)
    print(f"{len(ok)} of {len(result.executed)} runs ok; study wall {wall:.1f} s, "
          f"sum of total_s {inside:.1f} s, sum of train_s {sum(r['train_s'] for r in ok):.1f} s")
    print(f"protocol_share={inside / wall:.3f}")


if __name__ == "__main__":
    main()

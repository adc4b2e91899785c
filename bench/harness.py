"""What the benchmarks share: the toolkit on the path, a one-environment study's runner."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cloudbench.runners.local import LocalRunner  # noqa: E402
from cloudbench.study.plan import RunJob, block_jobs  # noqa: E402
from cloudbench.study.spec import load_study  # noqa: E402
from cloudbench.study.store import ResultsStore  # noqa: E402

PROTOCOL = ROOT / "protocols" / "cnn_train.ipynb"


def local_runner(study_toml: str, prefix: str) -> tuple[LocalRunner, RunJob, Path]:
    """The local runner of a one-environment study, its first run, and a scratch folder."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    (tmp / "study.toml").write_text(study_toml, encoding="utf-8")
    study = load_study(tmp / "study.toml")
    store = ResultsStore(tmp / "results")
    store.prepare()
    return LocalRunner(study, study.environments[0], store), block_jobs(study, 1)[0], tmp


def side_by_side(pairs: int, measure_a: Callable[[], float], measure_b: Callable[[], float],
                 label: str = "") -> list[tuple[float, float]]:
    """Measure a and b `pairs` times, alternating which goes first (ABBA), so that drift
    and whatever the first of two runs pays (a cold cache) fall on both alike."""
    results = []
    for i in range(pairs):
        if i % 2 == 0:
            a = measure_a()
            b = measure_b()
        else:
            b = measure_b()
            a = measure_a()
        results.append((a, b))
        print(f"pair {i + 1}{' (b first)' if i % 2 else ''}: {label} {a:.3f} s vs {b:.3f} s, "
              f"ratio {a / b:.3f}", flush=True)
    return results


def steal_share(measure: Callable[[], float], into: list[float]) -> Callable[[], float]:
    """``measure``, also appending to ``into`` the share of the machine's CPU time the
    hypervisor took (steal time, psutil.cpu_times) while it ran: on a shared VM the largest
    source of noise, which no change to the harness can remove, so a benchmark can report
    the pairs that had none apart (0 where the system reports no steal)."""
    def ticks() -> tuple[float, float]:
        t = psutil.cpu_times()  # guest time is already counted in user time
        return (getattr(t, "steal", 0.0),
                sum(t) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0))

    def run() -> float:
        s0, t0 = ticks()
        value = measure()
        s1, t1 = ticks()
        into.append((s1 - s0) / (t1 - t0) if t1 > t0 else 0.0)
        return value
    return run

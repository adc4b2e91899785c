"""(a) The local runner's per-run wall time against the plain `papermill` command.

Same notebook, same parameters, one fresh kernel each; the two are interleaved pair by
pair so machine drift hits both alike, and the result is the ratio of medians.
Target: at most 1.10.  Usage: python bench/bench_runner_overhead.py [PAIRS]
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runners.local import LocalRunner  # noqa: E402
from study.plan import block_jobs  # noqa: E402
from study.spec import load_study  # noqa: E402
from study.store import ResultsStore  # noqa: E402

STUDY = f"""
[study]
name = "bench-overhead"
repetitions = 1
[protocol]
notebook = "{ROOT / 'protocols' / 'cnn_train.ipynb'}"
[protocol.parameters]
model = "shapes_cnn"
epochs = 1
[[datasets]]
name = "shapes"
images = 300
[[environments]]
name = "pc"
"""


def main() -> None:
    pairs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    tmp = Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    (tmp / "s.toml").write_text(STUDY)
    study = load_study(tmp / "s.toml")
    store = ResultsStore(tmp / "results")
    store.prepare()
    runner = LocalRunner(study, study.environments[0], store)
    job = block_jobs(study, 1)[0]
    runner_s, plain_s = [], []
    for i in range(pairs):
        record = runner.run(job, attempt=i + 1)
        assert record["status"] == "ok", record["error"]
        runner_s.append(record["wall_s"])
        params = runner.parameters(job, tmp / "plain-record.json")
        (tmp / "params.json").write_text(json.dumps(params))
        start = time.perf_counter()
        subprocess.run(["papermill", str(study.notebook), str(tmp / "plain.ipynb"),
                        "-y", json.dumps(params), "--cwd", str(tmp), "--no-progress-bar"],
                       check=True, capture_output=True, env=runner.kernel_env())
        plain_s.append(time.perf_counter() - start)
        print(f"pair {i + 1}: runner {runner_s[-1]:.2f} s, papermill {plain_s[-1]:.2f} s")
    ratio = statistics.median(runner_s) / statistics.median(plain_s)
    print(f"median runner {statistics.median(runner_s):.2f} s, "
          f"median papermill {statistics.median(plain_s):.2f} s")
    print(f"runner_overhead_ratio={ratio:.3f}")


if __name__ == "__main__":
    main()

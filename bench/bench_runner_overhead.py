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
import time

from harness import PROTOCOL, local_runner, side_by_side

STUDY = f"""
[study]
name = "bench-overhead"
repetitions = 1
[protocol]
notebook = "{PROTOCOL}"
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
    pairs = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    runner, job, tmp = local_runner(STUDY, "bench-overhead-")
    attempts = iter(range(1, 10_000))
    params = runner.parameters(job, tmp / "plain-record.json")

    def through_runner() -> float:
        record = runner.run(job, attempt=next(attempts))
        assert record["status"] == "ok", record["error"]
        return record["wall_s"]

    def plain_papermill() -> float:
        start = time.perf_counter()
        subprocess.run(["papermill", str(runner.study.notebook), str(tmp / "plain.ipynb"),
                        "-y", json.dumps(params), "--cwd", str(tmp), "--no-progress-bar"],
                       check=True, capture_output=True, env=runner.kernel_env())
        return time.perf_counter() - start

    pairs_s = side_by_side(pairs, through_runner, plain_papermill, "runner vs papermill")
    runner_s, plain_s = [a for a, _ in pairs_s], [b for _, b in pairs_s]
    ratio = statistics.median(runner_s) / statistics.median(plain_s)
    print(f"median runner {statistics.median(runner_s):.2f} s, "
          f"median papermill {statistics.median(plain_s):.2f} s")
    print(f"runner_overhead_ratio={ratio:.3f}")


if __name__ == "__main__":
    main()

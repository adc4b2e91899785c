"""(b) train_s measured inside the notebook against the same fit in a bare Python script.

Both train the same model on the same data with the same seed, interleaved pair by pair;
the result is the median of the per-pair ratios. Each side's share of CPU time stolen by
the hypervisor is printed too, the pairs without any reported apart, and the ratio at
equal steal estimated by regressing the log ratios on the steal difference.
Target: within 0.98 to 1.02.
Usage: python bench/bench_train_fidelity.py [PAIRS]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import statsmodels.api as sm
from harness import PROTOCOL, local_runner, side_by_side, steal_share

PARAMS = {"model": "simple_cnn", "filters": 32, "dense_units": 64, "epochs": 8,
          "batch_size": 32, "images": 1500}
#: Pairs where the hypervisor took less than this share of the CPU on both sides are also
#: reported apart: what the harness costs, without the host's contention.
CALM_STEAL = 0.01
STUDY = f"""
[study]
name = "bench-fidelity"
repetitions = 1
[protocol]
notebook = "{PROTOCOL}"
[protocol.parameters]
model = "{PARAMS['model']}"
filters = {PARAMS['filters']}
dense_units = {PARAMS['dense_units']}
epochs = {PARAMS['epochs']}
batch_size = {PARAMS['batch_size']}
[[datasets]]
name = "shapes"
images = {PARAMS['images']}
[[environments]]
name = "pc"
"""
BARE = textwrap.dedent(f"""
    import time
    import keras
    from cloudbench.data.datasets import load_dataset
    from cloudbench.protocols.cnn_protocol import build_model
    keras.utils.set_random_seed(200)
    xtr, ytr, xte, yte, classes = load_dataset({{"source": "shapes", "name": "shapes",
                                                "images": {PARAMS['images']}}}, 200)
    xtr = xtr.astype("float32") / 255.0
    y = keras.utils.to_categorical(ytr, len(classes))
    net = build_model("{PARAMS['model']}", xtr.shape[1:], len(classes),
                      filters={PARAMS['filters']}, dense_units={PARAMS['dense_units']})
    start = time.perf_counter()
    net.fit(xtr, y, batch_size={PARAMS['batch_size']}, epochs={PARAMS['epochs']}, verbose=2)
    print("TRAIN_S", time.perf_counter() - start)
""")


def run_bare(script: Path, env: dict[str, str]) -> float:
    """train_s of BARE (written to ``script``) in a fresh Python with the kernel's env."""
    out = subprocess.run([sys.executable, str(script)], check=True, text=True,
                         cwd=script.parent, env=env, capture_output=True).stdout
    return float(out.split("TRAIN_S")[1].split()[0])


def main() -> None:
    pairs = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    runner, job, tmp = local_runner(STUDY, "bench-fidelity-")
    bare, env = tmp / "bare.py", runner.kernel_env()
    bare.write_text(BARE)
    attempts = iter(range(1, 10_000))

    def in_notebook() -> float:
        record = runner.run(job, attempt=next(attempts))
        assert record["status"] == "ok", record["error"]
        return record["train_s"]

    steal_a: list[float] = []
    steal_b: list[float] = []
    pairs_s = side_by_side(pairs, steal_share(in_notebook, steal_a),
                           steal_share(lambda: run_bare(bare, env), steal_b), "notebook vs bare")
    ratios = [a / b for a, b in pairs_s]
    for i, (sa, sb) in enumerate(zip(steal_a, steal_b, strict=True)):
        print(f"pair {i + 1}: hypervisor's steal {100 * sa:.1f} % vs {100 * sb:.1f} %")
    calm = [r for r, sa, sb in zip(ratios, steal_a, steal_b, strict=True)
            if max(sa, sb) < CALM_STEAL]
    d = [a - b for a, b in zip(steal_a, steal_b, strict=True)]
    if len(ratios) >= 3 and len(set(d)) > 1:
        # log ratio = b0 + b1 (steal a - steal b): exp(b0) is the ratio at equal steal.
        fit = sm.OLS(np.log(ratios), sm.add_constant(np.array(d))).fit()
        low, high = np.exp(fit.conf_int()[0])
        print(f"the hypervisor's steal explains R^2 = {fit.rsquared:.2f} of the pairs' log "
              f"ratios; at equal steal the ratio is {np.exp(fit.params[0]):.3f} "
              f"(95 % interval {low:.3f} to {high:.3f})")
        print(f"train_s_ratio_equal_steal={np.exp(fit.params[0]):.3f}")
    if calm:
        print(f"{len(calm)} pairs with under {100 * CALM_STEAL:g} % steal on both sides: "
              f"median ratio {statistics.median(calm):.3f} ({min(calm):.3f} to {max(calm):.3f})")
    of_medians = (statistics.median(a for a, _ in pairs_s)
                  / statistics.median(b for _, b in pairs_s))
    print(f"ratio of medians {of_medians:.3f}")
    print(f"train_s_ratio={statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()

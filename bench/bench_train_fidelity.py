"""(b) train_s measured inside the notebook against the same fit in a bare Python script.

Both train the same model on the same data with the same seed, interleaved pair by pair;
the result is the median of the per-pair ratios. Target: within 0.98 to 1.02.
Usage: python bench/bench_train_fidelity.py [PAIRS]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import textwrap

from harness import PROTOCOL, local_runner, side_by_side

PARAMS = {"model": "simple_cnn", "filters": 32, "dense_units": 64, "epochs": 8,
          "batch_size": 32, "images": 1500}
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
    from data.datasets import load_dataset
    from protocols.cnn_protocol import build_model
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


def main() -> None:
    pairs = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    runner, job, tmp = local_runner(STUDY, "bench-fidelity-")
    (tmp / "bare.py").write_text(BARE)
    attempts = iter(range(1, 10_000))

    def in_notebook() -> float:
        record = runner.run(job, attempt=next(attempts))
        assert record["status"] == "ok", record["error"]
        return record["train_s"]

    def in_bare_script() -> float:
        out = subprocess.run([sys.executable, str(tmp / "bare.py")], check=True, text=True,
                             capture_output=True, env=runner.kernel_env()).stdout
        return float(out.split("TRAIN_S")[1].split()[0])

    pairs_s = side_by_side(pairs, in_notebook, in_bare_script, "notebook vs bare")
    ratios = [a / b for a, b in pairs_s]
    of_medians = (statistics.median(a for a, _ in pairs_s)
                  / statistics.median(b for _, b in pairs_s))
    print(f"ratio of medians {of_medians:.3f}")
    print(f"train_s_ratio={statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()

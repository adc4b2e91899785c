"""What a tagged notebook's run records: read from the executed notebook, never faked by it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cloudbench.runners import phases


def cell(source: str, tags: list[str], outputs: list[dict[str, Any]] | None = None,
         cell_id: str = "x", seconds: float = 1.0) -> dict[str, Any]:
    return {"cell_type": "code", "id": cell_id, "source": source, "outputs": outputs or [],
            "metadata": {"tags": tags, "execution": {
                "iopub.execute_input": "2026-12-05T10:00:00.000000Z",
                "shell.execute_reply": f"2026-12-05T10:00:0{int(seconds)}.000000Z"}}}


def stdout(text: str) -> dict[str, Any]:
    return {"output_type": "stream", "name": "stdout", "text": text}


def ours(host: str = "real", metrics: dict[str, str] | None = None) -> dict[str, Any]:
    text = phases.FINGERPRINT_MARK + json.dumps({"host_id": host}) + "\n"
    if metrics is not None:
        text += phases.METRICS_MARK + json.dumps(metrics) + "\n"
    return cell("# fingerprint", [phases.FINGERPRINT_TAG], [stdout(text)],
                cell_id=phases.FINGERPRINT_CELL_ID, seconds=0)


def test_a_cell_of_the_notebook_tagged_like_the_fingerprint_does_not_count() -> None:
    fake = cell("print(...)", [phases.FINGERPRINT_TAG], [stdout(
        phases.FINGERPRINT_MARK + json.dumps({"host_id": "fake"}) + "\n")],
        cell_id=phases.FINGERPRINT_CELL_ID)
    nb = {"cells": [fake, cell("fit()", ["phase:train"]), ours()]}
    assert phases.record(nb)["host_id"] == "real"


def test_results_assigned_by_the_metrics_cell_are_read_after_the_run() -> None:
    nb = {"cells": [cell("fit()", ["phase:train"]),
                    cell("test_loss, test_acc = model.evaluate(x, y)", ["metrics"]),
                    ours(metrics={"test_loss": "0.25", "test_acc": "np.float32(0.875)",
                                  "results": "{'dnn': 2.5, 'linear': 3.0}"})]}
    got = phases.record(nb, assigned=True)
    assert got["test_loss"] == 0.25 and got["test_acc"] == 0.875
    assert got["dnn"] == 2.5 and got["linear"] == 3.0 and got["train_s"] == 1.0


@pytest.mark.parametrize(("printed", "message"), [
    ({"acc": "'high'"}, "not a number"),
    ({"acc": "<keras.src.callbacks.history.History object at 0x7f>"}, "not a number"),
    ({"pair": "[0.1, 0.9]"}, "not a number"),
])
def test_assigned_results_that_are_not_numbers_fail_the_run(printed: dict[str, str],
                                                           message: str) -> None:
    nb = {"cells": [cell("acc = f()", ["metrics"]), ours(metrics=printed)]}
    with pytest.raises(phases.RecordError, match=message):
        phases.record(nb, assigned=True)


@pytest.mark.parametrize("key", ["train_s", "host_id", "total_s", "wall_s", "status"])
def test_a_metrics_key_cannot_take_a_measured_column(key: str) -> None:
    nb = {"cells": [cell("fit()", ["phase:train"]),
                    cell("{...}", ["metrics"], [{"output_type": "execute_result",
                                                 "data": {"text/plain": f"{{'{key}': 0.1}}"}}]),
                    ours()]}
    with pytest.raises(phases.RecordError, match=f"reports '{key}', a column the toolkit"):
        phases.record(nb)


def test_a_number_beyond_float_range_is_no_number() -> None:
    big = str(10**400)
    nb = {"cells": [cell("{...}", ["metrics"], [{"output_type": "execute_result",
                                                 "data": {"text/plain": f"{{'acc': {big}}}"}}]),
                    ours()]}
    assert phases.record(nb)["acc"] is None


def test_the_toolkit_cell_prints_the_assigned_names() -> None:
    source = phases.fingerprint_cell_source(("test_loss", "test_acc"))
    namespace: dict[str, Any] = {"test_loss": 0.5, "test_acc": 0.75}
    import contextlib
    import io
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(source, "cell", "exec"), namespace)
    lines = out.getvalue().splitlines()
    printed = json.loads(next(x for x in lines if x.startswith(phases.METRICS_MARK))[
        len(phases.METRICS_MARK):])
    assert printed == {"test_loss": "0.5", "test_acc": "0.75"}

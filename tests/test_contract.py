"""The runner contract (issue 23): a final run() around one hook, typed outcomes, batches,
records that check themselves, and runners that never touch the results store."""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloudbench.runners.base import Outcome, Runner, RunResult, Try
from cloudbench.runners.scheduler import run_study
from cloudbench.study.layout import RunPaths
from cloudbench.study.plan import RunJob, plan
from cloudbench.study.record import (
    COLUMNS,
    RECORD_FORMAT_VERSION,
    RECORD_FORMATS,
    RecordError,
    RunRecord,
)
from cloudbench.study.registry import register_runner
from cloudbench.study.spec import Study, load_study
from cloudbench.study.store import ResultsStore

from conftest import examples, write_quick_notebook

GOOD = {"run_id": "a+shapes+r001", "study": "s", "environment": "a", "dataset": "shapes",
        "block": 1, "repetition": 1, "status": "ok", "error": None, "train_s": 1.0,
        "total_s": 1.5, "test_accuracy": 0.5, "format_version": RECORD_FORMAT_VERSION}


# ------------------------------------------------------------------------------------------
# the record checks itself
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("changes", "says"), [
    ({"train_s": "fast"}, "train_s must be a finite number, got 'fast'"),
    ({"test_accuracy": None}, "test_accuracy must be a number in an ok run, got null"),
    ({"train_s": math.nan}, "train_s must be a finite number, got nan"),
    ({"total_s": math.inf}, "total_s must be a finite number, got inf"),
    ({"train_s": 10**400}, "train_s is too large to be a number (401 digits)"),
    ({"my_metric": -(10**400)}, "my_metric is too large to be a number"),
    ({"epoch_s": [0.5, math.nan]}, "epoch_s[1] must be a finite number, got nan"),
    ({"test_accuracy": 7.5}, "test_accuracy = 7.5 is out of range"),
    ({"block": True}, "block must be a int, got True"),
    ({"status": "fine"}, "status 'fine' is not one of ok, failed, timeout, oom"),
    ({"train_s": None, "total_s": None}, "status ok without train_s or total_s"),
    ({"train_s": None}, "train_s must be a number in an ok run, got null"),
    ({"error": 3}, "error must be text or null, got 3"),
    ({"extra": object()}, "extra must be a JSON value, got a object"),
    ({"format_version": RECORD_FORMAT_VERSION + 1}, "is newer than this toolkit's"),
])
def test_a_record_refuses_what_breaks_the_schema_naming_the_field(
        changes: dict[str, Any], says: str) -> None:
    with pytest.raises(RecordError) as info:
        RunRecord({**GOOD, **changes})
    assert says in str(info.value)


@pytest.mark.parametrize(("text", "says"), [
    ("{not json", "the record is not valid JSON"),
    ("[1, 2]", "the record is a JSON list, not an object of fields"),
    ('{"run_id": "a+shapes+r001", "train_s": NaN}', "must be a finite number, got nan"),
    (b"\xff\xfe", "the record is not valid JSON"),
])
def test_a_record_from_json_text_refuses_what_is_not_an_object(text: str | bytes,
                                                               says: str) -> None:
    with pytest.raises(RecordError, match=None) as info:
        RunRecord.from_json(text)
    assert says in str(info.value)


def test_a_failed_run_may_lack_its_measurements_and_a_record_is_read_only() -> None:
    failed = RunRecord({**GOOD, "status": "failed", "error": "boom", "test_accuracy": None,
                        "train_s": None, "total_s": None})
    assert failed["status"] == "failed" and dict(failed)["test_accuracy"] is None
    with pytest.raises(TypeError):
        failed["status"] = "ok"  # type: ignore[index]
    assert failed.replace(status="timeout")["status"] == "timeout"
    with pytest.raises(RecordError):
        failed.replace(status="ok")  # an ok run needs its timings


def test_format_versions_are_written_down_and_older_ones_are_read(tmp_path: Path) -> None:
    assert RECORD_FORMAT_VERSION == max(RECORD_FORMATS) and all(RECORD_FORMATS.values())
    version_0 = {k: v for k, v in GOOD.items() if k != "format_version"}
    assert RunRecord(version_0)["format_version"] == RECORD_FORMAT_VERSION
    store = ResultsStore(tmp_path / "r")
    store.prepare()
    store.record_path(GOOD["run_id"]).write_text(json.dumps(version_0))  # an old study's
    [read] = store.records()
    assert read == RunRecord(version_0) and read["format_version"] == RECORD_FORMAT_VERSION
    store.write_csv()
    assert pd.read_csv(store.csv_path)["format_version"].tolist() == [RECORD_FORMAT_VERSION]


JSON_LEAF = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(min_value=10**300),
                      st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8))
JSON_VALUE = st.recursive(JSON_LEAF, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=8)
NAMES = st.sampled_from([*COLUMNS, "run_id", "status", "block"]) | st.text(max_size=10)


@settings(max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(base=st.booleans(), changes=st.dictionaries(NAMES, JSON_VALUE, max_size=6))
def test_a_hostile_record_either_builds_valid_or_raises_the_record_error(
        base: bool, changes: dict[str, Any]) -> None:
    """Whatever a notebook or an archive gives: a valid record or RecordError, nothing else,
    and a valid one is strict JSON and a runs.csv row."""
    try:
        record = RunRecord({**(GOOD if base else {}), **changes})
    except RecordError:
        return
    text = json.dumps(record.to_dict(), allow_nan=False)
    assert RunRecord.from_json(text) == record
    assert record["status"] in ("ok", "failed", "timeout", "oom")
    pd.DataFrame([{k: json.dumps(v) if isinstance(v, list | dict) else v
                   for k, v in record.items()}])


# ------------------------------------------------------------------------------------------
# the final run() around the hook
# ------------------------------------------------------------------------------------------


@pytest.fixture
def study(quick_study: Any) -> Study:
    return load_study(quick_study(repetitions=2))


def make(kind: type[Runner], study: Study, tmp_path: Path) -> Runner:
    store = ResultsStore(tmp_path / "out")
    store.prepare()
    return kind(study, study.environments[0], store.runner_paths(study.environments[0]))


class Raising(Runner):
    exception: BaseException = RuntimeError("the client vanished")

    def execute(self, job: RunJob, attempt: int, paths: RunPaths) -> Outcome:
        assert paths.work.is_dir() and not any(paths.work.iterdir())
        raise self.exception


def test_any_exception_of_the_hook_is_a_failed_record_of_the_infrastructure(
        study: Study, tmp_path: Path) -> None:
    runner = make(Raising, study, tmp_path)
    job = plan(study)[0]
    result = runner.run(job, 3)
    assert isinstance(result, RunResult) and result.infrastructure is True
    record = result.record
    assert record["status"] == "failed" and record["attempt"] == 3
    assert record["error"] == "RuntimeError: the client vanished"
    assert record["billed_s"] >= 0 and record["finished_at"] and record["wall_s"] >= 0
    assert not (tmp_path / "out" / ".work" / f"{job.run_id}.3").exists()
    for stop in (KeyboardInterrupt(), SystemExit(1)):
        runner.exception = stop  # type: ignore[attr-defined]
        with pytest.raises(type(stop)):
            runner.run(job, 4)


class Fixed(Runner):
    outcome = Outcome("ok", fields={"train_s": 1.0, "total_s": 2.0, "run_id": "forged",
                                    "attempt": 99, "model": "m"})
    calls: list[str]

    def execute(self, job: RunJob, attempt: int, paths: RunPaths) -> Outcome:
        self.calls.append(job.run_id)
        return self.outcome


def test_an_outcome_becomes_the_record_and_its_fields_never_replace_the_runners(
        study: Study, tmp_path: Path) -> None:
    runner = make(Fixed, study, tmp_path)
    runner.calls = []  # type: ignore[attr-defined]
    job = plan(study)[0]
    record = runner.run(job, 1).record
    assert (record["run_id"], record["attempt"], record["model"]) == (job.run_id, 1, "m")
    assert record["status"] == "ok" and record["error"] is None and record["train_s"] == 1.0

    runner.outcome = Outcome("ok", fields={"train_s": "fast"})  # type: ignore[misc]
    result = runner.run(job, 2)
    assert result.record["status"] == "failed" and result.infrastructure is False
    assert "train_s must be a finite number, got 'fast'" in result.record["error"]
    assert "train_s" not in result.record

    nb = {"cells": [{"cell_type": "code", "source": "x = 1", "metadata": {}},
                    {"cell_type": "code", "source": "raise ValueError('no')",
                     "metadata": {"tags": ["phase:train"]}}]}
    runner.paths.run(job.run_id, 3).notebook.write_text(json.dumps(nb))
    runner.outcome = Outcome("failed", "ValueError: no", cell=1)  # type: ignore[misc]
    assert runner.run(job, 3).record["error"] == \
        "cell 1 (phase:train, `raise ValueError('no')`): ValueError: no"
    with pytest.raises(ValueError, match="an outcome's status"):
        Outcome("fine")


def test_run_and_result_are_final() -> None:
    with pytest.raises(TypeError, match="overrides the final Runner.run"):
        type("Sneaky", (Runner,), {"run": lambda self, job, attempt: None})


def test_the_default_run_batch_runs_each_try_when_its_result_is_pulled(
        study: Study, tmp_path: Path) -> None:
    runner = make(Fixed, study, tmp_path)
    runner.calls = []  # type: ignore[attr-defined]
    jobs = plan(study)[:3]
    results = runner.run_batch([Try(j, k + 1) for k, j in enumerate(jobs)])
    assert runner.calls == []  # type: ignore[attr-defined]
    first = next(results)
    assert runner.calls == [jobs[0].run_id]  # type: ignore[attr-defined]
    rest = list(results)
    assert [r.record["run_id"] for r in [first, *rest]] == [j.run_id for j in jobs]
    assert [r.record["attempt"] for r in [first, *rest]] == [1, 2, 3]


# ------------------------------------------------------------------------------------------
# the scheduler: batches per block and environment, the plan's order, amendments
# ------------------------------------------------------------------------------------------


class Batching(Runner):
    """An engine that takes a batch: records which batches it got and when it ran them."""

    log: list[tuple[str, ...]] = []
    lock = threading.Lock()

    def run_batch(self, tries: Iterable[Try]) -> Iterator[RunResult]:
        batch = list(tries)
        with self.lock:
            self.log.append(tuple(f"{t.job.run_id}#{t.attempt}" for t in batch))
        outcomes = [Outcome("ok", fields={"train_s": 0.1, "total_s": 0.1, "test_accuracy": 0.5})
                    if "r002" in t.job.run_id or t.attempt > 1
                    else Outcome.failure("lost", infrastructure=True) for t in batch]
        for one, outcome in zip(batch, outcomes, strict=True):
            yield self.result(one.job, one.attempt, outcome, "2026-01-01T00:00:00+00:00", 0.5)

    def close_block(self) -> dict[str, dict[str, Any]]:
        return {r.split("#")[0]: {"units": 1.5} for r in self.log[-1]}


def test_the_scheduler_hands_a_batch_per_block_retries_alone_and_applies_amendments(
        tmp_path: Path, quick_study: Any) -> None:
    register_runner("batching", Batching)
    Batching.log = []
    spec = quick_study(repetitions=2, environments="""
        [[environments]]
        name = "x"
        runner = "batching"
    """)
    with open(spec, "a", encoding="utf-8") as fh:
        fh.write('\n[[datasets]]\nname = "more"\nsource = "shapes"\nimages = 60\n')
    result = run_study(load_study(spec), output=tmp_path / "out")
    first, *retries, second = Batching.log
    # Block 1: both runs of the environment in one batch; each infrastructure failure was
    # retried at once, in a batch of its own, as attempt 2; block 2: one batch again.
    assert len(first) == 2 and all(r.endswith("r001#1") for r in first)
    assert sorted(retries) == sorted((r.replace("#1", "#2"),) for r in first)
    assert len(second) == 2 and all(r.endswith("r002#1") for r in second)
    assert [r["status"] for r in result.executed] == ["ok"] * 4
    store = ResultsStore(tmp_path / "out")
    assert len(list(store.attempts_dir.glob("*.json"))) == 2
    units = {r["run_id"]: r.get("units") for r in store.records()}
    assert all(units[r.split("#")[0]] == 1.5 for r in Batching.log[3])
    assert "units" in store.csv_path.read_text().splitlines()[0]


def test_the_store_applies_amendments_under_its_lock_and_never_replaces_a_field(
        tmp_path: Path) -> None:
    store = ResultsStore(tmp_path / "r")
    store.prepare()
    store.write_record(GOOD)
    assert store.amend({GOOD["run_id"]: {"compute_units": 0.25, "train_s": 99.0},
                        "nobody+shapes+r001": {"compute_units": 1.0}}) == [GOOD["run_id"]]
    [record] = store.records()
    assert record["compute_units"] == 0.25 and record["train_s"] == 1.0
    assert store.amend({GOOD["run_id"]: {"compute_units": 0.5}}) == []
    assert "compute_units" in store.csv_path.read_text().splitlines()[0]


# ------------------------------------------------------------------------------------------
# a notebook's record is checked as an imported one is, end to end
# ------------------------------------------------------------------------------------------

WRITE_PAYLOAD = """\
with open(record_path, "w") as fh:
    fh.write(payload)
"""
HOSTILE = {
    "garbled": ("{not json", "the protocol's record is not valid JSON"),
    "listed": ("[1, 2]", "the protocol's record is a JSON list, not an object"),
    "textual": ('{"train_s": "fast", "total_s": 1}', "train_s must be a finite number, "
                                                      "got 'fast'"),
    "nulled": ('{"train_s": 1, "total_s": 1, "test_accuracy": null}',
               "test_accuracy must be a number in an ok run, got null"),
    "nan": ('{"train_s": NaN, "total_s": 1}', "train_s must be a finite number, got nan"),
    "infinite": ('{"train_s": 1, "total_s": Infinity}', "total_s must be a finite number"),
    "huge": ('{"train_s": 1' + "0" * 400 + ', "total_s": 1}', "train_s is too large"),
}


def test_a_notebooks_hostile_record_is_a_failed_run_and_the_study_goes_on(
        tmp_path: Path, quick_study: Any) -> None:
    write_quick_notebook(tmp_path / "quick.ipynb", WRITE_PAYLOAD,
                         'record_path = "record.json"\npayload = ""\n')
    environments = "".join(f"""
        [[environments]]
        name = "{name}"
        parameters = {{ payload = '{payload}' }}
    """ for name, (payload, _) in HOSTILE.items())
    spec = quick_study(name="hostile", repetitions=1, environments=environments)
    result = run_study(load_study(spec), output=tmp_path / "out")
    errors = {r["environment"]: r["error"] for r in result.executed}
    assert {r["status"] for r in result.executed} == {"failed"}
    for name, (_, says) in HOSTILE.items():
        assert says in errors[name], (name, errors[name])
    assert not list((tmp_path / "out" / "attempts").glob("*.json"))  # not the machine's
    frame = pd.read_csv(tmp_path / "out" / "runs.csv")
    assert len(frame) == len(HOSTILE) and "train_s" not in frame.dropna(axis=1, how="all")


def test_what_the_real_protocol_writes_after_a_single_epoch_is_a_valid_record() -> None:
    """No epoch after the first: train_nowarm_s is null, as the protocol notebook writes it."""
    record = RunRecord({**GOOD, "epoch_s": [1.0], "first_epoch_s": 1.0,
                        "train_nowarm_s": None})
    assert record["train_nowarm_s"] is None

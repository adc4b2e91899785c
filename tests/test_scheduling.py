"""One study run at a time, blocks at their slots, sessions and the hardware they got."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console

from cloudbench.runners.scheduler import _describe, run_study
from cloudbench.study.lock import LockedError, StudyLock
from cloudbench.study.spec import SpecError, load_study

QUIET = {"console": Console(file=io.StringIO())}


def records(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((out / "records").glob("*.json"))]


def test_a_second_run_of_one_study_is_refused_or_waits(tmp_path: Path, quick_study) -> None:
    spec = quick_study(name="twice", repetitions=2, parameters="sleep_s = 1.0")
    out = tmp_path / "out"
    command = [sys.executable, "-m", "cloudbench.cli.main", "run", str(spec), "--output",
               str(out)]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        deadline = dt.datetime.now() + dt.timedelta(seconds=60)
        while not (out / ".lock").exists() or not StudyLock(out).holder():
            assert dt.datetime.now() < deadline and first.poll() is None
        refused = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert refused.returncode == 2, refused.stderr
        assert f"pid {first.pid}" in refused.stderr and "--wait-lock" in refused.stderr
        waited = subprocess.run([*command, "--wait-lock", "300"], capture_output=True,
                                text=True, timeout=400)
        assert waited.returncode == 0, waited.stderr
    finally:
        first.wait(timeout=300)
    assert first.returncode == 0
    done = records(out)
    assert len(done) == 4 and {r["attempt"] for r in done} == {1}  # each run once
    assert len(pd.read_csv(out / "runs.csv")) == 4
    assert not list((out / "attempts").glob("*.json"))


def test_run_study_refuses_while_the_folder_is_held(tmp_path: Path, quick_study) -> None:
    out = tmp_path / "out"
    with StudyLock(out, command="study run other.toml"):
        with pytest.raises(LockedError, match="study run other.toml"):
            run_study(load_study(quick_study(name="held")), output=out, **QUIET)
    assert not (out / "records").exists()


def test_a_rerun_with_nothing_to_do_writes_nothing(tmp_path: Path, quick_study) -> None:
    spec = quick_study(name="again", repetitions=1)
    out = tmp_path / "out"
    run_study(load_study(spec), output=out, **QUIET)
    stamps = {p: p.stat().st_mtime_ns for p in (out / "runs.csv", out / "manifest.json")}
    result = run_study(load_study(spec), output=out, **QUIET)
    assert result.executed == [] and result.skipped == 2
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


class Clock:
    """A clock the test moves; sleeping moves it too (nothing sleeps for real)."""

    def __init__(self, start: dt.datetime):
        self.now, self.slept = start, []

    def __call__(self) -> dt.datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += dt.timedelta(seconds=seconds)


START = dt.datetime(2026, 12, 7, 9, 0, tzinfo=dt.UTC)


def scheduled(quick_study, name: str) -> Path:
    spec = quick_study(name=name, repetitions=3)
    spec.write_text(spec.read_text() + '\n[schedule]\nevery = "2h"\n', encoding="utf-8")
    return spec


def test_due_runs_the_blocks_whose_slot_has_come(tmp_path: Path, quick_study) -> None:
    study = load_study(scheduled(quick_study, "due"))
    out, clock = tmp_path / "out", Clock(START)
    first = run_study(study, output=out, due=True, clock=clock, **QUIET)
    assert {r["block"] for r in first.executed} == {1}
    clock.now += dt.timedelta(hours=2, minutes=30)
    second = run_study(study, output=out, due=True, clock=clock, **QUIET)
    assert {r["block"] for r in second.executed} == {2}
    for record in second.executed:
        planned = dt.datetime.fromisoformat(record["planned_at"])
        assert planned == START + dt.timedelta(hours=2) and record["late_s"] >= 0
        assert record["session"].startswith(f"{record['environment']}.b2.")
    assert run_study(study, output=out, due=True, clock=clock, **QUIET).executed == []
    assert json.loads((out / "schedule.json").read_text())["anchor"].startswith("2026-12-07")


def test_wait_sleeps_until_each_slot(tmp_path: Path, quick_study) -> None:
    study = load_study(scheduled(quick_study, "wait"))
    clock = Clock(START)
    result = run_study(study, output=tmp_path / "out", wait=True, clock=clock,
                       sleep=clock.sleep, **QUIET)
    assert sorted({r["block"] for r in result.executed}) == [1, 2, 3]
    assert clock.now >= START + dt.timedelta(hours=4) and clock.slept


def test_due_needs_a_schedule(tmp_path: Path, quick_study) -> None:
    with pytest.raises(SpecError, match="schedule: --due and --wait need"):
        run_study(load_study(quick_study(name="plain")), output=tmp_path / "o", due=True,
                  **QUIET)


def test_a_session_with_other_hardware_is_refused_and_its_runs_wait(tmp_path: Path,
                                                                   quick_study) -> None:
    spec = quick_study(name="device", repetitions=2, environments="""
        [[environments]]
        name = "a"
        require_device = ["NoSuchGPU", "H100"]
        [[environments]]
        name = "b"
    """)
    out = tmp_path / "out"
    result = run_study(load_study(spec), output=out, **QUIET)
    a = [r for r in result.executed if r["environment"] == "a"]
    # One run per block shows the session's hardware; its block's other runs are not run.
    assert [r["status"] for r in a] == ["wrong_device", "wrong_device"]
    assert "not NoSuchGPU or H100 (require_device)" in a[0]["error"]
    assert {r["status"] for r in result.executed if r["environment"] == "b"} == {"ok"}
    sessions = {r["session"] for r in result.executed}
    assert len(sessions) == 4  # one per environment and block
    statuses = pd.read_csv(out / "runs.csv").set_index("run_id")["status"]
    assert statuses[a[0]["run_id"]] == "wrong_device"


def test_progress_lines_show_the_studys_metrics() -> None:
    record = {"run_id": "pc+x+r001", "status": "ok", "train_s": 12.5, "dnn_model": 2.54,
              "test_accuracy": 0.91}
    line = _describe(record, ("train_s", "dnn_model"))
    assert "train_s 12.50" in line and "dnn_model 2.54" in line and "accuracy" not in line
    assert "test_accuracy 0.910" in _describe({**record, "dnn_model": None})
    assert "accuracy" not in _describe({"run_id": "r", "status": "ok", "total_s": 3.0})


def test_the_lock_file_never_holds_more_than_its_holder(tmp_path: Path) -> None:
    with StudyLock(tmp_path, command="study run x.toml") as lock:
        holder = lock.holder()
        assert holder["pid"] == os.getpid() and set(holder) == {"pid", "host", "since",
                                                                "command"}
    assert StudyLock(tmp_path).holder() is None

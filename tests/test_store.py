"""The results store: records are the truth, runs.csv follows them without re-reading them."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from cloudbench.data.atomic import atomic_path, write_json_atomic
from cloudbench.study.record import COLUMNS, RUNNER_FIELDS, RunRecord
from cloudbench.study.store import ResultsStore, StoreError


def record(run_id: str, block: int, status: str = "ok", **extra: object) -> RunRecord:
    env, dataset, _ = run_id.split("+")
    return {"run_id": run_id, "study": "s", "environment": env, "dataset": dataset,
            "block": block, "repetition": block, "status": status, "error": None,
            "started_at": f"2026-01-01T00:00:{block:02d}+00:00", "wall_s": 1.5,
            "train_s": 1.0 + block / 10, "epoch_s": [0.5, 0.5], **extra}  # type: ignore[typeddict-item]


def rebuilt(root: Path) -> str:
    """runs.csv as a fresh store would rebuild it from the records alone."""
    fresh = ResultsStore(root)
    fresh.write_csv()
    return fresh.csv_path.read_text(encoding="utf-8")


def test_runs_csv_after_each_record_equals_a_rebuild(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    store = ResultsStore(tmp_path / "r")
    store.prepare()
    reads = []
    original = store.records
    monkeypatch.setattr(store, "records", lambda: reads.append(1) or original())
    steps = [record("a+x+r001", 1), record("b+x+r001", 1, status="failed"),
             record("a+x+r002", 2, note="a new column"),  # the header grows: a rewrite
             record("b+x+r001", 1),                         # a failed run redone: a rewrite
             record("b+x+r002", 2)]                         # appended
    for step in steps:
        store.write_record(step)
        assert store.csv_path.read_text(encoding="utf-8") == rebuilt(tmp_path / "r")
    assert len(reads) == 1  # only the first update read the records (there were none)
    frame = pd.read_csv(store.csv_path)
    # The schema's columns some run filled, in its order (none left empty), then the rest.
    assert list(frame.columns[:-1]) == [c for c in COLUMNS if c in frame.columns]
    filled = frame.drop(columns=["note", *RUNNER_FIELDS], errors="ignore").notna().any()
    assert frame.columns[-1] == "note" and filled.all()
    assert frame["run_id"].tolist() == ["a+x+r001", "b+x+r001", "a+x+r002", "b+x+r002"]
    assert json.loads(frame["epoch_s"][0]) == [0.5, 0.5]
    assert (tmp_path / "r" / "attempts" / "b+x+r001.1.json").is_file()


def test_a_stale_runs_csv_is_mended_from_the_records(tmp_path: Path) -> None:
    """After a kill between a record and its line, a study's start rebuilds the table."""
    store = ResultsStore(tmp_path / "r")
    store.prepare()
    store.write_record(record("a+x+r001", 1))
    write_json_atomic(store.record_path("a+x+r002"), record("a+x+r002", 2))  # no CSV line
    store.csv_path.write_text("garbage\n", encoding="utf-8")
    ResultsStore(tmp_path / "r").write_csv()
    assert pd.read_csv(store.csv_path)["run_id"].tolist() == ["a+x+r001", "a+x+r002"]


def test_an_interrupted_atomic_write_leaves_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "table.csv"
    target.write_text("old\n", encoding="utf-8")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half", encoding="utf-8")
        raise RuntimeError("killed")
    assert target.read_text(encoding="utf-8") == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["table.csv"]  # no temporary left


def test_atomic_writes_get_the_mode_of_any_new_file(tmp_path: Path) -> None:
    import os

    from cloudbench.data.atomic import write_text_atomic

    plain = tmp_path / "plain.txt"
    plain.write_text("x", encoding="utf-8")
    write_text_atomic(tmp_path / "atomic.txt", "x")
    assert os.stat(tmp_path / "atomic.txt").st_mode == os.stat(plain).st_mode


def test_the_protocol_writes_the_schema_names() -> None:
    """The notebook side writes plain dicts; its keys must be the schema's."""
    notebook = json.loads((Path(__file__).parent.parent / "protocols" / "cnn_train.ipynb")
                          .read_text(encoding="utf-8"))
    source = "".join("".join(c["source"]) for c in notebook["cells"])
    for field in ("import_s", "load_s", "build_s", "train_s", "epoch_s", "first_epoch_s",
                  "train_nowarm_s", "eval_s", "total_s", "test_loss", "test_accuracy",
                  "n_train", "n_test", "peak_rss_mb", "peak_gpu_mb"):
        assert f'"{field}"' in source and field in COLUMNS


def test_a_study_start_removes_what_a_killed_study_left(tmp_path: Path) -> None:
    """Temporary files of unfinished atomic writes and the runs' working folders (with
    their kernel connection files) go; records and their look-alikes stay."""
    store = ResultsStore(tmp_path / "r")
    store.prepare()
    stale = [store.records_dir / ".pc+shapes+r001.json.k2j4_x9a.json",
             store.root / ".runs.csv.ab12cd34.csv", store.notebooks_dir / ".n.ipynb.zz9y8x7w.ipynb"]
    for path in stale:
        path.write_text("half")
    work = store.work_dir / "pc+shapes+r001.1"
    work.mkdir()
    (work / "kernel-connection.json").write_text('{"key": "secret"}')
    kept = [store.records_dir / "pc+shapes+r001.json", store.root / ".hidden-by-user"]
    kept[1].write_text("{}")
    kept[0].write_text(json.dumps(record("pc+shapes+r001", 1)))  # a valid record, kept
    store.prepare()
    assert not any(p.exists() for p in stale) and not work.exists()
    assert all(p.exists() for p in kept)


def test_a_full_disk_stops_the_study_cleanly_and_loses_no_finished_run(
        tmp_path: Path, quick_study, monkeypatch: pytest.MonkeyPatch) -> None:
    """The records folder refuses the second record (ENOSPC): the study stops with a
    message naming the folder, the finished run is kept outside it, and the next start
    restores it instead of running it again."""
    import errno

    from cloudbench.runners.scheduler import run_study
    from cloudbench.study import store as store_module
    from cloudbench.study.spec import load_study

    study = load_study(quick_study(repetitions=2))
    out = tmp_path / "out"
    real = store_module.write_json_atomic
    written: list[str] = []

    def full_disk(path, data, *args, **kwargs):
        if Path(path).parent.name == "records":
            if written:
                raise OSError(errno.ENOSPC, "No space left on device")
            written.append(str(path))
        return real(path, data, *args, **kwargs)

    monkeypatch.setattr(store_module, "write_json_atomic", full_disk)
    with pytest.raises(StoreError) as err:
        run_study(study, output=out)
    assert str(out) in str(err.value) and "No space left" in str(err.value)
    store = ResultsStore(out)
    kept = list(store.unsaved_dir.glob("*.json"))
    assert len(kept) == 1 and len(list(store.records_dir.glob("*.json"))) == 1
    monkeypatch.setattr(store_module, "write_json_atomic", real)
    again = run_study(study, output=out)
    assert kept[0].stem not in {r["run_id"] for r in again.executed}  # restored, not rerun
    assert len(store.records()) == 4 and not store.unsaved_dir.exists()

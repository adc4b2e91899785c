"""Hostile input (issue 25): no traceback from any input.

Each case a sweep of hostile inputs found has its own test; then one property-based test
per entry point (a runs CSV, an archive, a results folder, the command line) generates
hostile inputs with hypothesis and asserts the toolkit's own error (exit 2, the file, key
or value named) or a clean result: never a traceback, a hang past a bound, or a write
outside the output folder. The CLI runs in-process (cloudbench.cli.main.main).

Each property runs a few hundred examples; for a larger run set CLOUDBENCH_HYPOTHESIS_SCALE
(a multiplier), e.g.

    CLOUDBENCH_HYPOTHESIS_SCALE=20 pytest -n 0 tests/test_hostile_inputs.py -k property
"""

from __future__ import annotations

import io
import json
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest
from fixtures.archives import run_record, write_archive, write_archive_study
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloudbench.cli.main import main
from cloudbench.study.plan import plan
from cloudbench.study.spec import load_study
from cloudbench.study.store import ResultsStore

from conftest import examples as scaled


def examples(n: int) -> Any:
    """Hypothesis settings for a property: n examples (times the scale), no deadline."""
    return settings(max_examples=scaled(n), deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow, HealthCheck.data_too_large])


@contextmanager
def captured() -> Iterator[dict[str, str]]:
    """stdout and stderr of an in-process command, whatever capsys holds."""
    out, err = io.StringIO(), io.StringIO()
    result: dict[str, str] = {}
    with redirect_stdout(out), redirect_stderr(err):
        yield result
    result["out"], result["err"] = out.getvalue(), err.getvalue()


def study_cli(argv: list[str], bound_s: float = 60) -> tuple[int, str]:
    """(exit code, stderr) of `study ARGV` run in-process: never a traceback.

    argparse's own refusals (SystemExit 2) count as exit 2. Anything else escaping is the
    traceback this module forbids, and fails the test with it.
    """
    start = time.monotonic()
    with captured() as io_:
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 2
    assert time.monotonic() - start < bound_s, f"{argv}: past the bound of {bound_s} s"
    assert "Traceback" not in io_["err"], io_["err"]
    return code, " ".join(io_["err"].split())


def tree(root: Path) -> dict[str, bytes]:
    """Every file under root, by relative path, with its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


# --------------------------------------------------------------------------- runs CSV


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


GOOD = ("environment,dataset,status,train_s\n"
        + "".join(f"{e},d,ok,{t}\n" for e, t in (("pc", 1.0), ("pc", 1.1), ("pc", 1.2),
                                                  ("vm", 2.0), ("vm", 2.1), ("vm", 2.3))))


def test_order_naming_an_environment_twice_is_refused(tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "runs.csv", GOOD)
    code, err = study_cli(["analyze", str(csv), "--order", "pc,pc"])
    assert code == 2 and "--order: environment 'pc' is named twice" in err, err
    out = tmp_path / "a.json"
    assert study_cli(["analyze", str(csv), "--order", "vm,pc", "--json", str(out)])[0] == 0
    [c] = json.loads(out.read_text())["comparisons"]
    assert (c["a"], c["b"]) == ("vm", "pc")


def test_a_thousand_environments_are_refused_at_once_naming_the_count(tmp_path: Path) -> None:
    rows = "".join(f"e{i},d,{1 + i / 1000}\ne{i},d,{1.1 + i / 1000}\n" for i in range(1000))
    csv = write_csv(tmp_path / "runs.csv", "environment,dataset,train_s\n" + rows)
    start = time.monotonic()
    code, err = study_cli(["analyze", str(csv)])
    assert time.monotonic() - start < 30
    assert code == 2 and "1,000 environments make 499,500 pairs" in err, err
    assert "limit of 1,000" in err


def test_a_number_column_with_one_word_is_refused_naming_column_line_and_value(
        tmp_path: Path) -> None:
    text = GOOD.replace("vm,d,ok,2.1", "vm,d,ok,fast")
    code, err = study_cli(["analyze", str(write_csv(tmp_path / "runs.csv", text))])
    assert code == 2, err
    assert "column 'train_s', line 6: 'fast' is not a number" in err, err
    # A text column (a schema's, or one with no number at all) is no metric: no refusal.
    assert study_cli(["analyze", str(with_column(tmp_path / "t.csv", "note", "x"))])[0] == 0
    assert study_cli(["analyze", str(with_column(tmp_path / "h.csv", "host_id", "1",
                                                 last="abc"))])[0] == 0
    # Naming the metrics: the other columns are not analysed, so not refused.
    csv = with_column(tmp_path / "m.csv", "other", "1", last="word")
    assert study_cli(["analyze", str(csv)])[0] == 2
    assert study_cli(["analyze", str(csv), "--metric", "train_s"])[0] == 0


def with_column(path: Path, name: str, value: str, last: str | None = None) -> Path:
    """GOOD with one more column holding `value` (`last` in its last row)."""
    lines = GOOD.splitlines()
    cells = [name] + [value] * (len(lines) - 2) + [last or value]
    return write_csv(path, "".join(f"{line},{cell}\n" for line, cell in zip(lines, cells,
                                                                           strict=True)))


def test_status_in_capitals_counts_as_ok(tmp_path: Path) -> None:
    out = tmp_path / "a.json"
    csv = write_csv(tmp_path / "runs.csv", GOOD.replace(",ok,", ",OK,"))
    code, err = study_cli(["analyze", str(csv), "--json", str(out)])
    assert code == 0, err
    [c] = json.loads(out.read_text())["comparisons"]
    assert (c["n_a"], c["n_b"]) == (3, 3)


@pytest.mark.parametrize(("text", "found"), [
    ('environment,dataset,train_s\npc,d,"1,5"\npc,d,"1,6"\nvm,d,"2,5"\nvm,d,"2,6"\n',
     "column 'train_s', line 2: '1,5' has a decimal comma"),
    ("environment,dataset,train_s\npc,d,1,5\npc,d,1,6\nvm,d,2,5\nvm,d,2,6\n",
     "line 2 has 4 fields, the header 3"),
    ("environment;dataset;train_s\npc;d;1,5\npc;d;1,6\nvm;d;2,5\nvm;d;2,6\n",
     "looks like a ';'-separated file"),
    ("environment;dataset;train_s\npc;d;1.5\npc;d;1.6\nvm;d;2.5\nvm;d;2.6\n",
     "looks like a ';'-separated file"),
    ("environment\tdataset\ttrain_s\npc\td\t1.5\nvm\td\t2.5\n", "looks like a tab-separated"),
])
def test_decimal_commas_and_semicolons_are_refused_saying_what_was_found(
        tmp_path: Path, text: str, found: str) -> None:
    code, err = study_cli(["analyze", str(write_csv(tmp_path / "runs.csv", text))])
    assert code == 2 and found in err, err
    assert "no comparisons" not in err


CELLS = st.sampled_from(["", "ok", "OK", "failed", "1", "1.5", "1,5", "-0", "nan", "inf",
                         "-inf", "1e308", "1e-320", "NA", "null", "true", "x", "é", "\"",
                         "a\"b", ";", "1;2", " ", "\t", "0x10", "1_000", "\x00", "\r",
                         "environment", "9" * 400, "pc", "vm", "d"])
COLUMNS = st.sampled_from(["environment", "dataset", "status", "train_s", "total_s",
                           "warmup", "configuration", "run_id", "repetition", "block",
                           "x", "", "train_s", "a;b", "é"])


@st.composite
def hostile_csv(draw: st.DrawFn) -> bytes:
    """A CSV that is mostly a runs table, with hostile headers, cells and bytes."""
    columns = draw(st.lists(COLUMNS, min_size=0, max_size=6))
    if draw(st.booleans()):
        columns = ["environment", "dataset", *columns]
    sep = draw(st.sampled_from([",", ",", ",", ";", "\t"]))
    rows = draw(st.lists(st.lists(CELLS, min_size=0, max_size=len(columns) + 2),
                         max_size=12))
    text = sep.join(columns) + "\n" + "".join(
        sep.join(_quoted(c) if draw(st.booleans()) else c for c in row) + "\n"
        for row in rows)
    data = text.encode("utf-8", "surrogatepass")
    if draw(st.booleans()):
        data += draw(st.binary(max_size=20))
    return data


def _quoted(cell: str) -> str:
    return '"' + cell.replace('"', '""') + '"'


@examples(300)
@given(data=hostile_csv())
def test_property_a_runs_csv_gives_an_analysis_or_exit_2(tmp_path: Path, data: bytes) -> None:
    folder = tmp_path / "csv-property"
    folder.mkdir(exist_ok=True)
    csv = folder / "runs.csv"
    csv.write_bytes(data)
    out = folder / "out" / "analysis.json"
    before = {p for p in folder.rglob("*") if p != out and p != out.parent}
    code, err = study_cli(["analyze", str(csv), "--json", str(out)], bound_s=60)
    assert code in (0, 2), err
    if code == 2:
        assert err.startswith("error: ") or "usage:" in err, err
        assert str(csv) in err or "--" in err, err  # the file (or the argument) is named
    else:
        json.loads(out.read_text())  # strict JSON: no NaN
    after = {p for p in folder.rglob("*") if p != out and p != out.parent}
    assert after == before, "a write outside the output"


# --------------------------------------------------------------------------- archives


@pytest.fixture(scope="module")
def archive_study(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A study with a colab environment `vm`, and a valid archive of its two runs."""
    root = tmp_path_factory.mktemp("archive")
    spec = write_archive_study(root / "study.toml", repetitions=2)
    return {"spec": spec, "archive": write_archive(root / "good.zip", spec)}


def members(archive: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(archive) as zf:
        return {n: zf.read(n) for n in zf.namelist() if n != "manifest.json"}


def manifest_of(archive: Path) -> dict[str, Any]:
    with zipfile.ZipFile(archive) as zf:
        return json.loads(zf.read("manifest.json"))


def rewrite(archive: Path, dest: Path, changes: dict[str, bytes | None],
            stored: bool = False, **manifest: Any) -> Path:
    """The archive with members replaced, added or removed (None), hashes made to match."""
    content = {**members(archive), **changes}
    content = {n: d for n, d in content.items() if d is not None}
    spec = load_study(Path(manifest_of(archive)["study_path"]), check_data=False)
    return write_archive(dest, spec.path, iter(content.items()), manifest_changes=manifest) \
        if not stored else _stored(dest, content, {**manifest_of(archive), **manifest})


def _stored(dest: Path, content: dict[str, bytes], manifest: dict[str, Any]) -> Path:
    import hashlib

    manifest["files"] = {n: hashlib.sha256(d).hexdigest() for n, d in content.items()}
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_STORED) as zf:
        for name, data in content.items():
            zf.writestr(name, data)
        zf.writestr("manifest.json", json.dumps(manifest))
    return dest


def import_(archive: Path, spec: Path, out: Path) -> tuple[int, str]:
    return study_cli(["import", str(archive), "--spec", str(spec), "--output", str(out)])


RID = "vm+shapes+r001"


def test_a_member_with_a_bad_crc_is_refused_naming_it(archive_study: dict[str, Path],
                                                      tmp_path: Path) -> None:
    bad = rewrite(archive_study["archive"], tmp_path / "bad.zip", {}, stored=True)
    with zipfile.ZipFile(bad) as zf:
        info = zf.getinfo(f"notebooks/{RID}.ipynb")
    data = bytearray(bad.read_bytes())
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start + 5] ^= 0xFF  # the member's bytes change, its recorded CRC does not
    bad.write_bytes(bytes(data))
    out = tmp_path / "out"
    code, err = import_(bad, archive_study["spec"], out)
    assert code == 2 and f"notebooks/{RID}.ipynb cannot be read from the archive" in err, err
    assert "CRC" in err and not out.exists()


@pytest.mark.parametrize("text", [
    "[" * 100_000 + "]" * 100_000,
    '{"run_id": ' + "[" * 100_000 + "]" * 100_000 + "}",
    '{"run_id": "x", "deep": ' + "[" * 900 + "]" * 900 + "}",
])
def test_records_nested_deep_are_refused(archive_study: dict[str, Path], tmp_path: Path,
                                         text: str) -> None:
    bad = rewrite(archive_study["archive"], tmp_path / "bad.zip",
                  {f"records/{RID}.json": text.encode()})
    code, err = import_(bad, archive_study["spec"], tmp_path / "out")
    assert code == 2 and f"records/{RID}.json" in err, err
    assert "nested too deeply" in err or "holds the record of 'x'" in err, err


def test_the_manifest_nested_deep_is_refused(archive_study: dict[str, Path],
                                             tmp_path: Path) -> None:
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("manifest.json", "[" * 100_000 + "]" * 100_000)
    code, err = import_(bad, archive_study["spec"], tmp_path / "out")
    assert code == 2 and "manifest.json is not valid JSON: nested too deeply" in err, err


@pytest.mark.parametrize("name", [f"attempts/{RID}.abc.json", f"attempts/{RID}.json",
                                  f"attempts/{RID}.0.json", f"notebooks/{RID}.txt",
                                  "logs/other+shapes+r001.log"])
def test_a_member_named_unlike_the_stores_own_files_is_refused(
        archive_study: dict[str, Path], tmp_path: Path, name: str) -> None:
    bad = rewrite(archive_study["archive"], tmp_path / "bad.zip", {name: b"{}"})
    code, err = import_(bad, archive_study["spec"], tmp_path / "out")
    assert code == 2 and name in err, err
    assert "is not a file name of a results folder" in err or "belongs to no run" in err, err
    assert not (tmp_path / "out").exists()


def test_an_attempt_named_as_the_store_names_them_is_imported(
        archive_study: dict[str, Path], tmp_path: Path) -> None:
    spec = load_study(archive_study["spec"], check_data=False)
    job = next(j for j in plan(spec) if j.run_id == RID)
    failed = run_record(spec, job, status="failed", error="lost", train_s=None, total_s=None,
                        attempt=1)
    good = rewrite(archive_study["archive"], tmp_path / "a.zip",
                   {f"attempts/{RID}.1.json": json.dumps(failed).encode()})
    out = tmp_path / "out"
    assert import_(good, archive_study["spec"], out)[0] == 0
    assert (out / "attempts" / f"{RID}.1.json").is_file()
    assert ResultsStore(out).last_attempt(RID) == 1


def test_an_archive_naming_a_local_environment_is_refused(archive_study: dict[str, Path],
                                                          tmp_path: Path) -> None:
    spec = load_study(archive_study["spec"], check_data=False)
    pc = [(f"records/{j.run_id}.json", json.dumps(run_record(spec, j, runner="local")).encode())
          for j in plan(spec) if j.environment == "pc"]
    bad = write_archive(tmp_path / "pc.zip", archive_study["spec"], iter(pc),
                        environment="pc")
    code, err = import_(bad, archive_study["spec"], tmp_path / "out")
    assert code == 2 and "environment 'pc', whose runner is 'local'" in err, err
    assert not (tmp_path / "out").exists()


def test_import_opens_the_zip_once_and_matches_a_rebuild(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Opening the zip per member made import quadratic (bench/bench_import.py)."""
    spec = write_archive_study(tmp_path / "study.toml", repetitions=300)
    archive = write_archive(tmp_path / "a.zip", spec)
    opened: list[str] = []
    real = zipfile.ZipFile.__init__

    def counting(self: zipfile.ZipFile, file: Any, *args: Any, **kwargs: Any) -> None:
        opened.append(str(file))
        real(self, file, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "__init__", counting)
    out = tmp_path / "out"
    code, err = import_(archive, spec, out)
    assert code == 0, err
    times = opened.count(str(archive))
    assert times <= 2, f"the archive was opened {times} times"
    monkeypatch.undo()
    assert len(list((out / "records").glob("*.json"))) == 300
    streamed = (out / "runs.csv").read_text()
    ResultsStore(out).write_csv()
    assert (out / "runs.csv").read_text() == streamed
    assert import_(archive, spec, out)[0] == 0  # again: nothing to add
    assert (out / "runs.csv").read_text() == streamed


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12)
NAMES = st.sampled_from(["records/", "attempts/", "notebooks/", "logs/", "", "other/"]).flatmap(
    lambda folder: st.text(min_size=1, max_size=30).map(lambda t: folder + t))
FIELDS = st.sampled_from(["run_id", "study", "environment", "dataset", "block", "repetition",
                          "status", "train_s", "total_s", "attempt", "format_version",
                          "configuration", "epoch_s", "new"])
MANIFEST_KEYS = st.sampled_from(["format", "format_version", "study", "environment",
                                 "runner", "parameters", "notebook_sha256", "files",
                                 "repetitions", "study_file", "environment_parameters"])


@st.composite
def hostile_archive(draw: st.DrawFn, good: Path) -> bytes | Callable[[Path], Path]:
    """A valid archive, then one or two hostile changes: a field, a member, a name, the
    manifest, or raw bytes of the zip."""
    kind = draw(st.sampled_from(["field", "member", "name", "manifest", "bytes", "deep"]))
    if kind == "bytes":
        data = bytearray(good.read_bytes())
        for _ in range(draw(st.integers(1, 4))):
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(st.integers(0, 255))
        if draw(st.booleans()):
            data = data[:draw(st.integers(0, len(data)))]
        return bytes(data)
    changes: dict[str, bytes | None] = {}
    manifest: dict[str, Any] = {}
    name = f"records/{RID}.json"
    if kind == "field":
        record = json.loads(members(good)[name])
        record[draw(FIELDS)] = draw(JSON_VALUES)
        changes[name] = json.dumps(record).encode()
    elif kind == "member":
        changes[draw(st.sampled_from([name, f"notebooks/{RID}.ipynb"]))] = json.dumps(
            draw(JSON_VALUES)).encode()
    elif kind == "name":
        changes[draw(NAMES)] = draw(st.binary(max_size=50))
    elif kind == "manifest":
        manifest[draw(MANIFEST_KEYS)] = draw(JSON_VALUES)
    else:
        depth = draw(st.integers(1, 3000))
        changes[name] = ("[" * depth + "]" * depth).encode()
    return lambda dest: rewrite(good, dest, changes, **manifest)


@examples(200)
@given(data=st.data())
def test_property_an_archive_is_imported_or_refused_with_exit_2(
        archive_study: dict[str, Path], tmp_path: Path, data: st.DataObject) -> None:
    folder = tmp_path / "archive-property"
    if folder.exists():
        import shutil

        shutil.rmtree(folder)
    folder.mkdir()
    made = data.draw(hostile_archive(archive_study["archive"]))
    archive = folder / "in.zip"
    if isinstance(made, bytes):
        archive.write_bytes(made)
    else:
        try:
            made(archive)
        except (UnicodeEncodeError, ValueError, IndexError):  # a name zipfile cannot write
            return
    outside = tree(archive_study["spec"].parent)
    out = folder / "out"
    code, err = import_(archive, archive_study["spec"], out)
    assert code in (0, 2), err
    if code == 2:
        assert err.startswith("error: ") and str(archive) in err or "study file" in err, err
        assert not out.exists(), "a refused archive merged something"
    assert tree(archive_study["spec"].parent) == outside, "a write outside the output"
    assert {p.name for p in folder.iterdir()} <= {"in.zip", "out"}


# --------------------------------------------------------------------------- results folder


def test_a_corrupted_results_folder_is_set_aside_never_merged(
        quick_study, tmp_path_factory: pytest.TempPathFactory) -> None:
    """A list, a stray `{}`, NaN, a record under another run's name and a malformed
    attempt's name: `study status` reports them, `study run` moves them to rejected/ with
    a note, runs again what they hid, and runs.csv keeps each run's own row."""
    spec = quick_study(repetitions=1)
    out = tmp_path_factory.mktemp("results")  # not beside the study: its files are hashed
    assert study_cli(["run", str(spec), "--output", str(out)])[0] == 0
    records = out / "records"
    a = json.loads((records / "a+shapes+r001.json").read_text())
    (records / "zzz.json").write_text(json.dumps({**a, "train_s": 999.0}))
    (records / "list.json").write_text("[1, 2]")
    (records / "b+shapes+r001.json").write_text("{}")
    (records / "nan.json").write_text(json.dumps({**a, "run_id": "nan", "train_s": float("nan")}))
    (out / "attempts" / "a+shapes+r001.abc.json").write_text(json.dumps(a))
    before = tree(out)

    code, err = study_cli(["status", str(spec), "--output", str(out)])
    assert code == 0, err
    for name in ("zzz.json", "list.json", "b+shapes+r001.json", "nan.json"):
        assert str(records / name) in err, err
    assert "holds the record of 'a+shapes+r001', not of 'zzz'" in err
    assert "a JSON list, not an object" in err and "must be a finite number" in err
    assert tree(out) == before, "status reads; it moves nothing"

    code, err = study_cli(["run", str(spec), "--output", str(out)])
    assert code == 0, err
    assert sorted(p.name for p in records.glob("*.json")) == ["a+shapes+r001.json",
                                                              "b+shapes+r001.json"]
    rejected = out / "rejected"
    assert (rejected / "records" / "zzz.json").read_text() == before["records/zzz.json"].decode()
    note = (rejected / "records" / "zzz.json.why.txt").read_text()
    assert str(records / "zzz.json") in note and "not of 'zzz'" in note
    assert (rejected / "attempts" / "a+shapes+r001.abc.json").is_file()
    rows = (out / "runs.csv").read_text().splitlines()
    assert len(rows) == 3 and "999.0" not in "".join(rows)
    assert json.loads((records / "b+shapes+r001.json").read_text())["status"] == "ok"


def test_a_broken_manifest_is_refused_by_run_and_ignored_by_status(quick_study,
                                                                   tmp_path: Path) -> None:
    spec = quick_study(repetitions=1)
    out = tmp_path / "out"
    assert study_cli(["run", str(spec), "--output", str(out)])[0] == 0
    for broken in ("{not json", "[1]", "[" * 100_000):
        (out / "manifest.json").write_text(broken)
        code, err = study_cli(["run", str(spec), "--output", str(out)])
        assert code == 2 and f"{out / 'manifest.json'}:" in err and "restore it" in err, err
        assert study_cli(["status", str(spec), "--output", str(out)])[0] == 0
        code, err = study_cli(["import", str(tmp_path / "none.zip"), "--spec", str(spec),
                               "--output", str(out)])
        assert code == 2


FILE_NAMES = st.text(st.characters(blacklist_characters="/\x00", blacklist_categories=["Cs"]),
                     min_size=1, max_size=40).filter(lambda n: n not in (".", ".."))


@st.composite
def hostile_folder(draw: st.DrawFn) -> list[tuple[str, bytes]]:
    """Files to drop into a results folder that holds two valid records."""
    files = []
    for _ in range(draw(st.integers(1, 4))):
        folder = draw(st.sampled_from(["records", "attempts", "records", "attempts", ""]))
        name = draw(st.one_of(FILE_NAMES.map(lambda n: n + ".json"), FILE_NAMES,
                              st.sampled_from([f"{RID}.json", f"{RID}.1.json",
                                               f"{RID}.abc.json", "manifest.json",
                                               "vm+shapes+r002.json"])))
        if folder == "":
            name = "manifest.json"
        content = draw(st.one_of(
            JSON_VALUES.map(lambda v: json.dumps(v).encode()),
            st.binary(max_size=40),
            st.integers(1, 5000).map(lambda d: b"[" * d + b"]" * d),
            st.dictionaries(FIELDS, JSON_VALUES, max_size=6).map(
                lambda d: json.dumps({"run_id": RID, "study": "arch", "environment": "vm",
                                      "dataset": "shapes", "block": 1, "repetition": 1,
                                      "status": "ok", "train_s": 1.0, **d}).encode())))
        files.append((f"{folder}/{name}" if folder else name, content))
    return files


@examples(200)
@given(files=hostile_folder())
def test_property_a_results_folder_gives_a_status_or_exit_2(
        archive_study: dict[str, Path], tmp_path: Path,
        files: list[tuple[str, bytes]]) -> None:
    import shutil

    out = tmp_path / "folder-property" / "out"
    if out.exists():
        shutil.rmtree(out)
    spec = archive_study["spec"]
    assert import_(archive_study["archive"], spec, out)[0] == 0
    for name, content in files:
        try:
            (out / name).write_bytes(content)
        except OSError:  # a name this file system refuses
            continue
    outside = tree(spec.parent)
    code, err = study_cli(["status", str(spec), "--output", str(out)])
    assert code in (0, 2), err
    if code == 2:
        assert str(out) in err, err
    store = ResultsStore(out)
    store.notify = lambda message: None
    try:  # what `study run` does with the folder before its first run
        store.prepare()
        store.read_manifest()
    except Exception as exc:  # noqa: BLE001 -- only the toolkit's refusal may escape
        from cloudbench.study.store import StoreError

        assert isinstance(exc, StoreError) and str(out) in str(exc), repr(exc)
    store.write_csv()
    for job in plan(load_study(spec, check_data=False)):
        assert store.last_attempt(job.run_id) >= 0
    ids = [r["run_id"] for r in store.records()]
    assert len(ids) == len(set(ids)) and set(store.statuses()) == set(ids)
    assert all((out / "records" / f"{i}.json").is_file() for i in ids)
    assert tree(spec.parent) == outside, "a write outside the results folder"


# --------------------------------------------------------------------------- arguments


@pytest.mark.parametrize("argv", [
    ["validate", "x\x00y.toml"],
    ["analyze", "runs\x00.csv"],
    ["import", "a.zip", "--output", "o\x00"],
    ["validate", "x" * 5000 + ".toml"],
    ["analyze", "d/" * 2500 + "runs.csv"],
    ["status", "s.toml", "--output", "x" * 300],
    ["paper", "--runs", "r" * 5000],
    ["simulate", "--seed", "-1"],
    ["simulate", "--seed", "x"],
    ["simulate", "--seed", str(2**64)],
    ["simulate", "--jobs", "100000"],
])
def test_a_path_or_number_no_system_call_takes_is_refused_by_argparse(
        argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, err = study_cli(argv)
    assert code == 2 and "usage: study" in err, err
    assert "NUL" in err or "over the system's limit" in err or "--seed" in err \
        or "--jobs" in err, err
    assert list(tmp_path.iterdir()) == []


COMMANDS = st.sampled_from([
    ["validate", "{path}"], ["status", "{spec}", "--output", "{path}"],
    ["analyze", "{path}"], ["analyze", "{csv}", "--json", "{path}"],
    ["plan", "{spec}", "--pilot", "{path}", "--effect", "{text}"],
    ["paper", "--runs", "{path}", "--output", "{out}"],
    ["import", "{path}", "--spec", "{spec}", "--output", "{out}"],
    ["export", "colab", "{spec}", "--environment", "{text}", "-o", "{out}/b.ipynb"],
    ["analyze", "{csv}", "--alpha", "{text}", "--order", "{text}", "--metric", "{text}"],
    ["status", "{spec}", "--repetitions", "{text}", "--output", "{out}"],
    ["simulate", "--seed", "{text}", "--replicates", "{text}", "--json", "{path}"],
])
HOSTILE_TEXT = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["", "-1", "0", "1e309", "nan", "inf", "-inf", "1" * 5000, "\x00", "..",
                     "/", "/dev/null", "/proc/self/mem", "~", "a,a", "5%", "101%", "-0",
                     "9" * 30, "x" * 300, "d/" * 2500, "\udcff", "é" * 200]))


@examples(300)
@given(template=COMMANDS, texts=st.lists(HOSTILE_TEXT, min_size=3, max_size=3))
def test_property_any_argument_gives_the_toolkits_answer(
        archive_study: dict[str, Path], tmp_path: Path, template: list[str],
        texts: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "args-property"
    if folder.exists():
        import shutil

        shutil.rmtree(folder)
    folder.mkdir()
    monkeypatch.chdir(folder)
    csv = write_csv(folder / "runs.csv", GOOD)
    values = {"spec": str(archive_study["spec"]), "csv": str(csv), "out": str(folder / "out"),
              "path": texts[0], "text": texts[1]}
    argv = [part.format(**values) if "{" in part else part for part in template]
    if argv[0] == "simulate":  # a valid seed and count would run the whole simulation
        argv = argv[:3] + ["--replicates", "0", "--json", texts[2]]
    outside = tree(archive_study["spec"].parent)
    code, err = study_cli(argv, bound_s=120)
    assert code in (0, 1, 2, 3), err
    if code == 1:  # only the paper may fail to build, and says so
        assert argv[0] == "paper" and err.startswith("error: "), err
    assert tree(archive_study["spec"].parent) == outside, "a write outside the output"

"""Hostile input (issue 16, first items): markup in messages, out-of-range repetitions,
exit codes that tell a script whether every planned run is ok."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloudbench.cli.main import main
from cloudbench.cli.run import EXIT_RUNS_NOT_OK
from cloudbench.study.spec import SpecError, load_study

from conftest import examples, write_quick_notebook

MARKUP_FAILURE = """\
import json, os
if "[/x]" in fail_on:
    raise ValueError("bad value [/x] [bold]not bold[/bold]")
with open(record_path, "w") as fh:
    json.dump({"train_s": 0.1, "total_s": 0.1, "test_accuracy": 0.5}, fh)
"""


def test_markup_in_a_run_error_neither_crashes_nor_styles(
        tmp_path: Path, quick_study, capsys: pytest.CaptureFixture[str]) -> None:
    write_quick_notebook(tmp_path / "quick.ipynb", MARKUP_FAILURE)
    spec = quick_study(repetitions=1, parameters='fail_on = "[/x]"')
    code = main(["run", str(spec), "--output", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert code == EXIT_RUNS_NOT_OK  # both runs failed, and the study went on to the second
    # Each error names its failing line too, which holds the same text: 2 runs, 2 each.
    assert " ".join(out.split()).count("bad value [/x] [bold]not bold[/bold]") == 4


def test_a_study_with_every_run_ok_exits_0_and_a_failed_one_3(
        tmp_path: Path, quick_study) -> None:
    ok = quick_study(name="fine", repetitions=1)
    assert main(["run", str(ok), "--output", str(tmp_path / "fine")]) == 0
    failing = quick_study(name="broken", repetitions=1, parameters='fail_on = "/b+shapes"')
    assert main(["run", str(failing), "--output", str(tmp_path / "broken")]) == 3
    # Resuming a study whose failures remain says so again, without running the ok ones.
    assert main(["run", str(failing), "--output", str(tmp_path / "broken")]) == 3


@pytest.mark.parametrize("value", ["0", "-1", "10001", "two"])
def test_out_of_range_repetitions_on_the_command_line_are_refused(
        value: str, quick_study, capsys: pytest.CaptureFixture[str]) -> None:
    spec = quick_study(repetitions=1)
    with pytest.raises(SystemExit) as exit_info:
        main(["run", str(spec), "--repetitions", value])
    assert exit_info.value.code == 2
    assert "--repetitions" in capsys.readouterr().err


@pytest.mark.parametrize(("extra", "key"), [
    ("", "study.repetitions"),
    ("max_repetitions = 100000", "study.max_repetitions"),
])
def test_absurd_repetitions_in_the_study_file_are_refused_at_once(
        quick_study, extra: str, key: str) -> None:
    spec = quick_study(repetitions=1_000_000_000 if not extra else '"auto"', extra=extra)
    start = time.perf_counter()
    with pytest.raises(SpecError, match=rf"{key}: must be (from 1 to|at most) 10000"):
        load_study(spec)
    assert time.perf_counter() - start < 30  # refused, not planned


def test_a_minimum_above_the_maximum_is_refused(quick_study) -> None:
    spec = quick_study(repetitions='"auto"', extra="min_repetitions = 9\nmax_repetitions = 4")
    with pytest.raises(SpecError, match=r"study.min_repetitions: must not exceed"):
        load_study(spec)


def test_a_study_name_from_data_never_becomes_a_path(tmp_path: Path) -> None:
    """The CSV's `study` column names the paper's folder: it is made a plain name."""
    from cloudbench.paper.cache import safe_name, study_name_from_csv

    csv_path = tmp_path / "in" / "runs.csv"
    csv_path.parent.mkdir()
    for raw, expected in (("../../../../tmp/escape", "tmp-escape"), ("a/b\\c", "a-b-c"),
                          ("$\\_%&{}", "_"), ("...", "in")):
        csv_path.write_text(f"study,environment,dataset,train_s\n{raw},a,d,1\n")
        assert study_name_from_csv(csv_path) == expected
    assert safe_name("x" * 300) == "x" * 64


def test_analyze_edge_cases(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """1e300 (whose square is inf) still gives a JSON; an unknown --order name is refused;
    one run a side prints no statistic as if it meant something."""
    import json as _json

    from cloudbench.cli.main import main as cli_main

    big = tmp_path / "big.csv"
    big.write_text("environment,dataset,train_s\na,d,1e300\na,d,2\na,d,3\nb,d,1\nb,d,2\nb,d,4\n")
    out = tmp_path / "big.json"
    assert cli_main(["analyze", str(big), "--json", str(out)]) == 0
    [c] = _json.loads(out.read_text())["comparisons"]
    assert c["descriptives"]["a"]["sd"] is None  # beyond float range: null, not a crash
    assert cli_main(["analyze", str(big), "--order", "a,zzz"]) == 2
    assert "no environment 'zzz'" in capsys.readouterr().err
    one = tmp_path / "one.csv"
    one.write_text("environment,dataset,train_s\na,d,1\nb,d,2\n")
    assert cli_main(["analyze", str(one), "--json", str(out)]) == 0
    [c] = _json.loads(out.read_text())["comparisons"]
    assert c["mann_whitney"]["U"] is None and c["p"] is None and not c["significant"]


@pytest.mark.parametrize(("edit", "key", "message"), [
    ('name = "x\\n"', "study.name", "letters"),
    ("[sweep]\nsleep_s = [1e20, 2]", "sweep.sleep_s[0]", "'+' separates"),
    ("[sweep]\nsleep_s = [1e300]", "sweep.sleep_s[0]", "'+' separates"),
    ("[sweep]\nsleep_s = [inf]", "sweep.sleep_s[0]", "finite numbers"),
])
def test_names_and_levels_that_would_break_run_ids_are_refused(tmp_path: Path, quick_study,
                                                               edit: str, key: str,
                                                               message: str) -> None:
    if edit.startswith("name"):
        spec = quick_study(name="ok")
        text = spec.read_text().replace('name = "ok"', edit, 1)
    else:
        spec = quick_study(name="ok", parameters="")
        text = spec.read_text() + "\n" + edit + "\n"
    spec.write_text(text)
    with pytest.raises(SpecError, match=re.escape(key) + ".*" + re.escape(message)):
        load_study(spec)


def test_a_float_runner_option_must_be_finite(tmp_path: Path, quick_study) -> None:
    spec = quick_study(name="mem", environments='[[environments]]\nname = "a"\n'
                                                 'memory_limit_mb = nan\n')
    with pytest.raises(SpecError, match=r"environments\[0\]\.memory_limit_mb: must be a finite"):
        load_study(spec)


def test_a_folder_of_huge_images_is_checked_without_an_image_count(tmp_path: Path,
                                                                   quick_study) -> None:
    from PIL import Image

    for label in ("a", "b"):
        (tmp_path / "imgs" / label).mkdir(parents=True)
        for i in range(3):
            Image.new("L", (4, 4)).save(tmp_path / "imgs" / label / f"{i}.png")
    spec = quick_study(name="huge")
    text = re.sub(r'source = "shapes"\s+images = 60', f'source = "folder"\npath = '
                  f'"{tmp_path / "imgs"}"\nsize = [100000, 100000]', spec.read_text())
    assert "100000" in text
    spec.write_text(text)
    with pytest.raises(SpecError, match=r"datasets\[0\]\.size: 6 images of 100000x100000"):
        load_study(spec)


def _runs(path: Path, envs: tuple[str, ...], value: float | None = None) -> Path:
    import pandas as pd

    rows = [{"run_id": f"{e}+d+r{i}", "environment": e, "dataset": "d", "status": "ok",
             "block": i + 1, "train_s": value if value and e == envs[0] else 1.0 + i / 10 + k,
             "total_s": 2.0 + i / 10} for k, e in enumerate(envs) for i in range(5)]
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.mark.parametrize("case", ["control characters", "near float's limit",
                                  "manifest of wrong types"])
def test_hostile_runs_still_give_a_paper(tmp_path: Path, case: str, capsys) -> None:
    """Names with a form feed or DEL, values near 1e308, a manifest whose keys have the
    wrong types: the paper is built (a figure that cannot be drawn is left out)."""
    import json

    envs = ("pc", "cl\x0coud", "de\x7fl") if case == "control characters" else ("pc", "cloud")
    runs = _runs(tmp_path / "in" / "runs.csv", envs,
                 1.7e308 if case == "near float's limit" else None)
    if case == "manifest of wrong types":
        (runs.parent / "manifest.json").write_text(json.dumps({
            "notebook": 5, "toolkit_version": [1], "git_commit": {"a": 1},
            "environments": "none", "created_at": 7, "parameters": "x"}))
    code = main(["paper", "--runs", str(runs), "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 0 and "Traceback" not in err, err
    assert (tmp_path / "out" / "in.pdf").is_file()


def test_paper_output_naming_a_file_is_refused(tmp_path: Path, capsys) -> None:
    runs = _runs(tmp_path / "in" / "runs.csv", ("pc", "cloud"))
    (tmp_path / "a-file").write_text("x")
    assert main(["paper", "--runs", str(runs), "--output", str(tmp_path / "a-file")]) == 2
    assert "is a file; --output names the folder" in capsys.readouterr().err


hostile_names = st.text(st.sampled_from(list("ab_-%$&#{}~^\\\x0c\x7f\x00\u00e9\u2009 \t")),
                        min_size=1, max_size=8).filter(lambda n: n.strip(" \t"))


@settings(max_examples=examples(6), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(names=st.lists(hostile_names, min_size=2, max_size=3, unique=True),
       value=st.sampled_from([None, 1e-300, 1e300, 1.7e308]))
def test_any_runs_table_gives_a_paper_or_a_clear_refusal(tmp_path: Path, capsys,
                                                         names: list[str],
                                                         value: float | None) -> None:
    """The paper's property: environment names of any characters LaTeX treats specially
    and values at float's edges give a PDF, or the toolkit's own refusal (exit 2)."""
    import shutil

    shutil.rmtree(tmp_path / "out", ignore_errors=True)
    runs = _runs(tmp_path / "in" / "runs.csv", tuple(names), value)
    code = main(["paper", "--runs", str(runs), "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code in (0, 2) and "Traceback" not in err, err

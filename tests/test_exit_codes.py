"""The error model: one table of exit codes (the README's), each code produced by the real
`study` command, and every error class of the toolkit on a base that carries its code."""

from __future__ import annotations

import argparse
import ast
import importlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from test_study_run import _kernels

from cloudbench import errors
from cloudbench.cli.exits import run_command
from cloudbench.cli.main import main
from cloudbench.errors import (
    EXIT_CODES,
    BuildError,
    CloudbenchError,
    InfrastructureError,
    InputError,
    Interrupted,
    Terminated,
)
from cloudbench.runners.staging import KERNEL_PACKAGES, toolkit_files
from cloudbench.study.store import ResultsStore

from conftest import write_study

ROOT = Path(__file__).resolve().parent.parent
#: The folders whose error classes must derive from cloudbench.errors.
LAYERS = ("study", "runners", "analysis", "paper", "data", "protocols")
COMMAND = [sys.executable, "-m", "cloudbench.cli.main"]


def readme_exit_codes() -> dict[int, str]:
    """The README's "Exit codes" table, code -> meaning."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("### Exit codes\n", 1)[1].split("\n### ", 1)[0]
    rows = re.findall(r"^\| `(\d+)` \| (.+?) \|$", section, flags=re.MULTILINE)
    return {int(code): meaning for code, meaning in rows}


def test_the_readme_table_is_the_one_mapping() -> None:
    assert readme_exit_codes() == EXIT_CODES
    assert sorted(EXIT_CODES) == [0, 1, 2, 3, 130, 143]


def error_classes() -> list[tuple[str, str]]:
    """(class, module) of every exception class defined in the layers' sources."""
    found = []
    for layer in LAYERS:
        for path in sorted((ROOT / layer).rglob("*.py")):
            rel = path.relative_to(ROOT)
            if {"results", "build"} & set(rel.parts[:-1]):
                continue
            for node in ast.parse(path.read_text(encoding="utf-8")).body:
                if isinstance(node, ast.ClassDef) and node.bases:
                    found.append((".".join(rel.with_suffix("").parts), node.name))
    module_of = {}
    for module, name in found:
        cls = getattr(importlib.import_module(f"cloudbench.{module}"), name)
        if isinstance(cls, type) and issubclass(cls, BaseException) and \
                not issubclass(cls, Warning):  # a warning (ColabSessionLeft) is no error
            module_of[name] = module
    return sorted(module_of.items(), key=lambda item: item[1])


# Each class's meaning, and the base that code or tests catch it by (kept).
EXPECTED = {
    "SpecError": (InputError, ValueError), "OptionError": (InputError, ValueError),
    "NotebookError": (InputError, ValueError), "DatasetError": (InputError, ValueError),
    "StoreError": (InputError, RuntimeError), "ArchiveError": (InputError, RuntimeError),
    "AnalysisError": (InputError, ValueError), "AnalysisFormatError": (InputError, ValueError),
    "RecordError": (InputError, ValueError), "PaperError": (BuildError, RuntimeError),
    "MissingCommandError": (InfrastructureError, RuntimeError),
    "TransportError": (InfrastructureError, RuntimeError),
    "ColabError": (InfrastructureError, RuntimeError),
    "RemoteCodeError": (InfrastructureError, RuntimeError),
    "DeviceError": (InfrastructureError, RuntimeError),
    "BackendError": (InfrastructureError, RuntimeError),
    "UnknownProcedureError": (InputError, ValueError), "FilesError": (InputError, ValueError),
    "ScheduleError": (InputError, ValueError), "LockedError": (InputError, RuntimeError),
    "SlurmError": (InfrastructureError, RuntimeError),
    "SlurmUnavailable": (InfrastructureError, RuntimeError),
    "JobWaitTimeout": (InfrastructureError, RuntimeError),
    "KaggleError": (InfrastructureError, RuntimeError),
}


def test_every_error_class_has_a_base_by_meaning() -> None:
    classes = error_classes()
    assert {name for name, _ in classes} == set(EXPECTED), "a new error class: give it a base"
    for name, module in classes:
        cls = getattr(importlib.import_module(f"cloudbench.{module}"), name)
        meaning, kept = EXPECTED[name]
        assert issubclass(cls, meaning) and issubclass(cls, kept), name
    assert (InputError.code, BuildError.code, InfrastructureError.code) == (2, 1, 1)
    assert (Interrupted.code, Terminated.code) == (130, 143)
    # An interruption is never an Exception: `except Exception` in a runner cannot swallow it.
    assert not issubclass(Interrupted, Exception) and issubclass(Terminated, KeyboardInterrupt)


def test_an_error_names_its_file_and_key() -> None:
    from cloudbench.study.registry import OptionError
    from cloudbench.study.spec import SpecError

    exc = CloudbenchError("must be positive", path=Path("s.toml"), key="study.seed", value=-1)
    assert str(exc) == "s.toml: study.seed: must be positive"
    assert (exc.path, exc.key, exc.value, exc.reason) == ("s.toml", "study.seed", -1,
                                                          "must be positive")
    assert str(InputError("no such file")) == "no such file" and InputError("x").path is None
    spec = SpecError("s.toml", "", "not valid TOML")
    assert (str(spec), spec.path, spec.key) == ("s.toml: not valid TOML", "s.toml", "")
    option = OptionError("url", "expected http(s)")  # the key is named by the caller
    assert (str(option), option.key, option.code) == ("expected http(s)", "url", 2)


def test_the_error_model_reaches_remote_kernels() -> None:
    """protocols/ and data/ import it, so it is staged with them; it needs nothing else."""
    staged = toolkit_files(KERNEL_PACKAGES)
    assert staged["cloudbench/errors.py"] == Path(errors.__file__).read_bytes()
    tree = ast.parse(Path(errors.__file__).read_text(encoding="utf-8"))
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | {
        a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert imported <= {"__future__", "typing"}


def fail_with(exc: BaseException):
    def command(args: argparse.Namespace) -> int:
        raise exc

    return command


def test_the_one_mapping(capsys: pytest.CaptureFixture[str]) -> None:
    from cloudbench.runners.session import TransportError

    args = argparse.Namespace()
    before = signal.getsignal(signal.SIGTERM)
    assert run_command(fail_with(TransportError("the session is gone")), args) == 1
    assert capsys.readouterr().err == "error: the session is gone\n"
    assert run_command(fail_with(InputError("x" * 300)), args) == 2
    assert capsys.readouterr().err == f"error: {'x' * 300}\n", "one line, however long"
    assert run_command(fail_with(KeyboardInterrupt()), args) == 130
    assert capsys.readouterr().err == (
        "interrupted: completed runs are kept; run the same command to resume\n")
    assert run_command(fail_with(Terminated()), args) == 143
    assert capsys.readouterr().err.startswith("terminated: completed runs are kept")
    assert run_command(lambda a: 3, args) == 3
    with pytest.raises(ZeroDivisionError):  # a bug keeps its traceback (Python: exit 1)
        run_command(fail_with(ZeroDivisionError()), args)
    assert signal.getsignal(signal.SIGTERM) == before, "the handler is put back"


# --------------------------------------------------------------------------- each code


def test_0_every_run_ok_and_3_some_not(tmp_path: Path, quick_study) -> None:
    spec = quick_study(repetitions=1, environments='[[environments]]\nname = "x"\n')
    assert main(["run", str(spec), "--output", str(tmp_path / "ok")]) == 0
    spec = quick_study(name="failing", repetitions=1, parameters='fail_on = "b+shapes+r001"')
    assert main(["run", str(spec), "--output", str(tmp_path / "failing")]) == 3
    statuses = ResultsStore(tmp_path / "failing").statuses()
    assert statuses == {"a+shapes+r001": "ok", "b+shapes+r001": "failed"}


def test_2_refused_input(tmp_path: Path, quick_study, monkeypatch: pytest.MonkeyPatch,
                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)  # where the results would go: data/results/quick
    bad = write_study(tmp_path / "bad.toml", quick_study().read_text().replace(
        "seed = 7", "seed = -7"))
    for command in ("validate", "run", "status", "calibrate"):
        argv = [command, str(bad)] + (["--environment", "a"] if command == "calibrate" else [])
        assert main(argv) == 2, command
        err = capsys.readouterr().err
        assert err.startswith("error: ") and "bad.toml: study.seed" in err, err
        assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "data").exists(), "nothing ran"
    # An argument argparse refuses: 2 as well.
    with pytest.raises(SystemExit) as exit_:
        main(["run", str(bad), "--repetitions", "0"])
    assert exit_.value.code == 2


def test_2_paper_without_an_argument() -> None:
    """`study paper` with neither a study file nor --runs: refused input, by the real command."""
    proc = subprocess.run([*COMMAND, "paper"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr == "error: give a study file or --runs RUNS.csv\n"


@pytest.fixture(scope="session")
def tex() -> None:
    from cloudbench.study import sysdeps

    sysdeps.ensure_commands(sysdeps.GROUPS["tex"])


def test_1_the_paper_cannot_be_built(tmp_path: Path, tex: None,
                                     monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    """A LaTeX that fails (a broken package ahead of TeX Live's): 1, with the log quoted."""
    from fixtures.synthetic import synthetic_runs

    csv = synthetic_runs(tmp_path / "results" / "broken" / "runs.csv", datasets=("shapes",),
                         repetitions=4, study="broken")
    texinputs = tmp_path / "texinputs"
    texinputs.mkdir()
    (texinputs / "booktabs.sty").write_text(
        "\\ProvidesPackage{booktabs}\n\\undefinedmacro\n", encoding="utf-8")
    monkeypatch.setenv("TEXINPUTS", f"{texinputs}//:")
    assert main(["paper", "--runs", str(csv), "--output", str(tmp_path / "paper")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: latexmk failed") and "Undefined control sequence" in err, err
    assert "Traceback" not in err
    # No runs table to build from: the paper cannot be built either.
    assert main(["paper", "--runs", str(tmp_path / "none.csv")]) == 1
    assert "no runs table" in capsys.readouterr().err


@pytest.mark.parametrize(("signum", "code", "line"), [
    (signal.SIGINT, 130, "interrupted: completed runs are kept; run the same command to resume"),
    (signal.SIGTERM, 143, "terminated: completed runs are kept; run the same command to resume"),
])
def test_130_and_143_stop_a_running_study(tmp_path: Path, quick_study, signum: int, code: int,
                                          line: str) -> None:
    """Ctrl-C or SIGTERM in the middle of a run: its code, one line, the completed run's
    record kept, the run in flight stopped and no kernel left behind."""
    spec = quick_study(repetitions=1, parameters="sleep_s = 3.0")
    out = tmp_path / "out"

    def default_sigint() -> None:  # a background job may inherit SIGINT ignored
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    proc = subprocess.Popen([*COMMAND, "run", str(spec), "--output", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=default_sigint)
    try:
        deadline = time.monotonic() + 120
        while True:  # one run done, the second one's kernel busy
            assert proc.poll() is None and time.monotonic() < deadline, "the study ended first"
            children = psutil.Process(proc.pid).children(recursive=True)
            if list((out / "records").glob("*.json")) and _kernels(children):
                break
            time.sleep(0.05)
        done_before = {p.stem for p in (out / "records").glob("*.json")}
        os.kill(proc.pid, signum)
        _, stderr = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == code, stderr
    assert stderr.strip().splitlines()[-1] == line and "Traceback" not in stderr, stderr
    records = ResultsStore(out).records()
    assert {r["run_id"] for r in records} == done_before and len(done_before) == 1
    assert all(r["status"] == "ok" for r in records)
    _, alive = psutil.wait_procs(children, timeout=20)
    assert not alive, f"processes left behind: {alive}"

"""A new runner is one module plus one registry line (docs/runners.md), shown end to end."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloudbench.runners.scheduler import run_study
from cloudbench.study.registry import load_runner, register_runner, runner_names
from cloudbench.study.spec import SpecError, load_study


@pytest.fixture
def sandbox() -> None:
    register_runner("sandbox", "plugins.sandbox_runner:SandboxRunner")


def study_file(tmp_path: Path, quick_study, environment: str) -> Path:
    return quick_study(name="plugin", repetitions=2, environments=environment)


def test_the_built_in_runners_are_entry_points() -> None:
    assert {"local", "jupyter", "colab"} <= set(runner_names())
    assert load_runner("local").__name__ == "LocalRunner"


def test_a_registered_runner_runs_a_study(sandbox: None, tmp_path: Path, quick_study) -> None:
    root = tmp_path / "machines"
    spec = study_file(tmp_path, quick_study, f"""
        [[environments]]
        name = "box"
        runner = "sandbox"
        root = "{root}"
        env = {{ MARKER = "in-the-box" }}
    """)
    study = load_study(spec)
    assert study.environments[0].options == {"root": str(root)}
    result = run_study(study, output=tmp_path / "out")
    assert [r["status"] for r in result.executed] == ["ok", "ok"], \
        [r["error"] for r in result.executed]
    assert {r["runner"] for r in result.executed} == {"sandbox"}
    assert {r["marker_env"] for r in result.executed} == {"in-the-box"}
    assert all((tmp_path / "out" / "notebooks" / f"{r['run_id']}.ipynb").is_file()
               for r in result.executed)
    assert list(root.iterdir()) == []  # each block's session was stopped and removed


def test_the_runner_declares_and_checks_its_own_keys(sandbox: None, tmp_path: Path,
                                                     quick_study) -> None:
    missing = study_file(tmp_path, quick_study, '[[environments]]\nname = "box"\n'
                                                'runner = "sandbox"\n')
    with pytest.raises(SpecError, match=r"environments\[0\]\.root: missing required key"):
        load_study(missing)
    relative = study_file(tmp_path, quick_study, '[[environments]]\nname = "box"\n'
                                                 'runner = "sandbox"\nroot = "here"\n')
    with pytest.raises(SpecError, match=r"environments\[0\]\.root: must be an absolute path"):
        load_study(relative)
    misplaced = study_file(tmp_path, quick_study, '[[environments]]\nname = "pc"\n'
                                                  'root = "/tmp"\n')
    with pytest.raises(SpecError, match=r"environments\[0\]\.root: unknown key for runner "
                                        r"'local'; it is a key of runner 'sandbox'"):
        load_study(misplaced)


def test_an_unknown_runner_names_the_known_ones(tmp_path: Path, quick_study) -> None:
    spec = study_file(tmp_path, quick_study, '[[environments]]\nname = "x"\nrunner = "ssh"\n')
    with pytest.raises(SpecError, match=r"environments\[0\]\.runner: 'ssh' is not one of: "
                                        r".*colab.*jupyter.*kaggle.*local.*slurm"):
        load_study(spec)

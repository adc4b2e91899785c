"""The analysis procedures: one registry (the catalogue data.procedures, the implementations
analysis.procedures) that the study file, the commands, the analysis, its JSON and the
simulation all read; and SPSS's test-choice rule, one function that the analysis and the
simulation share."""

from __future__ import annotations

import argparse
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloudbench.analysis import results as R
from cloudbench.analysis import simulation as M
from cloudbench.analysis.compare import AnalysisError, analyze, decide, load_runs
from cloudbench.analysis.procedures import Pair, load_procedure
from cloudbench.analysis.procedures import spss as spss_rule
from cloudbench.analysis.results import Levene, ShapiroWilk
from cloudbench.data import procedures as P

ROOT = Path(__file__).resolve().parent.parent


def runs(n: int = 10, seed: int = 1) -> pd.DataFrame:
    """Two environments on two datasets, b 10 % slower on "y"."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame([
        {"environment": env, "dataset": ds, "repetition": r + 1,
         "train_s": 10 * rng.lognormal(0, 0.05) * (1.1 if (env, ds) == ("b", "y") else 1)}
        for ds in ("x", "y") for env in ("a", "b") for r in range(n)])


def run_cli(argv: list[str]) -> int:
    """`study analyze ...`, its parser built now (after any registration)."""
    from cloudbench.cli.analyze import register

    parser = argparse.ArgumentParser(prog="study")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run-time registrations that last for one test only."""
    monkeypatch.setattr(P, "_registered", dict(P._registered))


@pytest.fixture
def welch(registry: None) -> str:
    """A procedure from outside the toolkit: one module (tests/plugins/welch_procedure.py)
    plus its registration, by "module:attribute" as an entry point would name it."""
    P.register_procedure("welch", "plugins.welch_procedure:WELCH",
                         "Welch's t for every comparison")
    return "welch"


# --------------------------------------------------------------------------- the registry


def test_the_names_the_study_knows_are_the_implementations() -> None:
    from cloudbench.cli import analyze as cli
    from cloudbench.study import spec

    names = P.procedure_names()
    assert names[:2] == ("spss", "robust") and names[0] == P.DEFAULT_PROCEDURE
    assert spec.PROCEDURES == cli.PROCEDURES == R.PROCEDURES == names
    # one module per built-in procedure, and a catalogue entry for each module
    modules = {m.name for m in pkgutil.iter_modules([str(ROOT / "analysis" / "procedures")])}
    assert modules == {p.target.partition(":")[0].rpartition(".")[2] for p in P.BUILT_IN}
    for name in names:
        implementation = load_procedure(name)
        assert callable(implementation.choose)
        assert implementation.simulated is None or implementation.simulated in M.METHODS
        assert P.procedure_descriptions()[name]
    assert M.procedure_method("spss") == "spss"
    assert M.procedure_method("robust") == "robust"  # issue 29: Yuen's and Brunner-Munzel's
    assert M.PROCEDURE_METHOD == {"spss": "spss", "robust": "robust"}


def test_the_study_layer_reads_the_names_without_the_analysis() -> None:
    code = ("import sys\n"
            "from cloudbench.study import spec\n"
            "from cloudbench.data.procedures import procedure_descriptions\n"
            "assert spec.PROCEDURES == ('spss', 'robust'), spec.PROCEDURES\n"
            "assert 'Brunner-Munzel' in procedure_descriptions()['robust']\n"
            "loaded = [m for m in sys.modules if m.startswith('cloudbench.analysis')]\n"
            "assert not loaded and 'scipy' not in sys.modules, loaded\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, env={"PYTHONPATH": str(ROOT), "PATH": ""})
    assert done.returncode == 0, done.stderr


def test_an_unknown_procedure_is_refused_naming_the_known_ones(
        quick_study, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cloudbench.study.spec import SpecError, load_study

    spec = quick_study(name="bad", environments="""
        [[environments]]
        name = "a"
        [[environments]]
        name = "b"
        [analysis]
        procedure = "bayes"
    """)
    with pytest.raises(SpecError, match=r"analysis\.procedure: 'bayes' is not one of: "
                                        r"spss, robust"):
        load_study(spec, check_data=False)
    with pytest.raises(AnalysisError, match=r"no procedure 'bayes'; known procedures: "
                                            r"spss, robust"):
        analyze(runs(), ["train_s"], procedure="bayes")
    with pytest.raises(AnalysisError, match="known procedures: spss, robust"):
        decide([1.0, 2.0, 3.0], [2.0, 3.0, 4.0], procedure="bayes")
    with pytest.raises(P.UnknownProcedureError, match="known procedures: spss, robust"):
        load_procedure("bayes")
    data = analyze(runs(n=4), ["train_s"]).to_dict() | {"procedure": "bayes"}
    with pytest.raises(R.AnalysisFormatError, match=r"procedure: expected one of spss, "
                                                    r"robust, got 'bayes'"):
        R.Analysis.from_dict(data)
    csv = tmp_path / "runs.csv"
    runs().to_csv(csv, index=False)
    with pytest.raises(SystemExit):
        run_cli(["analyze", str(csv), "--procedure", "bayes"])
    assert "invalid choice: 'bayes' (choose from" in capsys.readouterr().err


def test_a_procedure_registered_at_run_time_is_used_everywhere(
        welch: str, quick_study, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cloudbench.cli import analyze as cli
    from cloudbench.study import spec as spec_module
    from cloudbench.study.spec import load_study

    assert P.procedure_names()[-1] == welch
    assert spec_module.PROCEDURES == cli.PROCEDURES == R.PROCEDURES == P.procedure_names()
    # the study file takes it
    spec = quick_study(name="plugin", environments="""
        [[environments]]
        name = "a"
        [[environments]]
        name = "b"
        [analysis]
        procedure = "welch"
    """)
    assert load_study(spec, check_data=False).analysis.procedure == welch
    # the analysis uses it: Welch's t everywhere, whatever Shapiro-Wilk says
    result = analyze(runs(), ["train_s"], procedure=welch)
    assert result.procedure == welch
    assert all(c.test_used == "welch_t" and c.p == c.welch_t.p and c.p_method == "t"
               and set(c.verdicts) == {"spss", "robust", welch}
               and c.verdicts[welch].test_used == "welch_t" for c in result.comparisons)
    assert R.Analysis.from_dict(json.loads(json.dumps(result.to_dict()))) == result
    a, b = (runs().query(f"environment == '{e}' and dataset == 'y'")["train_s"]
            for e in ("a", "b"))
    assert decide(a, b, procedure=welch)[0] == "welch_t"
    # the command takes it, and says which procedure it used
    csv, out = tmp_path / "runs.csv", tmp_path / "analysis.json"
    runs().to_csv(csv, index=False)
    assert run_cli(["analyze", str(csv), "--procedure", welch, "--json", str(out)]) == 0
    assert R.Analysis.from_dict(json.loads(out.read_text())) == analyze(
        load_runs(csv), None, procedure=welch)
    assert "welch procedure: Welch's t for every comparison" in capsys.readouterr().out
    # not simulated: the paper states no simulated error rate for it
    assert M.procedure_method(welch) is None
    assert M.procedure_error([(10, 10, 1.0)], welch) is None


def test_a_registered_object_brings_its_own_description(registry: None) -> None:
    from plugins.welch_procedure import WELCH

    P.register_procedure("welch_object", WELCH)
    assert P.procedure_descriptions()["welch_object"] == "Welch's t for every comparison"
    assert load_procedure("welch_object") is WELCH


# --------------------------------------------------------------------------- SPSS's rule


def _rule_as_written(shapiro_a: float | None, shapiro_b: float | None,
                     levene: float | None, alpha: float) -> str:
    """The rule in words (docs/statistics.md): t where both groups pass Shapiro-Wilk,
    Welch's where Levene also rejects, Mann-Whitney where a group fails or is unchecked."""
    if not all(p is not None and not np.isnan(p) and p > alpha for p in (shapiro_a, shapiro_b)):
        return "mann_whitney"
    return "welch_t" if levene is not None and levene < alpha else "student_t"


P_VALUE = st.one_of(st.none(), st.just(float("nan")), st.sampled_from(M.ALPHAS),
                    st.floats(0, 1))


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.lists(st.tuples(P_VALUE, P_VALUE, P_VALUE), min_size=1, max_size=20),
       st.sampled_from(M.ALPHAS))
def test_the_simulation_and_the_analysis_choose_alike_from_any_pretests(
        pretests: list[tuple[float | None, float | None, float | None]], alpha: float) -> None:
    """The same pre-test p in: the simulation's vectorised choice (one row per sample) and
    the analysis' choice for one comparison are the same test, and the rule as written."""
    k = len(pretests)
    column = [[np.nan if v is None else v for v in row] for row in pretests]
    p = {"shapiro_a": np.array([r[0] for r in column]),
         "shapiro_b": np.array([r[1] for r in column]),
         "levene": np.array([r[2] for r in column]),
         # each test's p tells which test the simulation took
         "student_t": np.full(k, 0.25), "welch_t": np.full(k, 0.5),
         "mann_whitney": np.full(k, 0.75)}
    simulated = M.spss_p(p, alpha)
    x = y = np.arange(5.0)
    for i, (sa, sb, lev) in enumerate(pretests):
        pair = Pair(x, y, "two-sided", alpha, known={
            "shapiro_a": ShapiroWilk(p=sa), "shapiro_b": ShapiroWilk(p=sb),
            "levene": Levene(p=lev)})
        used = spss_rule.SPSS.choose(pair)
        assert used == _rule_as_written(sa, sb, lev, alpha)
        assert simulated[i] == p[used][i]


@settings(max_examples=40, deadline=None, derandomize=True)
@given(st.integers(0, 2**32 - 1), st.sampled_from(M.SHAPES), st.integers(3, 30),
       st.integers(3, 30), st.sampled_from(M.VARIANCE_RATIOS), st.sampled_from(M.ALPHAS))
def test_the_simulation_chooses_as_the_analysis_on_random_samples(
        seed: int, shape: str, n_a: int, n_b: int, ratio: float, alpha: float) -> None:
    """On the simulation's own kind of samples: its vectorised pre-tests and the shared
    rule choose the test that analysis.compare.decide chooses, with the same p."""
    rng = np.random.default_rng(seed)
    x = M.draw(shape, M.SPREAD, (1, n_a), rng)
    y = M.draw(shape, M.SPREAD * np.sqrt(ratio), (1, n_b), rng)
    choice = spss_rule.spss_choice(M.shapiro_p(x), M.shapiro_p(y), M.levene_p(x, y), alpha)
    used, p = decide(x[0], y[0], alpha=alpha)
    assert spss_rule.SPSS_TESTS[int(choice[0])] == used
    p_all = {"shapiro_a": M.shapiro_p(x), "shapiro_b": M.shapiro_p(y),
             "levene": M.levene_p(x, y), "student_t": M.student_p(x, y),
             "welch_t": M.welch_p(x, y), "mann_whitney": M.mann_whitney_p(x, y)}
    assert M.spss_p(p_all, alpha)[0] == pytest.approx(p, rel=1e-9)


def test_one_rule_serves_the_analysis_and_the_simulation(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Replacing the rule in its one module changes what both callers choose."""
    calls: list[int] = []
    original = spss_rule.spss_choice

    def spy(*args: object, **kwargs: object) -> np.ndarray:
        choice = original(*args, **kwargs)
        calls.append(choice.size)
        return choice

    monkeypatch.setattr(spss_rule, "spss_choice", spy)
    result = analyze(runs(), ["train_s"])
    assert calls == [1] * len(result.comparisons)
    decide([1.0, 2.0, 3.5], [2.0, 3.0, 4.5])
    rng = np.random.default_rng(0)
    x, y = rng.lognormal(0, 0.1, (50, 8)), rng.lognormal(0, 0.1, (50, 8))
    p = {"shapiro_a": M.shapiro_p(x), "shapiro_b": M.shapiro_p(y),
         "levene": M.levene_p(x, y), "student_t": M.student_p(x, y),
         "welch_t": M.welch_p(x, y), "mann_whitney": M.mann_whitney_p(x, y)}
    M.spss_p(p, 0.05)
    assert calls[-2:] == [1, 50]

    def always_mann_whitney(*args: object, **kwargs: object) -> np.ndarray:
        return np.full(np.shape(args[0]), spss_rule.MANN_WHITNEY)

    monkeypatch.setattr(spss_rule, "spss_choice", always_mann_whitney)
    assert {c.test_used for c in analyze(runs(), ["train_s"]).comparisons} == {"mann_whitney"}
    assert np.array_equal(M.spss_p(p, 0.05), p["mann_whitney"])

"""Equivalence (TOST), the robust procedure, and where they reach: JSON, study file, commands,
plan, prose and the paper (issue 14).

The numbers of the TOST are checked here against statsmodels' ``ttost_ind`` (an independent
implementation of the same two one-sided Welch tests) and in test_stats_parity.py against
R: hand formulas in base R and R's own ``t.test`` one-sided at the margins, as TOSTER's
``tsum_TOST`` computes them. The TOST's power is checked against a Monte Carlo simulation
of the test itself.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_analysis import make_runs, write
from test_report import tex  # noqa: F401  (the TeX Live fixture)

from cloudbench.analysis import equivalence as E
from cloudbench.analysis import power as P
from cloudbench.analysis import results as R
from cloudbench.analysis import stats as S
from cloudbench.analysis.compare import AnalysisError, analyze, decide, load_runs
from cloudbench.cli.analyze import register
from cloudbench.paper.latex import escape


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="study")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def equal_runs(n: int, seed: int = 3, spread: float = 0.02, ratio: float = 1.0,
               datasets: tuple[str, ...] = ("a",)) -> pd.DataFrame:
    """Two environments whose times differ by `ratio` (b = a x ratio in the median)."""
    rng = np.random.default_rng(seed)
    rows = []
    for ds in datasets:
        for env, scale in (("pc", 1.0), ("colab", ratio)):
            for rep in range(1, n + 1):
                rows.append({"environment": env, "dataset": ds, "repetition": rep,
                             "status": "ok",
                             "train_s": 20 * scale * rng.lognormal(0, spread),
                             "test_accuracy": 0.8 * rng.lognormal(0, spread)})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- the TOST


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("margin", [0.05, 0.1])
def test_tost_is_statsmodels_ttost_ind_on_logs(seed: int, margin: float) -> None:
    from statsmodels.stats.weightstats import ttost_ind

    rng = np.random.default_rng(seed)
    a, b = rng.lognormal(3, 0.05, 9), rng.lognormal(3.01, 0.09, 14)
    ours = E.tost_log(a, b, margin, alpha=0.05)
    p, lower, upper = ttost_ind(np.log(a), np.log(b), math.log(1 - margin),
                                math.log(1 + margin), usevar="unequal")
    assert ours.p == pytest.approx(p, rel=1e-10)
    assert (ours.t_lower, ours.p_lower) == pytest.approx(lower[:2], rel=1e-10)
    assert (ours.t_upper, ours.p_upper) == pytest.approx(upper[:2], rel=1e-10)
    assert ours.df == pytest.approx(lower[2], rel=1e-10)
    assert ours.equivalent == (p < 0.05)
    # the 90 % interval inside the margin is the same decision as both tests rejecting
    inside = 1 - margin < ours.ci_low and ours.ci_high < 1 + margin
    assert inside == ours.equivalent
    assert ours.ratio == pytest.approx(math.exp(np.log(a).mean() - np.log(b).mean()))
    assert ours.conf_level == pytest.approx(0.9)


def test_tost_degenerate_inputs_give_no_equivalence() -> None:
    assert E.tost_log([1.0], [1.0, 2.0], 0.05).p is None
    assert E.tost_log([1.0, 0.0, 2.0], [1.0, 2.0], 0.05).p is None  # a zero: no log
    flat = E.tost_log([2.0, 2.0], [2.0, 2.0], 0.05)
    assert flat.p is None and flat.ratio == 1.0 and not flat.equivalent
    with pytest.raises(ValueError, match="between 0 and 1"):
        E.tost_log([1.0, 2.0], [1.0, 2.0], 1.5)


def test_the_four_conclusions() -> None:
    eq = E.tost_log([10.0, 10.2, 9.9, 10.1] * 5, [10.05, 10.1, 9.95, 10.0] * 5, 0.05)
    assert eq.equivalent
    assert E.conclude(eq, False, None, True).conclusion == "equivalent"
    assert E.conclude(eq, True, True, True).conclusion == "faster"
    assert E.conclude(eq, True, False, True).conclusion == "slower"
    assert E.conclude(eq, True, True, False).conclusion == "lower"
    assert E.conclude(eq, True, False, False).conclusion == "higher"
    wide = E.tost_log([10.0, 13.0, 8.0], [9.0, 12.0, 11.0], 0.05)
    assert not wide.equivalent and E.conclude(wide, False, None, True).conclusion == \
        "inconclusive"


# --------------------------------------------------------------------------- in the analysis


def test_analysis_json_carries_equivalence_only_with_a_margin() -> None:
    frame = pd.concat([equal_runs(30, datasets=("same",)),
                       equal_runs(30, ratio=1.3, datasets=("slower",)),
                       equal_runs(3, spread=0.2, datasets=("few",))])
    plain = analyze(frame, ["train_s"])
    assert all(c.equivalence is None for c in plain.comparisons)
    assert all("equivalence" not in e for e in plain.to_dict()["comparisons"])
    result = analyze(frame, ["train_s"], equivalence=0.05)
    words = {c.dataset: c.equivalence.conclusion for c in result.comparisons}
    assert words == {"same": "equivalent", "slower": "faster", "few": "inconclusive"}
    data = result.to_dict()
    json.dumps(data, allow_nan=False)
    eq = data["comparisons"][0]["equivalence"]
    assert list(eq) == ["margin", "method", "ratio", "ci_low", "ci_high", "conf_level", "df",
                        "t_lower", "t_upper", "p_lower", "p_upper", "p", "equivalent",
                        "conclusion"]
    assert (eq["margin"], eq["method"]) == (0.05, "welch_log_t")
    assert R.Analysis.from_dict(json.loads(json.dumps(data))) == result
    # a metric that is not a time reads lower / higher
    acc = analyze(equal_runs(30, ratio=1.3), ["test_accuracy", "train_s"], equivalence=0.05)
    assert [c.equivalence.conclusion for c in acc.comparisons] == ["equivalent", "faster"]
    with pytest.raises(AnalysisError, match="margin"):
        analyze(frame, ["train_s"], equivalence=0)


def test_robust_procedure_by_group_size() -> None:
    """Issue 29: from 8 runs a group Yuen's test on log times with Brunner-Munzel's (both must
    reject), below Brunner-Munzel's permutation test; both verdicts in every comparison."""
    frame = make_runs(n=12)
    result = analyze(frame, ["train_s"], procedure="robust", equivalence=0.05)
    data = result.to_dict()
    assert data["procedure"] == "robust" and list(data)[:3] == ["format", "format_version",
                                                              "procedure"]
    for c in result.comparisons:
        assert c.test_used == "yuen_brunner_munzel" and c.p_method == "t"
        assert c.p == max(c.yuen.p, c.brunner_munzel.p) and c.test is c.yuen
        assert c.brunner_munzel.p_permutation is None  # the t approximation decides here
        assert c.yuen.ci_low < c.yuen.ratio < c.yuen.ci_high
        assert c.verdicts["robust"].p == c.p and c.verdicts["robust"].p_holm == c.p_holm
        assert c.verdicts["robust"].null_hypothesis == "trimmed_log_means_or_relative_effect"
    # the same seed, the same p
    again = analyze(frame, ["train_s"], procedure="robust", equivalence=0.05)
    assert again == result
    assert R.Analysis.from_dict(json.loads(json.dumps(data))) == result
    # pc is 10 % slower on dataset b: significant, and the conclusion says which way
    b = next(c for c in result.comparisons if c.dataset == "b")
    assert b.significant and b.equivalence.conclusion == "slower"
    assert b.verdicts["robust"].decision == "higher" and b.yuen.ratio > 1
    pair = [frame.query(f"environment == '{e}' and dataset == 'b'")["train_s"]
            for e in ("pc", "colab")]
    assert decide(*pair, procedure="robust")[0] == "yuen_brunner_munzel"
    # below 8 runs a group: the permutation test, every relabelling
    small = analyze(make_runs(n=6), ["train_s"], procedure="robust")
    for c in small.comparisons:
        assert c.test_used == "brunner_munzel" and c.p_method == "permutation"
        assert c.p == c.brunner_munzel.p_permutation and c.brunner_munzel.exact
        assert c.brunner_munzel.permutations == 924
    # SPSS's JSON carries the robust verdict beside its own, each in its own Holm family
    spss = analyze(frame, ["train_s"])
    assert spss.procedure == "spss"
    for c in spss.comparisons:
        assert c.verdicts["spss"].test_used == c.test_used and c.verdicts["spss"].p == c.p
        assert c.verdicts["robust"] == next(
            r for r in result.comparisons if r.dataset == c.dataset).verdicts["robust"]
        assert c.verdicts_agree == (c.verdicts["spss"].decision
                                    == c.verdicts["robust"].decision)
    with pytest.raises(AnalysisError, match="procedure"):
        analyze(frame, ["train_s"], procedure="bayes")


def test_an_older_version_2_json_reads_as_spss() -> None:
    data = analyze(make_runs(n=6), ["train_s"]).to_dict()
    del data["procedure"]
    assert R.Analysis.from_dict(data).procedure == "spss"


def test_cli_analyze_procedure_and_equivalence(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from cloudbench.cli import analyze as cli
    from cloudbench.study import spec

    assert cli.PROCEDURES == R.PROCEDURES == spec.PROCEDURES
    runs = write(make_runs(n=10), tmp_path / "runs.csv")
    out = tmp_path / "analysis.json"
    assert run_cli(["analyze", str(runs), "--metric", "train_s", "--json", str(out),
                    "--procedure", "robust", "--equivalence", "5%"]) == 0
    data = json.loads(out.read_text())
    assert data["procedure"] == "robust"
    assert {e["equivalence"]["conclusion"] for e in data["comparisons"]} <= set(R.CONCLUSIONS)
    assert R.Analysis.from_dict(data) == analyze(load_runs(runs), ["train_s"],
                                                 procedure="robust", equivalence=0.05)
    printed = capsys.readouterr().out
    assert "robust procedure" in printed and "equivalence" in printed
    with pytest.raises(SystemExit):
        run_cli(["analyze", str(runs), "--equivalence", "150%"])
    assert "between 0 and 1" in capsys.readouterr().err


# --------------------------------------------------------------------------- the study file


def test_study_file_procedure_and_equivalence(quick_study) -> None:
    from cloudbench.study.spec import SpecError, load_study

    spec = quick_study(environments="""
        [[environments]]
        name = "a"
        [[environments]]
        name = "b"
        [analysis]
        procedure = "robust"
        equivalence = 0.05
    """)
    study = load_study(spec, check_data=False)
    assert (study.analysis.procedure, study.analysis.equivalence) == ("robust", 0.05)
    default = load_study(quick_study(name="plain"), check_data=False)
    assert (default.analysis.procedure, default.analysis.equivalence) == ("spss", None)
    for bad, key in (('procedure = "bayes"', "analysis.procedure"),
                     ("equivalence = 1.5", "analysis.equivalence"),
                     ('equivalence = "5%"', "analysis.equivalence")):
        spec = quick_study(name="bad", environments=f"""
            [[environments]]
            name = "a"
            [[environments]]
            name = "b"
            [analysis]
            {bad}
        """)
        with pytest.raises(SpecError, match=re.escape(key)):
            load_study(spec, check_data=False)


# --------------------------------------------------------------------------- study plan


@pytest.mark.parametrize(("n", "sd_log"), [(12, 0.05), (30, 0.08), (45, 0.08)])
def test_tost_power_is_the_tests_own_rejection_rate(n: int, sd_log: float) -> None:
    """The integral against a Monte Carlo of the pooled-variance TOST itself."""
    from scipy.special import stdtrit

    rng = np.random.default_rng(n)
    reps, margin = 40_000, 0.05
    x, y = rng.normal(0, sd_log, (reps, n)), rng.normal(0, sd_log, (reps, n))
    d = x.mean(axis=1) - y.mean(axis=1)
    s = np.sqrt((x.var(axis=1, ddof=1) + y.var(axis=1, ddof=1)) / 2)
    half = stdtrit(2 * n - 2, 0.95) * s * math.sqrt(2 / n)
    hits = (d - half > math.log(1 - margin)) & (d + half < math.log(1 + margin))
    se = math.sqrt(0.25 / reps)
    assert P.tost_power(n, sd_log, margin) == pytest.approx(hits.mean(), abs=4 * se)


def test_equivalence_repetitions() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.lognormal(0, 0.08, 20), rng.lognormal(0, 0.08, 20)
    n = P.equivalence_repetitions(a, b, 0.05)
    sd_log = math.sqrt((np.log(a).var(ddof=1) + np.log(b).var(ddof=1)) / 2)
    assert P.tost_power(n, sd_log, 0.05) >= 0.8 > P.tost_power(n - 1, sd_log, 0.05)
    assert P.equivalence_repetitions(a, b, 0.10) < n  # a wider margin needs fewer runs
    assert P.equivalence_repetitions([1.0], b, 0.05) is None
    assert P.equivalence_repetitions(a, b, 0.05, ratio=1.06) is None  # outside the margin
    plan = P.plan_repetitions(make_runs(n=10), "train_s", "pc", "colab", 0.05, margin=0.05)
    assert plan["equivalence"] == 0.05
    assert plan["n_equivalence"] == max(r["n_equivalence"] for r in plan["datasets"])
    assert all(r["sd_log"] > 0 for r in plan["datasets"])
    assert "n_equivalence" not in P.plan_repetitions(make_runs(n=10), "train_s", "pc",
                                                     "colab", 0.05)


def test_cli_plan_gives_the_repetitions_for_equivalence(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "pilot.toml"
    spec.write_text('[study]\nname = "pilot"\nrepetitions = 5\nseed = 7\n'
                    '[protocol]\nnotebook = "protocols/cnn_train.ipynb"\n'
                    '[[datasets]]\nname = "a"\nsource = "shapes"\n'
                    '[[environments]]\nname = "pc"\nrunner = "local"\n'
                    '[[environments]]\nname = "colab"\nrunner = "local"\n'
                    '[analysis]\nequivalence = 0.05\n')
    pilot = write(equal_runs(8, spread=0.05), tmp_path / "pilot.csv")
    out = tmp_path / "plan.json"
    assert run_cli(["plan", str(spec), "--pilot", str(pilot), "--effect", "5%",
                    "--json", str(out)]) == 0
    printed = " ".join(capsys.readouterr().out.split())
    assert "to show equivalence within ±5%" in printed
    plan = json.loads(out.read_text())["plans"][0]
    assert plan["equivalence"] == 0.05 and plan["n_equivalence"] >= 2
    assert f"{plan['n_equivalence']} repetitions per environment" in printed
    assert run_cli(["plan", str(spec), "--pilot", str(pilot), "--effect", "5%",
                    "--equivalence", "10%", "--json", str(out)]) == 0
    wider = json.loads(out.read_text())["plans"][0]
    assert wider["equivalence"] == 0.10 and wider["n_equivalence"] < plan["n_equivalence"]


# --------------------------------------------------------------------------- the paper


@pytest.mark.parametrize("lang", ["en", "es"])
def test_four_wordings_in_both_languages(lang: str) -> None:
    from cloudbench.paper.prose import equivalence_conclusion

    frame = pd.concat([equal_runs(30, datasets=("same",)),
                       equal_runs(30, ratio=1.3, datasets=("slower",)),
                       equal_runs(30, ratio=1 / 1.3, datasets=("faster",)),
                       equal_runs(3, spread=0.2, datasets=("few",))])
    result = analyze(frame, ["train_s"], equivalence=0.05)
    text = {c.dataset: escape(equivalence_conclusion(c, lang)) for c in result.comparisons}
    words = {"en": {"same": "are equivalent within $\\pm$5\\,\\%",
                    "slower": "pc is faster than colab",
                    "faster": "pc is slower than colab",
                    "few": "is inconclusive: more runs are needed"},
             "es": {"same": "son equivalentes dentro de $\\pm$5\\,\\%",
                    "slower": "pc es más rápido que colab",
                    "faster": "pc es más lento que colab",
                    "few": "no es concluyente: se necesitan más ejecuciones"}}[lang]
    for dataset, expected in words.items():
        assert expected in text[dataset], (dataset, text[dataset])
        assert text[dataset].endswith(".") and "{" not in text[dataset]
    assert ("90\\,\\%" in text["same"]) and ("0,9" in text["same"]) == (lang == "es")
    # a comparison that could not be tested for equivalence says so
    few = next(c for c in result.comparisons if c.dataset == "few")
    blank = dataclasses.replace(few, equivalence=dataclasses.replace(
        few.equivalence, p=None, ci_low=None, ci_high=None))
    assert {"en": "could not be tested", "es": "no se pudo probar"}[lang] in \
        escape(equivalence_conclusion(blank, lang))


def test_simulated_error_sentence_names_the_nearest_scenario() -> None:
    from cloudbench.analysis.simulation import procedure_error
    from cloudbench.paper.prose import simulated_error_text

    error = procedure_error([(24, 24, 1.1), (23, 24, 0.9)], "spss", 0.05)
    assert error.scenarios == ((24, 24, 1.0),) and 0 < error.low <= error.high < 0.2
    assert set(error.shapes) == {"normal", "lognormal", "heavy", "outliers"}
    text = escape(simulated_error_text(error, "en"))
    assert "nearest simulated scenario: 24 vs 24 runs, variance ratio 1)" in text
    assert "SPSS's procedure" in text and "against the nominal 5\\,\\%" in text
    es = escape(simulated_error_text(procedure_error([(20, 8, 9.0), (24, 10, 3.0)], "robust"),
                                     "es"))
    assert "escenarios simulados más cercanos: 20 frente a 8" in es and "Brunner-Munzel" in es
    assert procedure_error([(24, 24, 1.0)], "spss", 0.2) is None  # alpha not simulated
    assert escape(simulated_error_text(None, "en")) == ""


@pytest.mark.usefixtures("tex")
def test_paper_names_the_procedure_and_the_equivalence(tmp_path: Path, quick_study,
                                                      monkeypatch) -> None:
    from fixtures.synthetic import synthetic_runs
    from test_report import pdf_text, plain

    from cloudbench.cli.main import main
    from cloudbench.paper.prose import equivalence_conclusion

    monkeypatch.chdir(tmp_path)
    for lang, words in (("en", ("robust procedure", "Brunner-Munzel",
                                "Equivalence within ±5 %", "simulated type-I error")),
                        ("es", ("procedimiento robusto", "Brunner-Munzel",
                                "Equivalencia dentro de ±5 %", "error de tipo I simulado"))):
        name = f"robust_{lang}"
        spec = quick_study(name=name, environments=textwrap.dedent(f"""
            [[environments]]
            name = "a"
            [[environments]]
            name = "b"
            [analysis]
            metrics = ["train_s"]
            language = "{lang}"
            procedure = "robust"
            equivalence = 0.05
        """))
        csv = synthetic_runs(tmp_path / "data" / "results" / name / "runs.csv",
                             environments=("a", "b"), datasets=("shapes", "digits"),
                             repetitions=8, study=name)
        assert main(["paper", str(spec)]) == 0
        text = pdf_text(tmp_path / "paper" / "build" / f"{name}.pdf")
        for word in words:
            assert word in text, (lang, word)
        analysis = R.Analysis.from_dict(json.loads((csv.parent / "analysis.json").read_text()))
        assert analysis.procedure == "robust"
        for c in analysis.comparisons:
            # 8 runs a group: Yuen's test with Brunner-Munzel's (issue 29)
            assert c.test_used == "yuen_brunner_munzel" and c.equivalence is not None
            sentence = plain(equivalence_conclusion(c, lang))
            assert sentence[:60] in text, (lang, sentence)


def test_separation_p_is_the_exact_tail() -> None:
    assert S.separation_p(5, 5) == pytest.approx(2 / 252)
    assert S.separation_p(5, 5, "less", a_below=True) == pytest.approx(1 / 252)
    assert S.separation_p(5, 5, "greater", a_below=True) == 1.0

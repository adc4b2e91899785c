"""Issue 29: the robust procedure by group size, both verdicts side by side, and honest
advice for small studies (fewer than 8 runs a group): the warning of `study validate` and
`study plan`, "inconclusive" rather than "no difference", and the repetitions the robust
procedure needs for a pilot's own spread."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_analysis import make_runs, run_cli, write

from cloudbench.analysis import power as P
from cloudbench.analysis import results as R
from cloudbench.analysis import stats as S
from cloudbench.analysis.compare import analyze, decide
from cloudbench.analysis.procedures import robust
from cloudbench.analysis.summary import summary_text
from cloudbench.cli import analyze as cli

STUDY = ('[study]\nname = "small"\nrepetitions = {reps}\nseed = 7\n'
         '[protocol]\nnotebook = "protocols/cnn_train.ipynb"\n'
         '[[datasets]]\nname = "a"\nsource = "shapes"\n'
         '[[datasets]]\nname = "b"\nsource = "shapes"\n'
         '[[environments]]\nname = "pc"\nrunner = "local"\n'
         '[[environments]]\nname = "colab"\nrunner = "local"\n')


def disagreeing() -> pd.DataFrame:
    """10 vs 10 runs where SPSS's procedure (Welch's t) finds pc faster and the robust one
    does not (Yuen's p and Brunner-Munzel's both above .05): a quiet PC, a noisy cloud."""
    rng = np.random.default_rng(8)
    a, b = 20 * rng.lognormal(0, 0.03, 10), 20 * rng.lognormal(0.04, 0.15, 10)
    return pd.DataFrame({"environment": ["pc"] * 10 + ["colab"] * 10, "dataset": "d",
                         "train_s": np.r_[a, b]})


def test_the_choice_by_group_size() -> None:
    rng = np.random.default_rng(1)
    assert robust.MIN_RUNS == R.SMALL_STUDY_RUNS == cli.SMALL_STUDY_RUNS == 8
    for n_a, n_b, test in ((8, 8, "yuen_brunner_munzel"), (7, 30, "brunner_munzel"),
                           (30, 8, "yuen_brunner_munzel"), (5, 5, "brunner_munzel")):
        used, p = decide(rng.lognormal(0, 0.1, n_a), rng.lognormal(0, 0.1, n_b),
                         procedure="robust")
        assert used == test and 0 <= p <= 1
    # a value that is not positive has no log: the permutation test, whatever the size
    assert decide(rng.normal(0, 1, 12), rng.normal(0, 1, 12), procedure="robust")[0] == \
        "brunner_munzel"


def test_the_combined_test_rejects_only_where_both_do() -> None:
    rng = np.random.default_rng(2)
    for _ in range(20):
        a, b = rng.lognormal(0, 0.1, 12), rng.lognormal(0.05, 0.3, 9)
        for alternative in S.ALTERNATIVES:
            both = S.yuen_brunner_munzel(a, b, alternative)
            assert both.p >= max(both.yuen.p, both.brunner_munzel.p) - 1e-15
            assert both.brunner_munzel.p_permutation is None  # the t approximation
    # opposite directions (Yuen's trimmed means one way, P(a < b) the other): never two-sided
    a = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 9.0, 9.0, 9.0]
    b = [1.1] * 9 + [1.2, 1.3]
    both = S.yuen_brunner_munzel(a, b)
    assert both.yuen.t > 0 and both.brunner_munzel.estimate > 0.5  # a higher, yet a < b
    assert both.same_direction is False and both.p == 1.0


def test_both_verdicts_and_where_they_disagree() -> None:
    result = analyze(disagreeing(), ["train_s"])
    c = result.comparisons[0]
    spss, rob = c.verdicts["spss"], c.verdicts["robust"]
    assert (spss.test_used, spss.significant, spss.decision) == ("welch_t", True, "lower")
    assert (rob.test_used, rob.significant, rob.decision) == ("yuen_brunner_munzel", False,
                                                              "no_difference")
    assert c.verdicts_agree is False
    assert spss.null_hypothesis == "equal_means"
    assert rob.null_hypothesis == "trimmed_log_means_or_relative_effect"
    assert c.yuen.ci_low < 1 < c.yuen.ci_high  # the robust interval of the speed ratio
    # the same verdicts whichever procedure decides
    other = analyze(disagreeing(), ["train_s"], procedure="robust").comparisons[0]
    assert other.verdicts == c.verdicts and other.test_used == "yuen_brunner_munzel"
    text = summary_text(result)
    assert "robust" in text and "a < b" in text and "n.s." in text
    data = result.to_dict()
    assert list(data["comparisons"][0]["verdicts"]) == ["spss", "robust"]
    assert list(data["comparisons"][0]["verdicts"]["robust"]) == [
        "test_used", "null_hypothesis", "p", "p_method", "p_holm", "significant", "decision"]
    assert list(data["comparisons"][0]["yuen"]) == ["t", "df", "p", "trim", "ratio", "ci_low",
                                                    "ci_high", "conf_level"]
    assert R.Analysis.from_dict(json.loads(json.dumps(data))) == result


def test_small_studies_read_inconclusive() -> None:
    result = analyze(make_runs(n=5), ["train_s"])
    for c in result.comparisons:
        for v in c.verdicts.values():
            assert v.decision == ("inconclusive" if not v.significant else v.decision)
    assert any(v.decision == "inconclusive" for c in result.comparisons
               for v in c.verdicts.values())
    assert "inconclusive" in summary_text(result)
    large = analyze(make_runs(n=12), ["train_s"]).comparisons[0]
    assert not large.significant and large.verdicts["spss"].decision == "no_difference"


def test_a_version_3_json_is_still_read() -> None:
    data = analyze(make_runs(n=6), ["train_s"]).to_dict()
    old = {**data, "format_version": 3,
           "comparisons": [{k: v for k, v in c.items()
                            if k not in ("verdicts", "verdicts_agree", "yuen",
                                         "brunner_munzel")} for c in data["comparisons"]]}
    read = R.Analysis.from_dict(old)
    assert all(c.verdicts is None and c.yuen is None for c in read.comparisons)
    assert "n.s." in summary_text(read)  # no verdict: as before


def test_small_study_warning() -> None:
    assert P.small_study(8) is None
    five = P.small_study(5, family=2, seed=1)
    assert five.smallest_p == pytest.approx(2 / 252) and five.needed_p == 0.025
    assert five.reachable
    assert 0.15 < five.power[0.10] < five.power[0.20] <= 1
    # 7 datasets: 2/252 can never pass Holm's first step, .05 / 7
    seven = P.small_study(5, family=7, seed=1)
    assert not seven.reachable and "can ever be significant" in seven.lines()[2]
    assert P.smallest_p(5, 5, "less") == pytest.approx(1 / 252)
    assert P.smallest_p(6, 60) == pytest.approx(1 / 20_001)


def test_robust_power_and_repetitions_for_a_pilot_s_spread() -> None:
    assert P.robust_power(10, 10, 0.2, 0.08, seed=3, n_sim=400) > \
        P.robust_power(10, 10, 0.1, 0.08, seed=3, n_sim=400)
    rng = np.random.default_rng(4)
    quiet, noisy = 20 * rng.lognormal(0, 0.03, 8), 20 * rng.lognormal(0, 0.15, 8)
    n = P.robust_repetitions(quiet, noisy, 0.10, n_sim=200)
    assert 8 <= n <= 60
    # the noisier the cloud, the more runs: the same pilot with twice its spread of logs
    assert P.robust_repetitions(quiet, 20 * (noisy / 20) ** 2, 0.10, n_sim=200) > n
    # a size whose smallest p cannot pass Holm's first step does not count
    clear = P.robust_repetitions(quiet, 20 * rng.lognormal(0.3, 0.03, 8), 0.10, n_sim=200)
    assert clear < 8 and P.smallest_p(clear, clear) < 0.05
    wide = P.robust_repetitions(quiet, 20 * rng.lognormal(0.3, 0.03, 8), 0.10, n_sim=200,
                                family=10)
    assert wide > clear and P.smallest_p(wide, wide) * 10 < 0.05
    assert P.robust_repetitions([1.0], noisy, 0.1) is None
    assert P.robust_repetitions([-1.0, 2.0], noisy, 0.1) is None


def test_validate_and_plan_warn_a_small_study(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from cloudbench.cli.main import main

    small = tmp_path / "small.toml"
    small.write_text(STUDY.format(reps=5))
    assert main(["validate", str(small)]) == 0
    printed = " ".join(capsys.readouterr().out.split())
    assert "only 5 run(s) per environment and dataset, fewer than 8" in printed
    assert "'inconclusive', not 'no difference'" in printed
    assert "for a 10% slowdown" in printed and "for a 20% slowdown" in printed
    assert "the smallest p the robust procedure's permutation test can give with 5 vs 5 " \
        "runs is 0.00794; Holm's correction over 2 comparison(s)" in printed
    large = tmp_path / "large.toml"
    large.write_text(STUDY.format(reps=10))
    assert main(["validate", str(large)]) == 0
    assert "warning" not in capsys.readouterr().out
    # study plan: the warning with the pilot's spread, and the robust procedure's runs
    pilot = write(make_runs(n=6), tmp_path / "pilot.csv")
    out = tmp_path / "plan.json"
    assert run_cli(["plan", str(small), "--pilot", str(pilot), "--effect", "10%",
                    "--json", str(out)]) == 0
    printed = " ".join(capsys.readouterr().out.split())
    assert "fewer than 8" in printed and "log times with sd" in printed
    assert "the reference study's spread" not in printed
    plan = json.loads(out.read_text())["plans"][0]
    assert plan["n_robust"] == max(r["n_robust"] for r in plan["datasets"])
    assert all(r["sd_log_a"] > 0 and r["sd_log_b"] > 0 for r in plan["datasets"])
    assert f"{plan['n_robust']} repetitions per environment and dataset" in printed
    assert math.isfinite(P.pilot_spread(make_runs(n=6), "train_s"))

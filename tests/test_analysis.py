"""The analysis layer: loading runs, the analysis JSON's contract, power and the commands.

Numbers themselves are checked against R in test_stats_parity.py; here the contract of
DESIGN.md ("The analysis JSON"), its typed results and format version (analysis.results),
the edge cases a real study produces (failed runs, tiny or empty groups, outliers, more
than two environments) and the command-line behaviour.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cloudbench.analysis import power as P
from cloudbench.analysis import results as R
from cloudbench.analysis import stats as S
from cloudbench.analysis.compare import AnalysisError, analyze, decide, load_runs
from cloudbench.analysis.summary import summary_text
from cloudbench.cli.analyze import register

ENTRY_KEYS = {"metric", "dataset", "a", "b", "n_a", "n_b", "descriptives", "shapiro", "ranks",
              "mann_whitney", "hodges_lehmann", "levene", "student_t", "welch_t", "test_used",
              "p", "p_holm", "significant"}
EXTRA_KEYS = {"p_method", "median_ratio", "outliers", "warnings", "alternative", "alpha"}
# format version 4 (issue 29): the robust verdict's tests and both verdicts, always
VERDICT_KEYS = {"brunner_munzel", "yuen", "verdicts", "verdicts_agree"}
DESCRIPTIVE_KEYS = {"n", "mean", "sd", "median", "q1", "q3", "min", "max", "cv"}
MW_KEYS = {"U", "W", "Z", "p_asymptotic", "p_exact", "r", "rank_biserial"}


def make_runs(envs: tuple[str, ...] = ("pc", "colab"), datasets: tuple[str, ...] = ("a", "b"),
              n: int = 12, seed: int = 1) -> pd.DataFrame:
    """Interleaved runs: the second environment is 10 % faster on every dataset but the first."""
    rng = np.random.default_rng(seed)
    rows = []
    for rep in range(1, n + 1):
        for e, env in enumerate(envs):
            for d, ds in enumerate(datasets):
                speed = 1 - 0.1 * e * (d > 0)
                rows.append({"run_id": f"{env}+{ds}+{rep}", "environment": env, "dataset": ds,
                             "repetition": rep, "block": rep, "status": "ok",
                             "train_s": 20 * speed * rng.lognormal(0, 0.03),
                             "test_accuracy": 0.8 + rng.normal(0, 0.01)})
    return pd.DataFrame(rows)


def write(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_csv(path, index=False)
    return path


# --------------------------------------------------------------------------- load_runs


def test_load_runs_missing_file(tmp_path: Path) -> None:
    with pytest.raises(AnalysisError, match="nope.csv: no such file"):
        load_runs(tmp_path / "nope.csv")


def test_load_runs_missing_column_names_file_and_column(tmp_path: Path) -> None:
    path = write(make_runs().drop(columns="dataset"), tmp_path / "runs.csv")
    with pytest.raises(AnalysisError, match=r"runs.csv: missing column 'dataset'"):
        load_runs(path)


def test_load_runs_non_numeric_metric_names_line(tmp_path: Path) -> None:
    frame = make_runs()
    frame["train_s"] = frame["train_s"].astype(object)
    frame.loc[3, "train_s"] = "fast"
    path = write(frame, tmp_path / "runs.csv")
    with pytest.raises(AnalysisError, match=r"runs.csv: column 'train_s' is not numeric "
                                            r"\(line 5 has 'fast'\)"):
        load_runs(path, ["train_s"])
    # without asking for it, it is refused too: left out, a metric would silently vanish
    with pytest.raises(AnalysisError, match=r"runs.csv: column 'train_s', line 5: 'fast' is "
                                            r"not a number"):
        load_runs(path)
    assert {e.metric for e in analyze(load_runs(path, ["test_accuracy"])).comparisons} == {
        "test_accuracy"}


def test_load_runs_unreadable_and_empty(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(AnalysisError, match="empty.csv: not a readable CSV"):
        load_runs(empty)


def test_load_runs_keeps_only_ok_and_no_warmup(tmp_path: Path) -> None:
    frame = make_runs()
    frame.loc[0, "status"] = "failed"
    frame.loc[1, "status"] = "timeout"
    frame["warmup"] = False
    frame.loc[2, "warmup"] = True
    frame["train_s"] = frame["train_s"].astype(object)
    frame.loc[0, "train_s"] = "oom"  # a failed run's junk must not poison the column
    loaded = load_runs(write(frame, tmp_path / "runs.csv"), ["train_s"])
    assert len(loaded) == len(frame) - 3
    assert loaded["train_s"].dtype == float
    assert list(loaded.index[:2]) == [3, 4]  # positions among the CSV's data rows


def test_load_runs_reads_names_as_text(tmp_path: Path) -> None:
    path = tmp_path / "runs.csv"
    path.write_text("environment,dataset,train_s\n1,NA,1.5\n1,NA,1.7\n2,NA,2.5\n2,NA,2.1\n")
    frame = load_runs(path)
    assert list(frame["environment"]) == ["1", "1", "2", "2"]
    assert list(frame["dataset"]) == ["NA"] * 4
    result = analyze(frame)
    assert (result.comparisons[0].a, result.comparisons[0].dataset) == ("1", "NA")


# --------------------------------------------------------------------------- the JSON contract


def test_json_shape_exactly_as_design() -> None:
    result = analyze(make_runs(), ["train_s"]).to_dict()
    json.dumps(result, allow_nan=False)  # strictly serialisable
    # two environments: no Kruskal-Wallis; the format and its version come first, then the
    # procedure (SPSS's by default)
    assert list(result) == ["format", "format_version", "procedure", "comparisons"]
    assert result["procedure"] == "spss"
    assert (result["format"], result["format_version"]) == ("cloudbench-analysis", 4)
    entries = result["comparisons"]
    assert [(e["metric"], e["dataset"], e["a"], e["b"]) for e in entries] == [
        ("train_s", "a", "pc", "colab"), ("train_s", "b", "pc", "colab")]
    for e in entries:
        assert set(e) == ENTRY_KEYS | EXTRA_KEYS | VERDICT_KEYS
        assert set(e["descriptives"]) == set(e["shapiro"]) == set(e["ranks"]) == {"pc", "colab"}
        assert set(e["descriptives"]["pc"]) == DESCRIPTIVE_KEYS
        assert set(e["shapiro"]["pc"]) == {"W", "p"}
        assert set(e["ranks"]["pc"]) == {"n", "mean_rank", "sum_ranks"}
        assert set(e["mann_whitney"]) == MW_KEYS
        # DESIGN.md's keys plus the extras of compare.py's docstring, and no other
        assert set(e["hodges_lehmann"]) == {"estimate", "ci_low", "ci_high", "method"}
        assert set(e["levene"]) == {"F", "p"}
        interval = {"mean_difference", "ci_low", "ci_high"}
        assert set(e["student_t"]) == {"t", "df", "p", "cohen_d"} | interval
        assert set(e["welch_t"]) == {"t", "df", "p"} | interval
        assert e["test_used"] in ("mann_whitney", "student_t", "welch_t")
        assert e["p"] == (e[e["test_used"]]["p"] if e["test_used"] != "mann_whitney" else
                          e["mann_whitney"]["p_exact"] or e["mann_whitney"]["p_asymptotic"])
        assert set(e["median_ratio"]) == {"estimate", "ci_low", "ci_high"}
        assert e["n_a"] == e["n_b"] == 12
        assert e["mann_whitney"]["Z"] <= 0
        assert set(e["outliers"]["pc"]) == {"modified_z", "tukey", "run_ids"}
        assert e["p_method"] in ("exact", "asymptotic", "t")
    no_diff, diff = entries
    assert not no_diff["significant"] and diff["significant"]
    assert diff["median_ratio"]["ci_low"] > 1  # pc is slower: a/b > 1


def test_test_choice_follows_shapiro_and_levene() -> None:
    from scipy.stats import norm

    rng = np.random.default_rng(3)
    ideal = norm.ppf((np.arange(1, 31) - 0.5) / 30)  # normal scores: Shapiro-Wilk accepts
    normal = pd.DataFrame({"environment": ["x"] * 30 + ["y"] * 30, "dataset": "d",
                           "m": np.r_[10 + rng.permutation(ideal), 10.2 + ideal]})
    entry = analyze(normal).comparisons[0]
    assert entry.test_used == "student_t" and entry.test is entry.student_t
    assert (entry.p, entry.p_method) == (entry.student_t.p, "t")
    unequal = normal.assign(m=np.r_[10 + 0.2 * ideal, 10 + 5 * ideal])
    entry = analyze(unequal).comparisons[0]
    assert entry.levene.p < 0.05 and entry.test_used == "welch_t"
    assert entry.test is entry.welch_t and entry.p == entry.welch_t.p
    skewed = normal.assign(m=np.r_[rng.exponential(1, 30), rng.exponential(1, 30)])
    entry = analyze(skewed).comparisons[0]
    assert entry.test_used == "mann_whitney" and entry.p_method == "asymptotic"
    assert entry.p == entry.mann_whitney.p_asymptotic


def test_decide_is_analyze_s_choice() -> None:
    frame = make_runs(datasets=("a", "b", "c"), n=10)
    for entry in analyze(frame, ["train_s", "test_accuracy"], alternative="less").comparisons:
        here = frame[frame["dataset"] == entry.dataset]
        a, b = (here.loc[here["environment"] == e, entry.metric] for e in ("pc", "colab"))
        assert decide(a, b, "less") == (entry.test_used, entry.p)
    assert decide([1.0], [], "two-sided") == ("mann_whitney", None)


def test_holm_across_datasets_of_a_metric_and_pair() -> None:
    result = analyze(make_runs(datasets=("a", "b", "c", "d")), ["train_s", "test_accuracy"])
    for metric in ("train_s", "test_accuracy"):
        family = result.of_metric(metric)
        assert len(family) == 4
        assert [e.p_holm for e in family] == S.holm([e.p for e in family])
        for e in family:
            assert e.p_holm >= e.p
            assert e.significant == (e.p_holm < 0.05)


def test_holm_matches_statsmodels() -> None:
    from statsmodels.stats.multitest import multipletests

    # few calls: multipletests runs gc.collect() each time (why stats.holm exists)
    for p in ([0.04], [0.3, 0.01, 0.01, 0.2, 0.04], [0.5, 0.6, 0.002, 0.049, 0.051, 1e-9]):
        assert np.allclose(S.holm(p), multipletests(p, method="holm")[1], atol=1e-15)
    assert S.holm([0.01, None, 0.04]) == [0.02, None, 0.04]


def test_more_than_two_environments_pairs_and_kruskal() -> None:
    result = analyze(make_runs(envs=("pc", "colab", "lab")), ["train_s"])
    pairs = [(e.a, e.b) for e in result.comparisons if e.dataset == "a"]
    assert pairs == [("pc", "colab"), ("pc", "lab"), ("colab", "lab")]
    assert len(result.comparisons) == 2 * 3
    kw = result.kruskal_wallis
    assert [(k.metric, k.dataset, k.df) for k in kw] == [("train_s", "a", 2),
                                                         ("train_s", "b", 2)]
    assert kw[0].environments == ("pc", "colab", "lab")
    assert kw[0].p > 0.01 > kw[1].p
    data = result.to_dict()
    json.dumps(data, allow_nan=False)
    assert list(data) == ["format", "format_version", "procedure", "comparisons",
                          "kruskal_wallis"]
    assert list(data["kruskal_wallis"][0]) == ["metric", "dataset", "environments", "H", "df",
                                               "p"]


def test_alternative_is_passed_to_every_test() -> None:
    frame = make_runs()
    two = analyze(frame, ["train_s"]).comparisons[1]
    less = analyze(frame, ["train_s"], alternative="less").comparisons[1]
    greater = analyze(frame, ["train_s"], alternative="greater").comparisons[1]
    assert less.alternative == "less"
    # pc is slower (a > b): "greater" is the supported direction
    assert greater.p < two.p < less.p
    assert greater.mann_whitney.Z == two.mann_whitney.Z  # Z stays SPSS's
    with pytest.raises(ValueError):
        analyze(frame, alternative="bigger")


def test_tiny_and_empty_groups_give_nulls_and_warnings() -> None:
    frame = pd.DataFrame({
        "environment": ["pc", "pc", "colab", "colab", "colab", "pc", "colab", "lab"],
        "dataset": ["d", "d", "d", "d", "d", "e", "e", "d"],
        "train_s": [1.0, 1.2, 2.0, 2.2, 2.1, 3.0, np.nan, 5.0],
        "gpu_mb": np.nan,  # all-NaN: skipped when metrics are not named
    })
    result = analyze(frame)
    json.dumps(result.to_dict(), allow_nan=False)
    assert {e.metric for e in result.comparisons} == {"train_s"}
    by_key = {(e.dataset, e.a, e.b): e for e in result.comparisons}
    two = by_key[("d", "pc", "colab")]  # n = 2 vs 3
    assert two.shapiro["pc"] == R.ShapiroWilk(W=None, p=None)
    assert two.to_dict()["shapiro"]["pc"] == {"W": None, "p": None}
    assert two.test_used == "mann_whitney" and two.p is not None
    assert two.student_t.t is not None  # n >= 2 in both groups
    single = by_key[("e", "pc", "colab")]  # 1 vs 0 (the colab value is NaN)
    assert single.n_b == 0 and single.p is None and single.p_holm is None
    assert single.p_method is None and not single.significant
    assert single.descriptives["colab"] == R.Descriptives(n=0)
    assert any("no test could be computed" in w for w in single.warnings)
    assert any("without a value" in w for w in single.warnings)
    lab = by_key[("d", "pc", "lab")]  # lab has one run
    assert lab.descriptives["lab"].sd is None and lab.welch_t.t is None
    assert any("only 1 usable run" in w for w in lab.warnings)
    assert R.Analysis.from_dict(json.loads(json.dumps(result.to_dict()))) == result
    # asking for the all-NaN metric does not crash either
    json.dumps(analyze(frame, ["gpu_mb"]).to_dict(), allow_nan=False)


def test_unknown_metric() -> None:
    with pytest.raises(AnalysisError, match="unknown metric 'speed'.*train_s"):
        analyze(make_runs(), ["speed"])


def test_outlier_flags_are_reported_never_removed() -> None:
    frame = make_runs(datasets=("a",))
    spread = 20 + np.linspace(-0.5, 0.5, 12)  # evenly spread: nothing to flag
    for env in ("pc", "colab"):
        frame.loc[frame["environment"] == env, "train_s"] = np.roll(spread, 3)
    slow = frame.index[(frame["environment"] == "pc")][5]
    frame.loc[slow, "train_s"] = 60.0
    entry = analyze(frame, ["train_s"]).comparisons[0]
    flags = entry.outliers["pc"]
    assert flags.modified_z == (5,) and flags.tukey == (5,) and flags.flagged() == (5,)
    assert flags.run_ids == R.OutlierRunIds(modified_z=("pc+a+6",), tukey=("pc+a+6",))
    assert entry.to_dict()["outliers"] == {
        "pc": {"modified_z": [5], "tukey": [5],
               "run_ids": {"modified_z": ["pc+a+6"], "tukey": ["pc+a+6"]}},
        "colab": {"modified_z": [], "tukey": [], "run_ids": {"modified_z": [], "tukey": []}}}
    assert entry.n_a == 12 and entry.descriptives["pc"].max == 60.0
    # runs without ids: no run_ids key at all
    bare = analyze(frame.drop(columns="run_id"), ["train_s"]).comparisons[0]
    assert bare.outliers["pc"] == R.Outliers(modified_z=(5,), tukey=(5,))
    assert "run_ids" not in bare.to_dict()["outliers"]["pc"]


def test_outlier_rules() -> None:
    x = [10.0, 10.2, 9.9, 10.1, 10.0, 25.0, np.nan]
    assert S.modified_z_outliers(x) == [5] and S.tukey_outliers(x) == [5]
    assert S.modified_z_outliers([5, 5, 5, 5, 9]) == [4]  # MAD = 0: mean absolute deviation
    assert S.outlier_flags([1.0, 1.0]) == R.Outliers(modified_z=(), tukey=())
    both = S.outlier_flags([10.0, 10.2, 9.9, 10.1, 10.0, 25.0, 10.05, 10.1, 14.0])
    assert both.flagged() == tuple(sorted(set(both.modified_z) | set(both.tukey)))


def test_measurement_warnings() -> None:
    assert S.measurement_warnings([10, 10.1, 9.9, 10.05]) == []
    unstable = S.measurement_warnings([10, 14, 7, 12, 9])
    assert any("standard deviation is" in w for w in unstable)
    warm = S.measurement_warnings([15.0, 10.0, 10.1, 9.9, 10.05])
    assert any("first run" in w and "warm-up" in w for w in warm)
    assert not any("first run" in w for w in
                   S.measurement_warnings([15.0, 10.0, 10.1, 9.9, 10.05], check_warmup=False))
    frame = make_runs(datasets=("a",))
    first = frame.index[(frame["environment"] == "pc") & (frame["repetition"] == 1)][0]
    frame.loc[first, "train_s"] = 35.0
    entry = analyze(frame.iloc[::-1], ["train_s"]).comparisons[0]  # order by repetition
    assert any("pc" in w and "first run" in w for w in entry.warnings)


# --------------------------------------------------------------------------- statistics details


def test_mann_whitney_conventions_are_symmetric() -> None:
    a, b = [1.1, 2.5, 3.2, 4.8, 5.0], [2.2, 3.9, 6.1, 7.7, 8.0]
    ab, ba = S.mann_whitney(a, b), S.mann_whitney(b, a)
    assert ab.U == ba.U and ab.W == ba.W == 21.0 and ab.Z == ba.Z < 0
    assert ab.rank_biserial == -ba.rank_biserial < 0  # a tends to be smaller
    assert ab.p_exact == ba.p_exact


def test_degenerate_inputs_never_crash() -> None:
    for a, b in (([], [1.0]), ([1.0], [2.0]), ([3.0, 3.0, 3.0], [3.0, 3.0]),
                 ([1.0, 1.0, 1.0], [2.0, 2.0, 2.0]), ([np.nan, np.nan], [1.0, 2.0, 3.0])):
        out = {"mw": S.mann_whitney(a, b), "hl": S.hodges_lehmann(a, b), "lev": S.levene(a, b),
               "t": S.student_t(a, b), "w": S.welch_t(a, b), "sw": S.shapiro_wilk(a),
               "ratio": S.median_ratio(a, b), "desc": S.descriptives(a),
               "kw": S.kruskal_wallis([a, b, [1.0]])}
        json.dumps({k: v.to_dict() for k, v in out.items()}, allow_nan=False)
    assert S.shapiro_wilk([2.0, 2.0, 2.0, 2.0]) == R.ShapiroWilk(W=None, p=None)
    constant = S.student_t([1.0, 1.0, 1.0], [2.0, 2.0, 2.0])  # R: "essentially constant"
    assert constant == R.StudentT() and constant.t is None
    assert S.welch_t([1.0, 1.0, 1.0], [2.0, 2.0, 2.0]) == R.WelchT()


def test_descriptives_quartiles_are_spss_weighted_average() -> None:
    d = S.descriptives([1, 2, 3, 4, 5, 6, 7, 8])  # SPSS HAVERAGE: positions 2.25 and 6.75
    assert (d.q1, d.median, d.q3) == (2.25, 4.5, 6.75)
    assert d.cv == pytest.approx(d.sd / d.mean)


@pytest.mark.parametrize("n", [15, 16])
def test_bootstrap_medians_match_naive_resampling(n: int) -> None:
    """The order-statistic shortcut draws from the percentile bootstrap's distribution."""
    from scipy.stats import ks_2samp

    x = np.random.default_rng(1).lognormal(3, 0.2, n)
    fast = S.bootstrap_medians(x, 20_000, np.random.default_rng(2))
    resamples = np.random.default_rng(3).choice(x, size=(20_000, n))
    naive = np.median(resamples, axis=1)
    # the medians take values among x (or midpoints): compare whole distributions, since
    # a percentile can jump to the next order statistic on sampling noise alone
    ks = ks_2samp(fast, naive)
    assert ks.statistic < 0.015 and ks.pvalue > 0.001


def test_median_ratio_is_seeded() -> None:
    a, b = [10.0, 11, 12, 13, 14], [5.0, 5.5, 6, 6.5, 7]
    first, again = S.median_ratio(a, b, seed=4), S.median_ratio(a, b, seed=4)
    assert first == again and first.estimate == 2.0
    assert first.ci_low <= 2.0 <= first.ci_high


# --------------------------------------------------------------------------- power and plan


def test_parse_effect() -> None:
    assert P.parse_effect("5%") == pytest.approx(0.05)
    assert P.parse_effect("0.05") == 0.05 and P.parse_effect(" 12.5 %") == 0.125
    for bad in ("5", "abc", "-1%", "0"):
        with pytest.raises(ValueError, match="effect"):
            P.parse_effect(bad)


def test_power_on_a_normal_pilot() -> None:
    """sd 1 around 20: a 5 % effect is d = 1, for which the textbook n is 17 per group."""
    rng = np.random.default_rng(0)
    z = rng.standard_normal(400)
    a, b = 20 + (z[:200] - z[:200].mean()) / z[:200].std(ddof=1), 20 + z[200:] / z[200:].std()
    n_t = P.t_test_repetitions(a, b, 0.05)
    assert n_t in (17, 18)
    n_mw = P.mann_whitney_repetitions(a, b, 0.05, n_sim=400, seed=1)
    assert n_mw is not None and 0.85 * n_t <= n_mw <= 1.35 * n_t  # ARE 0.955, plus noise
    assert P.mann_whitney_repetitions(a, b, 0.05, alternative="less") < n_mw
    assert P.t_test_repetitions(a, b, 0.05, alternative="greater") < n_t
    assert P.mann_whitney_repetitions(a, b, 0.0001, n_max=64) is None


def test_ratio_halfwidth_shrinks_with_more_runs() -> None:
    rng = np.random.default_rng(5)
    small = P.ratio_halfwidth(rng.lognormal(3, 0.05, 8), rng.lognormal(3, 0.05, 8))
    large = P.ratio_halfwidth(rng.lognormal(3, 0.05, 200), rng.lognormal(3, 0.05, 200))
    assert 0 < large < small < 0.2
    assert P.ratio_halfwidth([], [1.0, 2.0]) is None


def test_plan_repetitions_on_a_synthetic_pilot() -> None:
    plan = P.plan_repetitions(make_runs(n=10), "train_s", "pc", "colab", 0.05)
    assert [r["dataset"] for r in plan["datasets"]] == ["a", "b"]
    assert plan["n_t_test"] == max(r["n_t_test"] for r in plan["datasets"])
    assert all(2 <= r["n_mann_whitney"] <= 100 for r in plan["datasets"])
    json.dumps(plan, allow_nan=False)
    with pytest.raises(AnalysisError, match="no usable train_s runs of 'lab'"):
        P.plan_repetitions(make_runs(n=4), "train_s", "pc", "lab", 0.05)


# --------------------------------------------------------------------------- commands


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="study")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_alternatives_are_the_analysis_s() -> None:
    from cloudbench.cli import analyze as cli

    assert cli.ALTERNATIVES == S.ALTERNATIVES


def test_cli_analyze_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = write(make_runs(), tmp_path / "runs.csv")
    out = tmp_path / "out" / "analysis.json"
    assert run_cli(["analyze", str(runs), "--json", str(out), "--metric", "train_s",
                    "--alternative", "greater", "--alpha", "0.01"]) == 0
    data = json.loads(out.read_text())
    # no start times, no time section: written as version 3, which older toolkits read
    assert (data["format"], data["format_version"]) == (R.FORMAT,
                                                        R.FORMAT_VERSION_WITHOUT_TIME)
    assert {e["metric"] for e in data["comparisons"]} == {"train_s"}
    assert data["comparisons"][0]["alpha"] == 0.01
    assert data["comparisons"][0]["alternative"] == "greater"
    # what the command wrote is what analyze() returns, read back as typed results
    expected = analyze(load_runs(runs), ["train_s"], alternative="greater", alpha=0.01)
    assert R.Analysis.from_dict(data) == expected
    printed = capsys.readouterr().out
    assert "train_s: a = pc, b = colab" in printed and "Holm" in printed


def test_cli_analyze_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("environment,train_s\npc,1.0\n")
    assert run_cli(["analyze", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.csv" in err and "'dataset'" in err
    assert run_cli(["analyze", str(tmp_path / "missing.csv")]) == 2
    assert "missing.csv" in capsys.readouterr().err
    runs = write(make_runs(), tmp_path / "runs.csv")
    assert run_cli(["analyze", str(runs), "--metric", "nope"]) == 2
    assert "unknown metric 'nope'" in capsys.readouterr().err


def test_cli_plan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "pilot.toml"
    spec.write_text('[study]\nname = "pilot"\nrepetitions = 5\nseed = 7\n'
                    '[protocol]\nnotebook = "protocols/cnn_train.ipynb"\n'
                    '[[datasets]]\nname = "a"\nsource = "shapes"\n'
                    '[[datasets]]\nname = "b"\nsource = "shapes"\n'
                    '[[environments]]\nname = "pc"\nrunner = "local"\n'
                    '[[environments]]\nname = "colab"\nrunner = "local"\n'
                    '[analysis]\nalpha = 0.05\n')
    pilot = write(make_runs(n=8), tmp_path / "pilot.csv")
    out = tmp_path / "plan.json"
    assert run_cli(["plan", str(spec), "--pilot", str(pilot), "--effect", "5%",
                    "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "repetitions needed" in printed and "Mann-Whitney" in printed
    plans = json.loads(out.read_text())["plans"]
    assert [(p["a"], p["b"], p["effect"]) for p in plans] == [("pc", "colab", 0.05)]
    assert run_cli(["plan", str(spec), "--pilot", str(pilot), "--effect", "5"]) == 2
    assert "effect" in capsys.readouterr().err
    assert run_cli(["plan", str(tmp_path / "none.toml"), "--pilot", str(pilot),
                    "--effect", "5%"]) == 2
    assert "none.toml" in capsys.readouterr().err


def test_summary_text_reads_well() -> None:
    text = summary_text(analyze(make_runs(envs=("pc", "colab", "lab")), ["train_s"]))
    assert "train_s: a = pc, b = colab" in text and "Kruskal-Wallis" in text
    assert "a > b" in text and "n.s." in text


def test_environment_order_decides_a_and_b_for_a_one_sided_h1() -> None:
    """The CSV lists runs as they ran (random order); H1 is stated in the study's order."""
    rows = [{"environment": env, "dataset": "d", "train_s": t}
            for env, times in (("slow", [5.0, 5.2, 5.1, 5.3, 5.4]),
                               ("fast", [3.0, 3.1, 3.2, 3.3, 3.4])) for t in times]
    frame = pd.DataFrame(rows)
    as_listed = analyze(frame, ["train_s"], alternative="less").comparisons[0]
    assert (as_listed.a, as_listed.b) == ("slow", "fast") and as_listed.p > 0.5
    ordered = analyze(frame, ["train_s"], alternative="less",
                      environments=["fast", "slow", "absent"]).comparisons[0]
    assert (ordered.a, ordered.b) == ("fast", "slow") and ordered.p < 0.05


# --------------------------------------------------------------------------- typed results


def test_stats_return_named_frozen_results() -> None:
    a, b = [1.1, 2.5, 3.2, 4.8, 5.0], [2.2, 3.9, 6.1, 7.7, 8.0]
    named = [(S.descriptives(a), R.Descriptives), (S.shapiro_wilk(a), R.ShapiroWilk),
             (S.mann_whitney(a, b), R.MannWhitney), (S.hodges_lehmann(a, b), R.HodgesLehmann),
             (S.levene(a, b), R.Levene), (S.student_t(a, b), R.StudentT),
             (S.welch_t(a, b), R.WelchT), (S.median_ratio(a, b), R.MedianRatio),
             (S.outlier_flags(a), R.Outliers), (S.kruskal_wallis([a, b]), R.KruskalWallis)]
    for result, cls in named:
        assert type(result) is cls
        first = dataclasses.fields(result)[0].name
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(result, first, None)
    assert [type(r) for r in S.rank_table(a, b)] == [R.Ranks, R.Ranks]
    # field names are the JSON's keys, in the JSON's order
    assert list(S.mann_whitney(a, b).to_dict()) == ["U", "W", "Z", "p_asymptotic", "p_exact",
                                                    "r", "rank_biserial"]
    assert list(S.student_t(a, b).to_dict()) == ["t", "df", "p", "cohen_d",
                                                 "mean_difference", "ci_low", "ci_high"]
    assert list(S.welch_t(a, b).to_dict()) == ["t", "df", "p", "mean_difference", "ci_low",
                                               "ci_high"]
    assert list(S.hodges_lehmann(a, b).to_dict()) == ["estimate", "ci_low", "ci_high",
                                                      "method"]


def test_analysis_round_trips_through_its_json() -> None:
    for frame, metrics in ((make_runs(envs=("pc", "colab", "lab")), None),
                           (make_runs(datasets=("a",), n=3), ["train_s"])):
        result = analyze(frame, metrics)
        text = json.dumps(result.to_dict(), allow_nan=False)
        again = R.Analysis.from_dict(json.loads(text))
        assert again == result
        assert json.dumps(again.to_dict(), allow_nan=False) == text
    assert R.Analysis().to_dict() == {"format": "cloudbench-analysis", "format_version": 4,
                                      "procedure": "spss", "comparisons": []}


def test_from_dict_refuses_other_formats_and_versions() -> None:
    good = analyze(make_runs(datasets=("a",)), ["train_s"]).to_dict()
    with pytest.raises(R.AnalysisFormatError, match="no 'format' key.*study analyze"):
        R.Analysis.from_dict({"comparisons": good["comparisons"]})  # a version-1 JSON
    with pytest.raises(R.AnalysisFormatError, match="format 'other' is not 'cloudbench-an"):
        R.Analysis.from_dict({**good, "format": "other"})
    with pytest.raises(R.AnalysisFormatError, match="format_version 1 is not supported.*"
                                                    "reads version 5.*study analyze"):
        R.Analysis.from_dict({**good, "format_version": 1})
    with pytest.raises(R.AnalysisFormatError, match="format_version 6 is not supported.*newer"):
        R.Analysis.from_dict({**good, "format_version": 6})
    with pytest.raises(R.AnalysisFormatError, match="'time' needs format_version 5"):
        R.Analysis.from_dict({**good, "time": []})
    # version 2 (before the procedure was recorded) is still read, as SPSS's procedure
    old = {k: v for k, v in good.items() if k != "procedure"} | {"format_version": 2}
    assert R.Analysis.from_dict(old).procedure == "spss"
    with pytest.raises(R.AnalysisFormatError, match="format_version None"):
        R.Analysis.from_dict({k: v for k, v in good.items() if k != "format_version"})
    with pytest.raises(R.AnalysisFormatError, match="expected an object"):
        R.Analysis.from_dict([good])
    broken = json.loads(json.dumps(good))
    del broken["comparisons"][0]["mann_whitney"]["Z"]
    with pytest.raises(R.AnalysisFormatError,
                       match=r"comparisons\[0\]\.mann_whitney: missing key 'Z'"):
        R.Analysis.from_dict(broken)
    broken = json.loads(json.dumps(good))
    broken["comparisons"][0]["descriptives"]["pc"]["mean"] = "fast"
    with pytest.raises(R.AnalysisFormatError,
                       match=r"descriptives\.pc\.mean: expected a number or null"):
        R.Analysis.from_dict(broken)
    broken = json.loads(json.dumps(good))
    broken["comparisons"][0]["test_used"] = "anova"
    with pytest.raises(R.AnalysisFormatError, match="test_used: expected one of"):
        R.Analysis.from_dict(broken)
    broken = json.loads(json.dumps(good))
    broken["comparisons"][0]["extra"] = 1
    with pytest.raises(R.AnalysisFormatError, match="unknown key 'extra'"):
        R.Analysis.from_dict(broken)


def test_stats_floor_env_tests_the_floors_pyproject_declares() -> None:
    """tox -e stats-floor pins each scientific dependency at pyproject.toml's floor (the
    same minor version), so raising a floor in one place and not the other fails here."""
    import configparser
    import re
    import tomllib

    root = Path(__file__).resolve().parent.parent
    floors = {}
    for dep in tomllib.loads((root / "pyproject.toml").read_text())["project"]["dependencies"]:
        found = re.fullmatch(r"(scipy|numpy|pandas|statsmodels)>=([\d.]+)", dep.strip())
        if found:
            floors[found[1]] = found[2]
    tox = configparser.ConfigParser(interpolation=None)
    tox.read(root / "tox.ini")
    assert "stats-floor" in tox["tox"]["envlist"]
    pins = dict(re.findall(r"^\s*(\w+)==([\d.]+)\s*$", tox["testenv:stats-floor"]["deps"], re.M))
    assert set(floors) == {"scipy", "numpy", "pandas", "statsmodels"} == set(pins)
    for name, floor in floors.items():
        assert (pins[name] + ".").startswith(floor + "."), (name, floor, pins[name])


def test_cli_plan_says_what_the_repetitions_will_cost(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "pilot.toml"
    spec.write_text('[study]\nname = "pilot"\nrepetitions = 5\nseed = 7\n'
                    '[protocol]\nnotebook = "protocols/cnn_train.ipynb"\n'
                    '[[datasets]]\nname = "a"\nsource = "shapes"\n'
                    '[[datasets]]\nname = "b"\nsource = "shapes"\n'
                    '[[environments]]\nname = "pc"\nprice = "own-machine"\n'
                    '[[environments]]\nname = "colab"\nprice_per_hour = 3.6\n'
                    'price_source = "invoice, 2026-11-01"\n')
    frame = make_runs(n=8)
    pilot = write(frame.assign(billed_s=10.0), tmp_path / "pilot.csv")
    assert run_cli(["plan", str(spec), "--pilot", str(pilot), "--effect", "5%"]) == 0
    printed = " ".join(capsys.readouterr().out.split())
    needed = int(re.search(r"repetitions needed: (\d+)", printed).group(1))
    # 2 datasets x needed runs, 10 s each at 3.6 per hour = 0.01 per run
    assert f"colab: {2 * needed} runs x 0.0100 USD = {2 * needed * 0.01:.2f} USD" in printed
    assert "pc: " in printed and "invoice, 2026-11-01" in printed

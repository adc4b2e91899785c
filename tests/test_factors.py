"""The analysis along a sweep parameter (analysis.factors) and its paper pieces (paper.sweep).

A synthetic sweep (3 environments x batch_size 32/64/128 x model fnn/lstm, 6 runs a cell)
with a known speed-up: jax's time grows with the batch size relative to tensorflow's, a_b
(a name that needs escaping) is a constant 0.8 of tensorflow's, and jax runs out of memory
at batch_size=128 with the lstm. The frame goes through a CSV and back as text, as
runs.csv does. The interaction's F and p are checked against R's sequential anova of
``lm(log(y) ~ env * level)`` (the env:level row), on balanced and unbalanced data.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cloudbench.analysis.compare import AnalysisError, analyze
from cloudbench.analysis.factors import (
    NO_RESIDUAL,
    TOO_FEW_LEVELS,
    FactorAnalysis,
    factor_analysis,
    interaction_test,
    ordered_levels,
)
from cloudbench.paper.latex import render_table
from cloudbench.paper.sweep import (
    factor_table,
    interaction_table,
    memory_ratio_figure,
    speedup_figure,
)
from cloudbench.study.record import configuration_id

ENVS = ("tensorflow", "jax", "a_b")
BATCHES = (32, 64, 128)
MODELS = ("fnn", "lstm")
RUNS = 6
R_TOL = 1e-8


def _factor(env: str, batch: int, growing: bool) -> float:
    if env == "jax":
        return 1.2 * batch / 32 if growing else 1.5
    return 0.8 if env == "a_b" else 1.0


def _frame(growing: bool = True, oom: bool = True, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for batch in BATCHES:
        for model in MODELS:
            for env in ENVS:
                for rep in range(RUNS):
                    base = (3.0 if model == "lstm" else 1.0) * 200 / batch
                    row = {"run_id": f"{env}-{batch}-{model}-{rep}", "environment": env,
                           "dataset": "shapes", "repetition": rep, "status": "ok",
                           "warmup": "false",
                           "train_s": base * _factor(env, batch, growing)
                           * math.exp(rng.normal(0, 0.05)),
                           "peak_rss_mb": 400 + 3 * batch * (1.5 if env == "jax" else 1.0)
                           + rng.normal(0, 2), "peak_gpu_mb": "",
                           "configuration": configuration_id({"batch_size": batch,
                                                              "model": model}),
                           "batch_size": batch, "model": model}
                    if oom and env == "jax" and batch == 128 and model == "lstm":
                        row.update(status="oom", train_s="", peak_rss_mb=4000.0 + rep)
                    rows.append(row)
    # A failed run (counted as failed, not in n: its cell is one run short) and an extra
    # warm-up run (left out entirely).
    rows[1].update(status="failed", train_s="")
    rows.append(dict(rows[0], run_id="warm", warmup="true", train_s=1e6))
    frame = pd.DataFrame(rows)
    # First-seen order 64, 128, 32: the levels' order must come from their values.
    return frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def _through_csv(frame: pd.DataFrame, tmp_path: Path) -> pd.DataFrame:
    path = tmp_path / "runs.csv"
    frame.to_csv(path, index=False)
    return pd.read_csv(path, dtype=str, keep_default_na=False)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    return _through_csv(_frame(), tmp_path_factory.mktemp("factors"))


@pytest.fixture(scope="module")
def fa(runs: pd.DataFrame) -> FactorAnalysis:
    return factor_analysis(runs, environments=["tensorflow", "jax"])


def _entry(fa: FactorAnalysis, parameter: str, fixed: str, a: str, b: str, level: str):
    found = [e for e in fa.of(parameter)
             if (e.fixed, e.a, e.b, e.level) == (fixed, a, b, level)]
    assert len(found) == 1
    return found[0]


def _ok_values(runs: pd.DataFrame, env: str, configuration: str, column: str) -> np.ndarray:
    sel = runs[(runs.environment == env) & (runs.configuration == configuration)
               & (runs.status == "ok") & (runs.warmup == "false")]
    values = pd.to_numeric(sel[column], errors="coerce")
    return values.dropna().to_numpy()


# --------------------------------------------------------------------------- the analysis


def test_parameters_levels_and_pairs(runs: pd.DataFrame, fa: FactorAnalysis) -> None:
    assert fa.parameters == ("batch_size", "model")
    assert runs.batch_size[0] != "32"  # the shuffle: 32 is not first seen
    # Numbers by value (as text "128" < "32"); names in the order first seen.
    assert fa.level_order == {"batch_size": ("32", "64", "128"),
                              "model": tuple(runs.model.drop_duplicates())}
    assert fa.environments == ENVS
    assert fa.pairs() == [("tensorflow", "jax"), ("tensorflow", "a_b"), ("jax", "a_b")]
    assert fa.memory_metric == "peak_rss_mb"  # peak_gpu_mb is empty on this machine
    assert sorted(fa.panels("batch_size")) == [("shapes", "model=fnn"), ("shapes", "model=lstm")]
    levels = [e.level for e in fa.of("batch_size") if e.fixed == "model=fnn"
              and (e.a, e.b) == ("tensorflow", "jax")]
    assert levels == ["32", "64", "128"]
    assert ordered_levels(["b", "a", "b"]) == ["b", "a"]
    assert ordered_levels(["0.01", "1e-3", "0.1"]) == ["1e-3", "0.01", "0.1"]


def test_ratio_is_the_ratio_of_medians_with_its_interval(runs: pd.DataFrame,
                                                         fa: FactorAnalysis) -> None:
    checked = 0
    for e in fa.levels:
        if e.oom:
            continue
        config = configuration_id({e.parameter: e.level, **dict(
            [e.fixed.split("=")])})
        for ratio, column in ((e.time_ratio, "train_s"), (e.memory_ratio, "peak_rss_mb")):
            a, b = (_ok_values(runs, env, config, column) for env in (e.a, e.b))
            assert ratio.estimate == pytest.approx(np.median(a) / np.median(b), rel=1e-12)
            assert ratio.ci_low < ratio.estimate < ratio.ci_high
        checked += 1
    assert checked == len(fa.levels) - 4  # 2 pairs with jax x (batch 128 | model lstm)
    # The direction: a/b, above 1 when a is slower. jax is 1.2 x 4 slower at 128.
    e = _entry(fa, "batch_size", "model=fnn", "tensorflow", "jax", "128")
    assert e.time_ratio.estimate == pytest.approx(1 / 4.8, rel=0.1)
    assert e.median_a < e.median_b
    # The failed run is counted as failed, not in n; the warm-up run not at all.
    e = _entry(fa, "batch_size", "model=fnn", "tensorflow", "a_b", "32")
    assert (e.n_a, e.failed_a, e.n_b, e.failed_b) == (RUNS - 1, 1, RUNS, 0)
    assert all(x.n_a + x.n_b <= 2 * RUNS for x in fa.levels)


def test_ratio_matches_the_per_configuration_comparison(runs: pd.DataFrame,
                                                        fa: FactorAnalysis) -> None:
    """Same bootstrap streams as analysis.compare: the figure's interval is the table's."""
    ok = runs[runs.status == "ok"].assign(train_s=lambda d: d.train_s.astype(float))
    analysis = analyze(ok, metrics=["train_s"], environments=["tensorflow", "jax"])
    c = next(c for c in analysis.comparisons if c.configuration == "batch_size=64,model=lstm"
             and (c.a, c.b) == ("tensorflow", "a_b"))
    assert _entry(fa, "batch_size", "model=lstm", "tensorflow", "a_b", "64").time_ratio \
        == c.median_ratio


def test_oom_is_a_result_not_a_gap(fa: FactorAnalysis) -> None:
    e = _entry(fa, "batch_size", "model=lstm", "tensorflow", "jax", "128")
    assert e.oom == ("jax",) and e.n_b == 0 and e.oom_b == RUNS and e.oom_a == 0
    assert e.time_ratio.estimate is None and e.memory_ratio.estimate is None
    assert e.oom_memory_b == pytest.approx(4002.5) and e.memory_a is not None
    e = _entry(fa, "model", "batch_size=128", "jax", "a_b", "lstm")
    assert e.oom == ("jax",) and e.n_a == 0
    t = next(t for t in fa.interactions_of("batch_size")
             if (t.fixed, t.a, t.b) == ("model=lstm", "tensorflow", "jax"))
    assert t.levels == ("32", "64") and t.F is not None
    t = next(t for t in fa.interactions_of("model")
             if (t.fixed, t.a, t.b) == ("batch_size=128", "tensorflow", "jax"))
    assert t.F is None and t.reason == TOO_FEW_LEVELS and t.levels == ("fnn",)


def test_interaction_detects_a_growing_speedup_only(fa: FactorAnalysis, tmp_path: Path
                                                    ) -> None:
    by_pair = {(t.fixed, t.a, t.b): t for t in fa.interactions_of("batch_size")}
    for fixed in ("model=fnn", "model=lstm"):
        assert by_pair[fixed, "tensorflow", "jax"].p < 1e-10
        assert by_pair[fixed, "tensorflow", "jax"].significant
        assert by_pair[fixed, "tensorflow", "a_b"].p > 0.01  # a constant 0.8
    constant = factor_analysis(_through_csv(_frame(growing=False, oom=False), tmp_path))
    for t in constant.interactions_of("batch_size"):
        assert t.p > 0.01, t
        assert (t.df_num, t.df_den) == (2, t.n - 6)
    # The speed-up in the ratio itself: it grows with the batch size.
    ratios = [_entry(fa, "batch_size", "model=fnn", "tensorflow", "jax", lv).time_ratio
              for lv in ("32", "64", "128")]
    assert ratios[0].estimate > ratios[1].estimate > ratios[2].estimate


def test_no_residual_variation() -> None:
    same = [np.array([2.0, 2.0]), np.array([3.0, 3.0])]
    assert interaction_test(same, [np.array([1.0, 1.0]), np.array([1.0, 1.0])]) is None
    frame = pd.DataFrame({"environment": ["x", "y"] * 8, "dataset": "d", "train_s": 1.0,
                          "configuration": [f"depth={d}" for d in (1, 2) for _ in range(8)]})
    (t,) = factor_analysis(frame).interactions
    assert t.reason == NO_RESIDUAL and t.F is None and t.p is None


def test_edge_cases(runs: pd.DataFrame) -> None:
    empty = factor_analysis(runs.drop(columns="configuration"))
    assert empty.empty and empty.parameters == () and empty.to_dict()["levels"] == []
    one_level = runs[runs.configuration.str.contains("batch_size=32,model=fnn")]
    assert factor_analysis(one_level).empty
    single_env = factor_analysis(runs[runs.environment == "jax"])
    assert single_env.parameters == ("batch_size", "model") and single_env.empty
    # An ok run without a value is not counted; a text level still orders numerically.
    blank = runs.copy()
    first = blank.index[(blank.environment == "tensorflow") & (blank.status == "ok")
                        & (blank.warmup == "false")
                        & (blank.configuration == "batch_size=32,model=fnn")][0]
    blank.loc[first, "train_s"] = "nan"
    e = _entry(factor_analysis(blank, parameters=["batch_size"], environments=ENVS),
               "batch_size", "model=fnn", "tensorflow", "jax", "32")
    assert e.n_a == RUNS - 2  # one failed, one without a value
    with pytest.raises(AnalysisError, match="unknown sweep parameter 'depth'"):
        factor_analysis(runs, parameters=["depth"])
    with pytest.raises(AnalysisError, match="unknown metric"):
        factor_analysis(runs, metric="nope_s")


def test_memory_metric_prefers_device_memory(runs: pd.DataFrame) -> None:
    gpu = runs.assign(peak_gpu_mb=pd.to_numeric(runs.peak_rss_mb, errors="coerce") / 2)
    fa = factor_analysis(gpu, parameters=["model"])
    assert fa.memory_metric == "peak_gpu_mb" and fa.parameters == ("model",)
    assert factor_analysis(runs, memory_metric="peak_rss_mb").memory_metric == "peak_rss_mb"


def test_json_round_trip(fa: FactorAnalysis) -> None:
    data = json.loads(json.dumps(fa.to_dict(), allow_nan=False))
    assert FactorAnalysis.from_dict(data) == fa
    assert data["levels"][0]["time_ratio"].keys() == {"estimate", "ci_low", "ci_high"}


# --------------------------------------------------------------------------- R parity


def _r_vector(values) -> str:
    return "c(" + ", ".join(float(v).hex() for v in values) + ")"


def _r_strings(values) -> str:
    return "c(" + ", ".join(f'"{v}"' for v in values) + ")"


def _cases(fa: FactorAnalysis, runs: pd.DataFrame) -> dict[str, tuple[list, list, list]]:
    """(y, env, level) per case: balanced, unbalanced by construction, and from the
    analysis (failed and OOM runs leave its cells unbalanced)."""
    rng = np.random.default_rng(11)
    cases = {}
    for name, sizes in (("balanced", [[5, 5], [5, 5], [5, 5]]),
                        ("unbalanced", [[2, 7], [4, 3], [6, 2], [3, 5]])):
        y, env, level = [], [], []
        for i, (na, nb) in enumerate(sizes):
            for side, n, scale in (("a", na, 1.0), ("b", nb, 1.0 + 0.3 * i)):
                y += list(np.exp(rng.normal(np.log(10 * scale), 0.1, n)))
                env += [side] * n
                level += [f"L{i}"] * n
        cases[name] = (y, env, level)
    t = next(t for t in fa.interactions_of("batch_size")
             if (t.fixed, t.a, t.b) == ("model=fnn", "tensorflow", "jax"))
    y, env, level = [], [], []
    for lv in t.levels:
        config = configuration_id({"batch_size": lv, "model": "fnn"})
        for side in (t.a, t.b):
            values = _ok_values(runs, side, config, "train_s")
            y += list(values)
            env += [side] * len(values)
            level += [lv] * len(values)
    cases["analysis"] = (y, env, level)
    return cases


def _ours(y: list, env: list, level: list) -> tuple[float, int, int, float]:
    levels = list(dict.fromkeys(level))
    sides = list(dict.fromkeys(env))
    arr, e, lv = np.asarray(y), np.asarray(env), np.asarray(level)
    result = interaction_test([arr[(e == sides[0]) & (lv == x)] for x in levels],
                              [arr[(e == sides[1]) & (lv == x)] for x in levels])
    assert result is not None
    return result


def test_interaction_matches_r(fa: FactorAnalysis, runs: pd.DataFrame, tmp_path: Path
                               ) -> None:
    rscript = shutil.which("Rscript")
    if rscript is None:
        pytest.skip("Rscript not found: R's anova(lm()) is the reference for the interaction "
                    "test (python -m cloudbench.study.sysdeps r installs r-base-core as root)")
    cases = _cases(fa, runs)
    lines = []
    for name, (y, env, level) in cases.items():
        lines.append(
            f"y <- {_r_vector(y)}; env <- factor({_r_strings(env)}); "
            f"level <- factor({_r_strings(level)}); "
            "t <- anova(lm(log(y) ~ env * level)); "
            f'cat(sprintf("{name}|%.17g|%.17g|%.17g|%.17g\\n", t["env:level", "F value"], '
            't["env:level", "Df"], t["Residuals", "Df"], t["env:level", "Pr(>F)"]))')
    script = tmp_path / "interaction.R"
    script.write_text("\n".join(lines) + "\n")
    proc = subprocess.run([rscript, "--vanilla", str(script)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    theirs = {}
    for line in proc.stdout.splitlines():
        name, *values = line.split("|")
        theirs[name] = [float(v) for v in values]
    assert set(theirs) == set(cases)
    by_pair = {(t.fixed, t.a, t.b): t for t in fa.interactions_of("batch_size")}
    analysed = by_pair["model=fnn", "tensorflow", "jax"]
    assert analysed.n == len(cases["analysis"][0]) < 6 * RUNS  # the failed run: unbalanced
    for name, (y, env, level) in cases.items():
        f, df_num, df_den, p = _ours(y, env, level)
        r_f, r_df, r_den, r_p = theirs[name]
        assert (df_num, df_den) == (r_df, r_den), name
        assert f == pytest.approx(r_f, rel=R_TOL), name
        assert p == pytest.approx(r_p, rel=R_TOL, abs=1e-300), name
    assert analysed.F == pytest.approx(theirs["analysis"][0], rel=R_TOL)
    assert analysed.p == pytest.approx(theirs["analysis"][3], rel=R_TOL)


# --------------------------------------------------------------------------- the paper


def test_figures_are_written(fa: FactorAnalysis, tmp_path: Path) -> None:
    for maker in (speedup_figure, memory_ratio_figure):
        path = maker(fa, "batch_size", tmp_path / f"{maker.__name__}.png")
        assert path is not None and path.stat().st_size > 1000
    path = speedup_figure(fa, "model", tmp_path / "model_es.pdf", lang="es")
    assert path is not None and path.read_bytes().startswith(b"%PDF")
    assert speedup_figure(fa, "depth", tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()


def test_tables(fa: FactorAnalysis) -> None:
    """The model's tables as the LaTeX renderer sets them."""
    table = render_table(factor_table(fa, "batch_size"))
    assert "OOM (jax)" in table and "a\\_b" in table and "a_b" not in table
    assert "batch\\_size" in table and "model=lstm" in table
    assert not re.search(r"\bnan\b", table.lower())
    assert "\\begin{tabular}" in table and "failed or timed-out" in table
    spanish = render_table(factor_table(fa, "batch_size", "es"), "es")
    assert "Razón de tiempos" in spanish and "sin memoria (OOM)" in spanish
    assert re.search(r"\d,\d\d \[\d,\d\d; \d,\d\d\]", spanish)  # decimal commas
    assert render_table(factor_table(fa, "depth")) == ""
    tests = render_table(interaction_table(fa))
    assert "a\\_b" in tests and "(2, 2" in tests and "$^a$" in tests
    assert "fewer than 2 levels" in tests
    assert render_table(interaction_table(factor_analysis(pd.DataFrame(
        {"environment": ["x"], "dataset": ["d"], "train_s": [1.0]})))) == ""

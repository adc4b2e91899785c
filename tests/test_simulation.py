"""The simulation of the procedures' error rates (analysis.simulation, `study simulate`).

The full simulation is a command run once (docs/statistics.md gives it and its results,
shipped in analysis/simulated_rates.json); here a tiny version checks the machinery: every
vectorised test gives, sample by sample, the p of the toolkit's own function (themselves
checked against R in test_stats_parity.py), the procedure chooses as the analysis does,
the draws have the shapes they claim, runs are reproducible whatever the order or the
number of processes, and the shipped results and the docs' tables are the same numbers.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest

from cloudbench.analysis import simulation as M
from cloudbench.analysis import stats as S
from cloudbench.analysis.compare import decide
from cloudbench.cli.analyze import register

ROOT = Path(__file__).resolve().parent.parent
TOL = 1e-9


def samples(n_a: int, n_b: int, reps: int = 6, seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (M.draw("lognormal", 0.08, (reps, n_a), rng),
            M.draw("outliers", 0.2, (reps, n_b), rng) * 1.03)


@pytest.mark.parametrize(("n_a", "n_b"), [(5, 5), (8, 20), (24, 10), (30, 30)])
def test_vectorised_tests_are_the_toolkits(n_a: int, n_b: int) -> None:
    x, y = samples(n_a, n_b)
    p = M.p_values(x, y, np.random.default_rng(0), n_perm=99)
    for i, (a, b) in enumerate(zip(x, y, strict=True)):
        assert p["student_t"][i] == pytest.approx(S.student_t(a, b).p, rel=TOL)
        assert p["welch_t"][i] == pytest.approx(S.welch_t(a, b).p, rel=TOL)
        assert p["welch_log_t"][i] == pytest.approx(S.welch_log_t(a, b).p, rel=TOL)
        mw = S.mann_whitney(a, b)
        assert p["mann_whitney"][i] == pytest.approx(mw.p_exact if mw.p_exact is not None
                                                     else mw.p_asymptotic, rel=TOL)
        bm = S.brunner_munzel(a, b, n_perm=M.BM_RELABELLINGS)
        assert p["brunner_munzel"][i] == pytest.approx(bm.p, rel=TOL)
        if bm.exact:  # all relabellings: the same exact p
            assert p["brunner_munzel_perm"][i] == pytest.approx(bm.p_permutation, rel=TOL)
        else:  # two Monte Carlo draws of 200,000: within a few of their standard errors
            se = math.sqrt(max(bm.p_permutation, 1e-3) / M.BM_RELABELLINGS)
            assert abs(p["brunner_munzel_perm"][i] - bm.p_permutation) < 5 * se
        assert p["levene"][i] == pytest.approx(S.levene(a, b).p, rel=TOL)
        assert p["shapiro_a"][i] == pytest.approx(S.shapiro_wilk(a).p, rel=TOL)
        assert p["shapiro_b"][i] == pytest.approx(S.shapiro_wilk(b).p, rel=TOL)
    for alpha in M.ALPHAS:
        procedure = M.spss_p(p, alpha)
        for i, (a, b) in enumerate(zip(x, y, strict=True)):
            assert procedure[i] == pytest.approx(decide(a, b, alpha=alpha)[1], rel=TOL)


def test_median_permutation_is_the_exact_test_with_enough_relabellings() -> None:
    """With 3 vs 4 runs there are 35 splits: the Monte Carlo p converges to the exact one."""
    rng = np.random.default_rng(2)
    x, y = rng.lognormal(0, 0.1, (1, 3)), rng.lognormal(0.1, 0.1, (1, 4))
    pooled = np.r_[x[0], y[0]]
    observed = abs(math.log(np.median(x) / np.median(y)))
    stats = []
    for members in itertools.combinations(range(7), 3):
        rest = [i for i in range(7) if i not in members]
        stats.append(abs(math.log(np.median(pooled[list(members)])
                                  / np.median(pooled[rest]))))
    exact = np.mean(np.array(stats) >= observed - 1e-12)
    p = M.median_permutation_p(x, y, 20_000, np.random.default_rng(0), block=1)[0]
    assert p == pytest.approx(exact, abs=0.01)


def test_draws_have_the_shapes_they_claim() -> None:
    rng = np.random.default_rng(1)
    size = (200_000, 1)
    for shape in ("normal", "lognormal", "heavy"):
        v = M.draw(shape, 0.08, size, rng)
        assert np.median(v) == pytest.approx(1.0, abs=0.002) and v.min() > 0
    normal = M.draw("normal", 0.24, size, rng)
    assert normal.std() == pytest.approx(0.24, rel=0.01)
    heavy = np.log(M.draw("heavy", 0.08, size, rng))
    assert heavy.std() == pytest.approx(0.08, rel=0.05)
    slow = np.log(M.draw("outliers", 0.08, size, rng))
    assert np.mean(slow > 0.25) == pytest.approx(M.OUTLIER_SHARE, abs=0.005)
    with pytest.raises(ValueError, match="shape"):
        M.draw("uniform", 0.1, size, rng)


def test_runs_are_reproducible_whatever_the_order_and_the_processes() -> None:
    cells = M.scenarios(shapes=("lognormal",), sizes=((5, 5), (8, 20)), ratios=(9.0,),
                        effects=(0.0, 0.1))
    one = M.simulate(cells, replicates=60, n_perm=19, jobs=1)
    two = M.simulate(list(reversed(cells)), replicates=60, n_perm=19, jobs=2)
    by_key = {M.Scenario(c["shape"], c["n_a"], c["n_b"], c["variance_ratio"],
                         c["effect"]).key: c for c in two["scenarios"]}
    for cell in one["scenarios"]:
        key = M.Scenario(cell["shape"], cell["n_a"], cell["n_b"], cell["variance_ratio"],
                         cell["effect"]).key
        assert by_key[key] == cell
    assert set(one["scenarios"][0]["rejections"]) == set(M.METHODS)
    json.dumps(one, allow_nan=False)


def test_nearest_scenario() -> None:
    data = M.load()
    cells = M.nearest(data, 23, 25, 1.2)
    assert {(c["n_a"], c["n_b"], c["variance_ratio"]) for c in cells} == {(24, 24, 1.0)}
    assert {c["shape"] for c in cells} == set(M.SHAPES)
    # a ratio below 1 is the same scenario with the groups swapped
    swapped = M.nearest(data, 24, 10, 1 / 8)
    assert {(c["n_a"], c["n_b"], c["variance_ratio"]) for c in swapped} == {(10, 24, 9.0)}
    assert M.procedure_error([(1, 30, 2.0)], "spss") is None  # a group of one run


def test_shipped_results_cover_every_scenario_precisely_enough() -> None:
    """The issue's bar: every rate's standard error under 0.005; every listed scenario."""
    data = M.load()
    keys = {M.Scenario(c["shape"], c["n_a"], c["n_b"], c["variance_ratio"], c["effect"]).key
            for c in data["scenarios"]}
    assert keys == {s.key for s in M.scenarios()}
    for cell in data["scenarios"]:
        for method in M.METHODS:
            for alpha in M.ALPHAS:
                assert M.rate(cell, method, alpha)[1] < 0.005
    assert {p: m in data["settings"]["methods"] for p, m in M.PROCEDURE_METHOD.items()} == \
        {"spss": True, "robust": True}


def test_the_docs_hold_the_shipped_numbers() -> None:
    """docs/statistics.md shows the tables of analysis/simulated_rates.json, as rendered."""
    docs = (ROOT / "docs" / "statistics.md").read_text(encoding="utf-8")
    assert M.markdown_tables(M.load()) in docs
    for line in M.summary(M.load()):
        assert line in docs


def test_robust_procedure_keeps_alpha_better_than_spss() -> None:
    """What the choice of the robust test rests on, read from the shipped results."""
    data = M.load()
    spss, _ = M.worst_error(data, "spss")
    robust, _ = M.worst_error(data, M.PROCEDURE_METHOD["robust"])
    assert robust < spss
    for method in ("welch_t", "welch_log_t", "brunner_munzel", "median_permutation"):
        assert robust < M.worst_error(data, method)[0], method


def test_study_simulate_quick(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="study")
    register(parser.add_subparsers(dest="command", required=True))
    out, md = tmp_path / "sim.json", tmp_path / "sim.md"
    args = parser.parse_args(["simulate", "--quick", "--replicates", "40", "--permutations",
                              "19", "--json", str(out), "--markdown", str(md)])
    assert args.func(args) == 0
    data = M.load(out)
    assert data["settings"]["replicates"] == 40 and len(data["scenarios"]) == 48
    assert "Type-I error (%)" in md.read_text() and "Power (%)" in md.read_text()
    assert "SPSS procedure: type-I error" in capsys.readouterr().out

"""Parity of analysis.stats with R's stats package (Debian r-base-core), to 1e-6.

R runs once for all cases (a generated script, data passed bit for bit as hexadecimal
floats, results printed with sprintf("%.17g") since jsonlite may be missing). Without
Rscript the tests fail with a message saying what to install: R is the independent
reference the paper's numbers rest on, so a silent skip would hide a regression.
"""

from __future__ import annotations

import math
import shutil
import subprocess
from collections.abc import Sequence

import numpy as np
import pytest

from analysis import stats as S

TOL = 1e-6
ALTERNATIVES = ("two-sided", "less", "greater")
R_ALTERNATIVE = {"two-sided": "two.sided", "less": "less", "greater": "greater"}


def _rounded(rng: np.random.Generator, loc: float, scale: float, n: int, digits: int) -> list:
    return [round(float(v), digits) for v in rng.normal(loc, scale, n)]


def _reference_study() -> tuple[list[float], list[float]]:
    """24 vs 24 times built to give the reference study's Mann-Whitney table:
    U = 265, W = 565, Z = -.477, asymptotic p = .633 (one tie group of 11 values)."""
    pc = [16.2, 16.4, 16.6, 16.8, 17.1, 17.2, 17.3, 17.4, 17.6, 17.8] + [18.0] * 5 + [
        19.1, 19.3, 19.5, 19.6, 19.7, 19.8, 19.9, 20.0, 20.7]
    colab = [16.1, 16.3, 16.5, 16.7, 16.9, 17.0, 17.5, 17.7, 17.9] + [18.0] * 6 + [
        19.2, 19.4, 20.1, 20.2, 20.3, 20.4, 20.5, 20.6, 20.8]
    return pc, colab


_rng = np.random.default_rng(20240607)
CASES: dict[str, tuple[list[float], list[float]]] = {
    # ties across and within groups: asymptotic p and interval, no exact p
    "ties": ([12.1, 12.3, 12.3, 12.8, 13.0, 13.0, 13.4], [12.3, 12.9, 13.0, 13.5, 13.9, 14.1]),
    # small, no ties: exact p and Bauer's exact interval
    "small_exact": ([1.1, 2.5, 3.2, 4.8, 5.0], [2.2, 3.9, 6.1, 7.7, 8.0, 9.4]),
    # unequal sizes, exact region (N = 29)
    "unequal": (_rounded(_rng, 20.0, 1.5, 8, 4), _rounded(_rng, 21.0, 2.5, 21, 4)),
    # a clear difference: extreme p-values
    "clear": (_rounded(_rng, 10.0, 0.4, 12, 4), _rounded(_rng, 14.0, 0.5, 12, 4)),
    # no ties but N >= 50: asymptotic everything
    "large": (_rounded(_rng, 17.5, 1.2, 30, 5), _rounded(_rng, 18.0, 1.0, 34, 5)),
    # many ties, N >= 50
    "large_ties": (_rounded(_rng, 5.0, 0.5, 40, 1), _rounded(_rng, 5.2, 0.5, 45, 1)),
    # a group of two: Shapiro-Wilk not computable, the tests still are
    "n2": ([3.1, 3.4], [2.0, 2.6, 2.9, 3.3, 3.8]),
    "reference_study": _reference_study(),
}
HOLM = [0.01, 0.04, 0.03, 0.005, 0.2, 0.04, 0.6]
KRUSKAL = {"three_groups": ([1.2, 3.4, 2.2, 5.1, 2.2], [4.4, 6.1, 5.5, 7.0],
                            [2.9, 3.3, 3.3, 4.1, 6.6, 5.0])}


def _r_vector(values: Sequence[float]) -> str:
    return "c(" + ", ".join(float(v).hex() for v in values) + ")"


R_HEADER = r"""
emit <- function(case, key, value) {
  for (i in seq_along(value)) cat(sprintf("%s|%s%s|%.17g\n", case,
      key, if (length(value) > 1) i else "", value[i]))
}
one_case <- function(case, a, b) {
  na <- length(a); nb <- length(b); v <- c(a, b)
  r <- rank(v)
  emit(case, "sum_ranks_a", sum(r[1:na])); emit(case, "sum_ranks_b", sum(r[-(1:na)]))
  for (g in list(list("a", a), list("b", b))) {
    x <- g[[2]]
    if (length(x) >= 3) {
      s <- shapiro.test(x)
      emit(case, paste0("shapiro_W_", g[[1]]), s$statistic)
      emit(case, paste0("shapiro_p_", g[[1]]), s$p.value)
    }
  }
  ties <- length(unique(v)) < length(v)
  exact <- !ties && (na + nb) < 50
  two <- wilcox.test(a, b, exact = FALSE, correct = FALSE)
  emit(case, "Z", qnorm(two$p.value / 2))
  hl <- suppressWarnings(wilcox.test(a, b, conf.int = TRUE, exact = exact, correct = FALSE))
  emit(case, "hl_estimate", hl$estimate); emit(case, "hl_ci", hl$conf.int)
  g <- factor(rep(1:2, c(na, nb)))
  lev <- anova(lm(abs(v - ave(v, g)) ~ g))
  emit(case, "levene_F", lev[["F value"]][1]); emit(case, "levene_p", lev[["Pr(>F)"]][1])
  for (alt in c("two.sided", "less", "greater")) {
    key <- function(k) paste0(alt, ":", k)
    w <- wilcox.test(a, b, exact = FALSE, correct = FALSE, alternative = alt)
    emit(case, key("U_a"), w$statistic); emit(case, key("p_asymptotic"), w$p.value)
    if (exact) {
      emit(case, key("p_exact"), wilcox.test(a, b, exact = TRUE, alternative = alt)$p.value)
    }
    st <- t.test(a, b, var.equal = TRUE, alternative = alt)
    we <- t.test(a, b, alternative = alt)
    emit(case, key("student_t"), st$statistic); emit(case, key("student_df"), st$parameter)
    emit(case, key("student_p"), st$p.value)
    emit(case, key("welch_t"), we$statistic); emit(case, key("welch_df"), we$parameter)
    emit(case, key("welch_p"), we$p.value)
    if (alt == "two.sided") {
      emit(case, "student_ci", st$conf.int); emit(case, "welch_ci", we$conf.int)
    }
  }
}
"""


def _r_script() -> str:
    lines = [R_HEADER]
    for name, (a, b) in CASES.items():
        lines.append(f'one_case("{name}", {_r_vector(a)}, {_r_vector(b)})')
    for name, groups in KRUSKAL.items():
        vectors = ", ".join(_r_vector(g) for g in groups)
        lines.append(f'k <- kruskal.test(list({vectors})); emit("{name}", "H", k$statistic); '
                     f'emit("{name}", "df", k$parameter); emit("{name}", "p", k$p.value)')
    lines.append(f'emit("holm", "p", p.adjust({_r_vector(HOLM)}, method = "holm"))')
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def r_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, float]]:
    rscript = shutil.which("Rscript")
    if rscript is None:
        pytest.fail("Rscript not found: the R parity tests need R's stats package "
                    "(Debian: apt-get install r-base-core); .ci/run installs it")
    script = tmp_path_factory.mktemp("r") / "parity.R"
    script.write_text(_r_script())
    proc = subprocess.run([rscript, "--vanilla", str(script)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, f"Rscript failed:\n{proc.stderr}"
    out: dict[str, dict[str, float]] = {}
    for line in proc.stdout.splitlines():
        case, key, value = line.split("|")
        out.setdefault(case, {})[key] = float(value)
    return out


def close(ours: float | None, theirs: float) -> bool:
    """Equal to 1e-6, absolutely or relative to R's value (p-values can be 1e-20)."""
    return ours is not None and math.isclose(ours, theirs, rel_tol=TOL, abs_tol=TOL)


def test_rscript_present_and_runs(r_results: dict[str, dict[str, float]]) -> None:
    assert set(CASES) | set(KRUSKAL) <= set(r_results)


@pytest.mark.parametrize("case", sorted(CASES))
def test_shapiro_wilk(case: str, r_results: dict[str, dict[str, float]]) -> None:
    r = r_results[case]
    for label, values in zip("ab", CASES[case], strict=True):
        ours = S.shapiro_wilk(values)
        if len(values) < 3:
            assert ours == {"W": None, "p": None}
            continue
        assert close(ours["W"], r[f"shapiro_W_{label}"]), (ours, r[f"shapiro_W_{label}"])
        assert close(ours["p"], r[f"shapiro_p_{label}"]), (ours, r[f"shapiro_p_{label}"])


@pytest.mark.parametrize("alternative", ALTERNATIVES)
@pytest.mark.parametrize("case", sorted(CASES))
def test_mann_whitney(case: str, alternative: str,
                      r_results: dict[str, dict[str, float]]) -> None:
    a, b = CASES[case]
    r, key = r_results[case], R_ALTERNATIVE[alternative] + ":"
    ours = S.mann_whitney(a, b, alternative)
    na, nb = len(a), len(b)
    u_a = r[key + "U_a"]  # R's W statistic is U of x
    assert close(ours["U"], min(u_a, na * nb - u_a))
    assert close(ours["Z"], r["Z"]) and ours["Z"] <= 0
    assert close(ours["p_asymptotic"], r[key + "p_asymptotic"])
    if key + "p_exact" in r:
        assert close(ours["p_exact"], r[key + "p_exact"]), (ours["p_exact"], r[key + "p_exact"])
    else:
        assert ours["p_exact"] is None
    # SPSS's W: rank sum of the smaller group, or the smaller rank sum for equal sizes
    sums = r["sum_ranks_a"], r["sum_ranks_b"]
    expected_w = min(sums) if na == nb else sums[0] if na < nb else sums[1]
    assert close(ours["W"], expected_w)
    assert close(ours["r"], abs(r["Z"]) / math.sqrt(na + nb))
    ranks_a, ranks_b = S.rank_table(a, b)
    assert close(ranks_a["sum_ranks"], sums[0]) and close(ranks_b["sum_ranks"], sums[1])
    assert close(ranks_a["mean_rank"], sums[0] / na)


@pytest.mark.parametrize("case", sorted(CASES))
def test_hodges_lehmann(case: str, r_results: dict[str, dict[str, float]]) -> None:
    r = r_results[case]
    ours = S.hodges_lehmann(*CASES[case])
    assert close(ours["estimate"], r["hl_estimate"]), (ours, r["hl_estimate"])
    assert close(ours["ci_low"], r["hl_ci1"]), (ours, r["hl_ci1"])
    assert close(ours["ci_high"], r["hl_ci2"]), (ours, r["hl_ci2"])


@pytest.mark.parametrize("alternative", ALTERNATIVES)
@pytest.mark.parametrize("case", sorted(CASES))
def test_t_tests(case: str, alternative: str, r_results: dict[str, dict[str, float]]) -> None:
    a, b = CASES[case]
    r, key = r_results[case], R_ALTERNATIVE[alternative] + ":"
    student, welch = S.student_t(a, b, alternative), S.welch_t(a, b, alternative)
    for ours, name in ((student, "student"), (welch, "welch")):
        assert close(ours["t"], r[f"{key}{name}_t"])
        assert close(ours["df"], r[f"{key}{name}_df"])
        assert close(ours["p"], r[f"{key}{name}_p"]), (name, ours["p"], r[f"{key}{name}_p"])
        assert close(ours["ci_low"], r[f"{name}_ci1"]) and close(ours["ci_high"], r[f"{name}_ci2"])


@pytest.mark.parametrize("case", sorted(CASES))
def test_levene_mean_centred(case: str, r_results: dict[str, dict[str, float]]) -> None:
    ours = S.levene(*CASES[case])
    assert close(ours["F"], r_results[case]["levene_F"])
    assert close(ours["p"], r_results[case]["levene_p"])


def test_kruskal_wallis(r_results: dict[str, dict[str, float]]) -> None:
    r = r_results["three_groups"]
    ours = S.kruskal_wallis(KRUSKAL["three_groups"])
    assert close(ours["H"], r["H"]) and ours["df"] == r["df"] and close(ours["p"], r["p"])


def test_holm(r_results: dict[str, dict[str, float]]) -> None:
    ours = S.holm(HOLM)
    for i, value in enumerate(ours, start=1):
        assert close(value, r_results["holm"][f"p{i}"])


def test_reference_study_numbers(r_results: dict[str, dict[str, float]]) -> None:
    """The published table: U = 265.00, W = 565.00, Z = -.477, asymptotic sig. = .633."""
    ours = S.mann_whitney(*CASES["reference_study"])
    assert ours["U"] == 265.0 and ours["W"] == 565.0
    assert round(ours["Z"], 3) == -0.477 and round(ours["p_asymptotic"], 3) == 0.633
    assert ours["p_exact"] is None  # ties
    assert close(ours["p_asymptotic"], r_results["reference_study"]["two.sided:p_asymptotic"])

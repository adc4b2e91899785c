"""Parity of analysis.stats with R's stats package (Debian r-base-core), to 1e-6.

R runs once for all cases (a generated script, data passed bit for bit as hexadecimal
floats, results printed with sprintf("%.17g") since jsonlite may be missing). Without
Rscript the tests fail with a message saying what to install: R is the independent
reference the paper's numbers rest on, so a silent skip would hide a regression.

The exact null distribution of Mann-Whitney's U is the toolkit's own (stats.ExactU): it is
checked against R's dwilcox, pwilcox and qwilcox (the quantiles to the integer, at the very
probabilities where R's fuzz decides) and against scipy's public exact Mann-Whitney p.
"""

from __future__ import annotations

import math
import shutil
import subprocess
from collections.abc import Sequence

import numpy as np
import pytest

from cloudbench.analysis import stats as S
from cloudbench.analysis.results import ShapiroWilk

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
# Group sizes (m, n) of the exact U distribution: tiny, unbalanced either way, and the
# largest the exact interval uses (N = 49).
U_SIZES = ((1, 1), (1, 5), (2, 3), (3, 2), (4, 4), (5, 6), (7, 3), (8, 21), (12, 12),
           (24, 25))
# Probabilities for qwilcox besides every value of the cdf (where the fuzz decides).
U_PROBS = (0.0, 1e-12, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95,
           0.975, 0.99, 0.999, 1.0)


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
    probs = _r_vector(U_PROBS)
    for m, n in U_SIZES:
        case = f"u_{m}_{n}"
        lines.append(
            f'q <- 0:({m} * {n}); emit("{case}", "d", dwilcox(q, {m}, {n})); '
            f'emit("{case}", "p", pwilcox(q, {m}, {n})); '
            f'emit("{case}", "s", pwilcox(q, {m}, {n}, lower.tail = FALSE)); '
            f'pr <- c({probs}, pwilcox(q, {m}, {n}), pwilcox(q, {m}, {n}, lower.tail = FALSE)); '
            f'emit("{case}", "qp", pr); emit("{case}", "qq", qwilcox(pr, {m}, {n}))')
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
            assert ours == ShapiroWilk(W=None, p=None)
            continue
        assert close(ours.W, r[f"shapiro_W_{label}"]), (ours, r[f"shapiro_W_{label}"])
        assert close(ours.p, r[f"shapiro_p_{label}"]), (ours, r[f"shapiro_p_{label}"])


@pytest.mark.parametrize("alternative", ALTERNATIVES)
@pytest.mark.parametrize("case", sorted(CASES))
def test_mann_whitney(case: str, alternative: str,
                      r_results: dict[str, dict[str, float]]) -> None:
    a, b = CASES[case]
    r, key = r_results[case], R_ALTERNATIVE[alternative] + ":"
    ours = S.mann_whitney(a, b, alternative)
    na, nb = len(a), len(b)
    u_a = r[key + "U_a"]  # R's W statistic is U of x
    assert close(ours.U, min(u_a, na * nb - u_a))
    assert close(ours.Z, r["Z"]) and ours.Z <= 0
    assert close(ours.p_asymptotic, r[key + "p_asymptotic"])
    if key + "p_exact" in r:
        assert close(ours.p_exact, r[key + "p_exact"]), (ours.p_exact, r[key + "p_exact"])
        # the toolkit's own exact distribution gives R's exact p too
        assert close(S.exact_u(na, nb).pvalue(u_a, alternative), r[key + "p_exact"])
    else:
        assert ours.p_exact is None
    # SPSS's W: rank sum of the smaller group, or the smaller rank sum for equal sizes
    sums = r["sum_ranks_a"], r["sum_ranks_b"]
    expected_w = min(sums) if na == nb else sums[0] if na < nb else sums[1]
    assert close(ours.W, expected_w)
    assert close(ours.r, abs(r["Z"]) / math.sqrt(na + nb))
    ranks_a, ranks_b = S.rank_table(a, b)
    assert close(ranks_a.sum_ranks, sums[0]) and close(ranks_b.sum_ranks, sums[1])
    assert close(ranks_a.mean_rank, sums[0] / na)


@pytest.mark.parametrize("case", sorted(CASES))
def test_hodges_lehmann(case: str, r_results: dict[str, dict[str, float]]) -> None:
    r = r_results[case]
    a, b = CASES[case]
    ours = S.hodges_lehmann(a, b)
    exact = len(set(a) | set(b)) == len(a) + len(b) and len(a) + len(b) < S.EXACT_LIMIT
    assert ours.method == ("exact" if exact else "asymptotic")
    assert close(ours.estimate, r["hl_estimate"]), (ours, r["hl_estimate"])
    assert close(ours.ci_low, r["hl_ci1"]), (ours, r["hl_ci1"])
    assert close(ours.ci_high, r["hl_ci2"]), (ours, r["hl_ci2"])


@pytest.mark.parametrize("alternative", ALTERNATIVES)
@pytest.mark.parametrize("case", sorted(CASES))
def test_t_tests(case: str, alternative: str, r_results: dict[str, dict[str, float]]) -> None:
    a, b = CASES[case]
    r, key = r_results[case], R_ALTERNATIVE[alternative] + ":"
    student, welch = S.student_t(a, b, alternative), S.welch_t(a, b, alternative)
    for ours, name in ((student, "student"), (welch, "welch")):
        assert close(ours.t, r[f"{key}{name}_t"])
        assert close(ours.df, r[f"{key}{name}_df"])
        assert close(ours.p, r[f"{key}{name}_p"]), (name, ours.p, r[f"{key}{name}_p"])
        assert close(ours.ci_low, r[f"{name}_ci1"]) and close(ours.ci_high, r[f"{name}_ci2"])
        assert ours.mean_difference == pytest.approx(np.mean(a) - np.mean(b), abs=1e-12)


@pytest.mark.parametrize("case", sorted(CASES))
def test_levene_mean_centred(case: str, r_results: dict[str, dict[str, float]]) -> None:
    ours = S.levene(*CASES[case])
    assert close(ours.F, r_results[case]["levene_F"])
    assert close(ours.p, r_results[case]["levene_p"])


def test_kruskal_wallis(r_results: dict[str, dict[str, float]]) -> None:
    r = r_results["three_groups"]
    ours = S.kruskal_wallis(KRUSKAL["three_groups"])
    assert close(ours.H, r["H"]) and ours.df == r["df"] and close(ours.p, r["p"])


def test_holm(r_results: dict[str, dict[str, float]]) -> None:
    ours = S.holm(HOLM)
    for i, value in enumerate(ours, start=1):
        assert close(value, r_results["holm"][f"p{i}"])


def test_reference_study_numbers(r_results: dict[str, dict[str, float]]) -> None:
    """The published table: U = 265.00, W = 565.00, Z = -.477, asymptotic sig. = .633."""
    ours = S.mann_whitney(*CASES["reference_study"])
    assert ours.U == 265.0 and ours.W == 565.0
    assert round(ours.Z, 3) == -0.477 and round(ours.p_asymptotic, 3) == 0.633
    assert ours.p_exact is None  # ties
    assert close(ours.p_asymptotic, r_results["reference_study"]["two.sided:p_asymptotic"])


# --------------------------------------------------------------------------- the exact U


def _r_series(r: dict[str, float], key: str) -> list[float]:
    """R's vector `key` as emitted (key1, key2, ...)."""
    out = []
    while f"{key}{len(out) + 1}" in r:
        out.append(r[f"{key}{len(out) + 1}"])
    return out


@pytest.mark.parametrize(("m", "n"), U_SIZES)
def test_exact_u_is_r_s_wilcox_distribution(m: int, n: int,
                                            r_results: dict[str, dict[str, float]]) -> None:
    """dwilcox and pwilcox (both tails) to the last bit, qwilcox to the integer: at fixed
    probabilities and at every value of R's own cdf, where 10 epsilons of fuzz decide."""
    r = r_results[f"u_{m}_{n}"]
    dist = S.exact_u(m, n)
    assert sum(int(c) for c in dist.counts) == math.comb(m + n, m)
    assert len(_r_series(r, "d")) == m * n + 1
    for q, (d, p, s) in enumerate(zip(_r_series(r, "d"), _r_series(r, "p"),
                                      _r_series(r, "s"), strict=True)):
        assert dist.pmf[q] == d, (q, dist.pmf[q], d)
        assert dist.cdf(q) == p, (q, dist.cdf(q), p)
        assert dist.sf(q) == s, (q, dist.sf(q), s)
    probs, quantiles = _r_series(r, "qp"), _r_series(r, "qq")
    assert len(probs) == len(U_PROBS) + 2 * (m * n + 1)
    ours = [dist.ppf(p) for p in probs]
    assert ours == [int(q) for q in quantiles]


def test_exact_u_counts_are_exact_integers() -> None:
    """Small sizes by hand; large ones (beyond int64's range) still sum to the binomial."""
    assert S.exact_u(2, 2).counts.tolist() == [1, 1, 2, 1, 1]
    assert S.exact_u(3, 2).counts.tolist() == S.exact_u(2, 3).counts.tolist() == \
        [1, 1, 2, 2, 2, 1, 1]
    for m, n in ((30, 40), (60, 70)):
        counts = [int(c) for c in S.exact_u(m, n).counts]
        assert sum(counts) == math.comb(m + n, m) and counts == counts[::-1]
        assert min(counts) == 1 and len(counts) == m * n + 1
    with pytest.raises(ValueError):
        S.ExactU(0, 3)


_u_rng = np.random.default_rng(11)
SCIPY_SAMPLES = {
    "tiny": ([0.3], [0.1, 0.5]),
    "small_exact": CASES["small_exact"],
    "unequal": CASES["unequal"],
    "3x8": (list(_u_rng.normal(0, 1, 3)), list(_u_rng.normal(0.5, 1, 8))),
    "10x10": (list(_u_rng.normal(0, 1, 10)), list(_u_rng.normal(1.5, 1, 10))),
    "15x7": (list(_u_rng.lognormal(0, 1, 15)), list(_u_rng.lognormal(0.2, 1, 7))),
}


@pytest.mark.parametrize("alternative", ALTERNATIVES)
@pytest.mark.parametrize("sample", sorted(SCIPY_SAMPLES))
def test_exact_u_p_values_are_scipy_s(sample: str, alternative: str) -> None:
    """The same exact p as scipy's public mannwhitneyu(method="exact"), each tail."""
    from scipy.stats import mannwhitneyu

    x, y = SCIPY_SAMPLES[sample]
    assert len(set(x) | set(y)) == len(x) + len(y)  # no ties: the exact distribution holds
    res = mannwhitneyu(x, y, alternative=alternative, method="exact")
    ours = S.exact_u(len(x), len(y)).pvalue(float(res.statistic), alternative)
    assert ours == pytest.approx(float(res.pvalue), rel=1e-12, abs=1e-15)


# --------------------------------------------------------------------------- the new tests (issue 1
#
# R has no Brunner-Munzel or TOST package here (lawstat, brunnermunzel and TOSTER are not in
# Debian), so the references are written in base R from the published formulas, a second
# implementation in another language:
#
# - Brunner-Munzel (Brunner and Munzel 2000, Biometrical Journal 42, 17-25): pooled ranks
#   R, internal ranks R^(i), p = (mean R_2 - (n_2 + 1)/2) / n_1, S_i^2 = sum (R_ik - R^(i)_ik
#   - mean R_i + (n_i + 1)/2)^2 / (n_i - 1), sigma_i^2 = S_i^2 / (N - n_i)^2,
#   sigma_BF^2 = N (sigma_1^2 / n_1 + sigma_2^2 / n_2), W = (mean R_2 - mean R_1) /
#   (sqrt(N) sigma_BF), f = (sum S_i^2 / (N - n_i))^2 / sum (S_i^2 / (N - n_i))^2 / (n_i - 1);
# - its studentized permutation test (Neubert and Brunner 2007, Computational Statistics &
#   Data Analysis 51, 5192-5204): W over every split of the pooled *values* (combn), so R
#   permutes the data where the toolkit permutes ranks;
# - the TOST on log values (Schuirmann 1987; what TOSTER's tsum_TOST computes): two Welch t
#   statistics against log(1 - m) and log(1 + m), by hand, and again with R's own t.test
#   one-sided at each margin (mu = ...), with the (1 - 2 alpha) interval of t.test.
#
# The published worked example: the pain scores of Brunner and Munzel (2000), 14 vs 11
# patients, W = 3.1375, df = 17.683, p = .005786, p-hat = .789 (as lawstat's
# brunner.munzel.test and scipy.stats.brunnermunzel document it).

PAIN = ([1, 2, 1, 1, 1, 1, 1, 1, 1, 1, 2, 4, 1, 1], [3, 3, 4, 3, 1, 2, 3, 1, 1, 5, 4])
_n_rng = np.random.default_rng(14)
BM_CASES: dict[str, tuple[list[float], list[float]]] = {
    "pain": (list(map(float, PAIN[0])), list(map(float, PAIN[1]))),
    "ties_small": ([1.0, 2.0, 2.0, 3.0, 5.0], [2.0, 3.0, 4.0, 4.0, 6.0, 7.0]),
    "continuous": (_rounded(_n_rng, 10.0, 0.5, 6, 4), _rounded(_n_rng, 10.6, 1.5, 7, 4)),
    "unequal": (_rounded(_n_rng, 20.0, 0.6, 8, 3), _rounded(_n_rng, 20.0, 2.0, 5, 3)),
}
BM_PERMUTED = ("ties_small", "continuous", "unequal")  # small enough for every split in R
TOST_CASES = {
    "equivalent": (_rounded(_n_rng, 17.6, 0.4, 24, 4), _rounded(_n_rng, 17.7, 0.6, 24, 4)),
    "unequal": (_rounded(_n_rng, 17.6, 0.8, 10, 4), _rounded(_n_rng, 18.5, 2.0, 24, 4)),
    "reference_study": _reference_study(),
}
TOST_MARGINS = (0.05, 0.10)

R_NEW = r"""
bm <- function(x, y) {
  n1 <- length(x); n2 <- length(y); N <- n1 + n2
  r <- rank(c(x, y)); r1 <- r[1:n1]; r2 <- r[(n1 + 1):N]
  m1 <- mean(r1); m2 <- mean(r2)
  s1 <- sum((r1 - rank(x) - m1 + (n1 + 1) / 2)^2) / (n1 - 1)
  s2 <- sum((r2 - rank(y) - m2 + (n2 + 1) / 2)^2) / (n2 - 1)
  sbf <- N * (s1 / (N - n1)^2 / n1 + s2 / (N - n2)^2 / n2)
  w <- (m2 - m1) / (sqrt(N) * sqrt(sbf))
  f <- (s1 / (N - n1) + s2 / (N - n2))^2 /
    ((s1 / (N - n1))^2 / (n1 - 1) + (s2 / (N - n2))^2 / (n2 - 1))
  list(w = w, df = f, phat = (m2 - (n2 + 1) / 2) / n1)
}
bm_case <- function(case, x, y, permute) {
  res <- bm(x, y)
  emit(case, "bm_w", res$w); emit(case, "bm_df", res$df); emit(case, "bm_phat", res$phat)
  emit(case, "bm_p_two", 2 * pt(-abs(res$w), res$df))
  emit(case, "bm_p_less", pt(res$w, res$df, lower.tail = FALSE))
  emit(case, "bm_p_greater", pt(res$w, res$df))
  if (permute) {
    v <- c(x, y); n1 <- length(x)
    splits <- combn(length(v), n1)
    ws <- apply(splits, 2, function(i) bm(v[i], v[-i])$w)
    ws[is.nan(ws)] <- 0
    tol <- 1e-9 * max(1, abs(res$w))
    emit(case, "bmp_two", mean(abs(ws) >= abs(res$w) - tol))
    emit(case, "bmp_less", mean(ws >= res$w - tol))
    emit(case, "bmp_greater", mean(ws <= res$w + tol))
    emit(case, "bmp_count", ncol(splits))
  }
}
tost_case <- function(case, x, y, m, alpha) {
  lx <- log(x); ly <- log(y); nx <- length(lx); ny <- length(ly)
  vx <- var(lx) / nx; vy <- var(ly) / ny
  d <- mean(lx) - mean(ly); se <- sqrt(vx + vy)
  df <- (vx + vy)^2 / (vx^2 / (nx - 1) + vy^2 / (ny - 1))
  tl <- (d - log(1 - m)) / se; tu <- (d - log(1 + m)) / se
  key <- function(k) paste0(m, ":", k)
  emit(case, key("tl"), tl); emit(case, key("tu"), tu); emit(case, key("df"), df)
  emit(case, key("pl"), pt(tl, df, lower.tail = FALSE)); emit(case, key("pu"), pt(tu, df))
  emit(case, key("ci"), exp(d + c(-1, 1) * qt(1 - alpha, df) * se))
  # the same two tests with R's own t.test, one-sided at each margin
  lo <- t.test(lx, ly, mu = log(1 - m), alternative = "greater")
  hi <- t.test(lx, ly, mu = log(1 + m), alternative = "less")
  emit(case, key("tt_pl"), lo$p.value); emit(case, key("tt_pu"), hi$p.value)
  emit(case, key("tt_ci"), exp(t.test(lx, ly, conf.level = 1 - 2 * alpha)$conf.int))
  if (m == 0.05) {
    w <- t.test(lx, ly)
    emit(case, "wl_t", w$statistic); emit(case, "wl_df", w$parameter)
    emit(case, "wl_p", w$p.value); emit(case, "wl_ci", exp(w$conf.int))
    emit(case, "wl_ratio", exp(mean(lx) - mean(ly)))
  }
}
"""


def _r_new_script() -> str:
    lines = [R_HEADER, R_NEW]
    for name, (a, b) in BM_CASES.items():
        permute = "TRUE" if name in BM_PERMUTED else "FALSE"
        lines.append(f'bm_case("bm_{name}", {_r_vector(a)}, {_r_vector(b)}, {permute})')
    for name, (a, b) in TOST_CASES.items():
        for m in TOST_MARGINS:
            lines.append(f'tost_case("tost_{name}", {_r_vector(a)}, {_r_vector(b)}, {m}, 0.05)')
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def r_new(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, float]]:
    rscript = shutil.which("Rscript")
    if rscript is None:
        pytest.fail("Rscript not found: the R parity tests need R (Debian: apt-get install "
                    "r-base-core)")
    script = tmp_path_factory.mktemp("r") / "parity_new.R"
    script.write_text(_r_new_script())
    proc = subprocess.run([rscript, "--vanilla", str(script)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, f"Rscript failed:\n{proc.stderr}"
    out: dict[str, dict[str, float]] = {}
    for line in proc.stdout.splitlines():
        case, key, value = line.split("|")
        out.setdefault(case, {})[key] = float(value)
    return out


def test_brunner_munzel_published_example() -> None:
    """Brunner and Munzel (2000), pain scores: W = 3.1375, df = 17.683, p = .005786."""
    ours = S.brunner_munzel(*BM_CASES["pain"])
    assert round(ours.statistic, 4) == 3.1375 and round(ours.df, 3) == 17.683
    assert round(ours.p, 6) == 0.005786 and round(ours.estimate, 6) == 0.788961


@pytest.mark.parametrize("alternative", ALTERNATIVES)
@pytest.mark.parametrize("case", sorted(BM_CASES))
def test_brunner_munzel_is_the_published_formulas(case: str, alternative: str,
                                                  r_new: dict[str, dict[str, float]]) -> None:
    r = r_new[f"bm_{case}"]
    ours = S.brunner_munzel(*BM_CASES[case], alternative=alternative)
    assert close(ours.statistic, r["bm_w"]) and close(ours.df, r["bm_df"])
    assert close(ours.estimate, r["bm_phat"])
    key = {"two-sided": "bm_p_two", "less": "bm_p_less", "greater": "bm_p_greater"}
    assert close(ours.p, r[key[alternative]]), (ours.p, r[key[alternative]])
    # the vectorised statistic the simulation and the permutation test use
    from scipy.stats import rankdata

    a, b = BM_CASES[case]
    pooled = rankdata(np.r_[a, b])
    w, df = S.brunner_munzel_t(pooled[: len(a)], pooled[len(a):])
    assert close(float(w[0]), r["bm_w"]) and close(float(df[0]), r["bm_df"])
    order = np.sort(pooled)  # the permutation test's form: positions of the sorted sample
    rows = np.argsort(np.r_[a, b], kind="stable")
    members, others = np.sort(np.argsort(rows)[: len(a)]), np.sort(np.argsort(rows)[len(a):])
    fast = S.brunner_munzel_statistic(order[members], order[others], sorted_rows=True)[0]
    assert close(float(fast), r["bm_w"])


@pytest.mark.parametrize("alternative", ALTERNATIVES)
@pytest.mark.parametrize("case", BM_PERMUTED)
def test_brunner_munzel_permutation_is_r_s_enumeration(
        case: str, alternative: str, r_new: dict[str, dict[str, float]]) -> None:
    """Every split of the pooled values in R, every relabelling of the pooled ranks here:
    the exact studentized permutation p (Neubert and Brunner 2007), ties included."""
    r = r_new[f"bm_{case}"]
    ours = S.brunner_munzel(*BM_CASES[case], alternative=alternative)
    assert ours.exact and ours.permutations == r["bmp_count"]
    key = {"two-sided": "bmp_two", "less": "bmp_less", "greater": "bmp_greater"}
    assert close(ours.p_permutation, r[key[alternative]]), (ours, r[key[alternative]])


def test_brunner_munzel_separation_and_monte_carlo() -> None:
    sep = S.brunner_munzel([1.0, 2.0, 3.0, 4.0, 5.0], [6.0, 7.0, 8.0, 9.0, 10.0])
    assert sep.statistic is None and sep.estimate == 1.0
    assert sep.p == pytest.approx(2 / 252) and sep.p_permutation == pytest.approx(2 / 252)
    # beyond 20,000 splits the relabellings are drawn; the p is seeded and near the exact one
    a, b = BM_CASES["pain"]
    mc = S.brunner_munzel(a, b, n_perm=20_000, seed=1)
    assert not mc.exact and mc.permutations == 20_000
    assert mc == S.brunner_munzel(a, b, n_perm=20_000, seed=1)
    assert 0.004 < mc.p_permutation < 0.012


@pytest.mark.parametrize("margin", TOST_MARGINS)
@pytest.mark.parametrize("case", sorted(TOST_CASES))
def test_tost_is_the_hand_formulas_and_t_test(case: str, margin: float,
                                             r_new: dict[str, dict[str, float]]) -> None:
    from cloudbench.analysis.equivalence import tost_log

    r, key = r_new[f"tost_{case}"], f"{margin:g}:"
    ours = tost_log(*TOST_CASES[case], margin, alpha=0.05)
    assert close(ours.t_lower, r[key + "tl"]) and close(ours.t_upper, r[key + "tu"])
    assert close(ours.df, r[key + "df"])
    for mine, hand, tt in ((ours.p_lower, "pl", "tt_pl"), (ours.p_upper, "pu", "tt_pu")):
        assert close(mine, r[key + hand]) and close(mine, r[key + tt])
    assert ours.p == max(ours.p_lower, ours.p_upper)
    for bound, i in ((ours.ci_low, 1), (ours.ci_high, 2)):
        assert close(bound, r[f"{key}ci{i}"]) and close(bound, r[f"{key}tt_ci{i}"])


@pytest.mark.parametrize("case", sorted(TOST_CASES))
def test_welch_on_logs(case: str, r_new: dict[str, dict[str, float]]) -> None:
    r = r_new[f"tost_{case}"]
    ours = S.welch_log_t(*TOST_CASES[case])
    assert close(ours.t, r["wl_t"]) and close(ours.df, r["wl_df"]) and close(ours.p, r["wl_p"])
    assert close(ours.ratio, r["wl_ratio"])
    assert close(ours.ci_low, r["wl_ci1"]) and close(ours.ci_high, r["wl_ci2"])


# --------------------------------------------------------------------------- Yuen (issue 29)
#
# Yuen's trimmed-means Welch test (Yuen 1974; Wilcox, Introduction to Robust Estimation and
# Hypothesis Testing, 4th ed., section 5.3.1: what WRS2's yuen computes) on log values, in
# base R by hand: R's own mean(x, trim = 0.2) for the trimmed mean, the winsorized variance
# from sort() and pmin/pmax, d = (n - 1) s_w^2 / (h (h - 1)), Welch-Satterthwaite's df,
# pt and qt for p and the interval; and the robust procedure's test of 8 runs and more, the
# larger p of Yuen's and Brunner-Munzel's where they point the same way (two-sided).

_y_rng = np.random.default_rng(29)
YUEN_CASES: dict[str, tuple[list[float], list[float]]] = {
    "balanced": (_rounded(_y_rng, 17.6, 0.5, 10, 4), _rounded(_y_rng, 18.4, 0.9, 10, 4)),
    "noisy_small": (_rounded(_y_rng, 20.0, 0.6, 20, 4), _rounded(_y_rng, 21.0, 3.0, 8, 4)),
    # slow outliers in the larger group, and ties
    "outliers": ([12.1, 12.3, 12.3, 12.8, 13.0, 13.0, 13.4, 12.2, 12.6, 19.5, 18.9, 12.4],
                 [12.3, 12.9, 13.0, 13.5, 13.9, 14.1, 12.8, 13.3]),
    "tiny": ([3.1, 3.4, 2.9], [2.0, 2.6, 2.9, 3.3, 3.8]),
    "reference_study": _reference_study(),
}

R_YUEN = r"""
yuen_log <- function(case, x, y, trim = 0.2) {
  one <- function(v) {
    n <- length(v); g <- floor(trim * n); h <- n - 2 * g; s <- sort(v)
    w <- pmin(pmax(s, s[g + 1]), s[n - g])
    list(m = mean(v, trim = trim), d = (n - 1) * var(w) / (h * (h - 1)), h = h)
  }
  a <- one(log(x)); b <- one(log(y))
  se <- sqrt(a$d + b$d); t <- (a$m - b$m) / se
  df <- (a$d + b$d)^2 / (a$d^2 / (a$h - 1) + b$d^2 / (b$h - 1))
  p <- c(2 * pt(-abs(t), df), pt(t, df), pt(t, df, lower.tail = FALSE))
  emit(case, "y_t", t); emit(case, "y_df", df); emit(case, "y_p", p)
  emit(case, "y_ratio", exp(a$m - b$m))
  emit(case, "y_ci", exp(a$m - b$m + c(-1, 1) * qt(0.975, df) * se))
  bmr <- bm(x, y)
  q <- c(2 * pt(-abs(bmr$w), bmr$df), pt(bmr$w, bmr$df, lower.tail = FALSE),
         pt(bmr$w, bmr$df))
  same <- sign(t) == -sign(bmr$w)
  emit(case, "iut_p", c(if (same) max(p[1], q[1]) else 1, max(p[2], q[2]), max(p[3], q[3])))
}
"""


@pytest.fixture(scope="module")
def r_yuen(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, float]]:
    rscript = shutil.which("Rscript")
    if rscript is None:
        pytest.fail("Rscript not found: the R parity tests need R (Debian: apt-get install "
                    "r-base-core)")
    lines = [R_HEADER, R_NEW, R_YUEN]
    for name, (a, b) in YUEN_CASES.items():
        lines.append(f'yuen_log("{name}", {_r_vector(a)}, {_r_vector(b)})')
    script = tmp_path_factory.mktemp("r") / "parity_yuen.R"
    script.write_text("\n".join(lines) + "\n")
    proc = subprocess.run([rscript, "--vanilla", str(script)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, f"Rscript failed:\n{proc.stderr}"
    out: dict[str, dict[str, float]] = {}
    for line in proc.stdout.splitlines():
        case, key, value = line.split("|")
        out.setdefault(case, {})[key] = float(value)
    return out


@pytest.mark.parametrize("case", sorted(YUEN_CASES))
def test_yuen_on_logs_is_the_hand_formulas(case: str,
                                           r_yuen: dict[str, dict[str, float]]) -> None:
    r = r_yuen[case]
    a, b = YUEN_CASES[case]
    for i, alternative in enumerate(ALTERNATIVES, start=1):
        ours = S.yuen_log_t(a, b, alternative)
        assert close(ours.t, r["y_t"]) and close(ours.df, r["y_df"])
        assert close(ours.p, r[f"y_p{i}"]), (alternative, ours.p, r[f"y_p{i}"])
        assert close(ours.ratio, r["y_ratio"]) and ours.trim == 0.2
        assert close(ours.ci_low, r["y_ci1"]) and close(ours.ci_high, r["y_ci2"])
        robust = S.yuen_brunner_munzel(a, b, alternative)
        assert close(robust.p, r[f"iut_p{i}"]), (alternative, robust.p, r[f"iut_p{i}"])
    # scipy's own trimmed t-test (scipy >= 1.7) gives the same t and two-sided p
    from scipy.stats import ttest_ind

    res = ttest_ind(np.log(a), np.log(b), equal_var=False, trim=0.2)
    assert close(float(res.statistic), r["y_t"]) and close(float(res.pvalue), r["y_p1"])


def test_yuen_degenerate_samples() -> None:
    assert S.yuen_log_t([1.0, 2.0], [0.0, 3.0]).p is None  # a value that is not positive
    assert S.yuen_log_t([1.0], [2.0, 3.0]).p is None  # one run
    assert S.yuen_log_t([2.0] * 5, [2.0] * 6).p is None  # no variance at all
    assert S.yuen_brunner_munzel([2.0] * 5, [2.0] * 6).p is None

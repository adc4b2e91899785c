"""The paper's sentences written from the analysis: decisions, hypotheses, the stopping rule,
the equivalence conclusions and the procedure's simulated type-I error.

The words of each language live in paper/lang/<lang>.toml; this module only chooses which
sentence applies and fills in names, statistics and numbers. The sentences are neutral text
(paper.text): each renderer sets them in its own format.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from cloudbench.analysis.compare import lower as lower_than
from cloudbench.analysis.results import Comparison
from cloudbench.paper.text import (
    METRIC_NAMES,
    fmt_num,
    fmt_p,
    metric_name,
    p_clause,
    percent,
    phrase,
    var,
    where,
)


def _upper(text: str) -> str:
    return text[:1].upper() + text[1:]


def join_names(names: Sequence[str], lang: str) -> str:
    """"a, b and c" / "a, b y c"."""
    items = [str(n) for n in names]
    if len(items) < 2:
        return "".join(items)
    return ", ".join(items[:-1]) + phrase("and", lang) + items[-1]


def short_metric(metric: str, lang: str) -> str:
    """The metric's name for sentences: without its unit, which reads badly in prose."""
    return re.sub(r"\s*\([^)]*\)$", "", metric_name(metric, lang))


def the(metric: str, lang: str, capital: bool = False, of: bool = False) -> str:
    """The metric as it reads inside a sentence ("el tiempo de entrenamiento"; with `of`,
    after "of": "del tiempo de entrenamiento")."""
    known = "" if metric in METRIC_NAMES[lang] else "_unknown"
    text = phrase(("metric_of" if of else "metric") + known, lang,
                  name=short_metric(metric, lang))
    return _upper(text) if capital else text


def statistics_clause(c: Comparison, lang: str) -> str:
    """"U = 265, Z = -0.48, p = .633" (Spanish: separated by semicolons, decimal comma)."""
    from cloudbench.paper.tables import test_statistic

    parts = [test_statistic(c, lang)]
    if c.test_used == "mann_whitney":
        parts.append(var("Z") + " = " + fmt_num(c.mann_whitney.Z, 2, lang))
    parts.append(p_clause(c.p, lang))
    holm = c.p_holm
    # Holm's p is quoted only where it reads differently (not when both are "< .001").
    if holm is not None and fmt_p(holm, lang) != fmt_p(c.p, lang):
        parts.append(phrase("holm_p", lang) + p_clause(holm, lang).removeprefix(var("p")))
    return phrase("stat_separator", lang).join(parts)


def conclusion(c: Comparison, lang: str = "en", alternative: str = "two-sided") -> str:
    """One sentence per decision, e.g. "There is no significant difference in training
    time between pc and colab on shapes (U = 265, Z = -0.48, p = .633).\""""
    fields = {"a": str(c.a), "b": str(c.b), "dataset": str(where(c)),
              "stats": statistics_clause(c, lang), "metric": the(c.metric, lang),
              "Metric": the(c.metric, lang, capital=True)}
    if c.significant:
        # which way: the test's own estimate (medians for Mann-Whitney, means for a t-test,
        # P(a < b) for Brunner-Munzel), or the direction a one-sided H1 states
        lower = alternative == "less" if alternative != "two-sided" else bool(
            lower_than(c))
        return phrase("significant", lang, direction=phrase("lower" if lower else "higher",
                                                             lang),
                      ratio=_ratio_clause(c, lang), **fields)
    if alternative != "two-sided":
        direction = phrase("lower" if alternative == "less" else "higher", lang)
        return phrase("no_evidence", lang, direction=direction, **fields)
    return phrase("no_difference", lang, **fields)


def _ratio_clause(c: Comparison, lang: str) -> str:
    """"; the median on a is 0.71 times that on b (95 % CI 0.68 to 0.74)"."""
    ratio = c.median_ratio
    if ratio.estimate is None:
        return ""
    ci = ""
    if ratio.ci_low is not None and ratio.ci_high is not None:
        ci = phrase("ratio_ci", lang, low=fmt_num(ratio.ci_low, 2, lang),
                    high=fmt_num(ratio.ci_high, 2, lang))
    return phrase("ratio", lang, a=str(c.a), b=str(c.b),
                  estimate=fmt_num(ratio.estimate, 2, lang), ci=ci)


def equivalence_conclusion(c: Comparison, lang: str = "en") -> str:
    """The four-way conclusion of a comparison with an equivalence margin: faster, slower
    (lower, higher for a metric that is not a time), equivalent within the margin, or
    inconclusive: more runs needed (analysis.equivalence)."""
    eq = c.equivalence
    if eq is None:
        return conclusion(c, lang, c.alternative)
    fields = {"a": str(c.a), "b": str(c.b), "dataset": str(where(c)),
              "stats": statistics_clause(c, lang), "metric": the(c.metric, lang),
              "Metric": the(c.metric, lang, capital=True),
              "metric_of": the(c.metric, lang, of=True), "margin": percent(eq.margin, lang)}
    have_interval = eq.ci_low is not None and eq.ci_high is not None
    low, high = (fmt_num(v, 3, lang) for v in (eq.ci_low, eq.ci_high))
    interval = phrase("eq_interval", lang, a=str(c.a), b=str(c.b), low=low, high=high)
    tost = p_clause(eq.p, lang)
    if eq.conclusion in ("faster", "slower", "lower", "higher"):
        within = phrase("eq_within", lang, margin=fields["margin"],
                        interval=phrase("eq_interval_short", lang, low=low, high=high)) \
            if eq.equivalent and have_interval else ""
        return phrase(f"eq_{eq.conclusion}", lang, ratio=_ratio_clause(c, lang),
                      within=within, **fields)
    if not have_interval or eq.p is None:
        return phrase("eq_not_computable", lang, **fields)
    return phrase(f"eq_{eq.conclusion}", lang, interval=interval, tost=tost, **fields)


def procedure_name(procedure: str, lang: str) -> str:
    return phrase(f"procedure_{procedure}", lang)


def simulated_error_text(error: Any, lang: str) -> str:
    """The procedure's simulated type-I error for the study's own group sizes and variance
    ratios (analysis.simulation.ProcedureError), as a sentence; "" without one."""
    if error is None:
        return ""
    scenarios = [phrase("simulated_scenario", lang, n_a=n_a, n_b=n_b,
                        ratio=fmt_num(ratio, 0, lang)) for n_a, n_b, ratio in error.scenarios]
    shown = "; ".join(scenarios[:3]) + ("; \u2026" if len(scenarios) > 3 else "")
    low, high = percent(error.low, lang), percent(error.high, lang)
    rates = low if low == high else phrase("simulated_range", lang, low=low, high=high)
    return phrase("simulated_error", lang, plural=phrase("scenario_plural", lang)
                  if len(scenarios) > 1 else "", scenarios=shown,
                  procedure=procedure_name(error.procedure, lang),
                  alpha=fmt_num(error.alpha, 2, lang, bounded=True), range=rates,
                  shapes=join_names([phrase(f"shape_{s}", lang) for s in error.shapes], lang),
                  nominal=percent(error.alpha, lang))


def hypotheses(metric: str, pairs: Sequence[tuple[str, str]], lang: str,
               alternative: str) -> tuple[str, str]:
    """H0 and H1 in words for the primary metric, as the reference paper states them."""
    a, b = (str(x) for x in pairs[0]) if len(pairs) == 1 else ("A", "B")
    fields = {"a": a, "b": b, "metric": the(metric, lang),
              "Metric": the(metric, lang, capital=True)}
    prefix = phrase("each_pair", lang) if len(pairs) > 1 else ""
    return (prefix + phrase("h0", lang, **fields),
            prefix + phrase(f"h1_{alternative}", lang, **fields))


def _percent(x: float, lang: str) -> str:
    return fmt_num(100 * float(x), 1, lang) + "\u2009%"


def stopping_text(stopping: Any, lang: str) -> str:
    """Why an "auto" study stopped when it did, from the scheduler's record in the manifest."""
    if not isinstance(stopping, dict) or not stopping:
        return ""
    reps = str(stopping.get("repetitions", "?"))
    target = stopping.get("target_halfwidth")
    if not isinstance(target, int | float):  # a rule this template does not know: quote it
        return phrase("stopped_by", lang, repetitions=reps,
                      reason=str(stopping.get("reason", "")))
    widths = [float(v) for v in (stopping.get("halfwidths") or {}).values()
              if isinstance(v, int | float) and not isinstance(v, bool)]
    widest = phrase("widest", lang, width=_percent(max(widths), lang)) if widths else ""
    return phrase("stopped", lang, metric_of=the(str(stopping.get("metric", "train_s")), lang,
                                                 of=True),
                  target=_percent(target, lang), repetitions=reps, widest=widest,
                  end=phrase("stop_met" if stopping.get("met") else "stop_max", lang))

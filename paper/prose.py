"""The paper's sentences written from the analysis: decisions, hypotheses, the stopping rule.

The words of each language live in paper/lang/<lang>.toml; this module only chooses which
sentence applies and fills in names (escaped), statistics and numbers.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from analysis.results import Comparison
from paper.latex import (
    METRIC_NAMES,
    escape,
    fmt_num,
    fmt_p,
    metric_name,
    p_clause,
    phrase,
    where,
)


def _upper(text: str) -> str:
    return text[:1].upper() + text[1:]


def join_names(names: Sequence[str], lang: str, escaped: bool = False) -> str:
    """"a, b and c" / "a, b y c"; names are escaped unless they are LaTeX already."""
    items = list(names) if escaped else [escape(n) for n in names]
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
    from paper.tables import test_statistic

    parts = [test_statistic(c, lang)]
    if c.test_used == "mann_whitney":
        parts.append("$Z$ = " + fmt_num(c.mann_whitney.Z, 2, lang))
    parts.append(p_clause(c.p, lang))
    holm = c.p_holm
    # Holm's p is quoted only where it reads differently (not when both are "< .001").
    if holm is not None and fmt_p(holm, lang) != fmt_p(c.p, lang):
        parts.append(phrase("holm_p", lang) + p_clause(holm, lang)[3:])
    return phrase("stat_separator", lang).join(parts)


def _centre(c: Comparison, env: str) -> float | None:
    """The median (rank test) or mean (t-test) of one group, to say which way it goes."""
    d = c.descriptives[env]
    return d.median if c.test_used == "mann_whitney" else d.mean


def conclusion(c: Comparison, lang: str = "en", alternative: str = "two-sided") -> str:
    """One sentence per decision, e.g. "There is no significant difference in training
    time between pc and colab on shapes (U = 265, Z = -0.48, p = .633).\""""
    fields = {"a": escape(c.a), "b": escape(c.b), "dataset": escape(where(c)),
              "stats": statistics_clause(c, lang), "metric": the(c.metric, lang),
              "Metric": the(c.metric, lang, capital=True)}
    if c.significant:
        ca, cb = _centre(c, c.a), _centre(c, c.b)
        lower = alternative == "less" if alternative != "two-sided" else (
            ca is not None and cb is not None and ca < cb)
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
    return phrase("ratio", lang, a=escape(c.a), b=escape(c.b),
                  estimate=fmt_num(ratio.estimate, 2, lang), ci=ci)


def hypotheses(metric: str, pairs: Sequence[tuple[str, str]], lang: str,
               alternative: str) -> tuple[str, str]:
    """H0 and H1 in words for the primary metric, as the reference paper states them."""
    a, b = (escape(x) for x in pairs[0]) if len(pairs) == 1 else ("A", "B")
    fields = {"a": a, "b": b, "metric": the(metric, lang),
              "Metric": the(metric, lang, capital=True)}
    prefix = phrase("each_pair", lang) if len(pairs) > 1 else ""
    return (prefix + phrase("h0", lang, **fields),
            prefix + phrase(f"h1_{alternative}", lang, **fields))


def _percent(x: float, lang: str) -> str:
    return fmt_num(100 * float(x), 1, lang) + "\\,\\%"


def stopping_text(stopping: Any, lang: str) -> str:
    """Why an "auto" study stopped when it did, from the scheduler's record in the manifest."""
    if not isinstance(stopping, dict) or not stopping:
        return ""
    reps = escape(stopping.get("repetitions", "?"))
    target = stopping.get("target_halfwidth")
    if not isinstance(target, int | float):  # a rule this template does not know: quote it
        return phrase("stopped_by", lang, repetitions=reps,
                      reason=escape(stopping.get("reason", "")))
    widths = [float(v) for v in (stopping.get("halfwidths") or {}).values()
              if isinstance(v, int | float) and not isinstance(v, bool)]
    widest = phrase("widest", lang, width=_percent(max(widths), lang)) if widths else ""
    return phrase("stopped", lang, metric_of=the(str(stopping.get("metric", "train_s")), lang,
                                                 of=True),
                  target=_percent(target, lang), repetitions=reps, widest=widest,
                  end=phrase("stop_met" if stopping.get("met") else "stop_max", lang))

"""The paper's sentences written from the analysis: decisions, hypotheses, the stopping rule.

The words of each language live in paper/lang/<lang>.toml; this module only chooses which
sentence applies and fills in names (escaped), statistics and numbers.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from analysis.results import Comparison
from paper.latex import METRIC_NAMES, escape, fmt_num, fmt_p, metric_name, p_clause


def join_names(names: Sequence[str], lang: str, escaped: bool = False) -> str:
    """"a, b and c" / "a, b y c"; names are escaped unless they are LaTeX already."""
    items = list(names) if escaped else [escape(n) for n in names]
    if len(items) < 2:
        return "".join(items)
    word = " y " if lang == "es" else " and "
    return ", ".join(items[:-1]) + word + items[-1]


def short_metric(metric: str, lang: str) -> str:
    """The metric's name for sentences: without its unit, which reads badly in prose."""
    return re.sub(r"\s*\([^)]*\)$", "", metric_name(metric, lang))


def the(metric: str, lang: str, capital: bool = False) -> str:
    """The metric with its article in Spanish ("el tiempo de entrenamiento")."""
    name = short_metric(metric, lang)
    if lang == "es":
        name = ("el " + name) if metric in METRIC_NAMES["es"] else f"la métrica {name}"
    return name[0].upper() + name[1:] if capital else name


def statistics_clause(c: Comparison, lang: str) -> str:
    """"U = 265, Z = -0.48, p = .633" (Spanish: separated by semicolons, decimal comma)."""
    from paper.tables import test_statistic

    sep = "; " if lang == "es" else ", "
    parts = [test_statistic(c, lang)]
    if c.test_used == "mann_whitney":
        parts.append("$Z$ = " + fmt_num(c.mann_whitney.Z, 2, lang))
    parts.append(p_clause(c.p, lang))
    holm = c.p_holm
    # Holm's p is quoted only where it reads differently (not when both are "< .001").
    if holm is not None and fmt_p(holm, lang) != fmt_p(c.p, lang):
        word = "$p$ ajustada (Holm)" if lang == "es" else "Holm-adjusted $p$"
        parts.append(word + p_clause(holm, lang)[3:])
    return sep.join(parts)


def _centre(c: Comparison, env: str) -> float | None:
    """The median (rank test) or mean (t-test) of one group, to say which way it goes."""
    d = c.descriptives[env]
    return d.median if c.test_used == "mann_whitney" else d.mean


def conclusion(c: Comparison, lang: str = "en", alternative: str = "two-sided") -> str:
    """One sentence per decision, e.g. "There is no significant difference in training
    time between pc and colab on shapes (U = 265, Z = -0.48, p = .633).\""""
    a, b, ds = escape(c.a), escape(c.b), escape(c.dataset)
    stats = statistics_clause(c, lang)
    if c.significant:
        ca, cb = _centre(c, c.a), _centre(c, c.b)
        lower = alternative == "less" if alternative != "two-sided" else (
            ca is not None and cb is not None and ca < cb)
        if lang == "es":
            text = (f"{the(c.metric, lang, True)} con el DataSet {ds} es significativamente "
                    f"{'menor' if lower else 'mayor'} en {a} que en {b} ({stats})")
        else:
            text = (f"{short_metric(c.metric, lang).capitalize()} on {ds} is significantly "
                    f"{'lower' if lower else 'higher'} on {a} than on {b} ({stats})")
        return text + _ratio_clause(c, lang) + "."
    if alternative != "two-sided":
        word = {"en": {"less": "lower", "greater": "higher"},
                "es": {"less": "menor", "greater": "mayor"}}[lang][alternative]
        if lang == "es":
            return (f"No hay evidencia significativa de que {the(c.metric, lang)} con el "
                    f"DataSet {ds} sea {word} en {a} que en {b} ({stats}).")
        return (f"There is no significant evidence that {short_metric(c.metric, lang)} on "
                f"{ds} is {word} on {a} than on {b} ({stats}).")
    if lang == "es":
        return (f"No existe diferencia significativa en {the(c.metric, lang)} entre {a} y "
                f"{b} con el DataSet {ds} ({stats}).")
    return (f"There is no significant difference in {short_metric(c.metric, lang)} between "
            f"{a} and {b} on {ds} ({stats}).")


def _ratio_clause(c: Comparison, lang: str) -> str:
    """"; the median on a is 0.71 times that on b (95 % CI 0.68 to 0.74)"."""
    ratio = c.median_ratio
    if ratio.estimate is None:
        return ""
    a, b = escape(c.a), escape(c.b)
    est = fmt_num(ratio.estimate, 2, lang)
    ci = ""
    if ratio.ci_low is not None and ratio.ci_high is not None:
        lo, hi = fmt_num(ratio.ci_low, 2, lang), fmt_num(ratio.ci_high, 2, lang)
        ci = f" (IC 95\\,\\% {lo} a {hi})" if lang == "es" else f" (95\\,\\% CI {lo} to {hi})"
    if lang == "es":
        return f"; la mediana en {a} es {est} veces la de {b}{ci}"
    return f"; the median on {a} is {est} times that on {b}{ci}"


def hypotheses(metric: str, pairs: Sequence[tuple[str, str]], lang: str,
               alternative: str) -> tuple[str, str]:
    """H0 and H1 in words for the primary metric, as the reference paper states them."""
    if len(pairs) == 1:
        a, b = (escape(x) for x in pairs[0])
    else:
        a, b = ("A", "B")
    many = len(pairs) > 1
    if lang == "es":
        m = the(metric, lang)
        h0 = f"No existe diferencia en {m} entre {a} y {b}."
        h1 = {"two-sided": f"{m[0].upper() + m[1:]} difiere entre {a} y {b}.",
              "less": f"{m[0].upper() + m[1:]} en {a} es menor que en {b}.",
              "greater": f"{m[0].upper() + m[1:]} en {a} es mayor que en {b}."}[alternative]
        prefix = ("Para cada par de entornos A y B (en el orden de la "
                  "Tabla~\\ref{tab:environments}): ") if many else ""
    else:
        m = short_metric(metric, lang)
        h0 = f"There is no difference in {m} between {a} and {b}."
        h1 = {"two-sided": f"{m.capitalize()} differs between {a} and {b}.",
              "less": f"{m.capitalize()} is lower on {a} than on {b}.",
              "greater": f"{m.capitalize()} is higher on {a} than on {b}."}[alternative]
        prefix = ("For each pair of environments A and B (in the order of "
                  "Table~\\ref{tab:environments}): ") if many else ""
    return prefix + h0, prefix + h1


def _percent(x: float, lang: str) -> str:
    return fmt_num(100 * float(x), 1, lang) + "\\,\\%"


def stopping_text(stopping: Any, lang: str) -> str:
    """Why an "auto" study stopped when it did, from the scheduler's record in the manifest."""
    if not isinstance(stopping, dict) or not stopping:
        return ""
    reps = escape(stopping.get("repetitions", "?"))
    target = stopping.get("target_halfwidth")
    if not isinstance(target, int | float):  # a rule this template does not know: quote it
        reason = escape(stopping.get("reason", ""))
        return (f"El estudio se detuvo tras {reps} repeticiones: {reason}." if lang == "es"
                else f"The study stopped after {reps} repetitions: {reason}.")
    widths = [float(v) for v in (stopping.get("halfwidths") or {}).values()
              if isinstance(v, int | float) and not isinstance(v, bool)]
    met = bool(stopping.get("met"))
    metric = str(stopping.get("metric", "train_s"))
    if lang == "es":
        of_metric = "del " + the(metric, lang)[3:] if the(metric, lang).startswith("el ") \
            else "de " + the(metric, lang)
        widest = f" (el más ancho: $\\pm${_percent(max(widths), lang)})" if widths else ""
        end = "se alcanzó el objetivo" if met else \
            "se alcanzó el máximo de repeticiones sin lograr el objetivo"
        return (f"Se añadieron bloques de repeticiones hasta que cada intervalo del 95\\,\\% "
                f"de la razón de medianas {of_metric} entre entornos tuviera una "
                f"semiamplitud de $\\pm${_percent(target, lang)} como máximo; el estudio se "
                f"detuvo tras {reps} repeticiones: {end}{widest}.")
    widest = f" (widest: $\\pm${_percent(max(widths), lang)})" if widths else ""
    end = "the target was met" if met else \
        "the maximum number of repetitions was reached before the target"
    return (f"Repetitions were added block by block until every 95\\,\\% interval of the "
            f"ratio of median {short_metric(metric, lang)} between environments was within "
            f"$\\pm${_percent(target, lang)}; the study stopped after {reps} repetitions: "
            f"{end}{widest}.")

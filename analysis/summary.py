"""A terminal summary of an analysis: what a researcher reads before the paper.

One table per metric and pair of environments (dataset, medians, the test used, its
statistic, p, Holm's p, the decision, the other procedure's decision (SPSS's and the
robust one side by side) and the ratio of medians with its interval; with an equivalence
margin, the TOST's 90 % interval and the conclusion), the Kruskal-Wallis tests when there
are more than two environments, then the warnings. With fewer than 8 runs in a group a
non-significant decision reads "inconclusive", not "n.s.": so small a study cannot tell.
"""

from __future__ import annotations

import io

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cloudbench.analysis.results import (
    Analysis,
    BrunnerMunzel,
    Comparison,
    MannWhitney,
    Verdict,
    YuenLog,
)
from cloudbench.data.procedures import DEFAULT_PROCEDURE, procedure_descriptions

MAX_WARNINGS = 20
WIDE = 140
TEST_NAMES = {"mann_whitney": "Mann-Whitney", "student_t": "Student t", "welch_t": "Welch t",
              "brunner_munzel": "Brunner-Munzel",
              "yuen_brunner_munzel": "Yuen + Brunner-Munzel"}
#: How a verdict's decision reads in the table (analysis.results.DECISIONS).
DECISION_TEXT = {"lower": "[bold]a < b[/]", "higher": "[bold]a > b[/]",
                 "no_difference": "n.s.", "inconclusive": "[yellow]inconclusive[/]",
                 "not_testable": "[yellow]not testable[/]"}


def fmt(value: float | None, digits: int = 4, zeros: bool = False) -> str:
    """Significant digits (``zeros``: keep trailing zeros, 16.00), a dash for a missing value."""
    if value is None:
        return "-"
    return f"{value:#.{digits}g}".rstrip(".") if zeros else f"{value:.{digits}g}"


def fmt_p(p: float | None) -> str:
    """APA style: three decimals, "<.001" below."""
    if p is None:
        return "-"
    return "<.001" if p < 0.001 else f"{p:.3f}".replace("0.", ".", 1)


def statistic(entry: Comparison) -> str:
    """The statistic of the test used, as quoted in text: "U = 265, Z = -0.48", "t(46) = 1.23"."""
    test = entry.test
    if isinstance(test, MannWhitney):
        return "-" if test.U is None else f"U = {fmt(test.U, 6)}, Z = {fmt(test.Z, 3)}"
    if isinstance(test, BrunnerMunzel):
        if test.estimate is None:
            return "-"
        w = "inf" if test.statistic is None else fmt(test.statistic, 3)
        return f"W = {w}, P(a<b) = {fmt(test.estimate, 3)}"
    if isinstance(test, YuenLog) and test.t is not None:
        return f"t_Y({fmt(test.df, 4)}) = {fmt(test.t, 3)}"
    if test.t is None:
        return "-"
    return f"t({fmt(test.df, 4)}) = {fmt(test.t, 3)}"


def verdict_text(verdict: Verdict | None) -> str:
    """A procedure's decision as the table shows it: "a < b", "n.s.", "inconclusive"."""
    return "-" if verdict is None else DECISION_TEXT[verdict.decision]


def decision(entry: Comparison, procedure: str | None = None) -> str:
    """Which way a and b differ ("a < b" by the test's own estimate), "n.s." (Holm-adjusted
    alpha), or "inconclusive" with fewer than 8 runs in a group: the verdict of the
    analysis' `procedure`; an analysis read from a version-3 JSON has none, and goes by
    the medians."""
    own = (entry.verdicts or {}).get(procedure or "")
    if own is not None:
        return verdict_text(own)
    if entry.p is None:
        return "[yellow]not testable[/]"
    if not entry.significant:
        return "n.s."
    if entry.test_used == "brunner_munzel" and entry.brunner_munzel is not None \
            and entry.brunner_munzel.estimate is not None:
        less = entry.brunner_munzel.estimate > 0.5
    else:
        med_a, med_b = (entry.descriptives[e].median for e in (entry.a, entry.b))
        less = med_a is not None and med_b is not None and med_a < med_b
    return f"[bold]{'a < b' if less else 'a > b'}[/]"


def ratio(entry: Comparison) -> str:
    r = entry.median_ratio
    if r.estimate is None:
        return "-"
    interval = "" if r.ci_low is None or r.ci_high is None \
        else f" [{r.ci_low:.3f}, {r.ci_high:.3f}]"
    return f"{r.estimate:.3f}{interval}"


def equivalence(entry: Comparison) -> str:
    """The TOST's interval of the ratio a/b and the conclusion: "[0.97, 1.02] equivalent"."""
    eq = entry.equivalence
    if eq is None:
        return "-"
    interval = "" if eq.ci_low is None or eq.ci_high is None \
        else f"[{eq.ci_low:.3f}, {eq.ci_high:.3f}] "
    word = {"equivalent": f"[bold]equivalent within ±{eq.margin:.0%}[/]",
            "inconclusive": "[yellow]inconclusive: more runs needed[/]"}.get(
        eq.conclusion, f"a {eq.conclusion}")
    return interval + word


def _pair_table(metric: str, a: str, b: str, entries: list[Comparison],
                procedure: str = DEFAULT_PROCEDURE) -> Table:
    first = entries[0]
    table = Table(title=f"{escape(metric)}: a = {escape(a)}, b = {escape(b)}  "
                        f"(H1: {first.alternative}, "
                        f"alpha {first.alpha}, Holm across datasets)",
                  title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1))
    columns = [("dataset", "left"), ("median a", "right"), ("median b", "right"),
               ("test", "left"), ("statistic", "left"), ("p", "right"), ("p Holm", "right"),
               ("decision", "left"), ("a/b medians [95% CI]", "right")]
    other = _other_procedure(first, procedure)
    if other:
        columns.insert(8, (other, "left"))
    margin = first.equivalence is not None
    if margin:
        columns.append(("equivalence: a/b [90% CI]", "left"))
    for name, justify in columns:
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for e in entries:
        cells = [escape(e.dataset), fmt(e.descriptives[a].median, zeros=True),
                 fmt(e.descriptives[b].median, zeros=True), TEST_NAMES[e.test_used],
                 statistic(e), fmt_p(e.p), fmt_p(e.p_holm), decision(e, procedure), ratio(e)]
        if other:
            cells.insert(8, verdict_text((e.verdicts or {}).get(other)))
        if margin:
            cells.append(equivalence(e))
        table.add_row(*cells)
    return table


def _other_procedure(entry: Comparison, procedure: str) -> str | None:
    """The procedure whose verdict the table shows beside the one that decides: the robust
    one under SPSS's, SPSS's under any other (None without verdicts)."""
    found = entry.verdicts or {}
    return next((name for name in ("robust", "spss") if name in found and name != procedure),
                None)


def make_console() -> Console:
    """A console for stdout that, writing to a pipe or a log, does not squeeze into 80 columns."""
    console = Console()
    if not console.is_terminal:
        console.width = WIDE
    return console


def print_summary(analysis: Analysis, console: Console | None = None) -> None:
    """Print the summary tables and warnings of an analysis to the console."""
    console = console or make_console()
    if analysis.procedure != DEFAULT_PROCEDURE:  # the catalogue's words (data.procedures)
        text = procedure_descriptions().get(analysis.procedure)
        console.print(escape(f"{analysis.procedure} procedure" + (f": {text}" if text else "")))
    if not analysis.comparisons:
        console.print("no comparisons: the runs hold fewer than two environments "
                      "or no numeric metric")
    tables: dict[tuple[str, str, str], list[Comparison]] = {}
    for entry in analysis.comparisons:
        tables.setdefault((entry.metric, entry.a, entry.b), []).append(entry)
    for (metric, a, b), entries in tables.items():
        console.print(_pair_table(metric, a, b, entries, analysis.procedure))
    kruskal = analysis.kruskal_wallis or ()
    if kruskal:
        table = Table(title="Kruskal-Wallis over all environments", title_justify="left",
                      box=box.SIMPLE_HEAD)
        for name in ("metric", "dataset", "H", "df", "p"):
            table.add_column(name)
        for k in kruskal:
            table.add_row(escape(k.metric), escape(k.dataset), fmt(k.H), fmt(k.df),
                          fmt_p(k.p))
        console.print(table)
    warnings = analysis.warnings
    if warnings:
        console.print(f"[yellow]{len(warnings)} warning(s)[/]:")
        for w in warnings[:MAX_WARNINGS]:
            console.print(f"  - {w}", highlight=False, markup=False)
        if len(warnings) > MAX_WARNINGS:
            console.print(f"  ... and {len(warnings) - MAX_WARNINGS} more in the JSON")
    lines = time_lines(analysis)
    if lines:
        console.print("across time (hours, days, devices, sessions):")
        for line in lines:
            console.print(f"  - {line}", highlight=False, markup=False)


def time_lines(analysis: Analysis) -> list[str]:
    """One line per pair on whether its difference holds at every window of the day, then
    the time section's warnings (each once)."""
    out, warned = [], []
    for entry in analysis.time or ():
        where = f"{entry.metric}, {entry.dataset}" + (f" ({entry.configuration})"
                                                      if entry.configuration else "")
        for pair in entry.pairs:
            i = pair.interaction
            if i is None:
                verdict = "too few runs per window to compare them"
            elif i.holds_at_every_window:
                verdict = (f"ratio {fmt(i.ratio)}, on the same side of 1 in every window "
                           f"(interaction p {fmt_p(i.pvalue)})")
            else:
                verdict = (f"ratio {fmt(i.ratio)}, not the same in every window (interaction "
                           f"p {fmt_p(i.pvalue)}; differ in: "
                           f"{', '.join(i.differing_windows) or 'none alone'})")
            out.append(f"{where}: {pair.a} vs {pair.b}: {verdict}")
        warned += [w for w in entry.warnings if w not in warned]
    return out + warned[:MAX_WARNINGS]


def summary_text(analysis: Analysis, width: int = WIDE) -> str:
    """The summary as plain text (no colours), for logs and tests."""
    buffer = io.StringIO()
    print_summary(analysis, Console(file=buffer, width=width, color_system=None))
    return buffer.getvalue()

"""A terminal summary of the analysis JSON: what a researcher reads before the paper.

One table per metric and pair of environments (dataset, medians, the test used, its
statistic, p, Holm's p, the decision and the ratio of medians with its interval), the
Kruskal-Wallis tests when there are more than two environments, then the warnings.
"""

from __future__ import annotations

import io
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

MAX_WARNINGS = 20
WIDE = 140
TEST_NAMES = {"mann_whitney": "Mann-Whitney", "student_t": "Student t", "welch_t": "Welch t"}


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


def statistic(entry: dict[str, Any]) -> str:
    """The statistic of the test used, as quoted in text: "U = 265, Z = -0.48", "t(46) = 1.23"."""
    used = entry.get("test_used")
    if used == "mann_whitney":
        mw = entry["mann_whitney"]
        return "-" if mw["U"] is None else f"U = {fmt(mw['U'], 6)}, Z = {fmt(mw['Z'], 3)}"
    test = entry.get(used) or {}
    if test.get("t") is None:
        return "-"
    return f"t({fmt(test['df'], 4)}) = {fmt(test['t'], 3)}"


def decision(entry: dict[str, Any]) -> str:
    """Which way a and b differ ("a < b" by their medians), or "n.s." (Holm-adjusted alpha)."""
    if entry.get("p") is None:
        return "[yellow]not testable[/]"
    if not entry.get("significant"):
        return "n.s."
    med_a, med_b = (entry["descriptives"][e]["median"] for e in (entry["a"], entry["b"]))
    less = med_a is not None and med_b is not None and med_a < med_b
    return f"[bold]{'a < b' if less else 'a > b'}[/]"


def ratio(entry: dict[str, Any]) -> str:
    r = entry.get("median_ratio") or {}
    if r.get("estimate") is None:
        return "-"
    interval = "" if r.get("ci_low") is None else f" [{r['ci_low']:.3f}, {r['ci_high']:.3f}]"
    return f"{r['estimate']:.3f}{interval}"


def _pair_table(metric: str, a: str, b: str, entries: list[dict[str, Any]]) -> Table:
    first = entries[0]
    table = Table(title=f"{metric}: a = {a}, b = {b}  (H1: {first.get('alternative')}, "
                        f"alpha {first.get('alpha')}, Holm across datasets)",
                  title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1))
    for name, justify in (("dataset", "left"), ("median a", "right"), ("median b", "right"),
                          ("test", "left"), ("statistic", "left"), ("p", "right"),
                          ("p Holm", "right"), ("decision", "left"),
                          ("a/b medians [95% CI]", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for e in entries:
        desc = e["descriptives"]
        table.add_row(e["dataset"], fmt(desc[a]["median"], zeros=True),
                      fmt(desc[b]["median"], zeros=True),
                      TEST_NAMES.get(e["test_used"], "-"), statistic(e), fmt_p(e.get("p")),
                      fmt_p(e.get("p_holm")), decision(e), ratio(e))
    return table


def make_console() -> Console:
    """A console for stdout that, writing to a pipe or a log, does not squeeze into 80 columns."""
    console = Console()
    if not console.is_terminal:
        console.width = WIDE
    return console


def print_summary(analysis: dict[str, Any], console: Console | None = None) -> None:
    """Print the summary tables and warnings of an analysis dict to the console."""
    console = console or make_console()
    comparisons = analysis.get("comparisons", [])
    if not comparisons:
        console.print("no comparisons: the runs hold fewer than two environments "
                      "or no numeric metric")
    tables: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for entry in comparisons:
        tables.setdefault((entry["metric"], entry["a"], entry["b"]), []).append(entry)
    for (metric, a, b), entries in tables.items():
        console.print(_pair_table(metric, a, b, entries))
    kruskal = analysis.get("kruskal_wallis") or []
    if kruskal:
        table = Table(title="Kruskal-Wallis over all environments", title_justify="left",
                      box=box.SIMPLE_HEAD)
        for name in ("metric", "dataset", "H", "df", "p"):
            table.add_column(name)
        for k in kruskal:
            table.add_row(k["metric"], k["dataset"], fmt(k["H"]), fmt(k["df"]), fmt_p(k["p"]))
        console.print(table)
    warnings = list(dict.fromkeys(w for e in comparisons for w in e.get("warnings", [])))
    if warnings:
        console.print(f"[yellow]{len(warnings)} warning(s)[/]:")
        for w in warnings[:MAX_WARNINGS]:
            console.print(f"  - {w}", highlight=False)
        if len(warnings) > MAX_WARNINGS:
            console.print(f"  ... and {len(warnings) - MAX_WARNINGS} more in the JSON")


def summary_text(analysis: dict[str, Any], width: int = WIDE) -> str:
    """The summary as plain text (no colours), for logs and tests."""
    buffer = io.StringIO()
    print_summary(analysis, Console(file=buffer, width=width, color_system=None))
    return buffer.getvalue()

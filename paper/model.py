"""The report model: what the paper says, once, in no output format.

The builder (paper.build.report_model) turns the analysis, the runs, the manifest and the
study into typed tables (cells are numbers with a format, not strings), statements (the
sentences, with their numbers as data) and figures (data plus a kind). The renderers
(paper.latex for the PDF, paper.html for the page) only lay them out: nothing is computed
twice, so the two formats cannot disagree. The idea is benchopt's: plot data built once,
drawn by matplotlib and by the browser.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from cloudbench.paper.text import (
    MISSING,
    fmt_df,
    fmt_int,
    fmt_num,
    fmt_p,
    is_missing,
    number_format,
)

#: How a cell's value prints (see Cell.text).
Format = Literal["text", "num", "int", "df", "p", "interval", "percent"]


@dataclass(frozen=True)
class Cell:
    """One table cell: a value and how it prints.

    `value` is a number (or None when missing) for every format but "text", where it is
    the text itself (from the data or the language files). "interval" prints
    "value [low, high]"; `prefix` and `suffix` go around the number ("U = 265", "2.50 EUR",
    a note's mark).
    """

    value: Any = None
    fmt: Format = "text"
    digits: int = 2
    bounded: bool = False
    low: float | None = None
    high: float | None = None
    prefix: str = ""
    suffix: str = ""

    def text(self, lang: str) -> str:
        """The cell as it prints in the report's language (the same in every format)."""
        if self.fmt == "text":
            body = "" if self.value is None else str(self.value)
        elif self.fmt == "int":
            body = fmt_int(self.value)
        elif self.fmt == "df":
            body = fmt_df(self.value, lang)
        elif self.fmt == "p":
            body = fmt_p(self.value, lang)
        elif self.fmt == "percent":
            body = MISSING if is_missing(self.value) else \
                fmt_num(self.value, self.digits, lang) + "\u2009%"
        else:
            body = fmt_num(self.value, self.digits, lang, self.bounded)
            if self.fmt == "interval" and not is_missing(self.value) and \
                    self.low is not None and self.high is not None:
                sep = number_format("interval_separator", lang)
                body += (f" [{fmt_num(self.low, self.digits, lang, self.bounded)}{sep}"
                         f"{fmt_num(self.high, self.digits, lang, self.bounded)}]")
        # "±2.5 %", but a missing noise floor is a dash alone ("U = —" says which test)
        prefix = "" if body == MISSING and self.fmt == "percent" else self.prefix
        return f"{prefix}{body}{self.suffix}"

    @property
    def number(self) -> float | None:
        """The value as a number, for sorting and for comparing formats; None for text."""
        if self.fmt == "text" or is_missing(self.value):
            return None
        return float(self.value)


def text_cell(value: Any) -> Cell:
    return Cell("" if value is None else str(value))


@dataclass(frozen=True)
class Column:
    """A column: its label, alignment ("l", "r", "c", or "wrap" for a paragraph), for a
    long label the width (in characters) at which a narrow rendering may break it over
    lines, and for a paragraph column its share of the line (None: shared equally)."""

    label: str
    align: str = "r"
    wrap: int | None = None
    width: float | None = None


@dataclass(frozen=True)
class Group:
    """A label spanning columns above the header (an environment over its metrics)."""

    label: str
    first: int
    span: int


@dataclass
class Table:
    """A table: caption, columns, rows of cells and notes below.

    `keys`: how many leading columns group the rows (shown once per group in print, with
    a gap between groups; repeated in a sortable page). `size`: "small" or "footnotesize",
    how dense the print may set it.
    """

    id: str
    caption: str
    columns: list[Column]
    rows: list[list[Cell]]
    notes: list[str] = field(default_factory=list)
    groups: list[Group] = field(default_factory=list)
    keys: int = 0
    size: str = "small"

    def texts(self, lang: str) -> list[list[str]]:
        """Every row's cells as they print."""
        return [[c.text(lang) for c in row] for row in self.rows]


@dataclass(frozen=True)
class Statement:
    """A sentence of the report: its text (with the marks of paper.text) and the numbers
    it states, by name, as data (a page may show them on hover; a test may check them)."""

    text: str
    numbers: dict[str, float | None] = field(default_factory=dict)
    kind: str = ""

    def __str__(self) -> str:
        return self.text


@dataclass
class Figure:
    """A figure as data plus a kind: each renderer draws it its own way (matplotlib for the
    PDF, plotly in the page). `data` is a frame of points (one row per run, or per run and
    epoch), `options` what the kind needs (the metric, the phases, the parameter...)."""

    id: str
    kind: str
    caption: str
    data: Any
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class MetricSection:
    """The results of one metric: its figure, its tables and its decisions."""

    metric: str
    title: str
    figure: Figure | None
    tables: list[Table]
    conclusions: list[Statement]


@dataclass
class SweepParameter:
    """The results along one sweep parameter: its levels, two figures and a table."""

    name: str
    levels: str
    figures: list[Figure]
    table: Table | None


@dataclass
class Part:
    """A piece a registered function adds at the end of a section of the report
    (paper.tables.report_part): an optional heading, paragraphs, tables and figures."""

    heading: str | None = None
    paragraphs: list[Statement] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)


@dataclass
class Report:
    """Everything the report shows, built once (paper.build.report_model).

    `facts` are the methodology's scalars (counts, names, the manifest) that the body's
    paragraphs fill in; `tables` the report-wide tables by name (None: not shown);
    `figures` the report-wide figures by name; `sections` one per metric; `sweep` the
    sweep's results or None; `explorer` every usable run's metrics, for the page's
    interactive figure; `extra` the registered parts and tables (paper.tables.report_part,
    report_table) by the section they close; `factors` a sweep's
    factor analysis (analysis.factors), which the build also writes as factors.json.
    """

    lang: str
    name: str
    title: str
    author: str
    date: str
    facts: dict[str, Any]
    tables: dict[str, Table | None]
    figures: dict[str, Figure | None]
    sections: list[MetricSection]
    sweep: dict[str, Any] | None
    explorer: Figure | None = None
    extra: dict[str, list[Part]] = field(default_factory=dict)
    factors: Any = None

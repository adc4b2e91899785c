"""The HTML renderer: the report model (paper.model) as one self-contained page.

The page is one file that can be sent by mail and opened anywhere: its style, its script
and plotly's script are inside it (plotly gzipped and base64-encoded, unpacked by the
browser's own DecompressionStream, so the page stays small), it uses the reader's system
fonts and it requests nothing. Its figures are plotly's (paper.plots): hovering a point
names its run; a selector switches the explorer's metric and dataset. Its tables sort by
any column. Every word comes from paper/lang/<lang>.toml, like the PDF's.
"""

from __future__ import annotations

import base64
import gzip
import html
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

from cloudbench.paper import text as _text
from cloudbench.paper.model import Figure, Report, Table
from cloudbench.paper.text import MARKS

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
#: Where a table's or figure's number goes, filled in once the page is laid out.
_NUMBER = ("\ue006", "\ue007")


def anchor(target: str) -> str:
    """An HTML id from a table's or figure's id ("tab:desc:train_s" -> "tab-desc-train_s")."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", target)


def escape(value: Any) -> str:
    """Text as HTML: escaped, its marks set as <i>, <code> and a link to a numbered table."""
    text = "" if value is None else str(value)
    out, last = [], 0
    for m in MARKS.finditer(text):
        out.append(html.escape(text[last:m.start()], quote=False))
        if m.group(1) is not None:
            out.append(f"<i>{html.escape(m.group(1))}</i>")
        elif m.group(2) is not None:
            out.append(f"<code>{html.escape(m.group(2))}</code>")
        else:
            target = anchor(m.group(3))
            out.append(f'<a class="ref" href="#{target}">{_NUMBER[0]}{target}{_NUMBER[1]}</a>')
        last = m.end()
    out.append(html.escape(text[last:], quote=False))
    return "".join(out)


def _number(page: str) -> str:
    """Tables and figures numbered in the order they appear; references filled in."""
    numbers: dict[str, int] = {}
    counts = {"table": 0, "figure": 0}
    for kind, target in re.findall(r'data-kind="(table|figure)" id="([^"]+)"', page):
        counts[kind] += 1
        numbers[target] = counts[kind]
    return re.sub(f"{_NUMBER[0]}([^{_NUMBER[1]}]*){_NUMBER[1]}",
                  lambda m: str(numbers.get(m.group(1), "?")), page)


def render_table(table: Table | None, lang: str, word: str = "") -> str:
    """A table as sortable HTML: every row whole (no blanked keys, so it sorts), numbers
    right-aligned with their value in data-sort."""
    if table is None:
        return ""
    target = anchor(table.id)
    head = []
    if table.groups:
        cells, col = [], 0
        for g in table.groups:
            cells += ["<th></th>"] * (g.first - col)
            cells.append(f'<th colspan="{g.span}" class="group">{escape(g.label)}</th>')
            col = g.first + g.span
        cells += ["<th></th>"] * (len(table.columns) - col)
        head.append("<tr>" + "".join(cells) + "</tr>")
    head.append("<tr>" + "".join(
        f'<th scope="col" class="{"num" if c.align == "r" else ""}" tabindex="0">'
        f"{escape(c.label)}</th>" for c in table.columns) + "</tr>")
    rows = []
    for row in table.rows:
        cells = []
        for cell in row:
            number = cell.number
            sort = f' data-sort="{number!r}"' if number is not None else ""
            cls = ' class="num"' if number is not None else ""
            cells.append(f"<td{cls}{sort}>{escape(cell.text(lang))}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    notes = "".join(f'<p class="note">{escape(n)}</p>' for n in table.notes)
    return (f'<figure class="table" data-kind="table" id="{target}">\n'
            f"<figcaption><b>{escape(word)}\u00a0{_NUMBER[0]}{target}{_NUMBER[1]}.</b> "
            f"{escape(table.caption)}</figcaption>\n"
            f'<div class="scroll"><table class="sortable">\n<thead>{"".join(head)}</thead>\n'
            f"<tbody>\n" + "\n".join(rows) + "\n</tbody></table></div>\n"
            f"{notes}</figure>\n")


@cache
def plotly_gz() -> str:
    """plotly.js, gzipped (no timestamp: the same page for the same inputs) and base64."""
    from plotly.offline import get_plotlyjs

    return base64.b64encode(gzip.compress(get_plotlyjs().encode(), 9, mtime=0)).decode()


def _jinja() -> Any:
    import jinja2
    from markupsafe import Markup

    def finalize(value: Any) -> Any:
        return value if isinstance(value, Markup) else escape(value)

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)), autoescape=False,
        trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined,
        finalize=finalize, keep_trailing_newline=True)


def render_page(report: Report) -> str:
    """The report as one self-contained HTML page."""
    from markupsafe import Markup

    from cloudbench.paper.plots import explorer_data, hover_template, plot

    lang = report.lang
    figures: list[dict[str, Any]] = []
    table_word = _text.body("table_word", lang)
    figure_word = _text.body("figure_word", lang)

    def table(t: Table | None) -> Markup | None:
        return Markup(render_table(t, lang, table_word)) if t is not None else None

    def fig(f: Figure | None) -> Markup:
        if f is None:
            return Markup("")
        figures.append(plot(f, lang))
        target = anchor(f.id)
        return Markup(
            f'<figure class="plot" data-kind="figure" id="{target}">'
            f'<div class="figure-plot" data-figure="{len(figures) - 1}"></div>'
            f"<figcaption><b>{escape(figure_word)}\u00a0{_NUMBER[0]}{target}{_NUMBER[1]}.</b> "
            f"{escape(f.caption)}</figcaption></figure>\n")

    def say(key: str, **fields: Any) -> Markup:
        return Markup(escape(_text.body(key, lang, **fields)))

    sweep = None
    if report.sweep:
        sweep = {**report.sweep, "interactions": table(report.sweep["interactions"])}
    explorer = report.explorer
    context = {
        "lang": lang, "title": report.title, "author": report.author, "date": report.date,
        "f": report.facts, "say": say, "code": _text.code, "fig": fig, "table": table,
        "text": lambda key, **fields: _text.body(key, lang, **fields),
        "tables": {k: table(t) for k, t in report.tables.items()},
        "figures": {k: report.figures.get(k) for k in
                    ("phases", "train_total", "train_mean", "epochs", "accuracy_time")},
        "sections": report.sections, "sweep": sweep, "explorer": explorer,
        "extra": report.extra,
        "metric_names": {m: _text.plain(_text.metric_name(m, lang, capital=True))
                         for m in (explorer.options["metrics"] if explorer else [])},
    }
    page = _jinja().get_template("report.html.j2").render(**context)
    data = {"figures": figures,
            "explorer": explorer_data(explorer) if explorer is not None else None,
            "metricNames": context["metric_names"],
            # the explorer's hover, its value's name filled in by the page
            "hover": hover_template("@@NAME@@", lang)}
    # "</" inside a script would end it: JSON may hold any name
    payload = json.dumps(data, allow_nan=False, separators=(",", ":")).replace("</", "<\\/")
    page = page.replace("@@DATA@@", payload).replace("@@PLOTLY@@", plotly_gz())
    return _number(page)

"""The LaTeX renderer: the report model (paper.model) as the PDF's LaTeX.

Every string, whether it comes from the data (environment and dataset names, metric columns,
error messages) or from the language files, passes through :func:`escape`, because a name
such as ``a&b_%`` would otherwise break the build or, worse, silently change the document.
escape also maps the neutral text's conventions (paper.text): the marks of a statistic's
letter, a monospace name and a table reference, the real minus sign, thin and non-breaking
spaces, α, ±, × and a note's superscript letter.
"""

from __future__ import annotations

import re
import shutil
import warnings
from pathlib import Path
from typing import Any

from cloudbench.data.atomic import write_text_atomic
from cloudbench.paper import text as _text
from cloudbench.paper.model import Column, Figure, Report, Table
from cloudbench.paper.text import (  # noqa: F401  (the words, for the templates and tests)
    LABELS,
    LANGUAGES,
    MARKS,
    METRIC_NAMES,
    auto_digits,
    check_language,
    is_missing,
    metric_name,
    number_format,
    phrase,
    where,
)

_LATEX_SPECIALS = {
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "\\": r"\textbackslash{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "|": r"\textbar{}",
    '"': r"\textquotedbl{}",
}
# The neutral text's characters that pdflatex needs spelt out.
_UNICODE = {
    "\u2009": r"\,",
    "\u00a0": "~",
    "\u2212": "$-$",
    "\u2014": "---",
    "\u2026": r"\dots",
    "\u03b1": r"$\alpha$",
    "\u00b1": r"$\pm$",
    "\u00d7": r"$\times$",
    "\u221e": r"$\infty$",
    "\u1d43": "$^a$",
    "\u1d47": "$^b$",
    "\u1d9c": "$^c$",
}
# Inside a statistic's letters (math mode).
_MATH = {"\u03b1": r"\alpha", "\u00b1": r"\pm", "\u00d7": r"\times", "\u221e": r"\infty",
         "\u2212": "-", "\u2081": "_1", "\u2082": "_2", "p\u0302": r"\hat{p}", "%": r"\%"}

# What a missing value prints as: an em dash, as in SPSS's empty cells.
MISSING = "---"
MINUS = "$-$"


#: Control characters (a form feed, DEL) that TeX cannot print or would act on: shown as
#: their code, like Python's repr, so a name holding one still prints and builds.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _plain_escape(text: str) -> str:
    text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    out = []
    for i, ch in enumerate(text):
        if ch == "<" and text[i + 1:i + 2] == "\u2009":  # "< .001": the math sign
            out.append("$<$")
        else:
            out.append(_LATEX_SPECIALS.get(ch) or _UNICODE.get(ch, ch))
    return "".join(out)


def _math(text: str) -> str:
    for key, value in _MATH.items():
        text = text.replace(key, value)
    return re.sub("\u221a(\\w)", r"\\sqrt{\1}", text)


def _code(text: str) -> str:
    # "-{}-": no en-dash ligature in "--equivalence"
    return "\\texttt{" + _plain_escape(text).replace("--", "-{}-") + "}"


def escape(value: Any) -> str:
    """Text that prints exactly as given, whatever characters it holds; the neutral text's
    marks become $p$, \\texttt{...} and \\ref{...}."""
    text = "" if value is None else str(value)
    out, last = [], 0
    for m in MARKS.finditer(text):
        out.append(_plain_escape(text[last:m.start()]))
        if m.group(1) is not None:
            out.append("$" + _math(m.group(1)) + "$")
        elif m.group(2) is not None:
            out.append(_code(m.group(2)))
        else:
            out.append("\\ref{" + m.group(3) + "}")
        last = m.end()
    out.append(_plain_escape(text[last:]))
    # Newlines would end paragraphs inside table cells.
    return " ".join("".join(out).split("\n"))


def _plain(text: str) -> str:
    """The neutral text as plain ASCII-ish text: a hyphen for the minus, NA when missing."""
    return text.replace("\u2212", "-").replace("\u2014", "NA")


def fmt_num(x: Any, digits: int = 2, lang: str = "en", bounded: bool = False,
            latex: bool = True) -> str:
    """A number with a fixed count of decimals (paper.text.fmt_num), as LaTeX."""
    text = _text.fmt_num(x, digits, lang, bounded)
    return escape(text) if latex else _plain(text)


def fmt_int(x: Any, latex: bool = True) -> str:
    text = _text.fmt_int(x)
    return escape(text) if latex else _plain(text)


def fmt_df(x: Any, lang: str = "en", latex: bool = True) -> str:
    text = _text.fmt_df(x, lang)
    return escape(text) if latex else _plain(text)


def fmt_p(p: Any, lang: str = "en", latex: bool = True, digits: int = 3) -> str:
    """A p-value as APA and SPSS print it, as LaTeX: ".633", "$<$\\,.001"."""
    text = _text.fmt_p(p, lang, digits)
    return escape(text) if latex else _plain(text).replace("\u2009", " ")


def p_clause(p: Any, lang: str = "en", latex: bool = True) -> str:
    """"$p$ = .633" or "$p$ $<$\\,.001" for sentences."""
    text = _text.p_clause(p, lang)
    return escape(text) if latex else _plain(_text.plain(text)).replace("\u2009", " ")


def label(key: str, lang: str = "en", **fields: Any) -> str:
    """A fixed label in the paper's language, as LaTeX."""
    return escape(_text.label(key, lang, **fields))


# --------------------------------------------------------------------------- tables

#: Longer tables (a sweep's cells) are set as longtables, which may break across pages.
LONG_TABLE_ROWS = 40


def stacked(cell: str, width: int = 14) -> str:
    """A long header label broken over lines in a \\shortstack, to keep tables narrow."""
    lines: list[str] = []
    for word in cell.split(" "):
        if lines and len(lines[-1]) + len(word) + 1 <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    # "\\{}" rather than "\\": a line starting with "[" must not read as \\[length].
    return cell if len(lines) == 1 else "\\shortstack{" + "\\\\{}".join(lines) + "}"


def header_row(cells: list[str]) -> str:
    return " & ".join(cells) + " \\\\"


def _align(columns: list[Column]) -> str:
    wraps = sum(c.align == "wrap" for c in columns)
    out = []
    for c in columns:
        if c.align != "wrap":
            out.append(c.align)
            continue
        if c.width is not None:
            out.append(f"p{{{c.width:g}\\linewidth}}")
        else:  # the environments' columns share 11 cm, at least 2 cm each
            out.append(f">{{\\raggedright\\arraybackslash}}p{{{max(2.0, 11.0 / wraps):.1f}cm}}")
    return "".join(out)


def _blank_repeats(rows: list[list[str]], keys: int) -> list[list[str] | None]:
    """The leading `keys` cells shown only where they change, a small gap between groups."""
    if not keys:
        return list(rows)
    out: list[list[str] | None] = []
    previous: list[str] | None = None
    for row in rows:
        if previous is not None and row[:keys] != previous[:keys]:
            out.append(None)
        cells = list(row)
        if previous is not None:
            for i in range(keys):
                if row[: i + 1] != previous[: i + 1]:
                    break
                cells[i] = ""
        out.append(cells)
        previous = row
    return out


def render_table(table: Table | None, lang: str = "en") -> str:
    """A booktabs table where it stands ([H], the float package's), so the paper's many
    tables never overflow LaTeX's queue of floats; a long one breaks across pages. The
    empty string for no table."""
    if table is None:
        return ""
    header = []
    if table.groups:
        cells, spans, col = [], [], 0
        for g in table.groups:
            cells += [""] * (g.first - col)
            cells.append(f"\\multicolumn{{{g.span}}}{{c}}{{{escape(g.label)}}}")
            spans.append(f"\\cmidrule(lr){{{g.first + 1}-{g.first + g.span}}}")
            col = g.first + g.span
        header.append(" & ".join(cells) + " \\\\\n" + "".join(spans))
    header.append(header_row([stacked(escape(c.label), c.wrap) if c.wrap else escape(c.label)
                              for c in table.columns]))
    rows = _blank_repeats([[escape(t) for t in row] for row in table.texts(lang)], table.keys)
    body = ["\\addlinespace" if row is None else " & ".join(row) + " \\\\" for row in rows]
    notes = "".join(f"\\par\\smallskip\\footnotesize {escape(n)}\n" for n in table.notes)
    size, align, caption = "\\" + table.size, _align(table.columns), escape(table.caption)
    if len(table.rows) > LONG_TABLE_ROWS:
        head = "\\toprule\n" + "\n".join(header) + "\n\\midrule\n"
        return (
            f"{{{size}\\setlength{{\\tabcolsep}}{{3pt}}\n"
            f"\\begin{{longtable}}{{{align}}}\n"
            f"\\caption{{{caption}}}\\label{{{table.id}}}\\\\\n"
            + head + "\\endfirsthead\n" + head + "\\endhead\n"
            "\\bottomrule\n\\endlastfoot\n"
            + "\n".join(body) + "\n\\end{longtable}}\n" + notes
        )
    return (
        "\\begin{table}[H]\n\\centering\n"
        f"\\caption{{{caption}}}\\label{{{table.id}}}\n{size}\n"
        # Shrunk to the text width only when wider (names can be long).
        "\\resizebox{\\ifdim\\width>\\linewidth\\linewidth\\else\\width\\fi}{!}{%\n"
        f"\\begin{{tabular}}{{{align}}}\n\\toprule\n"
        + "\n".join(header) + "\n\\midrule\n"
        + "\n".join(body) + "\n\\bottomrule\n\\end{tabular}}\n"
        + notes + "\\end{table}\n"
    )


# --------------------------------------------------------------------------- the paper


TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"


def jinja_env() -> Any:
    """Jinja with LaTeX-safe delimiters; every value is escaped unless marked as LaTeX."""
    import jinja2
    from markupsafe import Markup

    def finalize(value: Any) -> Any:
        return value if isinstance(value, Markup) else escape(value)

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)), autoescape=False,
        block_start_string=r"\BLOCK{", block_end_string="}",
        variable_start_string=r"\VAR{", variable_end_string="}",
        comment_start_string=r"\#{", comment_end_string="}",
        line_comment_prefix="%#", trim_blocks=True, lstrip_blocks=True,
        undefined=jinja2.StrictUndefined, finalize=finalize, keep_trailing_newline=True)


#: The report-wide figures a template may show (paper.figures.figure_specs' names).
REPORT_FIGURES = ("phases", "train_total", "train_mean", "epochs", "accuracy_time")


def render_paper(report: Report, folder: Path) -> str:
    """The paper's LaTeX from the report model; writes the tables (tables/*.tex) and draws
    the figures (figures/*.pdf) it inputs into `folder`."""
    from markupsafe import Markup

    from cloudbench.paper.figures import draw
    from cloudbench.paper.sweep import ratio_figure

    lang = report.lang
    tables_dir, figures_dir = folder / "tables", folder / "figures"
    for d in (tables_dir, figures_dir):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)

    def table(name: str, t: Table | None) -> Markup | None:
        if t is None:
            return None
        write_text_atomic(tables_dir / f"{name}.tex", render_table(t, lang))
        return Markup(f"tables/{name}.tex")

    def figure(name: str, f: Figure | None) -> dict[str, Any] | None:
        if f is None:
            return None
        target = figures_dir / f"{name}.pdf"
        try:
            if f.kind == "ratio":
                path = ratio_figure(f.data, f.options["parameter"], target, lang,
                                    f.options["which"])
            else:
                path = draw(f, target, lang)
        except (ValueError, OverflowError, FloatingPointError) as exc:
            # Data a plot cannot scale (values near float's limit): the paper goes on
            # without this figure, and says so in the build's log.
            warnings.warn(f"figure {name} left out: {exc}", stacklevel=1)
            return None
        return None if path is None else {"path": Markup(f"figures/{path.name}"),
                                          "caption": Markup(escape(f.caption)),
                                          "id": Markup(f.id)}

    def fig(x: dict[str, Any] | None) -> Markup:
        if not x:
            return Markup("%")  # a comment: no empty line, no new paragraph
        return Markup("\\begin{figure}[H]\n\\centering\n"
                      f"\\includegraphics[width=\\linewidth]{{{x['path']}}}\n"
                      f"\\caption{{{x['caption']}}}\\label{{{x['id']}}}\n\\end{{figure}}")

    def say(key: str, **fields: Any) -> Markup:
        return Markup(escape(_text.body(key, lang, **fields)))

    sections = []
    for i, s in enumerate(report.sections):
        sections.append({"title": s.title, "figure": figure(f"box_{i}", s.figure),
                         "tables": [table(f"{name}_{i}", t) for name, t in
                                    zip(_section_table_names(s), s.tables, strict=True)],
                         "conclusions": [Markup(escape(c.text)) for c in s.conclusions]})
    sweep = None
    if report.sweep:
        w = report.sweep
        sweep = {**w, "interactions": table("interactions", w["interactions"]),
                 "parameters": [{"name": p.name, "levels": p.levels,
                                 "figures": [figure(f.options["file"], f) for f in p.figures],
                                 "table": table(f"factor_{i}", p.table)}
                                for i, p in enumerate(w["parameters"])]}
    context = {
        "lang": lang, "title": report.title, "author": report.author, "date": report.date,
        "f": report.facts, "say": say, "code": _text.code, "fig": fig,
        "text": lambda key, **fields: _text.body(key, lang, **fields),
        "tables": {k: table(k, t) for k, t in report.tables.items()},
        "figures": {k: figure(k, report.figures.get(k)) for k in REPORT_FIGURES},
        "sections": sections, "sweep": sweep,
        "extra": {section: [{"heading": part.heading, "paragraphs": [
            Markup(escape(x.text)) for x in part.paragraphs],
            "tables": [table(t.id.replace(":", "-"), t) for t in part.tables],
            "figures": [figure(f.id.replace(":", "-"), f) for f in part.figures]}
            for part in parts] for section, parts in report.extra.items()},
    }
    return jinja_env().get_template("paper.tex.j2").render(**context)


def _section_table_names(section: Any) -> list[str]:
    """File names of a metric section's tables, from their ids ("tab:desc:train_s")."""
    return [t.id.split(":")[1] for t in section.tables]

"""LaTeX text, numbers and labels in the paper's two languages.

Every string that comes from the data (environment and dataset names, metric columns,
error messages) passes through :func:`escape`, because a name such as ``a&b_%`` would
otherwise break the build or, worse, silently change the document. Numbers follow APA
style in English ("0.48", p = ".633", "< .001") and SPSS's Spanish output in Spanish
(decimal comma: ",633"), so tables read like the reference paper's. The words themselves
live in paper/lang/<lang>.toml: a new language is a new file there (and its templates).
"""

from __future__ import annotations

import math
import tomllib
from pathlib import Path
from typing import Any

LANGUAGES = ("en", "es")

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

# What a missing value prints as: an em dash, as in SPSS's empty cells.
MISSING = "---"
MINUS = "$-$"


def escape(value: Any) -> str:
    """Text that prints exactly as given, whatever characters it holds."""
    text = "" if value is None else str(value)
    out = "".join(_LATEX_SPECIALS.get(ch, ch) for ch in text)
    # Newlines would end paragraphs inside table cells.
    return " ".join(out.split("\n"))


def is_missing(x: Any) -> bool:
    """None, NaN and infinities are not printable numbers."""
    if x is None:
        return True
    try:
        return not math.isfinite(float(x))
    except (TypeError, ValueError):
        return True


def fmt_num(x: Any, digits: int = 2, lang: str = "en", bounded: bool = False,
            latex: bool = True) -> str:
    """A number with a fixed count of decimals.

    ``bounded`` marks values that cannot exceed 1 in magnitude (p, W of Shapiro-Wilk,
    r); APA and SPSS drop their leading zero (".633"). Spanish uses a decimal comma.
    With ``latex`` the minus sign is a real minus, otherwise a hyphen.
    """
    if is_missing(x):
        return MISSING if latex else "NA"
    value = float(x)
    text = f"{abs(value):.{digits}f}"
    if bounded and text.startswith("0") and digits > 0:
        text = text[1:]
    sign = (MINUS if latex else "-") if value < 0 and float(text or 0) != 0 else ""
    return sign + text.replace(".", number_format("decimal_mark", lang))


def fmt_int(x: Any, latex: bool = True) -> str:
    """Counts and degrees of freedom that are whole numbers."""
    if is_missing(x):
        return MISSING if latex else "NA"
    value = float(x)
    return f"{value:.0f}" if value == int(value) else fmt_num(value, 2, latex=latex)


def fmt_df(x: Any, lang: str = "en", latex: bool = True) -> str:
    """Degrees of freedom: whole for Student's t, two decimals for Welch's."""
    if is_missing(x):
        return MISSING if latex else "NA"
    value = float(x)
    return f"{value:.0f}" if abs(value - round(value)) < 1e-9 else fmt_num(value, 2, lang,
                                                                            latex=latex)


def fmt_p(p: Any, lang: str = "en", latex: bool = True, digits: int = 3) -> str:
    """A p-value as APA and SPSS print it: ".633", "< .001" (Spanish: ",633", "< ,001")."""
    if is_missing(p):
        return MISSING if latex else "NA"
    floor = 10.0 ** -digits
    if float(p) < floor:
        less = "$<$\\," if latex else "< "
        return less + fmt_num(floor, digits, lang, bounded=True, latex=latex)
    return fmt_num(min(float(p), 1.0), digits, lang, bounded=True, latex=latex)


def p_clause(p: Any, lang: str = "en", latex: bool = True) -> str:
    """"p = .633" or "p < .001" for sentences."""
    text = fmt_p(p, lang, latex)
    if text.startswith(("$<$", "<")):
        return "$p$ " + text if latex else "p " + text
    return ("$p$ = " if latex else "p = ") + text


def auto_digits(values: Any) -> int:
    """Decimals that show a metric's variation without noise: 3 below 10, 2 below 1000."""
    finite = [abs(float(v)) for v in values if not is_missing(v)]
    if not finite:
        return 2
    top = max(finite)
    return 3 if top < 10 else 2 if top < 1000 else 0


LANG_DIR = Path(__file__).resolve().parent / "lang"


def _load_language(lang: str) -> dict[str, dict[str, str]]:
    with open(LANG_DIR / f"{lang}.toml", "rb") as fh:
        return tomllib.load(fh)


_WORDS = {lang: _load_language(lang) for lang in LANGUAGES}
#: Fixed labels per language (paper/lang/<lang>.toml, [labels]).
LABELS: dict[str, dict[str, str]] = {lang: words["labels"] for lang, words in _WORDS.items()}
#: Readable metric names per language (paper/lang/<lang>.toml, [metrics]).
METRIC_NAMES: dict[str, dict[str, str]] = {lang: w["metrics"] for lang, w in _WORDS.items()}
#: Number formats per language (paper/lang/<lang>.toml, [format]).
FORMATS: dict[str, dict[str, str]] = {lang: words["format"] for lang, words in _WORDS.items()}
#: The sentences of the prose per language (paper/lang/<lang>.toml, [prose]).
PROSE: dict[str, dict[str, str]] = {lang: words["prose"] for lang, words in _WORDS.items()}

# Metrics for which a larger value is better; every other metric is a cost.
HIGHER_IS_BETTER = frozenset({"test_accuracy"})


def check_language(lang: str) -> str:
    """Fail early, naming the choices, rather than print a half-English paper."""
    if lang not in LANGUAGES:
        raise ValueError(f"language {lang!r} is not one of {', '.join(LANGUAGES)}")
    return lang


def label(key: str, lang: str = "en", **fields: Any) -> str:
    """A fixed LaTeX-ready label in the paper's language (fields are formatted in as given)."""
    text = LABELS[check_language(lang)][key]
    return text.format(**fields) if fields else text


def number_format(key: str, lang: str = "en", **fields: Any) -> str:
    """decimal_mark, interval_separator or range (with its fields) in the paper's language."""
    return FORMATS[check_language(lang)][key].format(**fields)


def phrase(key: str, lang: str = "en", **fields: Any) -> str:
    """A sentence or a piece of one, in the paper's language, with its fields filled in."""
    return PROSE[check_language(lang)][key].format(**fields)


def metric_name(metric: str, lang: str = "en", capital: bool = False, latex: bool = True) -> str:
    """A readable name for a metric column; unknown columns print as themselves."""
    name = METRIC_NAMES[check_language(lang)].get(metric)
    if name is None:
        return escape(metric) if latex else metric
    name = name[0].upper() + name[1:] if capital else name
    return name


def where(result: Any) -> str:
    """Where a comparison was made, as plain text: its dataset, and a sweep's configuration
    after it ("shapes, batch_size=32, model=fnn")."""
    configuration = getattr(result, "configuration", None)
    dataset = str(result.dataset)
    return f"{dataset}, {configuration.replace(',', ', ')}" if configuration else dataset

"""The report's words and numbers, in no output format: every renderer reads them from here.

The words live in paper/lang/<lang>.toml as plain Unicode text: a thin space is U+2009, a
non-breaking space U+00A0, "α", "±", "×" are themselves. Three placeholders mark what a
renderer sets apart: ``{var:p}`` a statistic's letter (italic), ``{code:train_s}`` a column
or file name (monospace) and ``{ref:tab:environments}`` a reference to a table. Filled in,
they become private-use characters around their text (:data:`VAR`, :data:`CODE`,
:data:`REF`), so composed sentences stay plain strings and each renderer maps the marks
once: LaTeX to ``$p$``, ``\\texttt``, ``\\ref``; HTML to ``<i>``, ``<code>``, a link.

Numbers follow APA style in English ("0.48", p = ".633", "< .001") and SPSS's Spanish
output in Spanish (decimal comma: ",633"), so tables read like the reference paper's. A
negative number carries a real minus sign (U+2212), a missing one an em dash.
"""

from __future__ import annotations

import math
import re
import tomllib
from pathlib import Path
from typing import Any

LANGUAGES = ("en", "es")
LANG_DIR = Path(__file__).resolve().parent / "lang"

#: Opening and closing marks of a statistic's letter, a name in monospace, a reference.
VAR = ("\ue000", "\ue001")
CODE = ("\ue002", "\ue003")
REF = ("\ue004", "\ue005")
MARKS = re.compile("\ue000(.*?)\ue001|\ue002(.*?)\ue003|\ue004(.*?)\ue005", re.S)

#: What a missing value prints as: an em dash, as in SPSS's empty cells.
MISSING = "\u2014"
MINUS = "\u2212"
THIN = "\u2009"


def var(text: str) -> str:
    """A statistic's letter or formula ("p", "df₁", "p̂"), set in italics."""
    return f"{VAR[0]}{text}{VAR[1]}"


def code(text: str) -> str:
    """A column, file or parameter name, set in monospace."""
    return f"{CODE[0]}{text}{CODE[1]}"


def ref(target: str) -> str:
    """A reference to a table by its id ("tab:environments"): its number where it prints."""
    return f"{REF[0]}{target}{REF[1]}"


def plain(text: str) -> str:
    """The text with its marks dropped: for figures, hover labels and comparisons."""
    return MARKS.sub(lambda m: m.group(1) if m.group(1) is not None else
                     m.group(2) if m.group(2) is not None else "", text)


class _Placeholder:
    """``{var:p}`` in a language file: the format spec is the text to mark."""

    def __init__(self, wrap: Any) -> None:
        self.wrap = wrap

    def __format__(self, spec: str) -> str:
        return self.wrap(spec)


_PLACEHOLDERS = {"var": _Placeholder(var), "code": _Placeholder(code), "ref": _Placeholder(ref)}


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
#: The paragraphs and headings of the report's body (paper/lang/<lang>.toml, [body]).
BODY: dict[str, dict[str, str]] = {lang: words["body"] for lang, words in _WORDS.items()}

# Metrics for which a larger value is better; every other metric is a cost.
HIGHER_IS_BETTER = frozenset({"test_accuracy"})


def check_language(lang: str) -> str:
    """Fail early, naming the choices, rather than print a half-English paper."""
    if lang not in LANGUAGES:
        raise ValueError(f"language {lang!r} is not one of {', '.join(LANGUAGES)}")
    return lang


def fill(template: str, **fields: Any) -> str:
    """A language file's text with its fields and placeholders filled in."""
    return template.format(**_PLACEHOLDERS, **fields)


def label(key: str, lang: str = "en", **fields: Any) -> str:
    """A fixed label in the report's language, its fields filled in as given."""
    return fill(LABELS[check_language(lang)][key], **fields)


def number_format(key: str, lang: str = "en", **fields: Any) -> str:
    """decimal_mark, interval_separator or range (with its fields) in the report's language."""
    return FORMATS[check_language(lang)][key].format(**fields)


def phrase(key: str, lang: str = "en", **fields: Any) -> str:
    """A sentence or a piece of one, in the report's language, with its fields filled in."""
    return fill(PROSE[check_language(lang)][key], **fields)


def body(key: str, lang: str = "en", **fields: Any) -> str:
    """A heading or paragraph of the report's body, with its fields filled in."""
    return fill(BODY[check_language(lang)][key], **fields)


def metric_name(metric: str, lang: str = "en", capital: bool = False) -> str:
    """A readable name for a metric column; unknown columns print as themselves."""
    name = METRIC_NAMES[check_language(lang)].get(metric)
    if name is None:
        return metric
    return name[0].upper() + name[1:] if capital else name


def where(result: Any) -> str:
    """Where a comparison was made: its dataset, and a sweep's configuration after it
    ("shapes, batch_size=32, model=fnn")."""
    configuration = getattr(result, "configuration", None)
    dataset = str(result.dataset)
    return f"{dataset}, {configuration.replace(',', ', ')}" if configuration else dataset


# --------------------------------------------------------------------------- numbers


def is_missing(x: Any) -> bool:
    """None, NaN and infinities are not printable numbers."""
    if x is None:
        return True
    try:
        return not math.isfinite(float(x))
    except (TypeError, ValueError):
        return True


def fmt_num(x: Any, digits: int = 2, lang: str = "en", bounded: bool = False) -> str:
    """A number with a fixed count of decimals.

    ``bounded`` marks values that cannot exceed 1 in magnitude (p, W of Shapiro-Wilk,
    r); APA and SPSS drop their leading zero (".633"). Spanish uses a decimal comma.
    """
    if is_missing(x):
        return MISSING
    value = float(x)
    text = f"{abs(value):.{digits}f}"
    if bounded and text.startswith("0") and digits > 0:
        text = text[1:]
    sign = MINUS if value < 0 and float(text or 0) != 0 else ""
    return sign + text.replace(".", number_format("decimal_mark", lang))


def fmt_int(x: Any) -> str:
    """Counts and degrees of freedom that are whole numbers."""
    if is_missing(x):
        return MISSING
    value = float(x)
    return f"{value:.0f}" if value == int(value) else fmt_num(value, 2)


def fmt_df(x: Any, lang: str = "en") -> str:
    """Degrees of freedom: whole for Student's t, two decimals for Welch's."""
    if is_missing(x):
        return MISSING
    value = float(x)
    return f"{value:.0f}" if abs(value - round(value)) < 1e-9 else fmt_num(value, 2, lang)


def fmt_p(p: Any, lang: str = "en", digits: int = 3) -> str:
    """A p-value as APA and SPSS print it: ".633", "< .001" (Spanish: ",633", "< ,001")."""
    if is_missing(p):
        return MISSING
    floor = 10.0 ** -digits
    if float(p) < floor:
        return "<" + THIN + fmt_num(floor, digits, lang, bounded=True)
    return fmt_num(min(float(p), 1.0), digits, lang, bounded=True)


def p_clause(p: Any, lang: str = "en") -> str:
    """"p = .633" or "p < .001" for sentences."""
    text = fmt_p(p, lang)
    return var("p") + (" " if text.startswith("<") else " = ") + text


def percent(x: float, lang: str, digits: int = 1) -> str:
    """A fraction as a percentage: 0.05 -> "5 %" (0.065 -> "6.5 %"), a thin space before %."""
    value = 100 * float(x)
    places = 0 if abs(value - round(value)) < 1e-9 else digits
    return fmt_num(value, places, lang) + THIN + "%"


def auto_digits(values: Any) -> int:
    """Decimals that show a metric's variation without noise: 3 below 10, 2 below 1000."""
    finite = [abs(float(v)) for v in values if not is_missing(v)]
    if not finite:
        return 2
    top = max(finite)
    return 3 if top < 10 else 2 if top < 1000 else 0

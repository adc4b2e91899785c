"""Typed results of the analysis: one frozen dataclass per object of the analysis JSON.

The functions of :mod:`analysis.stats` return these (as scipy.stats returns named
results), :func:`analysis.compare.analyze` returns an :class:`Analysis`, and the report
reads them directly. Field names are the JSON's keys (``U``, ``W``, ``Z``,
``p_asymptotic``...), in the JSON's order, so ``to_dict()`` is the analysis JSON of
docs/design.md ("The analysis JSON"), key for key: Python floats, ints,
strings, lists and ``None`` (never NaN). :meth:`Analysis.to_dict` adds ``"format":
"cloudbench-analysis"`` and ``"format_version"``; :meth:`Analysis.from_dict` reads such a
JSON back and refuses another format or version with a message that says so.

Version history of the JSON: 1 is the unversioned layout of earlier toolkits; 2 is the
same layout with ``format`` and ``format_version`` at the top; 3 adds ``procedure`` at the
top, and per comparison ``brunner_munzel`` (the robust procedure's test), ``equivalence``
(with a margin) and ``configuration`` (a sweep's cell), the last three only where they
apply; 4 adds per comparison ``yuen`` (Yuen's trimmed test on log values, with its interval
of the speed ratio), ``verdicts`` (SPSS's and the robust procedure's verdicts side by side,
each Holm-adjusted in its own family) and ``verdicts_agree``, and the test name
"yuen_brunner_munzel"; 5 (this one) adds ``time`` at the top (:class:`TimeAnalysis`: the
analysis across the hours and days of a study whose runs carry ``started_at``). A JSON
without a ``time`` section is still written as version 4, so a toolkit that reads only 4
reads every analysis it can understand, and refuses one with ``time`` with a message rather
than misreading it. Versions 2, 3 and 4 are still read (2 as procedure "spss"; 2 and 3
without verdicts). A procedure is read if the procedure catalogue (data.procedures) knows
its name.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from cloudbench.data.procedures import procedure_names
from cloudbench.errors import InputError

FORMAT = "cloudbench-analysis"
FORMAT_VERSION = 5
#: The version written for an analysis without a ``time`` section (which version 4 reads).
FORMAT_VERSION_WITHOUT_TIME = 4
#: The versions this toolkit reads: the current one, 4 (no time section), 3 (no verdicts)
#: and 2 (no procedure: SPSS's).
READABLE_VERSIONS = (2, 3, 4, 5)

T = TypeVar("T", bound="Result")
TESTS = ("mann_whitney", "student_t", "welch_t", "brunner_munzel", "yuen_brunner_munzel")
#: A verdict's decision: which way a differs from b where significant; else "no_difference",
#: or "inconclusive" where a group has fewer than SMALL_STUDY_RUNS runs (too few for a
#: non-significant result to say much), or "not_testable" where no test could be computed.
DECISIONS = ("lower", "higher", "no_difference", "inconclusive", "not_testable")
#: The null hypothesis of the test a verdict used, as a key the paper words.
NULL_HYPOTHESES = ("equal_means", "equal_distributions", "relative_effect",
                   "trimmed_log_means_or_relative_effect")
#: Below this many runs in a group a study is small: non-significant reads "inconclusive".
SMALL_STUDY_RUNS = 8
CONCLUSIONS = ("faster", "slower", "lower", "higher", "equivalent", "inconclusive")
P_METHODS = ("exact", "asymptotic", "t", "permutation")


def __getattr__(name: str) -> Any:
    """``PROCEDURES``: the procedures' names, as the catalogue (data.procedures) has them now."""
    if name == "PROCEDURES":
        return procedure_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class AnalysisFormatError(InputError, ValueError):
    """A JSON that is not an analysis of this format and version, or not a well-formed one."""


# --------------------------------------------------------------------------- reading helpers


def _number(value: Any, where: str) -> float | None:
    """A number or null from the JSON (an int is a float here: JSON writes 2.0 as 2 at times)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AnalysisFormatError(f"{where}: expected a number or null, got {value!r}")
    return value


def _of_type(kind: type | tuple[type, ...], what: str) -> Callable[[Any, str], Any]:
    def check(value: Any, where: str) -> Any:
        # bool is an int to Python, never a count or a number to the JSON
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise AnalysisFormatError(f"{where}: expected {what}, got {value!r}")
        return value
    return check


def _optional(read: Callable[[Any, str], Any]) -> Callable[[Any, str], Any]:
    return lambda value, where: None if value is None else read(value, where)


def _one_of(choices: tuple[str, ...]) -> Callable[[Any, str], str]:
    def check(value: Any, where: str) -> str:
        if value not in choices:
            raise AnalysisFormatError(f"{where}: expected one of {', '.join(choices)}, "
                                      f"got {value!r}")
        return value
    return check


def _procedure(value: Any, where: str) -> str:
    """A procedure's name that the catalogue knows (data.procedures), when the JSON is read."""
    return _one_of(procedure_names())(value, where)


def _items(read: Callable[[Any, str], Any]) -> Callable[[Any, str], tuple[Any, ...]]:
    """A JSON list as a tuple, each item read by `read`."""
    def check(value: Any, where: str) -> tuple[Any, ...]:
        if not isinstance(value, list | tuple):
            raise AnalysisFormatError(f"{where}: expected a list, got {value!r}")
        return tuple(read(v, f"{where}[{i}]") for i, v in enumerate(value))
    return check


def _per_env(cls: type[T]) -> Callable[[Any, str], dict[str, T]]:
    """A JSON object {environment: result} as a dict of results."""
    def check(value: Any, where: str) -> dict[str, T]:
        if not isinstance(value, dict):
            raise AnalysisFormatError(f"{where}: expected an object per environment, "
                                      f"got {value!r}")
        return {str(k): cls.from_dict(v, f"{where}.{k}") for k, v in value.items()}
    return check


_STR = _of_type(str, "a string")
_REAL = _of_type((int, float), "a number")
_INT = _of_type(int, "an integer")
_BOOL = _of_type(bool, "true or false")
_POSITIONS = _items(_INT)
_NAMES = _items(_STR)


def _plain(value: Any) -> Any:
    """A field's value as JSON: results as dicts, tuples as lists."""
    if isinstance(value, Result):
        return value.to_dict()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None  # a value beyond float range (1e300 squared): no JSON number holds it
    return value


# --------------------------------------------------------------------------- the base class


@dataclass(frozen=True, kw_only=True)
class Result:
    """What every result shares: ``to_dict`` (its JSON object) and ``from_dict``.

    ``_readers`` says how each field is read from the JSON (a number or null unless named
    there); ``_omitted`` names the fields that are left out of the JSON when they are None.
    """

    _readers: ClassVar[Mapping[str, Callable[[Any, str], Any]]] = {}
    _omitted: ClassVar[frozenset[str]] = frozenset()

    def to_dict(self) -> dict[str, Any]:
        """This result as its JSON object, keys in the JSON's order."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None and f.name in self._omitted:
                continue
            out[f.name] = _plain(value)
        return out

    @classmethod
    def from_dict(cls: type[T], data: Any, where: str | None = None) -> T:
        """The result from its JSON object; every key must be there and no other."""
        where = where or cls.__name__
        if not isinstance(data, dict):
            raise AnalysisFormatError(f"{where}: expected an object, got {data!r}")
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = [k for k in data if k not in names]
        if unknown:
            raise AnalysisFormatError(f"{where}: unknown key {unknown[0]!r}")
        values = {}
        for name in names:
            if name not in data:
                if name in cls._omitted:
                    continue
                raise AnalysisFormatError(f"{where}: missing key {name!r}")
            read = cls._readers.get(name, _number)
            values[name] = read(data[name], f"{where}.{name}")
        return cls(**values)


# --------------------------------------------------------------------------- one group


@dataclass(frozen=True, kw_only=True)
class Descriptives(Result):
    """n, mean, sd (n - 1), median, SPSS's quartiles, min, max and CV = sd / mean."""

    n: int
    mean: float | None = None
    sd: float | None = None
    median: float | None = None
    q1: float | None = None
    q3: float | None = None
    min: float | None = None
    max: float | None = None
    cv: float | None = None

    _readers = {"n": _INT}


@dataclass(frozen=True, kw_only=True)
class ShapiroWilk(Result):
    """Shapiro-Wilk's W and p; both None where n < 3 or the data are constant."""

    W: float | None = None
    p: float | None = None


@dataclass(frozen=True, kw_only=True)
class Ranks(Result):
    """SPSS's "Ranks" table for one group: n, mean rank and sum of ranks in the pooled sample."""

    n: int
    mean_rank: float | None = None
    sum_ranks: float | None = None

    _readers = {"n": _INT}


@dataclass(frozen=True, kw_only=True)
class OutlierRunIds(Result):
    """The run ids of the flagged runs, per rule."""

    modified_z: tuple[str, ...] = ()
    tukey: tuple[str, ...] = ()

    _readers = {"modified_z": _NAMES, "tukey": _NAMES}


@dataclass(frozen=True, kw_only=True)
class Outliers(Result):
    """Positions (in the group's runs, input order) each rule flags; ``run_ids`` when the runs
    have ids. Flags only: nothing is ever removed from the analysis."""

    modified_z: tuple[int, ...] = ()
    tukey: tuple[int, ...] = ()
    run_ids: OutlierRunIds | None = None

    _readers = {"modified_z": _POSITIONS, "tukey": _POSITIONS,
                "run_ids": lambda v, w: OutlierRunIds.from_dict(v, w)}
    _omitted = frozenset({"run_ids"})

    def flagged(self) -> tuple[int, ...]:
        """The positions either rule flags, each once, in order."""
        return tuple(sorted(set(self.modified_z) | set(self.tukey)))


# --------------------------------------------------------------------------- two groups


@dataclass(frozen=True, kw_only=True)
class MannWhitney(Result):
    """Mann-Whitney U as SPSS reports it: U the smaller U, W the Wilcoxon rank sum, Z never
    positive; p_exact only without ties and N < 50; r = |Z| / sqrt(N); rank_biserial signed."""

    U: float | None = None
    W: float | None = None
    Z: float | None = None
    p_asymptotic: float | None = None
    p_exact: float | None = None
    r: float | None = None
    rank_biserial: float | None = None


@dataclass(frozen=True, kw_only=True)
class HodgesLehmann(Result):
    """The Hodges-Lehmann shift a - b with its two-sided 95 % interval, and how it was found."""

    estimate: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    method: str | None = None  # "exact" | "asymptotic"

    _readers = {"method": _optional(_one_of(("exact", "asymptotic")))}


@dataclass(frozen=True, kw_only=True)
class Levene(Result):
    """Levene's test centred on the mean (SPSS's): F and p."""

    F: float | None = None
    p: float | None = None


@dataclass(frozen=True, kw_only=True)
class StudentT(Result):
    """Student's t (pooled variance), Cohen's d, and the mean difference a - b with its
    two-sided 95 % interval (SPSS's t-test table shows it whatever the hypothesis)."""

    t: float | None = None
    df: float | None = None
    p: float | None = None
    cohen_d: float | None = None
    mean_difference: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None


@dataclass(frozen=True, kw_only=True)
class WelchT(Result):
    """Welch's t (Welch-Satterthwaite df) and the mean difference with its 95 % interval."""

    t: float | None = None
    df: float | None = None
    p: float | None = None
    mean_difference: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None


@dataclass(frozen=True, kw_only=True)
class WelchLogT(Result):
    """Welch's t on log values: the ratio of geometric means a / b with its two-sided
    interval (95 % by default); the equivalence test's scale."""

    t: float | None = None
    df: float | None = None
    p: float | None = None
    ratio: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None


@dataclass(frozen=True, kw_only=True)
class BrunnerMunzel(Result):
    """Brunner-Munzel's rank test, the robust procedure's: the statistic (positive when b
    tends to be larger), df and p of its t approximation, the relative effect
    P(a < b) + P(a = b) / 2, and the p of its studentized permutation test (Neubert and
    Brunner 2007) over ``permutations`` relabellings (``exact``: all of them)."""

    statistic: float | None = None
    df: float | None = None
    p: float | None = None
    estimate: float | None = None
    p_permutation: float | None = None
    permutations: int | None = None
    exact: bool | None = None

    _readers = {"permutations": _optional(_INT), "exact": _optional(_BOOL)}


@dataclass(frozen=True, kw_only=True)
class YuenLog(Result):
    """Yuen's trimmed-means Welch test on log values: t, df and p, the share trimmed at each
    end, and the ratio of the trimmed geometric means a / b (exp of the difference of the
    trimmed means of the logs) with its two-sided interval at ``conf_level``: the robust
    procedure's interval of the speed ratio."""

    t: float | None = None
    df: float | None = None
    p: float | None = None
    trim: float | None = None
    ratio: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    conf_level: float | None = None


@dataclass(frozen=True, kw_only=True)
class YuenBrunnerMunzel(Result):
    """The robust procedure's test from 8 runs a group (analysis.stats.yuen_brunner_munzel):
    significant only where Yuen's test on log values and Brunner-Munzel's both are, in the
    same direction; ``p`` = max of the two. Not a key of the JSON: the comparison keeps
    its parts (``yuen``, ``brunner_munzel``) and the verdict its p."""

    p: float | None = None
    same_direction: bool | None = None
    yuen: YuenLog | None = None
    brunner_munzel: BrunnerMunzel | None = None


@dataclass(frozen=True, kw_only=True)
class Verdict(Result):
    """One procedure's verdict on a comparison: the test it chose, that test's null
    hypothesis (a key of NULL_HYPOTHESES), its p, Holm's p within the procedure's own family
    (the datasets and configurations of the metric and pair), whether that is below alpha,
    and the decision (a key of DECISIONS)."""

    test_used: str | None = None
    null_hypothesis: str | None = None
    p: float | None = None
    p_method: str | None = None
    p_holm: float | None = None
    significant: bool = False
    decision: str = "not_testable"

    _readers = {"test_used": _optional(_one_of(TESTS)),
                "null_hypothesis": _optional(_one_of(NULL_HYPOTHESES)),
                "p_method": _optional(_one_of(P_METHODS)), "significant": _BOOL,
                "decision": _one_of(DECISIONS)}


@dataclass(frozen=True, kw_only=True)
class Equivalence(Result):
    """Two one-sided tests (TOST) of the ratio of geometric means a / b against the margin:
    equivalent when both reject at alpha, i.e. when the (1 - 2 alpha) interval (90 % at
    alpha .05) lies within [1 - margin, 1 + margin]; and the comparison's conclusion."""

    margin: float
    method: str  # "welch_log_t": Welch's t on log values
    ratio: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    conf_level: float | None = None
    df: float | None = None
    t_lower: float | None = None
    t_upper: float | None = None
    p_lower: float | None = None
    p_upper: float | None = None
    p: float | None = None
    equivalent: bool = False
    #: "faster" | "slower" (a timing metric), "lower" | "higher" (another metric) where the
    #: difference test is significant; else "equivalent" or "inconclusive".
    conclusion: str = "inconclusive"

    _readers = {"margin": _REAL, "method": _one_of(("welch_log_t",)), "equivalent": _BOOL,
                "conclusion": _one_of(CONCLUSIONS)}


@dataclass(frozen=True, kw_only=True)
class MedianRatio(Result):
    """The ratio of medians a / b with its percentile bootstrap 95 % interval."""

    estimate: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None


@dataclass(frozen=True, kw_only=True)
class KruskalWallis(Result):
    """Kruskal-Wallis H over every environment of one metric and dataset.

    :func:`analysis.stats.kruskal_wallis` gives H, df and p; the analysis adds which metric,
    dataset and environments they are of.
    """

    metric: str | None = None
    dataset: str | None = None
    environments: tuple[str, ...] = ()
    H: float | None = None
    df: int | None = None
    p: float | None = None
    configuration: str | None = None  # a sweep's cell (the runs' `configuration`)

    _readers = {"metric": _optional(_STR), "dataset": _optional(_STR),
                "environments": _NAMES, "df": _optional(_INT),
                "configuration": _optional(_STR)}
    _omitted = frozenset({"configuration"})


@dataclass(frozen=True, kw_only=True)
class Comparison(Result):
    """One metric, dataset and pair of environments (a, b): every test, the one the procedure
    used, its p, Holm's p over the datasets of the metric and pair, and the decision."""

    metric: str
    dataset: str
    a: str
    b: str
    n_a: int
    n_b: int
    descriptives: dict[str, Descriptives]
    shapiro: dict[str, ShapiroWilk]
    ranks: dict[str, Ranks]
    mann_whitney: MannWhitney
    hodges_lehmann: HodgesLehmann
    levene: Levene
    student_t: StudentT
    welch_t: WelchT
    test_used: str  # a key of TESTS
    p: float | None
    p_holm: float | None
    significant: bool
    #: "exact" | "asymptotic" | "t" | "permutation"; None when no test was computable
    p_method: str | None
    median_ratio: MedianRatio
    outliers: dict[str, Outliers]
    warnings: tuple[str, ...]
    alternative: str
    alpha: float
    #: The sweep's cell (the runs' `configuration` column); None without a sweep, and then
    #: left out of the JSON. Holm's family spans every dataset and configuration.
    configuration: str | None = None
    #: Brunner-Munzel's test: the robust procedure's; left out under SPSS's.
    brunner_munzel: BrunnerMunzel | None = None
    #: TOST against the study's margin and the four-way conclusion; left out without one.
    equivalence: Equivalence | None = None
    #: Yuen's trimmed test on log values, with the robust procedure's interval of the speed
    #: ratio; left out where not computed (a version-3 JSON).
    yuen: YuenLog | None = None
    #: Every procedure's verdict by name: "spss" and "robust" always, and the analysis'
    #: own procedure where it is another; left out of a version-3 JSON.
    verdicts: dict[str, Verdict] | None = None
    #: Whether SPSS's and the robust verdict decide alike (None without both).
    verdicts_agree: bool | None = None

    _omitted = frozenset({"configuration", "brunner_munzel", "equivalence", "yuen",
                          "verdicts", "verdicts_agree"})
    _readers = {
        "metric": _STR, "dataset": _STR, "a": _STR, "b": _STR, "n_a": _INT, "n_b": _INT,
        "descriptives": _per_env(Descriptives), "shapiro": _per_env(ShapiroWilk),
        "ranks": _per_env(Ranks),
        "mann_whitney": lambda v, w: MannWhitney.from_dict(v, w),
        "hodges_lehmann": lambda v, w: HodgesLehmann.from_dict(v, w),
        "levene": lambda v, w: Levene.from_dict(v, w),
        "student_t": lambda v, w: StudentT.from_dict(v, w),
        "welch_t": lambda v, w: WelchT.from_dict(v, w),
        "test_used": _one_of(TESTS), "significant": _BOOL,
        "p_method": _optional(_one_of(P_METHODS)),
        "median_ratio": lambda v, w: MedianRatio.from_dict(v, w),
        "outliers": _per_env(Outliers), "warnings": _NAMES,
        "alternative": _one_of(("two-sided", "less", "greater")),
        "alpha": _REAL, "configuration": _optional(_STR),
        "brunner_munzel": _optional(lambda v, w: BrunnerMunzel.from_dict(v, w)),
        "equivalence": _optional(lambda v, w: Equivalence.from_dict(v, w)),
        "yuen": _optional(lambda v, w: YuenLog.from_dict(v, w)),
        "verdicts": _optional(_per_env(Verdict)),
        "verdicts_agree": _optional(_BOOL),
    }

    @property
    def test(self) -> MannWhitney | StudentT | WelchT | BrunnerMunzel | YuenLog:
        """The result of the test the procedure used (Yuen's for "yuen_brunner_munzel",
        whose statistic the text quotes)."""
        if self.test_used == "yuen_brunner_munzel":
            return self.yuen if self.yuen is not None else YuenLog()
        test = getattr(self, self.test_used)
        return test if test is not None else BrunnerMunzel()


# --------------------------------------------------------------------------- the whole analysis


def _read_list(cls: type[T]) -> Callable[[Any, str], tuple[T, ...]]:
    return _items(lambda v, w: cls.from_dict(v, w))


@dataclass(frozen=True, kw_only=True)
class Analysis(Result):
    """The analysis of a runs table: its comparisons in order (metric, dataset, pair) and,
    with more than two environments, the Kruskal-Wallis tests (None otherwise)."""

    format: ClassVar[str] = FORMAT
    format_version: ClassVar[int] = FORMAT_VERSION

    #: A name of the procedure catalogue (data.procedures): "spss" (Shapiro-Wilk, Levene,
    #: then Student's or Welch's t, else Mann-Whitney) or "robust" (Brunner-Munzel's
    #: studentized permutation test for every comparison) built in; "spss" when absent (a
    #: version-2 JSON, written before the key existed).
    procedure: str = "spss"
    comparisons: tuple[Comparison, ...] = ()
    kruskal_wallis: tuple[KruskalWallis, ...] | None = None
    #: The analysis across time (TimeAnalysis, below), one per metric and dataset, when the
    #: runs carry their start times; None otherwise, and left out.
    time: tuple[TimeAnalysis, ...] | None = None

    _readers = {"procedure": _procedure, "comparisons": _read_list(Comparison),
                "kruskal_wallis": _optional(_read_list(KruskalWallis)),
                "time": _optional(lambda v, w: read_time(v, w))}
    _omitted = frozenset({"kruskal_wallis", "time"})

    def to_dict(self) -> dict[str, Any]:
        """The analysis JSON: format and version first (3 without a time section, which a
        toolkit reading version 3 understands), then the comparisons."""
        version = self.format_version if self.time is not None else FORMAT_VERSION_WITHOUT_TIME
        return {"format": self.format, "format_version": version, **Result.to_dict(self)}

    @classmethod
    def from_dict(cls, data: Any, where: str | None = None) -> Analysis:
        """An analysis from its JSON, refusing another format or format version."""
        where = where or "analysis JSON"
        if not isinstance(data, dict):
            raise AnalysisFormatError(f"{where}: expected an object, got {type(data).__name__}")
        if "format" not in data:
            raise AnalysisFormatError(
                f"{where}: no 'format' key: not a {FORMAT} JSON, or one written before the "
                f"format was versioned (run `study analyze` again to get version "
                f"{FORMAT_VERSION})")
        if data["format"] != FORMAT:
            raise AnalysisFormatError(f"{where}: format {data['format']!r} is not "
                                      f"{FORMAT!r}")
        version = data.get("format_version")
        if version not in READABLE_VERSIONS:
            raise AnalysisFormatError(
                f"{where}: {FORMAT} format_version {version!r} is not supported: this "
                f"toolkit reads version {FORMAT_VERSION}"
                + (" (run `study analyze` again)" if isinstance(version, int)
                   and version < FORMAT_VERSION else " (a newer toolkit wrote it)"
                   if isinstance(version, int) else ""))
        body = {k: v for k, v in data.items() if k not in ("format", "format_version")}
        body.setdefault("procedure", "spss")  # version 2: always SPSS's
        if "time" in body and version < FORMAT_VERSION:
            raise AnalysisFormatError(f"{where}: 'time' needs format_version "
                                      f"{FORMAT_VERSION}, the file says {version}")
        return super().from_dict(body, where)

    # ---- convenience for readers of the analysis (the report, the summary)

    def of_metric(self, metric: str | None = None) -> list[Comparison]:
        """The comparisons of one metric (all when None), in order."""
        return [c for c in self.comparisons if metric is None or c.metric == metric]

    @property
    def metrics(self) -> list[str]:
        return list(dict.fromkeys(c.metric for c in self.comparisons))

    @property
    def datasets(self) -> list[str]:
        return list(dict.fromkeys(c.dataset for c in self.comparisons))

    @property
    def environments(self) -> list[str]:
        return list(dict.fromkeys(e for c in self.comparisons for e in (c.a, c.b)))

    @property
    def pairs(self) -> list[tuple[str, str]]:
        return list(dict.fromkeys((c.a, c.b) for c in self.comparisons))

    @property
    def warnings(self) -> list[str]:
        """Every comparison's warnings, each once (a group's are repeated in its pairs)."""
        return list(dict.fromkeys(w for c in self.comparisons for w in c.warnings))


# --------------------------------------------------------------------------- across time
# The ``time`` section (format version 4): analysis.temporal.analyze_time returns one
# TimeAnalysis per metric and dataset, for a study spread over hours and days. Every test
# carries ``statistic`` and ``pvalue`` (None where it could not be computed).


def _counts(value: Any, where: str) -> dict[str, int]:
    if not isinstance(value, dict):
        raise AnalysisFormatError(f"{where}: expected an object of counts, got {value!r}")
    return {str(k): _INT(v, f"{where}.{k}") for k, v in value.items()}


def _one(cls: type[Result]) -> Any:
    return _optional(lambda v, w: cls.from_dict(v, w))


def _many(cls: type[Result]) -> Any:
    return _items(lambda v, w: cls.from_dict(v, w))


@dataclass(frozen=True, kw_only=True)
class HourEffect(Result):
    """A harmonic regression on the hour of the day (sin and cos of 2 pi h / 24): the F test
    against the intercept-only model on the ranks of the times (Conover and Iman's rank
    transform: robust to outlying runs, docs/statistics.md), ``amplitude`` and ``peak_hour``
    from the same regression on log times: the fitted curve's half range as a relative
    change (0.015: +-1.5 %) and the hour it is slowest."""

    method: str = "harmonic_rank_f"
    n: int = 0
    statistic: float | None = None  # F
    df_num: int | None = None
    df_den: int | None = None
    pvalue: float | None = None
    amplitude: float | None = None
    peak_hour: float | None = None
    significant: bool = False

    _readers = {"method": _STR, "n": _INT, "df_num": _optional(_INT),
                "df_den": _optional(_INT), "significant": _BOOL}


@dataclass(frozen=True, kw_only=True)
class GroupTest(Result):
    """Kruskal-Wallis across groups of runs (windows of the day, days of the week, devices):
    the groups' labels and sizes, H as ``statistic``, its df and p; ``median_ratio`` is the
    slowest group's median over the fastest's."""

    method: str = "kruskal_wallis"
    groups: tuple[str, ...] = ()
    sizes: tuple[int, ...] = ()
    statistic: float | None = None
    df: int | None = None
    pvalue: float | None = None
    median_ratio: float | None = None
    significant: bool = False

    _readers = {"method": _STR, "groups": _NAMES, "sizes": _POSITIONS, "df": _optional(_INT),
                "significant": _BOOL}


@dataclass(frozen=True, kw_only=True)
class Drift(Result):
    """The trend of log time over the study: an OLS slope on the block (or on the run order
    where there are no blocks), as a relative change per block with its 95 % interval and
    over the whole study; Spearman's rho beside it (robust to outliers)."""

    method: str = "ols_log_slope"
    x: str = "block"  # "block" | "order"
    n: int = 0
    per_block: float | None = None  # relative change per step of x (0.001: +0.1 %)
    ci_low: float | None = None
    ci_high: float | None = None
    over_study: float | None = None  # relative change from the first to the last step
    statistic: float | None = None  # t of the slope
    pvalue: float | None = None
    spearman_rho: float | None = None
    spearman_pvalue: float | None = None
    significant: bool = False

    _readers = {"method": _STR, "x": _STR, "n": _INT, "significant": _BOOL}


@dataclass(frozen=True, kw_only=True)
class EnvironmentTime(Result):
    """One environment's runs over time: their span, the effects of time on them, the
    devices and sessions they got."""

    environment: str
    n: int
    first: str | None = None  # UTC ISO of the first and last run
    last: str | None = None
    span_hours: float | None = None
    hour: HourEffect | None = None
    windows: GroupTest | None = None
    weekday: GroupTest | None = None
    drift: Drift | None = None
    devices: dict[str, int] | None = None  # device name -> runs
    device_test: GroupTest | None = None  # with more than one device
    sessions: int | None = None
    max_runs_per_session: int | None = None
    #: The unit of the time tests: "run", or "session" (each session's mean log time, at its
    #: mean start) where a session holds several runs: they share its hour and machine.
    unit: str = "run"

    _readers = {"unit": _STR, "environment": _STR, "n": _INT, "first": _optional(_STR),
                "last": _optional(_STR), "hour": _one(HourEffect), "windows": _one(GroupTest),
                "weekday": _one(GroupTest), "drift": _one(Drift),
                "devices": _optional(_counts), "device_test": _one(GroupTest),
                "sessions": _optional(_INT), "max_runs_per_session": _optional(_INT)}


@dataclass(frozen=True, kw_only=True)
class Difference(Result):
    """a over b in one part of the runs (a window of the day, a device): the ratio of
    geometric means with its 95 % interval, Welch's t on log times, Holm's p over the parts;
    the ratio of medians beside it (robust: what "on the same side of 1" is judged by)."""

    label: str
    n_a: int
    n_b: int
    median_ratio: float | None = None
    ratio: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    statistic: float | None = None
    pvalue: float | None = None
    p_holm: float | None = None
    significant: bool = False

    _readers = {"label": _STR, "n_a": _INT, "n_b": _INT, "significant": _BOOL}


@dataclass(frozen=True, kw_only=True)
class Interaction(Result):
    """Whether a's difference from b depends on the window of the day: an OLS on log time
    with environment x window against environment + window (F test), and each window's
    difference. ``holds_at_every_window``: the interaction is not significant and every
    window's ratio lies on the same side of 1 as the overall one (the paper's "faster at
    every hour"); ``differing_windows``: the windows (labels) where a and b differ (Holm)."""

    method: str = "ols_f"
    windows_used: tuple[str, ...] = ()
    statistic: float | None = None
    df_num: int | None = None
    df_den: int | None = None
    pvalue: float | None = None
    significant: bool = False
    ratio: float | None = None  # overall, a / b, geometric means
    median_ratio: float | None = None  # overall, a / b, medians
    per_window: tuple[Difference, ...] = ()
    holds_at_every_window: bool = False
    differing_windows: tuple[str, ...] = ()
    a_faster_windows: tuple[str, ...] = ()  # windows where a is significantly lower
    b_faster_windows: tuple[str, ...] = ()

    _readers = {"method": _STR, "windows_used": _NAMES, "df_num": _optional(_INT),
                "df_den": _optional(_INT), "significant": _BOOL,
                "per_window": _many(Difference), "holds_at_every_window": _BOOL,
                "differing_windows": _NAMES, "a_faster_windows": _NAMES,
                "b_faster_windows": _NAMES}


@dataclass(frozen=True, kw_only=True)
class DeviceComparison(Result):
    """One device of an environment that got several, against the other environment of the
    pair (all its runs): ``difference.label`` is the device."""

    environment: str
    other: str
    difference: Difference

    _readers = {"environment": _STR, "other": _STR,
                "difference": lambda v, w: Difference.from_dict(v, w)}


@dataclass(frozen=True, kw_only=True)
class SessionCheck(Result):
    """a vs b with the run as the unit (Welch's t on log times) and with the session as the
    unit (a linear mixed model, random intercept per session, statsmodels MixedLM; Welch's t
    on the sessions' mean log times if it fails). ``icc``: the share of the variance between
    sessions. ``agree``: both tests reach the same decision at alpha."""

    n_sessions_a: int
    n_sessions_b: int
    max_runs_per_session: int
    icc: float | None = None
    runs_statistic: float | None = None
    runs_pvalue: float | None = None
    method: str = "mixedlm"  # "mixedlm" | "session_means_welch"
    ratio: float | None = None  # a / b from the model
    ci_low: float | None = None
    ci_high: float | None = None
    statistic: float | None = None
    pvalue: float | None = None
    agree: bool = True

    _readers = {"n_sessions_a": _INT, "n_sessions_b": _INT, "max_runs_per_session": _INT,
                "method": _STR, "agree": _BOOL}


@dataclass(frozen=True, kw_only=True)
class TimePair(Result):
    """One pair of environments (a, b) across time."""

    a: str
    b: str
    interaction: Interaction | None = None
    devices: tuple[DeviceComparison, ...] = ()
    sessions: SessionCheck | None = None

    _readers = {"a": _STR, "b": _STR, "interaction": _one(Interaction),
                "devices": _many(DeviceComparison), "sessions": _one(SessionCheck)}


@dataclass(frozen=True, kw_only=True)
class TimeAnalysis(Result):
    """The analysis across time of one metric and dataset: the clock the hours are read in
    (an IANA zone, or "recorded offset": each run's local_offset_min, or "UTC"), the windows
    of the day (``windows`` of 24 / windows hours, labelled "12-16"), per environment and
    per pair; ``warnings`` in sentences."""

    metric: str
    dataset: str
    clock: str
    windows: int
    alpha: float
    environments: dict[str, EnvironmentTime]
    pairs: tuple[TimePair, ...] = ()
    warnings: tuple[str, ...] = ()
    configuration: str | None = None

    _readers = {"metric": _STR, "dataset": _STR, "clock": _STR, "windows": _INT,
                "alpha": _REAL,
                "environments": lambda v, w: _environments(v, w),
                "pairs": _many(TimePair), "warnings": _NAMES,
                "configuration": _optional(_STR)}
    _omitted = frozenset({"configuration"})


def _environments(value: Any, where: str) -> dict[str, EnvironmentTime]:
    if not isinstance(value, dict):
        raise AnalysisFormatError(f"{where}: expected an object per environment, got {value!r}")
    return {str(k): EnvironmentTime.from_dict(v, f"{where}.{k}") for k, v in value.items()}


def read_time(value: Any, where: str) -> tuple[TimeAnalysis, ...]:
    """The analysis JSON's ``time`` list."""
    return _many(TimeAnalysis)(value, where)

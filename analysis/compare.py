"""From a runs table to the analysis of docs/design.md: every metric, dataset and pair.

``load_runs`` reads any CSV with the columns environment, dataset, an optional status and
numeric metrics (timings gathered by other means too); ``analyze`` runs a procedure on it,
with Holm's correction across the datasets of a metric and pair:

- ``procedure="spss"`` (the default), the reference study's: Shapiro-Wilk per group at
  alpha, then Student's t (or Welch's when Levene's test rejects equal variances at alpha)
  if both groups look normal, Mann-Whitney otherwise (analysis.procedures.spss);
- ``procedure="robust"``: from 8 runs a group, Yuen's trimmed test on log times and
  Brunner-Munzel's test, significant only where both are; below, Brunner-Munzel's
  studentized permutation test (analysis.procedures.robust), the procedure that kept its
  type-I error at or under 6.5 % across the simulated scenarios (analysis.simulation,
  docs/statistics.md); the permutations are drawn from the analysis seed, so it is
  reproducible.

Whichever procedure decides, every comparison carries both verdicts, SPSS's and the
robust one's (``verdicts``, each Holm-adjusted in its own family, and ``verdicts_agree``),
so a reader sees where the reference study's procedure and the robust one part ways; a
non-significant verdict with fewer than 8 runs in a group reads "inconclusive", not "no
difference".

Each procedure is a module of analysis.procedures, named in the catalogue data.procedures
(where another package or a test registers more).

With an equivalence margin each comparison also carries a TOST and its four-way conclusion
(analysis.equivalence). The result is an :class:`analysis.results.Analysis`; its
``to_dict()`` is the analysis JSON.

Keys beyond the reference study's tables (docs/design.md), in each comparison:
``p_method`` ("exact", "asymptotic", "t" or "permutation"), ``median_ratio`` {estimate,
ci_low, ci_high} (a / b, percentile bootstrap), ``outliers`` {env: {modified_z, tukey[,
run_ids]}}, ``warnings``, ``alternative`` and ``alpha``; the t-tests also carry
``mean_difference``, ``ci_low``, ``ci_high`` and the Hodges-Lehmann shift its ``method``;
``brunner_munzel`` and ``yuen`` (the robust verdict's tests, with Yuen's interval of the
speed ratio), ``verdicts`` and ``verdicts_agree``, ``equivalence`` with a margin and
``configuration`` with a sweep. At the top level, ``procedure``, and ``kruskal_wallis`` when
there are more than two environments, and ``time`` (analysis.temporal) when the runs carry
their start times. The JSON carries ``"format": "cloudbench-analysis"`` and
``"format_version"`` (analysis.results: version 5 with ``time``, else 4).
"""

from __future__ import annotations

import csv
import itertools
import re
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cloudbench.analysis import equivalence as E
from cloudbench.analysis import results as R
from cloudbench.analysis import stats as S
from cloudbench.analysis import temporal as T
from cloudbench.analysis.procedures import Pair, Procedure, load_procedure
from cloudbench.analysis.results import (
    Analysis,
    BrunnerMunzel,
    Comparison,
    Descriptives,
    KruskalWallis,
    MannWhitney,
    OutlierRunIds,
    Outliers,
    ShapiroWilk,
    StudentT,
    Verdict,
    WelchT,
    YuenBrunnerMunzel,
    YuenLog,
)
from cloudbench.data.procedures import DEFAULT_PROCEDURE, UnknownProcedureError
from cloudbench.errors import InputError
from cloudbench.study.record import RecordFields

#: The procedures whose verdicts every comparison carries, side by side: the reference
#: study's and the robust one.
VERDICTS = ("spss", "robust")
#: The null hypothesis of each test, as a key (analysis.results.NULL_HYPOTHESES).
NULL_HYPOTHESIS = {"student_t": "equal_means", "welch_t": "equal_means",
                   "mann_whitney": "equal_distributions", "brunner_munzel": "relative_effect",
                   "yuen_brunner_munzel": "trimmed_log_means_or_relative_effect"}

REQUIRED = ("environment", "dataset")
# Numeric columns that describe a run rather than measure it.
BOOKKEEPING = frozenset({
    "run_id", "block", "repetition", "seed", "epochs", "batch_size", "n_train", "n_test",
    "cpu_count", "ram_gb", "attempt", "attempts", "warmup", "images", "format_version",
    "layers", "units", "filters", "kernel_size", "dense_units",
})
_NA_TOKENS = ("", "nan", "NaN", "NA", "N/A", "n/a", "null", "None", "none")
_TRUE_TOKENS = ("true", "1", "1.0", "yes")


class AnalysisError(InputError, ValueError):
    """Input the analysis cannot use, with the file and column at fault."""


# --------------------------------------------------------------------------- loading


def _as_numeric(column: pd.Series) -> tuple[pd.Series | None, Any]:
    """The column as floats, or (None, the first value that is not a number and its label)."""
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        return column.astype(float), None
    text = column.astype(str).str.strip()
    missing = column.isna() | text.isin(_NA_TOKENS)
    values = pd.to_numeric(text.where(~missing), errors="coerce")
    bad = values.isna() & ~missing
    if bad.any():
        label = bad.idxmax()
        return None, (label, column[label])
    return values.astype(float), None


def usable_runs(frame: pd.DataFrame) -> pd.DataFrame:
    """The runs that count: status "ok" where a status is recorded, warm-up runs left out."""
    keep = pd.Series(True, index=frame.index)
    if "status" in frame.columns:  # "OK" and "Ok" too: a spreadsheet may capitalise
        keep &= frame["status"].astype(str).str.strip().str.lower().eq("ok")
    if "warmup" in frame.columns:
        keep &= ~frame["warmup"].astype(str).str.strip().str.lower().isin(_TRUE_TOKENS)
    return frame[keep]


def load_runs(path: str | Path, metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """Read a runs CSV: environment and dataset as text, only usable runs, metrics as floats.

    Every error is an :class:`AnalysisError` naming the file and the column (and the line
    of a value that is not a number), because these CSVs also come from outside the
    toolkit: a spreadsheet's `;`-separated export, decimal commas, a stray word in a column
    of numbers are each refused saying what was found, never read as something else. The
    index keeps each row's position among the CSV's data rows.
    """
    path = Path(path)
    try:
        if not path.is_file():
            raise AnalysisError(f"{path}: no such file")
        _check_rows(path)
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True,
                          index_col=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise AnalysisError(f"{path}: not a readable CSV file ({exc})") from exc
    except OSError as exc:
        raise AnalysisError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    raw.columns = [str(c).strip() for c in raw.columns]
    for column in REQUIRED:
        if column not in raw.columns:
            raise AnalysisError(f"{path}: missing column {column!r} "
                                f"(the file has: {', '.join(raw.columns) or 'no columns'})"
                                + _separator_hint(raw.columns))
    frame = usable_runs(raw).copy()
    if "status" in frame.columns:
        frame["status"] = frame["status"].str.strip().str.lower()
    for column in REQUIRED:
        blank = frame[column].str.strip().eq("")
        if blank.any():
            raise AnalysisError(f"{path}: line {blank.idxmax() + 2}: empty {column!r}")
        frame[column] = frame[column].str.strip()
    for column in frame.columns:
        if column in REQUIRED or column == "status":
            continue
        values, bad = _as_numeric(frame[column])
        if column not in TEXT_COLUMNS:
            _check_column(path, frame[column], values, bad,
                          strict=metrics is None and column not in BOOKKEEPING)
        if values is not None:
            frame[column] = values
    if metrics is not None:
        check_metrics(frame, metrics, source=str(path), csv_lines=True)
    return frame


#: The record schema's text columns (study.record): never metrics, whatever they hold.
TEXT_COLUMNS = frozenset(
    {name for name, kind in RecordFields.__annotations__.items() if "str" in str(kind)}
    | {"epoch_s", "warmup"})
_DECIMAL_COMMA = re.compile(r"[+-]?[0-9]+,[0-9]+")


def _check_rows(path: Path) -> None:
    """Refuse a row with more fields than the header: pandas would silently shift such a
    file (a decimal comma written 1,5 without quotes, in every row) or drop the rest."""
    with open(path, encoding="utf-8", newline="") as fh:
        try:
            reader = csv.reader(fh, skipinitialspace=True)
            header = next(reader, None)
            if header is None:
                return
            for row in reader:
                if len(row) > len(header):
                    raise AnalysisError(
                        f"{path}: line {reader.line_num} has {len(row)} fields, the header "
                        f"{len(header)} ({', '.join(row)[:200]!r}): a decimal comma (1,5; write "
                        "1.5) or a value with a comma that is not quoted?"
                        + _separator_hint(header))
        except csv.Error as exc:
            raise AnalysisError(f"{path}: line {reader.line_num}: not a readable CSV file "
                                f"({exc})") from exc


def _separator_hint(header: Sequence[str]) -> str:
    """What a header that is one `;`- or tab-separated field says about the file."""
    for sep, name in ((";", "';'"), ("\t", "tab")):
        if any(sep in str(c) for c in header):
            return (f": it looks like a {name}-separated file (its header: "
                    f"{str(sep.join(map(str, header)))[:200]!r}); save it with ',' between "
                    "columns and '.' as the decimal point")
    return ""


def _check_column(path: Path, column: pd.Series, values: pd.Series | None, bad: Any,
                  strict: bool) -> None:
    """Refuse decimal commas anywhere, and (`strict`: every numeric column is a metric) a
    column of numbers with one value that is not a number, naming the column, the line
    and the value: left out, it would silently drop a metric from the analysis."""
    text = column.astype(str).str.strip()
    comma = text.str.fullmatch(_DECIMAL_COMMA)
    if comma.any():
        label = comma.idxmax()
        raise AnalysisError(f"{path}: column {column.name!r}, line {label + 2}: "
                            f"{column[label]!r} has a decimal comma; write numbers with a "
                            "decimal point (1.5), and ',' only between columns")
    if not strict or values is not None:
        return
    missing = column.isna() | text.isin(_NA_TOKENS)
    numbers = pd.to_numeric(text.where(~missing), errors="coerce").notna()
    if numbers.any():
        label, value = bad
        raise AnalysisError(f"{path}: column {column.name!r}, line {label + 2}: {value!r} is "
                            f"not a number, but {int(numbers.sum())} of the column's values "
                            "are: correct it (an empty cell is a run without a value), or "
                            "name the metrics to analyse with --metric")


def _is_metric_column(frame: pd.DataFrame, column: str) -> bool:
    return (column not in BOOKKEEPING and column not in REQUIRED and column != "status"
            and pd.api.types.is_numeric_dtype(frame[column])
            and not pd.api.types.is_bool_dtype(frame[column]) and frame[column].notna().any())


def check_metrics(frame: pd.DataFrame, metrics: Sequence[str] | None, source: str = "runs",
                  csv_lines: bool = False) -> list[str]:
    """The metrics to analyse: the ones asked for, each a numeric column, or (None) every
    numeric column with data that is not bookkeeping (run_id, block, repetition, seed, ...).

    ``csv_lines``: the index holds positions among a CSV's data rows, so an error can name
    the file's line.
    """
    if metrics is None:
        return [c for c in frame.columns if _is_metric_column(frame, c)]
    if isinstance(metrics, str):
        metrics = [metrics]
    for metric in metrics:
        if metric not in frame.columns:
            known = [c for c in frame.columns if _is_metric_column(frame, c)]
            raise AnalysisError(f"{source}: unknown metric {metric!r} "
                                f"(numeric columns: {', '.join(known) or 'none'})")
        values, bad = _as_numeric(frame[metric])
        if values is None:
            label, value = bad
            where = f"line {label + 2}" if csv_lines else f"row {label!r}"
            raise AnalysisError(f"{source}: column {metric!r} is not numeric "
                                f"({where} has {value!r})")
    return list(dict.fromkeys(metrics))


# --------------------------------------------------------------------------- one group


@dataclass
class Group:
    """One environment on one dataset for one metric, computed once and shared by its pairs."""

    values: np.ndarray  # finite values, input order
    descriptives: Descriptives
    shapiro: ShapiroWilk
    outliers: Outliers
    warnings: list[str]
    draws: np.ndarray  # bootstrap medians

    @property
    def median(self) -> float | None:
        return self.descriptives.median


def _stream(seed: int, *names: str) -> np.random.Generator:
    """A generator per group, so a group's interval does not depend on what else is analysed."""
    return np.random.default_rng([seed, zlib.crc32("\x00".join(names).encode())])


def _run_order(frame: pd.DataFrame) -> np.ndarray:
    """Row positions in the order the runs were made: by repetition (then block), else start
    time, else as listed. The warm-up warning needs the first run of each group."""
    for keys in (["repetition", "block"], ["repetition"], ["started_at"]):
        if all(k in frame.columns for k in keys):
            try:
                return frame.sort_values(keys, kind="stable").index.to_numpy()
            except TypeError:  # mixed types: fall back to the listed order
                continue
    return np.arange(len(frame))


#: Where a comparison is made: a dataset and a sweep's configuration (None without a sweep).
Stratum = tuple[str, str | None]


def _where(stratum: Stratum) -> str:
    dataset, configuration = stratum
    return f"{dataset}, {configuration}" if configuration else dataset


def _stream_names(stratum: Stratum) -> tuple[str, ...]:
    """Without a sweep the bootstrap streams are those of earlier versions."""
    return (stratum[0],) if stratum[1] is None else stratum  # type: ignore[return-value]


@dataclass
class _Context:
    """What every comparison of one analysis shares, with the per-group cache."""

    alternative: str
    alpha: float
    seed: int
    procedure: str
    rule: Procedure  # the procedure's implementation
    rules: dict[str, Procedure]  # every verdict's procedure, the analysis' own included
    margin: float | None
    indices: dict[tuple[Stratum, str], np.ndarray]  # (stratum, env) -> positions, input order
    rank_in_order: np.ndarray  # position -> place in run order
    run_ids: np.ndarray | None
    cache: dict[tuple[str, Stratum, str], Group] = field(default_factory=dict)

    def group(self, metric: str, stratum: Stratum, env: str, column: np.ndarray) -> Group:
        key = (metric, stratum, env)
        if key not in self.cache:
            self.cache[key] = self._build(metric, stratum, env, column)
        return self.cache[key]

    def _build(self, metric: str, stratum: Stratum, env: str, column: np.ndarray) -> Group:
        pos = self.indices.get((stratum, env), np.zeros(0, dtype=np.int64))
        raw = column[pos]
        finite = np.isfinite(raw)
        values = raw[finite]
        where = f"{metric}, {_where(stratum)}, {env}"
        notes = []
        if values.size < 2:
            notes.append(f"{where}: only {values.size} usable run(s); tests not computable")
        elif values.size < 3:
            notes.append(f"{where}: fewer than 3 runs; Shapiro-Wilk not computable")
        if (~finite).any():
            notes.append(f"{where}: {int((~finite).sum())} run(s) without a value left out")
        if values.size > 5000:
            notes.append(f"{where}: n > 5000, Shapiro-Wilk's p may be inaccurate")
        in_order = raw[np.argsort(self.rank_in_order[pos], kind="stable")]
        notes += [f"{where}: {w}" for w in
                  S.measurement_warnings(in_order, check_warmup=metric.endswith("_s"))]
        outliers = S.outlier_flags(raw)
        if self.run_ids is not None:
            ids = self.run_ids[pos]
            outliers = replace(outliers, run_ids=OutlierRunIds(
                modified_z=tuple(str(ids[i]) for i in outliers.modified_z),
                tukey=tuple(str(ids[i]) for i in outliers.tukey)))
        draws = S.bootstrap_medians(values, S.DEFAULT_BOOTSTRAP,
                                    _stream(self.seed, metric, *_stream_names(stratum), env))
        return Group(values, S.descriptives(values), S.shapiro_wilk(values), outliers,
                     notes, draws)


def _test_p(test: MannWhitney | StudentT | WelchT | BrunnerMunzel | YuenBrunnerMunzel
            ) -> tuple[float | None, str | None]:
    """The p of the test used and how it was obtained: Mann-Whitney's exact p where it
    exists (no ties, N < 50, as R's default), else its asymptotic one."""
    if isinstance(test, MannWhitney):
        if test.p_exact is not None:
            return test.p_exact, "exact"
        return test.p_asymptotic, None if test.p_asymptotic is None else "asymptotic"
    if isinstance(test, BrunnerMunzel):
        return test.p_permutation, None if test.p_permutation is None else "permutation"
    return test.p, None if test.p is None else "t"  # t-tests, Yuen's with Brunner-Munzel's


def check_procedure(procedure: str) -> Procedure:
    """The implementation of a procedure named in the catalogue (data.procedures)."""
    try:
        return load_procedure(procedure)
    except UnknownProcedureError as exc:
        raise AnalysisError(str(exc)) from None


def decide(a: S.Values, b: S.Values, alternative: str = "two-sided",
           alpha: float = 0.05, procedure: str = DEFAULT_PROCEDURE, seed: int = 0
           ) -> tuple[str, float | None]:
    """The procedure's test and p for two samples, without the rest of the report.

    The same choice as :func:`analyze`, computing only what it needs, for callers that run
    it many times (the A/A calibration's random splits).
    """
    pair = Pair(S.clean(a), S.clean(b), alternative, alpha, seed)
    used = check_procedure(procedure).choose(pair)
    return used, _test_p(pair[used])[0]


def _lower(c: Comparison, test_used: str | None = None) -> bool | None:
    """Whether a is lower than b by a test's own estimate (the test used by default): the
    medians for Mann-Whitney, the means for a t-test, P(a < b) > 1/2 for Brunner-Munzel,
    the ratio of trimmed geometric means for Yuen's with Brunner-Munzel's (which agree
    wherever it is significant)."""
    used = test_used or c.test_used
    if used == "brunner_munzel":
        effect = c.brunner_munzel.estimate if c.brunner_munzel else None
        return None if effect is None or effect == 0.5 else effect > 0.5
    if used == "yuen_brunner_munzel":
        ratio = c.yuen.ratio if c.yuen else None
        return None if ratio is None or ratio == 1 else ratio < 1
    da, db = c.descriptives[c.a], c.descriptives[c.b]
    ca, cb = (da.median, db.median) if used == "mann_whitney" else (da.mean, db.mean)
    return None if ca is None or cb is None or ca == cb else ca < cb


def lower(c: Comparison, test_used: str | None = None) -> bool | None:
    """Which way a significant comparison goes: True where a is lower than b. A one-sided
    H1 says it; a two-sided one goes by the test's estimate (:func:`_lower`)."""
    if c.alternative != "two-sided":
        return c.alternative == "less"
    return _lower(c, test_used)


def small(n_a: int, n_b: int) -> bool:
    """Whether a comparison has fewer than SMALL_STUDY_RUNS runs in a group, where a
    non-significant result is "inconclusive" rather than "no difference"."""
    return min(n_a, n_b) < R.SMALL_STUDY_RUNS


def decision(c: Comparison, verdict: Verdict) -> str:
    """A verdict's decision (analysis.results.DECISIONS): which way where significant,
    else "no_difference", or "inconclusive" for a small study; "not_testable" without p."""
    if verdict.p is None:
        return "not_testable"
    if verdict.significant:
        down = lower(c, verdict.test_used)
        return "not_testable" if down is None else "lower" if down else "higher"
    return "inconclusive" if small(c.n_a, c.n_b) else "no_difference"


def _compare(ctx: _Context, metric: str, stratum: Stratum, a: str, b: str,
             column: np.ndarray) -> Comparison:
    """One comparison, before Holm's correction (p_holm None, not significant)."""
    dataset, configuration = stratum
    ga, gb = (ctx.group(metric, stratum, env, column) for env in (a, b))
    x, y = ga.values, gb.values
    ranks = S.rank_table(x, y)
    # One run a side tests nothing: no statistic is printed as if it meant something.
    testable = x.size >= 2 and y.size >= 2
    tests: dict[str, Any] = {
        "mann_whitney": S.mann_whitney(x, y, ctx.alternative) if testable else MannWhitney(),
        "student_t": S.student_t(x, y, ctx.alternative) if testable else StudentT(),
        "welch_t": S.welch_t(x, y, ctx.alternative) if testable else WelchT()}
    # The procedure chooses from what is reported; a test of its own (the robust one's
    # Brunner-Munzel) is computed on its first use, from this comparison's own seed.
    pair = Pair(x, y, ctx.alternative, ctx.alpha,
                seed=[ctx.seed, zlib.crc32("\x00".join((metric, *_stream_names(stratum), a, b,
                                                        "brunner-munzel")).encode())],
                known={"shapiro_a": ga.shapiro, "shapiro_b": gb.shapiro,
                       "levene": S.levene(x, y), **tests})
    used = ctx.rule.choose(pair)
    verdicts = {}
    for name, rule in ctx.rules.items():
        chosen = used if name == ctx.procedure else rule.choose(pair)
        p_v, method_v = _test_p(pair[chosen])
        verdicts[name] = Verdict(test_used=chosen, null_hypothesis=NULL_HYPOTHESIS.get(chosen),
                                 p=p_v, p_method=method_v)
    # the robust verdict's tests, whichever decided: Brunner-Munzel's permutation test
    # where it is used, else the t approximation the test of 8 runs and more is made of
    combined = pair.computed("yuen_brunner_munzel")
    bm = pair.computed("brunner_munzel") or (combined.brunner_munzel if combined else None)
    yuen = combined.yuen if combined and combined.yuen else \
        S.yuen_log_t(x, y, ctx.alternative) if testable else YuenLog()
    warnings = ga.warnings + gb.warnings
    p, method = _test_p(pair[used])
    if p is None:
        warnings.append(f"{metric}, {_where(stratum)}, {a} vs {b}: no test could be computed")
    equivalence = None
    if ctx.margin is not None:
        equivalence = E.tost_log(x, y, ctx.margin, ctx.alpha)
        if equivalence.p is None and x.size >= 2 and y.size >= 2:
            warnings.append(f"{metric}, {_where(stratum)}, {a} vs {b}: no equivalence test "
                            "(it needs positive values with some spread)")
    return Comparison(
        metric=metric, dataset=dataset, a=a, b=b, n_a=int(x.size), n_b=int(y.size),
        descriptives={a: ga.descriptives, b: gb.descriptives},
        shapiro={a: ga.shapiro, b: gb.shapiro},
        ranks={a: ranks[0], b: ranks[1]},
        mann_whitney=tests["mann_whitney"],
        hodges_lehmann=S.hodges_lehmann(x, y),
        levene=pair["levene"],
        student_t=tests["student_t"],
        welch_t=tests["welch_t"],
        test_used=used, p=p, p_holm=None, significant=False, p_method=method,
        median_ratio=S.ratio_from_draws(ga.median, gb.median, ga.draws, gb.draws),
        outliers={a: ga.outliers, b: gb.outliers},
        warnings=tuple(warnings), alternative=ctx.alternative, alpha=ctx.alpha,
        configuration=configuration, equivalence=equivalence,
        brunner_munzel=bm, yuen=yuen, verdicts=verdicts)


def _first_seen(values: Iterable[Any]) -> list[Any]:
    return list(dict.fromkeys(values))


def with_cells(frame: pd.DataFrame) -> pd.DataFrame:
    """The runs with each sweep cell as its own "dataset" ("shapes, batch_size=32, model=fnn"),
    for what groups by dataset only (a pilot's plan, the tables of runs, quality and memory),
    which would otherwise pool configurations that differ in time. Unchanged without one."""
    if "configuration" not in frame.columns:
        return frame
    config = (frame["configuration"].astype("string").fillna("").str.strip()
              .str.replace(",", ", "))
    dataset = frame["dataset"].astype(str)
    return frame.assign(dataset=dataset.where(config.eq(""), dataset + ", " + config))


def _configurations(frame: pd.DataFrame) -> list[str | None]:
    """Each run's sweep configuration (the `configuration` column), None where there is none."""
    if "configuration" not in frame.columns:
        return [None] * len(frame)
    return [None if pd.isna(v) or not str(v).strip() or str(v).strip() in _NA_TOKENS
            else str(v).strip() for v in frame["configuration"]]


#: Pairs of environments an analysis takes (45 environments make 990), and comparisons in
#: all (metrics x datasets x configurations x pairs): at some 20 ms each, 20,000 take
#: minutes; 1,000 environments' 499,500 pairs would take hours with nothing to show.
MAX_PAIRS = 1_000
MAX_COMPARISONS = 20_000


def check_size(environments: int, cells: int) -> None:
    """Refuse, before any test runs, an analysis too large to finish, naming its size."""
    pairs = environments * (environments - 1) // 2
    if pairs > MAX_PAIRS:
        raise AnalysisError(f"{environments:,} environments make {pairs:,} pairs to compare, "
                            f"over the limit of {MAX_PAIRS:,} (45 environments): analyse a "
                            "subset of them (a CSV of their runs only)")
    if pairs * cells > MAX_COMPARISONS:
        raise AnalysisError(f"{pairs:,} pairs x {cells:,} metrics and datasets make "
                            f"{pairs * cells:,} comparisons, over the limit of "
                            f"{MAX_COMPARISONS:,}: name fewer metrics with --metric, or "
                            "analyse a subset of the runs")


def timing(metric: str) -> bool:
    """Whether a metric is a time (its column ends in _s), where lower means faster."""
    return metric.endswith("_s")


def analyze(frame: pd.DataFrame, metrics: Sequence[str] | None = None,
            alternative: str = "two-sided", alpha: float = 0.05, seed: int = 0,
            environments: Sequence[str] | None = None, procedure: str = DEFAULT_PROCEDURE,
            equivalence: float | None = None) -> Analysis:
    """The analysis (docs/design.md) of a runs frame; ``to_dict()`` is its JSON, strictly
    serialisable (no NaN).

    Pairs (a, b) follow `environments` (the study file's order, which a one-sided H1 is
    stated in), then the order in which the others first appear; entries are ordered
    by metric, dataset (and sweep configuration), pair. ``p_holm`` adjusts over the datasets
    and configurations of one metric and pair (a sweep's levels are one family);
    ``significant`` is p_holm < alpha. ``seed`` drives the bootstrap of the median ratio.
    ``procedure``: a name of the procedure catalogue, data.procedures ("spss" or "robust",
    the module's docstring, unless more are registered); ``equivalence``: a relative
    margin (0.05: +-5 %) for the TOST and the four-way conclusion of each comparison.
    """
    S.check_alternative(alternative)
    if not 0 < alpha < 1:
        raise AnalysisError(f"alpha must be between 0 and 1, got {alpha}")
    rule = check_procedure(procedure)
    rules = {name: check_procedure(name) for name in VERDICTS}
    rules[procedure] = rule
    if equivalence is not None:
        try:
            equivalence = E.check_margin(equivalence)
        except ValueError as exc:
            raise AnalysisError(str(exc)) from None
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise AnalysisError(f"runs: missing column {missing[0]!r}")
    frame = usable_runs(frame).reset_index(drop=True)
    frame = frame.assign(environment=frame["environment"].astype(str),
                         dataset=frame["dataset"].astype(str))
    chosen = check_metrics(frame, metrics)
    present = _first_seen(frame["environment"])
    envs = [e for e in dict.fromkeys(environments or ()) if e in present]
    envs += [e for e in present if e not in envs]
    configurations = _configurations(frame)
    strata: list[Stratum] = _first_seen(zip(frame["dataset"], configurations, strict=True))
    grouped = pd.Series(range(len(frame))).groupby(
        [frame["dataset"], pd.Series(configurations, dtype=object).fillna(""),
         frame["environment"]], sort=False).indices
    indices = {((ds, cfg or None), env): np.asarray(v) for (ds, cfg, env), v in grouped.items()}
    order = _run_order(frame)
    rank_in_order = np.empty(len(frame), dtype=np.int64)
    rank_in_order[order] = np.arange(len(frame))
    ctx = _Context(alternative, alpha, seed, procedure, rule, rules, equivalence, indices,
                   rank_in_order,
                   frame["run_id"].astype(str).to_numpy() if "run_id" in frame else None)
    check_size(len(envs), len(chosen) * len(strata))
    pairs = list(itertools.combinations(envs, 2))
    comparisons: list[Comparison] = []
    kruskal: list[KruskalWallis] = []
    for metric in chosen:
        column, _ = _as_numeric(frame[metric])
        column = column.to_numpy(dtype=float)
        for stratum in strata:
            for a, b in pairs:
                comparisons.append(_compare(ctx, metric, stratum, a, b, column))
            if len(envs) > 2:
                groups = [ctx.group(metric, stratum, env, column).values for env in envs]
                kruskal.append(replace(S.kruskal_wallis(groups), metric=metric,
                                       dataset=stratum[0], configuration=stratum[1],
                                       environments=tuple(envs)))
    families: dict[tuple[str, str, str], list[int]] = {}
    for i, entry in enumerate(comparisons):
        families.setdefault((entry.metric, entry.a, entry.b), []).append(i)
    for members in families.values():
        adjusted = S.holm([comparisons[i].p for i in members])
        for i, p_holm in zip(members, adjusted, strict=True):
            comparisons[i] = replace(comparisons[i], p_holm=p_holm,
                                     significant=p_holm is not None and p_holm < alpha)
        for name in rules:  # each verdict in its own family
            held = [comparisons[i].verdicts[name] for i in members]  # type: ignore[index]
            for i, v, p_holm in zip(members, held, S.holm([v.p for v in held]), strict=True):
                c = comparisons[i]
                v = replace(v, p_holm=p_holm, significant=p_holm is not None and p_holm < alpha)
                c.verdicts[name] = replace(v, decision=decision(c, v))  # type: ignore[index]
    for i, c in enumerate(comparisons):
        found = c.verdicts or {}
        comparisons[i] = replace(c, verdicts_agree=found["spss"].decision
                                 == found["robust"].decision)
    for i, c in enumerate(comparisons):
        if c.equivalence is not None:
            comparisons[i] = replace(c, equivalence=E.conclude(
                c.equivalence, c.significant, lower(c), timing(c.metric)))
    # Across time: the times (train_s, total_s) among the metrics, when runs carry start times
    time_metrics = [m for m in chosen if m in T.TIME_METRICS] or \
        [m for m in chosen if timing(m)]
    time = T.analyze_time(frame, time_metrics, envs, alpha) if T.has_times(frame) else ()
    return Analysis(procedure=procedure, comparisons=tuple(comparisons),
                    kruskal_wallis=tuple(kruskal) if len(envs) > 2 else None,
                    time=time or None)

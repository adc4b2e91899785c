"""The analysis along a factor: how the speed-up between environments changes with a sweep
parameter (batch size, depth, filters, model...), as the reference thesis on Keras backends
reported it (the speed-up of each pair of backends, and their relative memory use, against
the batch size), now with intervals and a test.

Direction, everywhere: for a pair (a, b), in the environments' order, the **time ratio a/b**
is median(metric of a) / median(metric of b), as analysis.compare's ``median_ratio``. Above
1, a is slower: b is faster by that factor; below 1, a is faster. The memory ratio a/b is
the same ratio of the memory metric's medians (above 1: a uses more memory).

Every run counts, whatever its status (warm-up runs aside): ok runs give the ratios, and an
out-of-memory run is a result, never dropped. A level where one side has no ok run but ran
out of memory has no ratio and names that side in ``oom``, so tables print "OOM" and figures
mark it. The test of "does the speed-up depend on the level?" is the environment x level
interaction of a two-way linear model of log(metric): a constant speed-up is a constant
difference of log times, so the interaction is exactly a speed-up that changes with the
level. Its sums of squares are of type II, because OOM and failed runs leave unbalanced
cells; for the interaction, the model's highest-order term, that is R's sequential
``anova(lm(log(y) ~ env * level))`` too (checked against R in the tests).
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from cloudbench.analysis import stats as S
from cloudbench.analysis.compare import REQUIRED, AnalysisError, _stream, check_metrics, usable_runs
from cloudbench.analysis.results import (
    _BOOL,
    _INT,
    _NAMES,
    _REAL,
    _STR,
    AnalysisFormatError,
    MedianRatio,
    Result,
    _items,
    _optional,
)
from cloudbench.study.record import configuration_id, level_text, parse_configuration

#: Why an interaction test has no F (Interaction.reason); the paper words each one.
TOO_FEW_LEVELS = "too_few_levels"
NO_RESIDUAL = "no_residual_variation"
REASONS = (TOO_FEW_LEVELS, NO_RESIDUAL)
#: Runs per side and level the interaction test needs (a variance within every cell).
MIN_RUNS = 2
# A residual below this, relative to the log values, is rounding (1e4 machine epsilons).
_ROUNDING = 1e4 * float(np.finfo(float).eps)

_NA_TEXT = frozenset({"", "nan", "NaN", "NA", "N/A", "n/a", "null", "None", "none"})


# --------------------------------------------------------------------------- results


def _ratio(value: Any, where: str) -> MedianRatio:
    return MedianRatio.from_dict(value, where)


@dataclass(frozen=True, kw_only=True)
class LevelRatio(Result):
    """One parameter level of one dataset, fixed combination of the other sweep parameters
    and pair (a, b): the time and memory ratios a/b with their 95 % intervals.

    ``n_a``/``n_b`` count the ok runs with a value of the metric; ``oom_*`` the runs that
    ran out of memory; ``failed_*`` those that failed or timed out. ``oom`` names each side
    with no ok run and at least one OOM run: its ratios are None. ``median_*`` are the
    metric's medians over ok runs, ``memory_*`` the memory metric's, and ``oom_memory_*``
    the median memory the OOM runs reached (the limit they hit).
    """

    parameter: str
    dataset: str
    fixed: str  # the other sweep parameters' values, "model=fnn"; "" when none
    a: str
    b: str
    level: str  # as text, as in the configuration id
    n_a: int
    n_b: int
    oom_a: int
    oom_b: int
    failed_a: int
    failed_b: int
    oom: tuple[str, ...]
    median_a: float | None = None
    median_b: float | None = None
    time_ratio: MedianRatio
    memory_a: float | None = None
    memory_b: float | None = None
    memory_ratio: MedianRatio
    oom_memory_a: float | None = None
    oom_memory_b: float | None = None

    _readers = {"parameter": _STR, "dataset": _STR, "fixed": _STR, "a": _STR, "b": _STR,
                "level": _STR, "n_a": _INT, "n_b": _INT, "oom_a": _INT, "oom_b": _INT,
                "failed_a": _INT, "failed_b": _INT, "oom": _NAMES,
                "time_ratio": _ratio, "memory_ratio": _ratio}


@dataclass(frozen=True, kw_only=True)
class Interaction(Result):
    """Does the time ratio a/b change with the level? The environment x level interaction
    of ``log(metric) ~ env * level`` (type II), on the levels where both sides have at least
    two ok runs (``levels``, ``n`` runs in all). F, df and p are None, with ``reason``
    (one of REASONS), when the test cannot be computed."""

    parameter: str
    dataset: str
    fixed: str
    a: str
    b: str
    levels: tuple[str, ...]
    n: int
    F: float | None = None
    df_num: int | None = None
    df_den: int | None = None
    p: float | None = None
    significant: bool = False
    reason: str | None = None

    _readers = {"parameter": _STR, "dataset": _STR, "fixed": _STR, "a": _STR, "b": _STR,
                "levels": _NAMES, "n": _INT, "df_num": _optional(_INT),
                "df_den": _optional(_INT), "significant": _BOOL,
                "reason": _optional(lambda v, w: _reason(v, w))}


def _reason(value: Any, where: str) -> str:
    if value not in REASONS:
        raise AnalysisFormatError(f"{where}: expected one of {', '.join(REASONS)}, "
                                  f"got {value!r}")
    return value


def _level_orders(value: Any, where: str) -> dict[str, tuple[str, ...]]:
    if not isinstance(value, dict):
        raise AnalysisFormatError(f"{where}: expected an object per parameter, got {value!r}")
    return {str(k): _NAMES(v, f"{where}.{k}") for k, v in value.items()}


def _list_of(cls: type[Result]) -> Callable[[Any, str], tuple[Any, ...]]:
    return _items(lambda v, w: cls.from_dict(v, w))


@dataclass(frozen=True, kw_only=True)
class FactorAnalysis(Result):
    """The analysis along each sweep parameter: level entries in order (parameter, dataset,
    fixed, pair, level), and one interaction test per parameter, dataset, fixed and pair.

    ``level_order`` holds each parameter's levels in order (numeric when they all are
    numbers); ``environments`` the order the pairs follow. Empty (no parameters) without a
    sweep. ``to_dict()`` is a plain JSON-safe dict (no NaN), for the paper to write as JSON.
    """

    parameters: tuple[str, ...] = ()
    environments: tuple[str, ...] = ()
    metric: str
    memory_metric: str | None = None
    alpha: float
    level_order: dict[str, tuple[str, ...]]
    levels: tuple[LevelRatio, ...] = ()
    interactions: tuple[Interaction, ...] = ()

    _readers = {"parameters": _NAMES, "environments": _NAMES, "metric": _STR,
                "memory_metric": _optional(_STR), "alpha": _REAL,
                "level_order": _level_orders, "levels": _list_of(LevelRatio),
                "interactions": _list_of(Interaction)}

    @property
    def empty(self) -> bool:
        return not self.levels

    def of(self, parameter: str) -> list[LevelRatio]:
        """The level entries of one parameter, in order."""
        return [e for e in self.levels if e.parameter == parameter]

    def interactions_of(self, parameter: str | None = None) -> list[Interaction]:
        return [t for t in self.interactions if parameter is None or t.parameter == parameter]

    def panels(self, parameter: str) -> list[tuple[str, str]]:
        """The (dataset, fixed) combinations of one parameter, in order: a figure's panels."""
        return list(dict.fromkeys((e.dataset, e.fixed) for e in self.of(parameter)))

    def pairs(self, parameter: str | None = None) -> list[tuple[str, str]]:
        return list(dict.fromkeys((e.a, e.b) for e in self.levels
                                  if parameter is None or e.parameter == parameter))


# --------------------------------------------------------------------------- reading the runs


def _text(value: Any) -> str | None:
    """A cell as stripped text; None when missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    return None if text in _NA_TEXT else text


def _numbers(column: pd.Series) -> np.ndarray:
    """A metric column as floats (check_metrics has refused text that is not a number)."""
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        return column.to_numpy(dtype=float)
    text = column.map(_text)
    return pd.to_numeric(text, errors="coerce").to_numpy(dtype=float)


def _status(value: Any) -> str:
    """"ok" exactly as usable_runs reads it; "oom" in any case; anything else is a failure."""
    text = _text(value) or ""
    return "oom" if text.lower() == "oom" else text


def _runs(frame: pd.DataFrame) -> pd.DataFrame:
    """Every run but the warm-up ones, whatever its status, with names as text.

    usable_runs without the status column is exactly its warm-up rule."""
    frame = frame.reset_index(drop=True)
    kept = usable_runs(frame.drop(columns=["status"], errors="ignore")).index
    runs = frame.loc[kept].reset_index(drop=True)
    status = (runs["status"].map(_status) if "status" in runs
              else pd.Series("ok", index=runs.index))
    return runs.assign(environment=runs["environment"].astype(str).str.strip(),
                       dataset=runs["dataset"].astype(str).str.strip(), _status=status)


def ordered_levels(levels: Sequence[str]) -> list[str]:
    """Levels numerically when every one is a number ("32" < "64" < "128"), else in the
    order first seen."""
    unique = list(dict.fromkeys(levels))
    try:
        values = [float(v) for v in unique]
    except ValueError:
        return unique
    if not all(math.isfinite(v) for v in values):
        return unique
    return [v for _, v in sorted(zip(values, unique, strict=True), key=lambda t: t[0])]


def _memory_metric(runs: pd.DataFrame, ok: np.ndarray, asked: str | None) -> str | None:
    """The memory metric asked for, else device memory where ok runs recorded it, else host."""
    if asked is not None:
        check_metrics(runs, [asked])
        return asked
    if "peak_gpu_mb" in runs:
        check_metrics(runs, ["peak_gpu_mb"])
        if np.isfinite(_numbers(runs["peak_gpu_mb"])[ok]).any():
            return "peak_gpu_mb"
    if "peak_rss_mb" in runs:
        check_metrics(runs, ["peak_rss_mb"])
        return "peak_rss_mb"
    return None


# --------------------------------------------------------------------------- the cells


@dataclass
class _Cell:
    """One environment at one level: counts, and medians with their bootstrap draws."""

    n: int
    oom: int
    failed: int
    positive: np.ndarray  # the metric's positive values of ok runs (the log's domain)
    median: float | None
    draws: np.ndarray
    memory: float | None
    memory_draws: np.ndarray
    oom_memory: float | None


def _median(values: np.ndarray) -> float | None:
    return float(np.median(values)) if values.size else None


class _Cells:
    """The cells of one analysis, built once (a cell belongs to every parameter's view)."""

    def __init__(self, runs: pd.DataFrame, metric: str, memory: str | None, seed: int,
                 config_text: list[str]) -> None:
        self.metric, self.memory, self.seed = metric, memory, seed
        self.status = runs["_status"].to_numpy()
        self.y = _numbers(runs[metric])
        self.mem = (_numbers(runs[memory]) if memory is not None
                    else np.full(len(runs), np.nan))
        self.config_text = config_text
        self.cache: dict[tuple[Any, ...], _Cell] = {}

    def cell(self, dataset: str, env: str, positions: np.ndarray) -> _Cell:
        key = (dataset, env, tuple(positions))
        if key not in self.cache:
            self.cache[key] = self._build(dataset, env, positions)
        return self.cache[key]

    def _build(self, dataset: str, env: str, positions: np.ndarray) -> _Cell:
        status = self.status[positions]
        ok = positions[status == "ok"]
        oom = positions[status == "oom"]
        values = self.y[ok][np.isfinite(self.y[ok])]
        memory = self.mem[ok][np.isfinite(self.mem[ok])]
        oom_memory = self.mem[oom][np.isfinite(self.mem[oom])]
        # The stream of analysis.compare's group of this configuration: the ratio here is
        # the median_ratio of the per-configuration comparison, draw for draw.
        configuration = ";".join(sorted({self.config_text[i] for i in positions}))
        draws = S.bootstrap_medians(values, S.DEFAULT_BOOTSTRAP,
                                    _stream(self.seed, self.metric, dataset, configuration, env))
        memory_draws = (S.bootstrap_medians(memory, S.DEFAULT_BOOTSTRAP,
                                            _stream(self.seed, self.memory, dataset,
                                                    configuration, env))
                        if self.memory is not None else np.full(S.DEFAULT_BOOTSTRAP, np.nan))
        positive = values[values > 0]
        return _Cell(n=int(values.size), oom=int(oom.size),
                     failed=int(positions.size - ok.size - oom.size),
                     positive=positive, median=_median(values), draws=draws,
                     memory=_median(memory), memory_draws=memory_draws,
                     oom_memory=_median(oom_memory))


_EMPTY = np.zeros(0, dtype=np.int64)


def _level_ratio(cells: _Cells, parameter: str, dataset: str, fixed: str, a: str, b: str,
                 level: str, pos_a: np.ndarray, pos_b: np.ndarray) -> LevelRatio:
    ca, cb = cells.cell(dataset, a, pos_a), cells.cell(dataset, b, pos_b)
    oom = tuple(env for env, c in ((a, ca), (b, cb)) if c.n == 0 and c.oom > 0)
    return LevelRatio(
        parameter=parameter, dataset=dataset, fixed=fixed, a=a, b=b, level=level,
        n_a=ca.n, n_b=cb.n, oom_a=ca.oom, oom_b=cb.oom, failed_a=ca.failed,
        failed_b=cb.failed, oom=oom, median_a=S.num(ca.median), median_b=S.num(cb.median),
        time_ratio=S.ratio_from_draws(ca.median, cb.median, ca.draws, cb.draws),
        memory_a=S.num(ca.memory), memory_b=S.num(cb.memory),
        memory_ratio=S.ratio_from_draws(ca.memory, cb.memory, ca.memory_draws,
                                        cb.memory_draws),
        oom_memory_a=S.num(ca.oom_memory), oom_memory_b=S.num(cb.oom_memory))


def interaction_test(values_a: Sequence[np.ndarray], values_b: Sequence[np.ndarray]
                     ) -> tuple[float, int, int, float] | None:
    """F, df_num, df_den and p of the env x level interaction, from each level's positive
    values on side a and side b (aligned lists); None without residual variation.

    statsmodels' ``ols("np.log(y) ~ C(env) * C(level)")`` with ``anova_lm(typ=2)``: on the
    log scale the interaction is "the ratio a/b changes with the level"."""
    from statsmodels.formula.api import ols
    from statsmodels.stats.anova import anova_lm

    parts = []
    for i, (x, y) in enumerate(zip(values_a, values_b, strict=True)):
        parts.append(pd.DataFrame({"y": x, "env": "a", "level": f"L{i}"}))
        parts.append(pd.DataFrame({"y": y, "env": "b", "level": f"L{i}"}))
    data = pd.concat(parts, ignore_index=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        model = ols("np.log(y) ~ C(env) * C(level)", data=data).fit()
        # Residuals at rounding level are no variation: constant cells fit exactly, and F
        # would be rounding noise over rounding noise.
        scale = _ROUNDING * max(1.0, float(np.max(np.abs(np.log(data["y"])))))
        if model.df_resid < 1 or not model.ssr > len(data) * scale**2:
            return None
        table = anova_lm(model, typ=2)
    row = table.loc["C(env):C(level)"]
    f, p = S.num(row["F"]), S.num(row["PR(>F)"])
    if f is None or p is None:
        return None
    return f, int(round(row["df"])), int(round(model.df_resid)), p


def _interaction(cells: _Cells, parameter: str, dataset: str, fixed: str, a: str, b: str,
                 levels: list[tuple[str, np.ndarray, np.ndarray]], alpha: float
                 ) -> Interaction:
    used, values_a, values_b = [], [], []
    for level, pos_a, pos_b in levels:
        ca, cb = cells.cell(dataset, a, pos_a), cells.cell(dataset, b, pos_b)
        if ca.positive.size >= MIN_RUNS and cb.positive.size >= MIN_RUNS:
            used.append(level)
            values_a.append(ca.positive)
            values_b.append(cb.positive)
    n = int(sum(v.size for v in values_a + values_b))
    common = {"parameter": parameter, "dataset": dataset, "fixed": fixed, "a": a, "b": b,
              "levels": tuple(used), "n": n}
    if len(used) < 2:
        return Interaction(**common, reason=TOO_FEW_LEVELS)
    result = interaction_test(values_a, values_b)
    if result is None:
        return Interaction(**common, reason=NO_RESIDUAL)
    f, df_num, df_den, p = result
    return Interaction(**common, F=f, df_num=df_num, df_den=df_den, p=p,
                       significant=p < alpha)


# --------------------------------------------------------------------------- the analysis


def factor_analysis(frame: pd.DataFrame, parameters: Sequence[str] | None = None,
                    environments: Sequence[str] | None = None, metric: str = "train_s",
                    memory_metric: str | None = None, alpha: float = 0.05, seed: int = 0,
                    level_order: Mapping[str, Sequence[Any]] | None = None
                    ) -> FactorAnalysis:
    """The analysis along each sweep parameter of a runs frame holding ALL runs (any status).

    ``parameters``: None for every parameter of the `configuration` column with more than
    one level. ``environments``: the order of the pairs (a, b), as analysis.compare.analyze
    (these first, then the others as first seen). ``memory_metric``: None for peak_gpu_mb
    where ok runs recorded it, else peak_rss_mb. For each parameter, the other varying
    parameters are held fixed ("fixed"): one panel of levels per combination of theirs.
    ``seed`` drives the bootstrap, per cell, so an entry does not depend on what else is
    analysed. ``level_order``: levels in the order to show them (the study file's), for
    names, which have no order of their own. No sweep (no configuration column, no
    parameter with two levels): an empty result, not an error.
    """
    if not 0 < alpha < 1:
        raise AnalysisError(f"alpha must be between 0 and 1, got {alpha}")
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise AnalysisError(f"runs: missing column {missing[0]!r}")
    runs = _runs(frame)
    texts = ([_text(v) or "" for v in runs["configuration"]] if "configuration" in runs
             else [""] * len(runs))
    configs = [parse_configuration(t) for t in texts]
    seen: dict[str, list[str]] = {}
    for config in configs:
        for name, value in config.items():
            seen.setdefault(name, []).append(value)
    varying = [name for name, values in seen.items() if len(set(values)) > 1]
    if parameters is None:
        chosen = varying
    else:
        chosen = list(dict.fromkeys(parameters))
        unknown = [p for p in chosen if p not in seen]
        if unknown:
            raise AnalysisError(f"runs: unknown sweep parameter {unknown[0]!r} (the "
                                f"configurations have: {', '.join(seen) or 'none'})")
    present = list(dict.fromkeys(runs["environment"]))
    envs = [e for e in environments or () if e in present]
    envs += [e for e in present if e not in envs]
    if not chosen:
        return FactorAnalysis(environments=tuple(envs), metric=metric, alpha=alpha,
                              level_order={})
    check_metrics(runs, [metric])
    ok = runs["_status"].to_numpy() == "ok"
    memory = _memory_metric(runs, ok, memory_metric)
    cells = _Cells(runs, metric, memory, seed, texts)
    pairs = list(itertools.combinations(envs, 2))
    entries: list[LevelRatio] = []
    tests: list[Interaction] = []
    orders = {name: tuple(ordered_levels(values)) for name, values in seen.items()}
    for name, given in (level_order or {}).items():  # the study file's order of levels
        if name in orders:
            listed = [level_text(v) for v in given if level_text(v) in orders[name]]
            orders[name] = tuple(listed + [v for v in orders[name] if v not in listed])
    rank = {name: {lv: i for i, lv in enumerate(order)} for name, order in orders.items()}
    dataset_of, env_of = runs["dataset"].to_numpy(), runs["environment"].to_numpy()
    dataset_rank = {ds: i for i, ds in enumerate(dict.fromkeys(dataset_of))}
    for parameter in chosen:
        order = orders[parameter]
        others = [q for q in varying if q != parameter]
        level = [c.get(parameter) for c in configs]
        fixed = [configuration_id({q: c[q] for q in others if q in c}) for c in configs]
        rows = np.array([i for i, v in enumerate(level) if v is not None], dtype=np.int64)
        keys = pd.DataFrame({"dataset": dataset_of[rows], "fixed": [fixed[i] for i in rows],
                             "level": [level[i] for i in rows], "env": env_of[rows]})
        index = {k: rows[v] for k, v in keys.groupby(["dataset", "fixed", "level", "env"],
                                                     sort=False).indices.items()}
        # Panels by dataset (first seen), then by the other parameters' levels in order.
        place: dict[tuple[str, str], tuple[int, tuple[int, ...]]] = {}
        for i in rows:
            place.setdefault((dataset_of[i], fixed[i]), (dataset_rank[dataset_of[i]], tuple(
                rank[q].get(configs[i].get(q, ""), -1) for q in others)))
        panels = sorted(place, key=place.__getitem__)
        for dataset, fix in panels:
            for a, b in pairs:
                cell_levels = []
                for lv in order:
                    pos_a = index.get((dataset, fix, lv, a), _EMPTY)
                    pos_b = index.get((dataset, fix, lv, b), _EMPTY)
                    if pos_a.size or pos_b.size:
                        cell_levels.append((lv, pos_a, pos_b))
                        entries.append(_level_ratio(cells, parameter, dataset, fix, a, b, lv,
                                                    pos_a, pos_b))
                if cell_levels:
                    tests.append(_interaction(cells, parameter, dataset, fix, a, b,
                                              cell_levels, alpha))
    return FactorAnalysis(parameters=tuple(chosen), environments=tuple(envs), metric=metric,
                          memory_metric=memory, alpha=alpha,
                          level_order={p: orders[p] for p in chosen},
                          levels=tuple(entries), interactions=tuple(tests))

"""The analysis across time: does the verdict hold at every hour, every day, every device?

A cloud notebook is not a fixed machine: its speed may depend on the hour and the day
(Henning et al. 2025: daily and weekly patterns of up to 2.5 % over three months on AWS),
and a session gets whatever GPU the provider assigns. A study spread over days
(study.schedule) records when each run started (``started_at``, UTC), the machine's UTC
offset (``local_offset_min``), its block, session and device; from those, per metric (the
times) and dataset:

* per environment: the hour of the day (a harmonic regression on sin and cos of the hour,
  F test against the intercept-only model on the ranks of the times, size and peak on log
  times: the primary test, see docs/statistics.md), the windows of the day and the days of
  the week (Kruskal-Wallis), the drift over the study (OLS slope of log time over the
  block, with its interval; Spearman's rho beside it) and the devices it got;
* per pair: whether the difference depends on the window (environment x window on log
  time, F test against the additive model, and each window's ratio, Holm-adjusted), the
  comparison per device when an environment got several, and, where a session holds
  several runs, a mixed model with the session as the unit beside the run-level test,
  with a warning when they disagree. Where sessions hold several runs, the time tests take
  the session as the unit (by_session): its runs share its hour and machine.

:func:`simulate` measures the power and type-I error of these tests on generated studies
(``python -m cloudbench.analysis.temporal``); docs/statistics.md has the numbers.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from cloudbench.analysis.results import (
    DeviceComparison,
    Difference,
    Drift,
    EnvironmentTime,
    GroupTest,
    HourEffect,
    Interaction,
    SessionCheck,
    TimeAnalysis,
    TimePair,
)

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
#: The metrics analysed across time by default: the times the records carry.
TIME_METRICS = ("train_s", "total_s")
#: A span shorter than this cannot separate a weekly pattern from drift.
WEEK_S = 7 * 86400


# --------------------------------------------------------------------------- preparing


def has_times(frame: pd.DataFrame) -> bool:
    """Whether the runs carry start times that can be read (the records since issue 27 do)."""
    return "started_at" in frame.columns and _utc(frame["started_at"]).notna().sum() >= 2


def _utc(column: pd.Series) -> pd.Series:
    return pd.to_datetime(column.astype("string"), utc=True, errors="coerce", format="ISO8601")


def _text(frame: pd.DataFrame, column: str) -> pd.Series | None:
    """A label column as text ("" where missing); a number read as 3.0 reads as "3"."""
    if column not in frame.columns:
        return None
    def label(v: Any) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return ""
        if isinstance(v, float) and v.is_integer():
            return str(int(v))
        return str(v).strip()
    return frame[column].map(label)


def window_label(window: int, windows: int) -> str:
    """ "12-16" for window 3 of 6 (hours of the local clock)."""
    size = 24 / windows
    def hour(h: float) -> str:
        return f"{h:g}" if h != int(h) else f"{int(h):02d}"
    return f"{hour(window * size)}-{hour((window + 1) * size)}"


def prepare(frame: pd.DataFrame, metric: str, timezone: str | None = None,
            windows: int = 6) -> pd.DataFrame:
    """One row per usable run with a positive time and a start time: environment, dataset,
    y (log time), utc, hour (decimal, local clock), window, weekday, x (block or order),
    session and device.

    The local clock is `timezone` (the study's) when given, else each run's recorded
    ``local_offset_min`` (the controller machine's offset), else UTC.
    """
    when = _utc(frame["started_at"])
    values = pd.to_numeric(frame[metric], errors="coerce")
    keep = when.notna() & values.gt(0) & np.isfinite(values)
    if timezone:
        local = when.dt.tz_convert(timezone).dt.tz_localize(None)
    elif "local_offset_min" in frame.columns:
        offset = pd.to_numeric(frame["local_offset_min"], errors="coerce").fillna(0)
        local = when.dt.tz_localize(None) + pd.to_timedelta(offset, unit="min")
    else:
        local = when.dt.tz_localize(None)
    out = pd.DataFrame({
        "environment": frame["environment"].astype(str),
        "dataset": frame["dataset"].astype(str) if "dataset" in frame else "",
        "y": np.log(values.where(keep, 1.0)),
        "utc": when,
        "local": local,
    })
    block = pd.to_numeric(frame["block"], errors="coerce") if "block" in frame else None
    if block is not None and block[keep].notna().all() and block[keep].nunique() > 1:
        out["x"], out.attrs["x"] = block, "block"
    else:
        out["x"], out.attrs["x"] = when.rank(method="first"), "order"
    for column, name in (("session", "session"), ("device_name", "device")):
        text = _text(frame, column)
        out[name] = text if text is not None else ""
    out = out[keep].copy()
    _clock_columns(out, windows)
    return out


def _clock_columns(frame: pd.DataFrame, windows: int) -> None:
    """hour (decimal), window and weekday from the local clock's column."""
    local = frame["local"]
    frame["hour"] = local.dt.hour + local.dt.minute / 60 + local.dt.second / 3600
    frame["window"] = (frame["hour"] // (24 / windows)).clip(0, windows - 1).astype(int)
    frame["weekday"] = local.dt.day_of_week.astype(int)


# --------------------------------------------------------------------------- tests


def _ols(y: np.ndarray, x: np.ndarray) -> Any:
    import statsmodels.api as sm

    return sm.OLS(y, x).fit()


def hour_effect(hours: np.ndarray, y: np.ndarray, alpha: float = 0.05) -> HourEffect | None:
    """The harmonic regression of y (log time) on the hour, tested on the ranks of y (as
    robust to a slow run as Kruskal-Wallis, as powerful as the F test on log times without
    one: docs/statistics.md); None with fewer than 6 runs or fewer than 3 distinct hours
    (nothing to fit a daily curve to)."""
    n = len(y)
    if n < 6 or len(np.unique(np.round(hours))) < 3 or np.ptp(y) == 0:
        return None
    angle = 2 * np.pi * hours / 24
    design = np.column_stack([np.ones(n), np.sin(angle), np.cos(angle)])
    fit = _ols(y, design)
    b_sin, b_cos = float(fit.params[1]), float(fit.params[2])
    ranked = _ols(sps.rankdata(y), design)
    f, p = _num(ranked.fvalue), _num(ranked.f_pvalue)
    return HourEffect(n=n, statistic=f, df_num=2, df_den=n - 3, pvalue=p,
                      amplitude=math.expm1(math.hypot(b_sin, b_cos)),
                      peak_hour=(math.degrees(math.atan2(b_sin, b_cos)) / 15) % 24,
                      significant=p is not None and p < alpha)


def group_test(labels: Sequence[str], y: np.ndarray, alpha: float = 0.05,
               min_size: int = 2) -> GroupTest | None:
    """Kruskal-Wallis across the groups that hold at least `min_size` runs; None with fewer
    than two such groups."""
    frame = pd.DataFrame({"g": list(labels), "y": y})
    sizes = frame.groupby("g", sort=True)["y"].size()
    kept = [g for g in sizes.index if sizes[g] >= min_size]
    if len(kept) < 2:
        return None
    data = [frame.loc[frame["g"] == g, "y"].to_numpy() for g in kept]
    medians = [float(np.median(d)) for d in data]
    statistic = p = None
    if np.ptp(np.concatenate(data)) > 0:
        res = sps.kruskal(*data)
        statistic, p = _num(res.statistic), _num(res.pvalue)
    return GroupTest(groups=tuple(kept), sizes=tuple(len(d) for d in data),
                     statistic=statistic, df=len(kept) - 1, pvalue=p,
                     median_ratio=math.exp(max(medians) - min(medians)),
                     significant=p is not None and p < alpha)


def drift(x: np.ndarray, y: np.ndarray, what: str = "block",
          alpha: float = 0.05) -> Drift | None:
    """The OLS slope of log time over x, as a relative change per step, with its interval."""
    n = len(y)
    if n < 4 or np.ptp(x) == 0:
        return None
    fit = _ols(y, np.column_stack([np.ones(n), x]))
    slope = float(fit.params[1])
    low, high = (float(v) for v in fit.conf_int(0.05)[1])
    rho = sps.spearmanr(x, y) if np.ptp(y) > 0 else None
    p = _num(fit.pvalues[1])
    return Drift(x=what, n=n, per_block=math.expm1(slope), ci_low=math.expm1(low),
                 ci_high=math.expm1(high), over_study=math.expm1(slope * float(np.ptp(x))),
                 statistic=_num(fit.tvalues[1]), pvalue=p,
                 spearman_rho=_num(rho.statistic) if rho is not None else None,
                 spearman_pvalue=_num(rho.pvalue) if rho is not None else None,
                 significant=p is not None and p < alpha)


def difference(label: str, a: np.ndarray, b: np.ndarray) -> Difference:
    """a over b (log times) as a ratio of geometric means (Welch's t, 95 % interval) and of
    medians."""
    if not len(a) or not len(b):
        return Difference(label=label, n_a=len(a), n_b=len(b))
    medians = math.exp(float(np.median(a) - np.median(b)))
    diff = float(np.mean(a) - np.mean(b))
    if len(a) < 2 or len(b) < 2:
        return Difference(label=label, n_a=len(a), n_b=len(b), median_ratio=medians,
                          ratio=math.exp(diff))
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return Difference(label=label, n_a=len(a), n_b=len(b), median_ratio=medians,
                          ratio=math.exp(diff))
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    t = diff / se
    q = float(sps.t.ppf(0.975, df))
    return Difference(label=label, n_a=len(a), n_b=len(b), median_ratio=medians,
                      ratio=math.exp(diff),
                      ci_low=math.exp(diff - q * se), ci_high=math.exp(diff + q * se),
                      statistic=t, pvalue=float(2 * sps.t.sf(abs(t), df)))


def _holm(items: list[Difference], alpha: float) -> list[Difference]:
    from dataclasses import replace

    from cloudbench.analysis.stats import holm

    adjusted = holm([d.pvalue for d in items])
    return [replace(d, p_holm=p, significant=p is not None and p < alpha)
            for d, p in zip(items, adjusted, strict=True)]


def interaction(runs: pd.DataFrame, a: str, b: str, windows: int,
                alpha: float = 0.05) -> Interaction | None:
    """Environment x window on log time, over the windows where a and b both have at least
    two runs; None with fewer than two such windows."""
    pair = runs[runs["environment"].isin((a, b))]
    counts = pair.groupby(["window", "environment"]).size().unstack(fill_value=0)
    used = [int(w) for w in counts.index
            if all(e in counts.columns and counts.loc[w, e] >= 2 for e in (a, b))]
    if len(used) < 2:
        return None
    pair = pair[pair["window"].isin(used)]
    y = pair["y"].to_numpy()
    is_a = (pair["environment"] == a).to_numpy(dtype=float)
    dummies = np.column_stack([(pair["window"] == w).to_numpy(dtype=float) for w in used[1:]])
    reduced = np.column_stack([np.ones(len(y)), is_a, dummies])
    full = np.column_stack([reduced, dummies * is_a[:, None]])
    small, big = _ols(y, reduced), _ols(y, full)
    df_num, df_den = len(used) - 1, int(big.df_resid)
    statistic = p = None
    if big.ssr > 0 and df_den > 0:
        statistic = ((small.ssr - big.ssr) / df_num) / (big.ssr / df_den)
        p = float(sps.f.sf(statistic, df_num, df_den))
    labels = [window_label(w, windows) for w in used]
    per_window = _holm([
        difference(label, pair.loc[(pair["window"] == w) & (is_a == 1), "y"].to_numpy(),
                   pair.loc[(pair["window"] == w) & (is_a == 0), "y"].to_numpy())
        for w, label in zip(used, labels, strict=True)], alpha)
    overall = math.exp(float(np.mean(y[is_a == 1]) - np.mean(y[is_a == 0])))
    medians = math.exp(float(np.median(y[is_a == 1]) - np.median(y[is_a == 0])))
    significant = p is not None and p < alpha
    # judged by medians: one slow run in a window of six must not flip its side
    same_side = all(d.median_ratio is not None and (d.median_ratio - 1) * (medians - 1) > 0
                    for d in per_window)
    differing = tuple(d.label for d in per_window if d.significant)
    return Interaction(
        windows_used=tuple(labels), statistic=_num(statistic), df_num=df_num, df_den=df_den,
        pvalue=_num(p), significant=significant, ratio=overall, median_ratio=medians,
        per_window=tuple(per_window),
        holds_at_every_window=not significant and same_side and medians != 1,
        differing_windows=differing,
        a_faster_windows=tuple(d.label for d in per_window if d.significant and d.ratio < 1),
        b_faster_windows=tuple(d.label for d in per_window if d.significant and d.ratio > 1))


def device_comparisons(runs: pd.DataFrame, a: str, b: str,
                       alpha: float = 0.05) -> tuple[DeviceComparison, ...]:
    """Each device of an environment of the pair that got more than one, against the other
    environment's runs (Holm over the devices of that environment)."""
    out: list[DeviceComparison] = []
    for env, other in ((a, b), (b, a)):
        mine = runs[runs["environment"] == env]
        devices = [d for d in dict.fromkeys(mine["device"]) if d]
        if len(devices) < 2:
            continue
        theirs = runs.loc[runs["environment"] == other, "y"].to_numpy()
        diffs = _holm([difference(d, mine.loc[mine["device"] == d, "y"].to_numpy(), theirs)
                       for d in devices], alpha)
        out += [DeviceComparison(environment=env, other=other, difference=d) for d in diffs]
    return tuple(out)


def session_check(runs: pd.DataFrame, a: str, b: str,
                  alpha: float = 0.05) -> SessionCheck | None:
    """a vs b with the session as the unit, where some session holds several runs."""
    pair = runs[runs["environment"].isin((a, b)) & runs["session"].ne("")]
    if pair.empty or set(pair["environment"]) != {a, b}:
        return None
    # a session belongs to one environment; label it so, should two share a name
    group = pair["environment"] + "\x00" + pair["session"]
    sizes = group.value_counts()
    if sizes.max() < 2:
        return None
    y = pair["y"].to_numpy()
    is_a = (pair["environment"] == a).to_numpy(dtype=float)
    runs_level = difference("runs", y[is_a == 1], y[is_a == 0])
    n_a = int(group[is_a == 1].nunique())
    n_b = int(group[is_a == 0].nunique())
    method, ratio, low, high, z, p, icc = "mixedlm", None, None, None, None, None, None
    try:
        import statsmodels.api as sm

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = sm.MixedLM(y, np.column_stack([np.ones(len(y)), is_a]),
                               groups=group.to_numpy())
            fit = model.fit(reml=True)
        beta, se = float(fit.fe_params[1]), float(fit.bse_fe[1])
        if not (math.isfinite(beta) and math.isfinite(se) and se > 0):
            raise ValueError("no standard error")
        z = beta / se
        p = float(2 * sps.norm.sf(abs(z)))
        ratio, low, high = (math.exp(beta), math.exp(beta - 1.959964 * se),
                            math.exp(beta + 1.959964 * se))
        between = float(np.asarray(fit.cov_re).ravel()[0])
        icc = between / (between + float(fit.scale)) if between + fit.scale > 0 else None
    except Exception:  # noqa: BLE001 - a model that does not fit falls back, it never fails
        method = "session_means_welch"
        means = pd.DataFrame({"g": group.to_numpy(), "y": y, "a": is_a}).groupby("g").mean()
        fallback = difference("sessions", means.loc[means["a"] == 1, "y"].to_numpy(),
                              means.loc[means["a"] == 0, "y"].to_numpy())
        ratio, low, high = fallback.ratio, fallback.ci_low, fallback.ci_high
        z, p = fallback.statistic, fallback.pvalue
    agree = (runs_level.pvalue is None or p is None
             or (runs_level.pvalue < alpha) == (p < alpha))
    return SessionCheck(n_sessions_a=n_a, n_sessions_b=n_b,
                        max_runs_per_session=int(sizes.max()), icc=_num(icc),
                        runs_statistic=runs_level.statistic, runs_pvalue=runs_level.pvalue,
                        method=method, ratio=ratio, ci_low=low, ci_high=high,
                        statistic=_num(z), pvalue=_num(p), agree=agree)


# --------------------------------------------------------------------------- the analysis


def by_session(runs: pd.DataFrame, windows: int) -> pd.DataFrame:
    """One row per session of several runs (their mean log time, at their mean start; the
    first block and device), runs without a session as they are: runs of one session share
    its hour and its machine, so they are not independent evidence of either."""
    named = runs["session"].ne("")
    groups = runs[named].groupby(["environment", "session"], sort=False)
    if not len(groups) or groups.size().max() < 2:
        return runs
    rows = groups.agg(dataset=("dataset", "first"), y=("y", "mean"), x=("x", "min"),
                      device=("device", "first"), utc=("utc", "mean"),
                      local=("local", "mean")).reset_index()
    _clock_columns(rows, windows)
    out = pd.concat([rows[runs.columns], runs[~named]], ignore_index=True)
    out.attrs.update(runs.attrs, unit="session")
    return out


def environment_time(runs: pd.DataFrame, env: str, windows: int,
                     alpha: float = 0.05, x_name: str = "block",
                     units: pd.DataFrame | None = None) -> EnvironmentTime:
    """One environment over time; the tests on `units` (by_session's rows) when given."""
    every = runs[runs["environment"] == env]
    units = runs if units is None else units
    mine = units[units["environment"] == env]
    y = mine["y"].to_numpy()
    first, last = every["utc"].min(), every["utc"].max()
    span_h = (last - first).total_seconds() / 3600 if len(every) else None
    devices = {d: int(n) for d, n in every["device"].value_counts(sort=False).items() if d}
    sessions = every.loc[every["session"] != "", "session"]
    weekday = None
    if span_h is not None and mine["weekday"].nunique() > 1:
        weekday = group_test([WEEKDAYS[d] for d in mine["weekday"]], y, alpha)
    return EnvironmentTime(
        unit=units.attrs.get("unit", "run"), environment=env, n=len(every), first=_iso(first),
        last=_iso(last),
        span_hours=span_h, hour=hour_effect(mine["hour"].to_numpy(), y, alpha),
        windows=group_test([window_label(w, windows) for w in mine["window"]], y, alpha),
        weekday=weekday, drift=drift(mine["x"].to_numpy(dtype=float), y, x_name, alpha),
        devices=devices or None,
        device_test=group_test(list(mine["device"]), y, alpha) if len(devices) > 1 else None,
        sessions=int(sessions.nunique()) if len(sessions) else None,
        max_runs_per_session=int(sessions.value_counts().max()) if len(sessions) else None)


def _warnings(envs: dict[str, EnvironmentTime], pairs: list[TimePair]) -> list[str]:
    out = []
    for name, e in envs.items():
        if e.span_hours is not None and e.span_hours < 24:
            out.append(f"{name}: the runs span {e.span_hours:.0f} h, less than a day: the hour "
                       "of the day cannot be told from drift")
        if e.hour is not None and e.hour.significant:
            out.append(f"{name}: the time depends on the hour of the day (F = "
                       f"{e.hour.statistic:.2f}, p = {e.hour.pvalue:.3g}; +-"
                       f"{e.hour.amplitude:.1%}, slowest near {e.hour.peak_hour:.0f} h)")
        if e.drift is not None and e.drift.significant:
            out.append(f"{name}: the time drifts over the study ({e.drift.over_study:+.1%} "
                       f"from first to last {e.drift.x}, p = {e.drift.pvalue:.3g})")
        if e.weekday is not None and e.weekday.significant:
            note = (" (over less than two weeks, not separable from drift)"
                    if e.span_hours is not None and e.span_hours * 3600 < 2 * WEEK_S else "")
            out.append(f"{name}: the time differs between days of the week "
                       f"(p = {e.weekday.pvalue:.3g}){note}")
        if e.devices and len(e.devices) > 1:
            out.append(f"{name}: the runs got {len(e.devices)} devices "
                       f"({', '.join(f'{d} x{n}' for d, n in e.devices.items())}): see the "
                       "comparison per device")
    for pair in pairs:
        i = pair.interaction
        if i is not None and i.significant:
            out.append(f"{pair.a} vs {pair.b}: the difference depends on the window of the day "
                       f"(F = {i.statistic:.2f}, p = {i.pvalue:.3g})")
        s = pair.sessions
        if s is not None and not s.agree:
            out.append(f"{pair.a} vs {pair.b}: the runs-level test (p = {s.runs_pvalue:.3g}) and "
                       f"the session-level one (p = {s.pvalue:.3g}) disagree: runs in a "
                       "session are not independent; trust the session-level test")
    return out


def analyze_time(frame: pd.DataFrame, metrics: Sequence[str] | None = None,
                 environments: Sequence[str] | None = None, alpha: float = 0.05,
                 timezone: str | None = None, windows: int = 6) -> tuple[TimeAnalysis, ...]:
    """The analysis across time of each time metric (default: train_s and total_s, those
    present) and dataset (with a sweep's configuration); () when the runs carry no start
    times. `frame` holds the usable runs (status ok, no warm-up)."""
    if not has_times(frame):
        return ()
    chosen = [m for m in (metrics if metrics is not None else TIME_METRICS)
              if m in frame.columns and m.endswith("_s")]
    present = list(dict.fromkeys(frame["environment"].astype(str)))
    envs = [e for e in environments or () if e in present]
    envs += [e for e in present if e not in envs]
    config = _text(frame, "configuration")
    strata = pd.Series(list(zip(frame["dataset"].astype(str),
                                config if config is not None else [""] * len(frame),
                                strict=True)), index=frame.index)
    out = []
    for metric in chosen:
        for stratum in dict.fromkeys(strata):
            part = frame[strata == stratum]
            runs = prepare(part, metric, timezone, windows)
            if len(runs) < 2:
                continue
            x_name = runs.attrs["x"]
            units = by_session(runs, windows)
            here = [e for e in envs if (runs["environment"] == e).any()]
            per_env = {e: environment_time(runs, e, windows, alpha, x_name, units)
                       for e in here}
            pairs = [TimePair(a=a, b=b, interaction=interaction(units, a, b, windows, alpha),
                              devices=device_comparisons(units, a, b, alpha),
                              sessions=session_check(runs, a, b, alpha))
                     for i, a in enumerate(here) for b in here[i + 1:]]
            clock = timezone or ("recorded offset" if "local_offset_min" in frame.columns
                                 else "UTC")
            out.append(TimeAnalysis(
                metric=metric, dataset=stratum[0], configuration=stratum[1] or None,
                clock=clock, windows=windows, alpha=alpha, environments=per_env,
                pairs=tuple(pairs), warnings=tuple(_warnings(per_env, pairs))))
    return tuple(out)


def _num(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _iso(when: Any) -> str | None:
    if when is None or pd.isna(when):
        return None
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --------------------------------------------------------------------------- validation


def simulated_study(rng: np.random.Generator, blocks: int = 36, hours: float = 72,
                    cv: float = 0.04, slowdown: float = 0.03, slow_hours: tuple[int, int]
                    = (12, 18), windows: int = 6, runs_per_block: int = 1,
                    session_sd: float = 0.0, outliers: float = 0.0, ratio: float = 0.9
                    ) -> pd.DataFrame:
    """A study of two environments ("local", "cloud") in `blocks` interleaved blocks whose
    slots are stratified over the windows of the day across `hours`, as study.schedule does;
    log-normal times with coefficient of variation `cv`; the cloud is `slowdown` slower from
    slow_hours[0] to slow_hours[1] local time. With runs_per_block > 1 each environment runs
    that many in one session per block, sessions differing by a random shift (session_sd,
    on the log scale). A share `outliers` of the runs is slowed by 20 to 100 % (a noisy
    neighbour, a throttled VM). The cloud's typical time is `ratio` times the local one's."""
    size = 24 / windows
    days = max(1, math.ceil(hours / 24))
    shares = rng.permutation(np.arange(blocks) % windows)
    starts = np.sort([rng.integers(days) * 24 + (w + rng.random()) * size for w in shares])
    sd = math.sqrt(math.log1p(cv ** 2))
    base = {"local": 100.0, "cloud": 100.0 * ratio}
    rows = []
    origin = pd.Timestamp("2026-12-07T00:00:00Z")
    for block, start in enumerate(starts, start=1):
        at = float(start)
        order = ["local", "cloud"] if rng.random() < 0.5 else ["cloud", "local"]
        for env in order:
            shift = rng.normal(0, session_sd) if session_sd else 0.0
            for k in range(runs_per_block):
                hour = at % 24
                slow = env == "cloud" and slow_hours[0] <= hour < slow_hours[1]
                train = base[env] * (1 + slowdown * slow) * math.exp(rng.normal(0, sd) + shift)
                if outliers and rng.random() < outliers:
                    train *= 1.2 + 0.8 * rng.random()
                rows.append({"environment": env, "dataset": "d", "block": block,
                             "status": "ok", "session": f"{env}-{block}",
                             "device_name": "T4" if env == "cloud" else "cpu",
                             "started_at": _iso(origin + pd.Timedelta(hours=at)),
                             "local_offset_min": 0, "train_s": train,
                             "repetition": block * 10 + k})
                at += train / 3600
    return pd.DataFrame(rows)


def simulate(n_studies: int = 200, seed: int = 0, slowdown: float = 0.03, **study: Any
             ) -> dict[str, Any]:
    """The share of simulated studies in which each test rejects at alpha = 0.05: for the
    cloud (the slowed environment) and the local one (never slowed: its rate is the
    type-I error), and the interaction; the power with a slowdown, the type-I error
    without."""
    rng = np.random.default_rng(seed)
    hits: dict[str, int] = {}
    keys = ("cloud_hour", "cloud_windows", "local_hour", "local_windows", "cloud_drift",
            "interaction", "holds_at_every_window", "sessions_disagree", "runs_test",
            "sessions_test")
    for key in keys:
        hits[key] = 0
    for _ in range(n_studies):
        result = analyze_time(simulated_study(rng, slowdown=slowdown, **study),
                              ["train_s"], ["local", "cloud"])[0]
        cloud, local = result.environments["cloud"], result.environments["local"]
        pair = result.pairs[0]
        hits["cloud_hour"] += bool(cloud.hour and cloud.hour.significant)
        hits["cloud_windows"] += bool(cloud.windows and cloud.windows.significant)
        hits["local_hour"] += bool(local.hour and local.hour.significant)
        hits["local_windows"] += bool(local.windows and local.windows.significant)
        hits["cloud_drift"] += bool(cloud.drift and cloud.drift.significant)
        hits["interaction"] += bool(pair.interaction and pair.interaction.significant)
        hits["holds_at_every_window"] += bool(pair.interaction
                                              and pair.interaction.holds_at_every_window)
        hits["sessions_disagree"] += bool(pair.sessions and not pair.sessions.agree)
        if pair.sessions is not None:  # a vs b with the run, and the session, as the unit
            hits["runs_test"] += bool(pair.sessions.runs_pvalue is not None
                                      and pair.sessions.runs_pvalue < 0.05)
            hits["sessions_test"] += bool(pair.sessions.pvalue is not None
                                          and pair.sessions.pvalue < 0.05)
    return {"settings": {"n_studies": n_studies, "seed": seed, "slowdown": slowdown, **study},
            "rates": {k: v / n_studies for k, v in hits.items()}}


def main(argv: list[str] | None = None) -> int:
    """Power (with the slowdown) and type-I error (without) of the time analysis."""
    parser = argparse.ArgumentParser(prog="python -m cloudbench.analysis.temporal",
                                     description=main.__doc__)
    parser.add_argument("--studies", type=int, default=200)
    parser.add_argument("--blocks", type=int, default=36)
    parser.add_argument("--hours", type=float, default=72)
    parser.add_argument("--cv", type=float, default=0.04)
    parser.add_argument("--slowdown", type=float, default=0.03)
    parser.add_argument("--runs-per-block", type=int, default=1)
    parser.add_argument("--session-sd", type=float, default=0.0)
    parser.add_argument("--outliers", type=float, default=0.0,
                        help="share of runs slowed by 20 to 100 %%")
    parser.add_argument("--ratio", type=float, default=0.9,
                        help="the cloud's typical time over the local one's")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    study = {"blocks": args.blocks, "hours": args.hours, "cv": args.cv,
             "runs_per_block": args.runs_per_block, "session_sd": args.session_sd,
             "outliers": args.outliers, "ratio": args.ratio}
    out = {"power": simulate(args.studies, args.seed, args.slowdown, **study),
           "type_i": simulate(args.studies, args.seed + 1, 0.0, **study)}
    json.dump(out, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())

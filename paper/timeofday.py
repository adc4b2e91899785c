"""The report's section across time (issue 27): does the verdict hold at every hour, on every
device?

One registered part (paper.tables.report_part; paper.build imports this module, which
registers it) closing the results: a run chart (each run's time against the clock, per
environment, the runs of a session joined), a figure of the time by hour of the day, a table
of each environment over time (hour effect, drift), a table of the devices each environment
got (with the comparison per device where it got several) and sentences from
analysis.temporal's results. It shows only for a study spread over time (runs spanning more
than MIN_SPAN_HOURS, or a study with a [schedule]): a study run in one sitting has a time
section in its analysis but nothing to say about the hour of the day.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from cloudbench.analysis.results import EnvironmentTime, TimeAnalysis, TimePair
from cloudbench.paper.model import Cell, Figure, Part, Statement, Table, text_cell
from cloudbench.paper.prose import join_names, short_metric
from cloudbench.paper.tables import (
    Inputs,
    _cols,
    int_cell,
    num,
    ordered,
    p_cell,
    report_part,
)
from cloudbench.paper.text import (
    fmt_num,
    label,
    metric_name,
    p_clause,
    percent,
    phrase,
    var,
    where,
)

#: Runs within this many hours are one sitting: the hour of the day cannot be told apart.
MIN_SPAN_HOURS = 2.0


def _spread(analysis: Any, study: Any) -> bool:
    """Whether the study ran over time: a [schedule], or runs spanning over MIN_SPAN_HOURS."""
    if not analysis.time:
        return False
    if study is not None and getattr(study, "schedule", None) is not None:
        return True
    return any(e.span_hours is not None and e.span_hours > MIN_SPAN_HOURS
               for t in analysis.time for e in t.environments.values())


def _primary(analysis: Any) -> list[TimeAnalysis]:
    """The time analyses of the first time metric (train_s where analysed), per dataset."""
    metrics = [t.metric for t in analysis.time]
    metric = "train_s" if "train_s" in metrics else metrics[0]
    return [t for t in analysis.time if t.metric == metric]


def _figure_data(usable: pd.DataFrame, metric: str, timezone: str | None) -> pd.DataFrame:
    """One row per run: its names, its start (UTC), its hour on the analysis' clock, its
    value; the runs the time analysis reads (analysis.temporal.prepare)."""
    from cloudbench.analysis.temporal import prepare

    runs = prepare(usable, metric, timezone)
    data = pd.DataFrame({"environment": runs["environment"], "dataset": runs["dataset"],
                         "started": runs["utc"].dt.tz_localize(None), "hour": runs["hour"],
                         "session": runs["session"], "device": runs["device"],
                         "value": pd.to_numeric(usable.loc[runs.index, metric])})
    if "run_id" in usable:
        data["run_id"] = usable.loc[runs.index, "run_id"].astype(str)
    if "block" in usable:
        data["block"] = [_block(b) for b in usable.loc[runs.index, "block"]]
    return data.sort_values("started").reset_index(drop=True)


def _block(value: Any) -> str:
    """A block as it was numbered: 3, not the 3.0 a column with gaps reads as."""
    number = pd.to_numeric(value, errors="coerce")
    return str(int(number)) if pd.notna(number) and float(number).is_integer() else str(value)


def _figures(inputs: Inputs, metric: str, clock: str) -> list[Figure]:
    """The run chart and the hour of the day, on the clock the analysis read the hours in."""
    timezone = None if clock in ("recorded offset", "UTC") else clock
    data = _figure_data(inputs.usable, metric, timezone)
    if data.empty:
        return []
    name = metric_name(metric, inputs.lang, capital=True)
    options = {"metric": metric, "name": name}
    return [Figure("fig:time-runs", "runchart", label("fig_runchart", inputs.lang,
                                                      metric=name), data, options),
            Figure("fig:time-hours", "hourly", label("fig_hourly", inputs.lang,
                                                     metric=name), data, options)]


def _percent(fraction: float | None) -> Cell:
    """A relative change (0.021) as a percentage cell (2.1 %)."""
    return Cell(None if fraction is None else 100 * fraction, "percent", 1)


def _clock(clock: str, lang: str) -> str:
    """The clock the hours were read in, in the paper's words (a zone prints as itself)."""
    keys = {"recorded offset": "time_clock_offset", "UTC": "time_clock_utc"}
    return label(keys[clock], lang) if clock in keys else clock


def environments_table(found: list[TimeAnalysis], lang: str) -> Table | None:
    """Each environment over time: runs, span, sessions, the hour of the day's effect
    (rank F test, size and slowest hour) and the drift over the study."""
    rows = []
    for t in found:
        for env, e in t.environments.items():
            h, d = e.hour, e.drift
            rows.append([text_cell(where(t)), text_cell(env), int_cell(e.n),
                         num(e.span_hours, 1), int_cell(e.sessions),
                         num(h.statistic if h else None), p_cell(h.pvalue if h else None),
                         _percent(h.amplitude if h else None),
                         num(h.peak_hour if h else None, 0),
                         _percent(d.over_study if d else None),
                         p_cell(d.pvalue if d else None)])
    if not rows:
        return None
    head = [label(k, lang) for k in ("dataset", "environment", "n", "time_span",
                                     "time_sessions")]
    head += [var("F"), var("p"), label("time_amplitude", lang), label("time_peak", lang),
             label("time_drift", lang), var("p")]
    return Table("tab:time-environments", label("time_environments_caption", lang),
                 _cols(head, "ll" + "r" * 9, {3: 10, 4: 10, 7: 10, 8: 10, 9: 12}), rows,
                 keys=1, size="footnotesize")


def _sessions_per_device(usable: pd.DataFrame) -> dict[tuple[str, str], int]:
    """(environment, device) -> sessions, from the runs' own columns."""
    if "device_name" not in usable or "session" not in usable:
        return {}
    runs = usable.assign(device=usable["device_name"].fillna("").astype(str),
                         sess=usable["session"].fillna("").astype(str))
    runs = runs[runs["sess"] != ""]
    return {(str(env), str(dev)): int(n) for (env, dev), n in
            runs.groupby(["environment", "device"])["sess"].nunique().items()}


def devices_table(found: list[TimeAnalysis], usable: pd.DataFrame, lang: str
                  ) -> Table | None:
    """The devices each environment got: runs and sessions per device and, where an
    environment got several, each device against the other environment of the pair (ratio
    of geometric means with its 95 % interval, Holm's p)."""
    sessions = _sessions_per_device(usable)
    rows = []
    for t in found:
        against = {(c.environment, c.difference.label): c for p in t.pairs for c in p.devices}
        for env, e in t.environments.items():
            for device, n in (e.devices or {}).items():
                c = against.get((env, device))
                diff = c.difference if c else None
                rows.append([text_cell(where(t)), text_cell(env), text_cell(device),
                             int_cell(n), int_cell(sessions.get((env, device))),
                             text_cell(c.other if c else ""),
                             Cell(diff.ratio if diff else None, "interval", 3,
                                  low=diff.ci_low if diff else None,
                                  high=diff.ci_high if diff else None),
                             p_cell(diff.p_holm if diff else None)])
    if not rows:
        return None
    head = [label(k, lang) for k in ("dataset", "environment", "time_device", "time_runs",
                                     "time_sessions", "time_against", "time_ratio_ci")]
    head.append(phrase("holm_p", lang))
    return Table("tab:time-devices", label("time_devices_caption", lang),
                 _cols(head, "llllrlrr", {6: 16}), rows, keys=1, size="footnotesize")


def _windows(names: tuple[str, ...] | list[str], lang: str) -> str:
    return join_names(list(names), lang)


def _pair_sentences(t: TimeAnalysis, pair: TimePair, lang: str) -> list[Statement]:
    """Whether a's difference from b holds at every window of the day, and whether the
    session as the unit reaches the run-level decision."""
    out = []
    i = pair.interaction
    names = {"a": pair.a, "b": pair.b, "dataset": where(t)}
    if i is not None and i.ratio is not None:
        faster, slower = (pair.a, pair.b) if i.ratio < 1 else (pair.b, pair.a)
        ratio = i.ratio if i.ratio < 1 else 1 / i.ratio
        numbers = {"ratio": i.ratio, "F": i.statistic, "p": i.pvalue}
        stats = label("time_interaction", lang) + \
            f"{var('F')} = {fmt_num(i.statistic, 2, lang)}, {p_clause(i.pvalue, lang)}"
        mine = i.a_faster_windows if faster == pair.a else i.b_faster_windows
        theirs = i.b_faster_windows if faster == pair.a else i.a_faster_windows
        if i.holds_at_every_window:
            text = phrase("time_every_window", lang, faster=faster, slower=slower,
                          dataset=where(t), stats=stats,
                          ratio=fmt_num(ratio, 3, lang))
        elif i.windows_used and set(mine) >= set(i.windows_used):
            # faster in each window, by an amount that depends on the window
            text = phrase("time_every_window_varies", lang, faster=faster, slower=slower,
                          dataset=where(t), stats=stats)
        else:
            if mine:
                text = phrase("time_only_windows", lang, faster=faster, slower=slower,
                              dataset=where(t), windows=_windows(mine, lang), stats=stats)
            else:
                text = phrase("time_no_window", lang, faster=faster, slower=slower,
                              dataset=where(t), stats=stats)
            if theirs:
                text += " " + phrase("time_reversed_windows", lang, faster=slower,
                                     slower=faster, windows=_windows(theirs, lang))
        out.append(Statement(text, numbers, "time_pair"))
    s = pair.sessions
    if s is not None and s.pvalue is not None:
        key = "time_sessions_agree" if s.agree else "time_sessions_disagree"
        out.append(Statement(phrase(key, lang, **names,
                                    sessions=s.n_sessions_a + s.n_sessions_b,
                                    p_runs=p_clause(s.runs_pvalue, lang),
                                    p_sessions=p_clause(s.pvalue, lang)),
                             {"p_runs": s.runs_pvalue, "p_sessions": s.pvalue},
                             "time_sessions"))
    return out


def _environment_sentences(t: TimeAnalysis, env: str, e: EnvironmentTime, lang: str
                           ) -> list[Statement]:
    """The hour of the day's effect, the drift and a note when it ran on several devices."""
    out = []
    h = e.hour
    if h is not None and h.pvalue is not None:
        stats = f"{var('F')} = {fmt_num(h.statistic, 2, lang)}, {p_clause(h.pvalue, lang)}"
        if h.significant:
            text = phrase("time_hour_effect", lang, env=env, dataset=where(t), stats=stats,
                          amplitude=percent(h.amplitude or 0.0, lang),
                          peak=fmt_num(h.peak_hour, 0, lang))
        else:
            text = phrase("time_no_hour_effect", lang, env=env, dataset=where(t), stats=stats)
        out.append(Statement(text, {"F": h.statistic, "p": h.pvalue,
                                    "amplitude": h.amplitude, "peak_hour": h.peak_hour},
                             "time_hour"))
    d = e.drift
    if d is not None and d.pvalue is not None:
        key = "time_drift" if d.significant else "time_no_drift"
        out.append(Statement(phrase(key, lang, env=env, dataset=where(t),
                                    change=percent(d.over_study or 0.0, lang),
                                    p=p_clause(d.pvalue, lang)),
                             {"over_study": d.over_study, "p": d.pvalue}, "time_drift"))
    if e.devices and len(e.devices) > 1:
        listed = join_names([f"{d} ({n})" for d, n in e.devices.items()], lang)
        out.append(Statement(phrase("time_devices", lang, env=env, n=len(e.devices),
                                    devices=listed), {"devices": len(e.devices)},
                             "time_devices"))
    return out


@report_part("time", "results")
def time_part(inputs: Inputs) -> Part | None:
    """The section across time, for a study spread over hours or days (else None)."""
    analysis, lang = inputs.analysis, inputs.lang
    if not _spread(analysis, inputs.study):
        return None
    found = _primary(analysis)
    metric = found[0].metric
    paragraphs = [Statement(phrase("time_intro", lang, metric=short_metric(metric, lang),
                                   clock=_clock(found[0].clock, lang),
                                   windows=join_names(list(dict.fromkeys(
                                       w for t in found for p in t.pairs if p.interaction
                                       for w in p.interaction.windows_used)), lang)
                                   or "—"), kind="time_intro")]
    for t in found:
        for pair in t.pairs:
            paragraphs += _pair_sentences(t, pair, lang)
        for env in ordered(t.environments):
            paragraphs += _environment_sentences(t, env, t.environments[env], lang)
    tables = [x for x in (environments_table(found, lang),
                          devices_table(found, inputs.usable, lang)) if x is not None]
    return Part(label("time_heading", lang), paragraphs, tables,
                _figures(inputs, metric, found[0].clock))

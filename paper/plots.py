"""The page's figures: the report model's figures (paper.model.Figure) as plotly figures.

The same data as the PDF's matplotlib figures (paper.figures), drawn for a browser: every
point that is a run carries its id, environment, block and value, shown on hover. The
figures are returned as plotly JSON (a dict), which paper.html embeds in the page.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from cloudbench.paper.figures import outlier_mask, window_medians
from cloudbench.paper.model import Figure
from cloudbench.paper.tables import epoch_table, ordered
from cloudbench.paper.text import label, metric_name, plain

#: The colorblind palette of seaborn, as the PDF's figures use it.
PALETTE = ["#0173b2", "#de8f05", "#029e73", "#d55e00", "#cc78bc", "#ca9161", "#fbafe4",
           "#949494", "#ece133", "#56b4e9"]
_LAYOUT = {"paper_bgcolor": "white", "plot_bgcolor": "white",
           "margin": {"l": 60, "r": 20, "t": 40, "b": 50}, "height": 360,
           "font": {"family": "system-ui, sans-serif", "size": 12},
           "legend": {"orientation": "h", "y": -0.2}}


def _colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def _finite(values: Any) -> list[float | None]:
    """Numbers for JSON: NaN and infinities become null."""
    return [None if v is None or not math.isfinite(float(v)) else float(v) for v in values]


def _text(lang: str, key: str) -> str:
    return plain(label(key, lang))


def hover_template(value_name: str, lang: str) -> str:
    """What a run's point says on hover: its id, environment, block and value."""
    return ("<b>%{customdata[0]}</b><br>" + _text(lang, "environment")
            + ": %{customdata[1]}<br>" + _text(lang, "block") + ": %{customdata[2]}<br>"
            + value_name + ": %{y}<extra></extra>")


def run_points(data: pd.DataFrame, column: str) -> dict[str, list[Any]]:
    """A metric's runs as columns for a plot: value, run id, environment, block, dataset."""
    values = pd.to_numeric(data[column], errors="coerce")
    keep = values.notna()
    sub = data[keep]
    block = sub["block"].astype(str) if "block" in sub else pd.Series("", index=sub.index)
    run = sub["run_id"].astype(str) if "run_id" in sub else pd.Series(
        [f"#{i}" for i in sub.index], index=sub.index)
    return {"y": _finite(values[keep]), "run": list(run), "environment":
            list(sub["environment"].astype(str)), "block": list(block),
            "dataset": list(sub["dataset"].astype(str))}


def _box(fig: Figure, lang: str) -> dict[str, Any]:
    """The metric by environment, one panel per dataset: boxes with every run as a point."""
    metric = fig.options["metric"]
    data = fig.data
    datasets, envs = ordered(data["dataset"]), ordered(data["environment"])
    traces = []
    for d, ds in enumerate(datasets):
        pts = run_points(data[data["dataset"].astype(str) == ds], metric)
        for e, env in enumerate(envs):
            idx = [i for i, x in enumerate(pts["environment"]) if x == env]
            traces.append({
                "type": "box", "name": env, "legendgroup": env, "showlegend": d == 0,
                "x": [env] * len(idx), "y": [pts["y"][i] for i in idx],
                "customdata": [[pts["run"][i], env, pts["block"][i]] for i in idx],
                "boxpoints": "all", "jitter": 0.3, "pointpos": 0, "marker": {
                    "color": _colour(e), "size": 5}, "line": {"color": _colour(e)},
                "hovertemplate": hover_template(plain(metric_name(metric, lang)), lang),
                "hoveron": "points",
                "xaxis": f"x{d + 1 if d else ''}", "yaxis": f"y{d + 1 if d else ''}"})
            # the analysis' outliers, as the PDF marks them: red crosses
            values = np.array([pts["y"][i] for i in idx], dtype=float)
            flagged = [i for i, f in zip(idx, outlier_mask(values), strict=True) if f] \
                if len(values) else []
            if flagged:
                traces.append({
                    "type": "scatter", "mode": "markers", "x": [env] * len(flagged),
                    "y": [pts["y"][i] for i in flagged], "showlegend": False,
                    "customdata": [[pts["run"][i], env, pts["block"][i]] for i in flagged],
                    "marker": {"symbol": "x", "color": "red", "size": 10},
                    "hovertemplate": hover_template(plain(metric_name(metric, lang)), lang),
                    "xaxis": f"x{d + 1 if d else ''}", "yaxis": f"y{d + 1 if d else ''}"})
    return _panels(traces, datasets, metric_name(metric, lang, capital=True))


def _panels(traces: list[dict[str, Any]], titles: list[str], y_title: str,
            x_title: str = "", log_y: bool = False, category_x: bool = False
            ) -> dict[str, Any]:
    """Side-by-side panels (one per dataset or combination), as plotly's layout wants."""
    n = max(1, len(titles))
    gap = 0.06
    width = (1 - gap * (n - 1)) / n
    layout: dict[str, Any] = dict(_LAYOUT)
    annotations = []
    for i, title in enumerate(titles):
        suffix = str(i + 1) if i else ""
        start = i * (width + gap)
        layout[f"xaxis{suffix}"] = {"domain": [start, start + width], "anchor": f"y{suffix}",
                                    "title": {"text": x_title}, "showline": True,
                                    **({"type": "category"} if category_x else {})}
        layout[f"yaxis{suffix}"] = {"anchor": f"x{suffix}", "title": {
            "text": plain(y_title) if i == 0 else ""}, "showline": True, "gridcolor": "#eee",
            **({"type": "log"} if log_y else {})}
        annotations.append({"text": title, "x": start + width / 2, "y": 1.08, "xref": "paper",
                            "yref": "paper", "showarrow": False, "font": {"size": 12}})
    layout["annotations"] = annotations
    return {"data": traces, "layout": layout}


def _bars(fig: Figure, lang: str) -> dict[str, Any]:
    """Training time per dataset and environment: the total, or the mean with its 95 %
    interval (Student's t on the runs)."""
    from scipy.stats import t as student

    data = fig.data.assign(train_s=pd.to_numeric(fig.data["train_s"], errors="coerce")) \
        .dropna(subset=["train_s"])
    datasets, envs = ordered(data["dataset"]), ordered(data["environment"])
    total = fig.options["estimator"] == "sum"
    traces = []
    for e, env in enumerate(envs):
        ys, errs = [], []
        for ds in datasets:
            v = data.loc[(data["environment"] == env) & (data["dataset"] == ds), "train_s"]
            ys.append(float(v.sum() if total else v.mean()) if len(v) else None)
            half = (student.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v))
                    if len(v) > 1 else math.nan)
            errs.append(half)
        trace: dict[str, Any] = {
            "type": "bar", "name": env, "x": datasets, "y": _finite(ys),
            "marker": {"color": _colour(e)}, "text": [f"{y:.1f}" if y is not None else ""
                                                      for y in ys],
            "textposition": "outside",
            "hovertemplate": env + " · %{x}: %{y:.2f} s<extra></extra>"}
        if not total:
            trace["error_y"] = {"type": "data", "array": _finite(errs), "visible": True}
        traces.append(trace)
    layout = dict(_LAYOUT, barmode="group",
                  yaxis={"title": {"text": _text(lang, "axis_total" if total else "axis_mean")}})
    return {"data": traces, "layout": layout}


def _epochs(fig: Figure, lang: str) -> dict[str, Any]:
    """Median time of each epoch with its quartiles, one panel per dataset."""
    epochs = epoch_table(fig.data)
    datasets, envs = ordered(epochs["dataset"]), ordered(epochs["environment"])
    traces = []
    for d, ds in enumerate(datasets):
        axes = {"xaxis": f"x{d + 1 if d else ''}", "yaxis": f"y{d + 1 if d else ''}"}
        for e, env in enumerate(envs):
            sub = epochs[(epochs["dataset"] == ds) & (epochs["environment"] == env)]
            if sub.empty:
                continue
            q = sub.groupby("epoch")["seconds"].quantile([0.25, 0.5, 0.75]).unstack()
            x = [int(i) for i in q.index]
            traces.append({"type": "scatter", "x": x + x[::-1],
                           "y": _finite(list(q[0.75]) + list(q[0.25])[::-1]), "fill": "toself",
                           "fillcolor": _colour(e), "opacity": 0.2, "line": {"width": 0},
                           "hoverinfo": "skip", "showlegend": False, **axes})
            traces.append({"type": "scatter", "mode": "lines+markers", "name": env,
                           "legendgroup": env, "showlegend": d == 0, "x": x,
                           "y": _finite(q[0.5]), "line": {"color": _colour(e)},
                           "hovertemplate": env + ", epoch %{x}: %{y:.3f} s<extra></extra>",
                           **axes})
    return _panels(traces, datasets, _text(lang, "axis_epoch_time"), _text(lang, "axis_epoch"))


def _scatter(fig: Figure, lang: str) -> dict[str, Any]:
    """Test accuracy against training time, one point per run."""
    data = fig.data
    traces = []
    for e, env in enumerate(ordered(data["environment"])):
        sub = data[data["environment"].astype(str) == env]
        x = pd.to_numeric(sub["train_s"], errors="coerce")
        pts = run_points(sub.assign(test_accuracy=sub["test_accuracy"]), "test_accuracy")
        keep = pd.to_numeric(sub["test_accuracy"], errors="coerce").notna()
        traces.append({"type": "scatter", "mode": "markers", "name": env,
                       "x": _finite(x[keep]), "y": pts["y"],
                       "customdata": [[r, env, b] for r, b in zip(pts["run"], pts["block"],
                                                                    strict=True)],
                       "marker": {"color": _colour(e), "size": 7},
                       "hovertemplate": hover_template(
                           plain(metric_name("test_accuracy", lang)), lang)})
    layout = dict(_LAYOUT, xaxis={"title": {"text": metric_name("train_s", lang, True)}},
                  yaxis={"title": {"text": metric_name("test_accuracy", lang, True)}})
    return {"data": traces, "layout": layout}


def _phases(fig: Figure, lang: str) -> dict[str, Any]:
    """Each phase's share of a run's time, stacked, one bar per environment."""
    columns = fig.options["columns"]
    data = fig.data.assign(**{c: pd.to_numeric(fig.data[c], errors="coerce") for c in columns})
    datasets, envs = ordered(data["dataset"]), ordered(data["environment"])
    traces = []
    for d, ds in enumerate(datasets):
        means = data[data["dataset"] == ds].groupby("environment")[columns].mean().reindex(envs)
        shares = means.div(means.sum(axis=1), axis=0).fillna(0)
        for i, column in enumerate(columns):
            traces.append({"type": "bar", "orientation": "h", "name": column.removesuffix("_s"),
                           "legendgroup": column, "showlegend": d == 0, "y": envs,
                           "x": _finite(shares[column]), "marker": {"color": _colour(i)},
                           "xaxis": f"x{d + 1 if d else ''}", "yaxis": f"y{d + 1 if d else ''}",
                           "hovertemplate": column + ": %{x:.1%}<extra>%{y}</extra>"})
    out = _panels(traces, datasets, "", _text(lang, "axis_share"))
    out["layout"]["barmode"] = "stack"
    return out


def _ratio(fig: Figure, lang: str) -> dict[str, Any]:
    """A sweep's time or memory ratio a/b against a parameter's levels, with intervals;
    out-of-memory cells marked with a cross at the top."""
    from cloudbench.paper.sweep import RATIOS, level_text

    fa, parameter, which = fig.data, fig.options["parameter"], fig.options["which"]
    field, axis_key = RATIOS[which]
    entries = fa.of(parameter)
    order = list(fa.level_order.get(parameter, ())) or list(dict.fromkeys(
        e.level for e in entries))
    panels = fa.panels(parameter)
    pairs = fa.pairs(parameter)
    traces = []
    for p, (dataset, fixed) in enumerate(panels):
        axes = {"xaxis": f"x{p + 1 if p else ''}", "yaxis": f"y{p + 1 if p else ''}"}
        for i, pair in enumerate(pairs):
            mine = {e.level: e for e in entries
                    if (e.dataset, e.fixed) == (dataset, fixed) and (e.a, e.b) == pair}
            if not mine:
                continue
            est, up, down, oom = [], [], [], []
            for lv in order:
                e = mine.get(lv)
                r = getattr(e, field) if e else None
                value = r.estimate if r is not None else None
                est.append(value)
                up.append((r.ci_high - value) if value is not None and r.ci_high is not None
                          else None)
                down.append((value - r.ci_low) if value is not None and r.ci_low is not None
                            else None)
                if e is not None and e.oom:
                    oom.append(level_text(lv, lang))
            x = [level_text(lv, lang) for lv in order]
            name = f"{pair[0]} / {pair[1]}"
            traces.append({"type": "scatter", "mode": "lines+markers", "name": name,
                           "legendgroup": name, "showlegend": p == 0, "x": x,
                           "y": _finite([v if v is not None else np.nan for v in est]),
                           "error_y": {"type": "data", "symmetric": False,
                                       "array": _finite([v if v is not None else np.nan
                                                         for v in up]),
                                       "arrayminus": _finite([v if v is not None else np.nan
                                                              for v in down])},
                           "line": {"color": _colour(i)}, **axes,
                           "hovertemplate": name + ", " + parameter
                           + " = %{x}: %{y:.3f}<extra></extra>"})
            if oom:
                traces.append({"type": "scatter", "mode": "markers+text", "x": oom,
                               "y": [None] * len(oom), "showlegend": False,
                               "marker": {"symbol": "x", "color": _colour(i), "size": 10},
                               "text": [label("oom", lang)] * len(oom),
                               "textposition": "top center", **axes,
                               "hovertemplate": label("oom", lang) + "<extra></extra>"})
    titles = [f"{d}<br>{f}" if f else d for d, f in panels]
    out = _panels(traces, titles, _text(lang, axis_key), parameter, log_y=True,
                  category_x=True)
    for t in out["data"]:  # OOM marks sit above the highest point of their panel
        if t.get("mode") == "markers+text":
            ys = [y for u in out["data"] if u.get("yaxis") == t["yaxis"] and u is not t
                  for y in u["y"] if y is not None]
            t["y"] = [max(ys + [1.0]) * 1.15] * len(t["x"])
    return out


def _time_traces(fig: Figure, lang: str, x: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Every run as a point (x: its start or its hour), per environment and dataset panel;
    hovering names the run, its environment, block and value."""
    data = fig.data
    datasets, envs = ordered(data["dataset"]), ordered(data["environment"])
    name = plain(metric_name(fig.options["metric"], lang))
    traces = []
    for d, ds in enumerate(datasets):
        axes = {"xaxis": f"x{d + 1 if d else ''}", "yaxis": f"y{d + 1 if d else ''}"}
        for e, env in enumerate(envs):
            sub = data[(data["dataset"] == ds) & (data["environment"] == env)]
            if sub.empty:
                continue
            pts = run_points(sub, "value")
            xs = (list(pd.to_datetime(sub["started"]).dt.strftime("%Y-%m-%d %H:%M:%S"))
                  if x == "started" else _finite(sub["hour"]))
            traces.append({"type": "scatter", "mode": "markers", "name": env,
                           "legendgroup": env, "showlegend": d == 0, "x": xs, "y": pts["y"],
                           "customdata": [[r, env, b] for r, b in zip(pts["run"], pts["block"],
                                                                        strict=True)],
                           "marker": {"color": _colour(e), "size": 6},
                           "hovertemplate": hover_template(name, lang), **axes})
            if x == "started":  # the runs of one session, joined
                for session, runs in sub.groupby("session", sort=False):
                    if session and len(runs) > 1:
                        traces.append({"type": "scatter", "mode": "lines", "showlegend": False,
                                       "x": list(pd.to_datetime(runs["started"]).dt.strftime(
                                           "%Y-%m-%d %H:%M:%S")),
                                       "y": _finite(runs["value"]), "hoverinfo": "skip",
                                       "line": {"color": _colour(e), "width": 1}, **axes})
            else:  # each window's median, as the PDF draws it
                size = 24 / 6
                for w, m in window_medians(sub, 6).items():
                    traces.append({"type": "scatter", "mode": "lines", "showlegend": False,
                                   "x": [w * size, (w + 1) * size], "y": [m, m],
                                   "hoverinfo": "skip", "legendgroup": env,
                                   "line": {"color": _colour(e), "width": 2}, **axes})
    return traces, datasets


def _runchart(fig: Figure, lang: str) -> dict[str, Any]:
    """Each run's time against its start (UTC), per environment, sessions joined."""
    traces, datasets = _time_traces(fig, lang, "started")
    out = _panels(traces, datasets, metric_name(fig.options["metric"], lang, capital=True),
                  _text(lang, "axis_started"))
    for key, axis in out["layout"].items():
        if key.startswith("xaxis"):
            axis["type"] = "date"
    return out


def _hourly(fig: Figure, lang: str) -> dict[str, Any]:
    """The time by hour of the day, per environment, with each window's median."""
    traces, datasets = _time_traces(fig, lang, "hour")
    out = _panels(traces, datasets, metric_name(fig.options["metric"], lang, capital=True),
                  _text(lang, "axis_hour"))
    for key, axis in out["layout"].items():
        if key.startswith("xaxis"):
            axis.update(range=[0, 24], dtick=4)
    return out


_KINDS = {"box": _box, "bars": _bars, "epochs": _epochs, "scatter": _scatter,
          "phases": _phases, "ratio": _ratio,
          "runchart": _runchart, "hourly": _hourly}


def plot(fig: Figure, lang: str = "en") -> dict[str, Any]:
    """A model figure as plotly JSON ({"data": [...], "layout": {...}})."""
    try:
        maker = _KINDS[fig.kind]
    except KeyError:
        raise ValueError(f"no page drawing for a figure of kind {fig.kind!r}") from None
    return maker(fig, lang)


def explorer_data(fig: Figure) -> dict[str, Any]:
    """Every counted run's value of every metric, by metric and dataset, for the page's
    selector-driven figure: {metric: {dataset: {y, run, environment, block}}}."""
    data = fig.data
    out: dict[str, Any] = {}
    for metric in fig.options["metrics"]:
        out[metric] = {}
        for ds in ordered(data["dataset"]):
            pts = run_points(data[data["dataset"].astype(str) == ds], metric)
            pts.pop("dataset")
            out[metric][ds] = pts
    return out

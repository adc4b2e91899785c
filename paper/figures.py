"""The PDF's figures: the report model's figures (paper.model.Figure) drawn as vector PDFs
with seaborn on matplotlib's Agg backend (the page draws the same data with plotly).

Each figure needs some columns of runs.csv; when they are missing (an older CSV, timings
gathered elsewhere) the figure is skipped and the function returns None, because a paper
with one figure fewer is better than no paper. Names from the data are drawn as plain
text (mathtext off), so a "$" in an environment name cannot start a formula.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cloudbench.analysis.compare import usable_runs
from cloudbench.data.atomic import atomic_path
from cloudbench.paper.model import Figure
from cloudbench.paper.tables import epoch_table, ordered
from cloudbench.paper.text import label, metric_name, number_format, plain

STYLE = {
    "text.parse_math": False,  # a "$" in a name is a dollar sign, not mathtext
    "pdf.fonttype": 42,  # TrueType, embedded: text stays searchable
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "legend.fontsize": 7,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
}
WIDTH_IN = 6.3  # the text width of an A4 article with the template's margins


def _label(key: str, lang: str) -> str:
    return plain(label(key, lang))


def outlier_mask(values: np.ndarray) -> np.ndarray:
    """The points the analysis flags (modified z-score or Tukey's fences), as a mask."""
    from cloudbench.analysis.stats import outlier_flags

    mask = np.zeros(len(values), dtype=bool)
    mask[list(outlier_flags(values).flagged())] = True
    return mask


def decimal(value: float, digits: int, lang: str) -> str:
    """A number for a figure, with the paper's decimal separator."""
    return f"{value:.{digits}f}".replace(".", number_format("decimal_mark", lang))


def _decimal_marks(axes: list[Any], mark: str) -> None:
    """Tick labels with the paper's decimal mark on numeric axes (categorical axes keep
    their names)."""
    from matplotlib.ticker import FuncFormatter, ScalarFormatter

    comma = FuncFormatter(lambda v, _: f"{v:g}".replace(".", mark))
    for ax in axes:
        for axis in (ax.xaxis, ax.yaxis):
            if isinstance(axis.get_major_formatter(), ScalarFormatter):
                axis.set_major_formatter(comma)


@contextmanager
def _figure(path: Path, n_panels: int, lang: str, height: float = 2.2, wrap: int = 3
            ) -> Iterator[tuple[Any, list[Any]]]:
    """A grid of panels saved to `path` as a reproducible vector PDF, then closed."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    cols = max(1, min(n_panels, wrap))
    rows = math.ceil(n_panels / cols)
    with plt.rc_context(STYLE), warnings.catch_warnings():
        # seaborn 0.13 still passes boxplot's deprecated `vert`; not ours to fix.
        warnings.simplefilter("ignore", matplotlib.MatplotlibDeprecationWarning)
        fig, axes = plt.subplots(rows, cols, figsize=(WIDTH_IN, height * rows), squeeze=False)
        flat = list(axes.flat)
        for ax in flat[n_panels:]:
            ax.set_visible(False)
        try:
            yield fig, flat[:n_panels]
            if number_format("decimal_mark", lang) != ".":
                _decimal_marks(flat[:n_panels], number_format("decimal_mark", lang))
            fig.tight_layout()
            with atomic_path(path) as tmp:
                fig.savefig(tmp, format="pdf", metadata={"CreationDate": None})
        finally:
            plt.close(fig)


def _numeric(frame: pd.DataFrame, *columns: str) -> pd.DataFrame | None:
    """The frame with the columns numeric and rows lacking them dropped; None if absent."""
    if frame.empty or any(c not in frame for c in ("environment", "dataset", *columns)):
        return None
    data = frame.assign(**{c: pd.to_numeric(frame[c], errors="coerce") for c in columns},
                        environment=frame["environment"].astype(str),
                        dataset=frame["dataset"].astype(str)).dropna(subset=list(columns))
    return None if data.empty else data


@contextmanager
def _dataset_panels(data: pd.DataFrame, path: Path, lang: str) -> Iterator[
        tuple[list[str], dict[str, Any], list[tuple[Any, str, pd.DataFrame]]]]:
    """One panel per dataset, each environment in one colour across the panels.

    Yields the environments in order, their palette and (axis, dataset, its rows) per panel.
    """
    import seaborn as sns

    envs, datasets = ordered(data["environment"]), ordered(data["dataset"])
    palette = dict(zip(envs, sns.color_palette("colorblind", len(envs)), strict=True))
    with _figure(path, len(datasets), lang) as (_, axes):
        yield envs, palette, [(ax, ds, data[data["dataset"] == ds])
                              for ax, ds in zip(axes, datasets, strict=True)]


def metric_boxplot(frame: pd.DataFrame, metric: str, path: Path, lang: str = "en"
                   ) -> Path | None:
    """The metric by environment, one panel per dataset: boxes, every run, outliers in red."""
    import seaborn as sns

    data = _numeric(frame, metric)
    if data is None:
        return None
    with _dataset_panels(data, path, lang) as (envs, palette, panels):
        for ax, ds, sub in panels:
            sns.boxplot(data=sub, x="environment", y=metric, hue="environment", order=envs,
                        hue_order=envs, palette=palette, showfliers=False, width=0.5,
                        boxprops={"alpha": 0.5}, ax=ax, legend=False)
            rng = np.random.default_rng(0)  # own jitter: the same data, the same PDF
            for i, env in enumerate(envs):
                values = sub.loc[sub["environment"] == env, metric].to_numpy()
                ax.scatter(i + rng.uniform(-0.12, 0.12, len(values)), values, s=5,
                           color="black", zorder=4)
                flagged = values[outlier_mask(values)]
                ax.scatter([i] * len(flagged), flagged, marker="x", color="red", s=30,
                           zorder=5)
            ax.set_title(ds)
            ax.set_xlabel("")
            ax.set_ylabel(metric_name(metric, lang, capital=True))
    return path


def training_time_bars(frame: pd.DataFrame, path: Path, lang: str = "en",
                       estimator: str = "sum", column: str = "train_s") -> Path | None:
    """Training time per dataset and environment: the total (reference Figure 3) or the
    mean with its 95 % interval (Figure 4)."""
    import seaborn as sns

    data = _numeric(frame, column)
    if data is None:
        return None
    envs = ordered(data["environment"])
    with _figure(path, 1, lang, height=2.6) as (_, (ax,)):
        sns.barplot(data=data, x="dataset", y=column, hue="environment", hue_order=envs,
                    order=ordered(data["dataset"]), estimator=estimator,
                    errorbar=None if estimator == "sum" else ("ci", 95), seed=0,
                    palette="colorblind", ax=ax)
        for container in ax.containers:
            ax.bar_label(container, fmt=lambda v: decimal(v, 1, lang), fontsize=6, padding=2)
        ax.set_xlabel("")
        ax.set_ylabel(_label("axis_total" if estimator == "sum" else "axis_mean", lang))
        ax.legend(title="", frameon=False)
    return path


def epoch_times(frame: pd.DataFrame, path: Path, lang: str = "en") -> Path | None:
    """Median time of each epoch (band: quartiles); the first epoch, the warm-up, shaded."""

    epochs = epoch_table(frame) if "dataset" in frame and "environment" in frame else None
    if epochs is None or epochs.empty:
        return None
    with _dataset_panels(epochs, path, lang) as (envs, palette, panels):
        for ax, ds, sub in panels:
            ax.axvspan(0.5, 1.5, color="0.9", zorder=0, label=_label("legend_warmup", lang))
            for env in envs:
                stats = sub[sub["environment"] == env].groupby("epoch")["seconds"] \
                    .quantile([0.25, 0.5, 0.75]).unstack()
                if stats.empty:
                    continue
                ax.plot(stats.index, stats[0.5], marker="o", markersize=3,
                        color=palette[env], label=env)
                ax.fill_between(stats.index, stats[0.25], stats[0.75], color=palette[env],
                                alpha=0.2, linewidth=0)
            ax.set_title(ds)
            ax.set_xlabel(_label("axis_epoch", lang))
            ax.set_ylabel(_label("axis_epoch_time", lang))
            ax.xaxis.get_major_locator().set_params(integer=True)
        panels[0][0].legend(frameon=False)
    return path


def accuracy_vs_time(frame: pd.DataFrame, path: Path, lang: str = "en",
                     column: str = "train_s") -> Path | None:
    """Test accuracy against training time, one point per run: is faster also worse?"""
    import seaborn as sns

    data = _numeric(frame, column, "test_accuracy")
    if data is None:
        return None
    # The legend's titles are the column names: give them the paper's words.
    env_col, ds_col = _label("environment", lang), _label("dataset", lang)
    data = data.rename(columns={"environment": env_col, "dataset": ds_col})
    with _figure(path, 1, lang, height=2.8) as (_, (ax,)):
        sns.scatterplot(data=data, x=column, y="test_accuracy", hue=env_col,
                        hue_order=ordered(data[env_col]), style=ds_col,
                        style_order=ordered(data[ds_col]), palette="colorblind", s=18, ax=ax)
        ax.set_xlabel(metric_name(column, lang, capital=True))
        ax.set_ylabel(metric_name("test_accuracy", lang, capital=True))
        ax.legend(frameon=False, fontsize=6, bbox_to_anchor=(1.02, 1), loc="upper left")
    return path


def phase_shares(frame: pd.DataFrame, path: Path, phases: list[str],
                 lang: str = "en") -> Path | None:
    """Each phase's share of a run's time, stacked, one bar per environment and a panel per
    dataset: where the time of a tagged notebook goes, environment by environment."""
    columns = [f"{p}_s" for p in phases if f"{p}_s" in frame]
    if "other_s" in frame:
        columns.append("other_s")
    data = _numeric(frame, *columns) if len(columns) > 1 else None
    if data is None:
        return None
    with _dataset_panels(data, path, lang) as (envs, _, panels):
        import seaborn as sns

        colours = sns.color_palette("colorblind", len(columns))
        for ax, ds, sub in panels:
            means = sub.groupby("environment")[columns].mean().reindex(envs)
            shares = means.div(means.sum(axis=1), axis=0).fillna(0)
            left = np.zeros(len(envs))
            for column, colour in zip(columns, colours, strict=True):
                ax.barh(envs, shares[column], left=left, color=colour,
                        label=column.removesuffix("_s"))
                left += shares[column].to_numpy()
            ax.set_title(ds)
            ax.set_xlim(0, 1)
            ax.set_xlabel(_label("axis_share", lang))
            ax.invert_yaxis()
        panels[0][0].legend(frameon=False, fontsize=6, ncol=min(len(columns), 6),
                            bbox_to_anchor=(0, 1.15), loc="lower left")
    return path


def run_chart(frame: pd.DataFrame, path: Path, metric: str, lang: str = "en") -> Path | None:
    """Each run's time against the clock it started at, per environment; the runs of one
    session joined by a line (a session shares its machine: its runs move together)."""
    import matplotlib.dates as mdates

    data = _numeric(frame, "value")
    if data is None:
        return None
    data = data.assign(started=pd.to_datetime(data["started"]))
    with _dataset_panels(data, path, lang) as (envs, palette, panels):
        for ax, ds, sub in panels:
            for env in envs:
                mine = sub[sub["environment"] == env]
                for session, runs in mine.groupby("session", sort=False):
                    if session and len(runs) > 1:
                        ax.plot(runs["started"], runs["value"], color=palette[env],
                                linewidth=0.8, alpha=0.7)
                ax.scatter(mine["started"], mine["value"], s=6, color=palette[env],
                           label=env, zorder=3)
            ax.set_title(ds)
            ax.set_xlabel(_label("axis_started", lang))
            ax.set_ylabel(metric_name(metric, lang, capital=True))
            ax.xaxis.set_major_formatter(mdates.DateFormatter("%d %H:%M"))
            ax.tick_params(axis="x", labelrotation=30)
        panels[0][0].legend(frameon=False, fontsize=6)
    return path


def hour_of_day(frame: pd.DataFrame, path: Path, metric: str, lang: str = "en",
                windows: int = 6) -> Path | None:
    """The time by hour of the day, per environment: every run, and each window's median
    as a step, so an afternoon slowdown shows as a raised step."""
    data = _numeric(frame, "value", "hour")
    if data is None:
        return None
    size = 24 / windows
    with _dataset_panels(data, path, lang) as (envs, palette, panels):
        for ax, ds, sub in panels:
            for env in envs:
                mine = sub[sub["environment"] == env]
                ax.scatter(mine["hour"], mine["value"], s=6, color=palette[env], label=env,
                           zorder=3)
                medians = window_medians(mine, windows)
                for w, m in medians.items():
                    ax.plot([w * size, (w + 1) * size], [m, m], color=palette[env],
                            linewidth=1.2)
            ax.set_title(ds)
            ax.set_xlim(0, 24)
            ax.set_xticks(range(0, 25, 4))
            ax.set_xlabel(_label("axis_hour", lang))
            ax.set_ylabel(metric_name(metric, lang, capital=True))
        panels[0][0].legend(frameon=False, fontsize=6)
    return path


def window_medians(runs: pd.DataFrame, windows: int = 6) -> dict[int, float]:
    """Each window of the day's median value (both renderings draw the same steps)."""
    size = 24 / windows
    window = (pd.to_numeric(runs["hour"]) // size).clip(0, windows - 1).astype(int)
    return {int(w): float(m) for w, m in
            pd.to_numeric(runs["value"]).groupby(window).median().sort_index().items()}


FigureMaker = Callable[[pd.DataFrame, Path, str], Path | None]

#: Report-wide figures: (name, id, kind, caption label, options).
_FIGURES = (("train_total", "fig:train-total", "bars", "fig_total", {"estimator": "sum"}),
            ("train_mean", "fig:train-mean", "bars", "fig_mean", {"estimator": "mean"}),
            ("epochs", "fig:epochs", "epochs", "fig_epochs", {}),
            ("accuracy_time", "fig:accuracy-time", "scatter", "fig_scatter", {}))
#: The columns each figure of runs needs (with the run's id and names for hovering).
_RUN_COLUMNS = ("run_id", "environment", "dataset", "block", "configuration")


def _has_data(kind: str, frame: pd.DataFrame, options: dict[str, Any]) -> bool:
    """Whether the runs allow the figure (the drawing functions' own checks, done once)."""
    if kind == "bars":
        return _numeric(frame, "train_s") is not None
    if kind == "epochs":
        return "dataset" in frame and "environment" in frame and not epoch_table(frame).empty
    if kind == "scatter":
        return _numeric(frame, "train_s", "test_accuracy") is not None
    if kind == "phases":
        return len(options["columns"]) > 1 and _numeric(frame, *options["columns"]) is not None
    if kind == "box":
        return _numeric(frame, options["metric"]) is not None
    return False


def _runs_data(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    keep = [c for c in (*_RUN_COLUMNS, *columns) if c in frame]
    return frame[list(dict.fromkeys(keep))].reset_index(drop=True)


def figure_specs(frame: pd.DataFrame, metrics: list[str] | tuple[str, ...], lang: str = "en",
                 phases: list[str] | None = None) -> dict[str, Figure]:
    """Every figure the runs allow, as data plus a kind (paper.model.Figure), keyed by name.

    `frame`: the runs the analysis counts; `phases`: a tagged notebook's phases in notebook
    order, for the shares figure."""
    data = usable_runs(frame)
    wanted: list[tuple[str, str, str, str, dict[str, Any]]] = list(_FIGURES)
    if phases:
        columns = [f"{p}_s" for p in phases if f"{p}_s" in data]
        columns += ["other_s"] if "other_s" in data else []
        wanted.insert(0, ("phases", "fig:phases", "phases", "fig_phases",
                          {"phases": phases, "columns": columns}))
    made: dict[str, Figure] = {}
    for name, fid, kind, caption, options in wanted:
        if _has_data(kind, data, options):
            made[name] = Figure(fid, kind, label(caption, lang),
                                _runs_data(data, ["train_s", "test_accuracy", "epoch_s",
                                                  *options.get("columns", ())]), options)
    for i, metric in enumerate(metrics):
        options = {"metric": metric}
        if _has_data("box", data, options):
            title = metric_name(metric, lang, capital=True)
            made[f"box_{i}"] = Figure(f"fig:box:{i}", "box", label("fig_box", lang, metric=title),
                                      _runs_data(data, [metric]), options)
    return made


def explorer_spec(frame: pd.DataFrame, metrics: list[str], lang: str = "en") -> Figure | None:
    """Every counted run with every metric: the page's interactive figure (a selector
    switches metric and dataset, hovering names the run)."""
    data = usable_runs(frame)
    present = [m for m in metrics if _numeric(data, m) is not None]
    if not present:
        return None
    return Figure("fig:explorer", "explorer", "",
                  _runs_data(data, present), {"metrics": present})


def draw(figure: Figure, path: Path, lang: str = "en") -> Path | None:
    """A figure of the model as a vector PDF (None when its data allow none after all)."""
    o, data = figure.options, figure.data
    if figure.kind == "bars":
        return training_time_bars(data, path, lang, o["estimator"])
    if figure.kind == "epochs":
        return epoch_times(data, path, lang)
    if figure.kind == "scatter":
        return accuracy_vs_time(data, path, lang)
    if figure.kind == "phases":
        return phase_shares(data, path, o["phases"], lang)
    if figure.kind == "box":
        return metric_boxplot(data, o["metric"], path, lang)
    if figure.kind == "runchart":
        return run_chart(data, path, o["metric"], lang)
    if figure.kind == "hourly":
        return hour_of_day(data, path, o["metric"], lang)
    raise ValueError(f"no PDF drawing for a figure of kind {figure.kind!r}")


def make_figures(frame: pd.DataFrame, out_dir: Path, metrics: list[str] | tuple[str, ...],
                 lang: str = "en", phases: list[str] | None = None) -> dict[str, Path]:
    """Every figure the data allow, drawn as PDFs, keyed by name; file names never hold
    data names."""
    made = {}
    for name, figure in figure_specs(frame, metrics, lang, phases).items():
        path = draw(figure, Path(out_dir) / f"{name}.pdf", lang)
        if path is not None:
            made[name] = path
    return made

"""The paper's pieces for a sweep: the analysis along a factor (analysis.factors) as figures
and tables.

The figure is the reference thesis's (the speed-up between backends against the batch
size), with what it lacked: a 95 % interval on every point and out-of-memory cells shown,
never left out. The y axis is the time ratio a/b (median on a over median on b: above 1, b
is faster) on a log scale, so a speed-up and its inverse are equally far from the dashed
line at 1. The tables give the same numbers (as paper.model tables), and the interaction
test says whether the ratio changes with the level. Names from the data are drawn as plain
text in the figures (mathtext off), as in paper.figures.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from cloudbench.analysis.factors import REASONS, FactorAnalysis, LevelRatio
from cloudbench.analysis.results import MedianRatio
from cloudbench.data.atomic import atomic_path
from cloudbench.paper.figures import STYLE, WIDTH_IN, plain
from cloudbench.paper.model import Cell, Column, Table, text_cell
from cloudbench.paper.tables import p_cell, ratio_cell, slug
from cloudbench.paper.text import MISSING, label, metric_name, number_format

#: What each figure draws: the LevelRatio field and the y axis' label.
RATIOS = {"time": ("time_ratio", "axis_time_ratio"),
          "memory": ("memory_ratio", "axis_memory_ratio")}
# Candidate ticks of a ratio axis, coarse to fine: the first set that puts 3 ticks on the
# axis is used, so a wide axis reads 0.5, 1, 2, 5 and a narrow one 0.9, 1, 1.1, 1.2.
_TICK_SETS = [sorted({round(m * 10.0 ** e, 6) for e in range(-3, 4) for m in mantissas})
              for mantissas in ((1, 2, 5), (1, 1.5, 2, 3, 5, 7.5),
                                (1, 1.1, 1.2, 1.3, 1.5, 1.7, 2, 2.5, 3, 4, 5, 6, 7, 8, 9))]


def level_text(level: str, lang: str = "en") -> str:
    """A level as it prints: a decimal number with the paper's decimal mark, else as is."""
    try:
        float(level)
        numeric = True
    except ValueError:
        numeric = False
    return level.replace(".", number_format("decimal_mark", lang)) if numeric else level


def _panel_title(dataset: str, fixed: str) -> str:
    return f"{dataset}\n{fixed}" if fixed else dataset


# --------------------------------------------------------------------------- figures


@contextmanager
def _figure(path: Path, n_panels: int, height: float = 2.3, wrap: int = 3
            ) -> Iterator[tuple[Any, list[Any]]]:
    """Panels saved to `path` in the format its suffix names (PDF for the paper, PNG for a
    look), then closed; the PDF carries no creation date, so it is reproducible. The
    layout is constrained, so a legend can sit outside the panels."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    cols = max(1, min(n_panels, wrap))
    rows = math.ceil(n_panels / cols)
    fmt = path.suffix.lstrip(".").lower() or "pdf"
    with plt.rc_context(STYLE), warnings.catch_warnings():
        warnings.simplefilter("ignore", matplotlib.MatplotlibDeprecationWarning)
        fig, axes = plt.subplots(rows, cols, figsize=(WIDTH_IN, height * rows + 0.3),
                                 squeeze=False, layout="constrained")
        flat = list(axes.flat)
        for ax in flat[n_panels:]:
            ax.set_visible(False)
        try:
            yield fig, flat[:n_panels]
            with atomic_path(path) as tmp:
                fig.savefig(tmp, format=fmt, dpi=200,
                            metadata={"CreationDate": None} if fmt == "pdf" else None)
        finally:
            plt.close(fig)


def _ratio_ticks(low: float, high: float) -> list[float]:
    """Three to about six readable ticks between low and high, spread on the log scale."""
    inside: list[float] = []
    for ticks in _TICK_SETS:
        inside = [t for t in ticks if low <= t <= high]
        if len(inside) >= 3:
            break
    if len(inside) <= 6:
        return inside
    logs = np.log(inside)
    picked = {inside[int(np.argmin(np.abs(logs - t)))]
              for t in np.linspace(logs[0], logs[-1], 6)}
    if low <= 1 <= high:
        picked.add(1.0)
    return sorted(picked)


def _limits(values: list[float], room_on_top: bool) -> tuple[float, float]:
    """y limits around the values and 1, with room above for the OOM marks."""
    finite = [v for v in values if v is not None and math.isfinite(v) and v > 0] + [1.0]
    low, high = math.log(min(finite)), math.log(max(finite))
    span = max(high - low, math.log(1.25))
    return math.exp(low - 0.08 * span), math.exp(high + (0.45 if room_on_top else 0.1) * span)


def ratio_figure(fa: FactorAnalysis, parameter: str, path: Path, lang: str, which: str
                  ) -> Path | None:
    """One panel per dataset x fixed combination; one line per pair; OOM marked at the top."""
    import seaborn as sns
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator
    from matplotlib.transforms import blended_transform_factory

    field, axis_key = RATIOS[which]
    entries = fa.of(parameter)
    if not any(getattr(e, field).estimate is not None or e.oom for e in entries):
        return None
    order = list(fa.level_order.get(parameter, ())) or list(dict.fromkeys(
        e.level for e in entries))
    position = {lv: i for i, lv in enumerate(order)}
    pairs = fa.pairs(parameter)
    palette = dict(zip(pairs, sns.color_palette("colorblind", len(pairs)), strict=True))
    width = 0.3 if len(pairs) > 1 else 0.0
    offsets = {pair: (i / (len(pairs) - 1) - 0.5) * width if len(pairs) > 1 else 0.0
               for i, pair in enumerate(pairs)}
    mark = number_format("decimal_mark", lang)
    panels = fa.panels(parameter)
    with _figure(path, len(panels)) as (fig, axes):
        for ax, (dataset, fixed) in zip(axes, panels, strict=True):
            mine = [e for e in entries if (e.dataset, e.fixed) == (dataset, fixed)]
            top = blended_transform_factory(ax.transData, ax.transAxes)
            bounds: list[float] = []
            oom_levels: set[str] = set()
            for pair in pairs:
                of_pair = {e.level: e for e in mine if (e.a, e.b) == pair}
                if not of_pair:
                    continue
                xs = np.arange(len(order)) + offsets[pair]
                est, low, high = (np.full(len(order), np.nan) for _ in range(3))
                for lv, e in of_pair.items():
                    r: MedianRatio = getattr(e, field)
                    i = position[lv]
                    if r.estimate is not None:
                        est[i] = r.estimate
                        low[i] = r.ci_low if r.ci_low is not None else r.estimate
                        high[i] = r.ci_high if r.ci_high is not None else r.estimate
                        bounds += [r.estimate, low[i], high[i]]
                    if e.oom:
                        oom_levels.add(lv)
                        ax.plot([xs[i]], [0.86], marker="x", markersize=6, color=palette[pair],
                                transform=top, clip_on=False, linestyle="none")
                ax.errorbar(xs, est, yerr=[est - low, high - est], fmt="-o", markersize=3,
                            capsize=2, linewidth=1, color=palette[pair],
                            label=f"{pair[0]} / {pair[1]}")
            for lv in oom_levels:
                ax.text(position[lv], 0.97, plain(label("oom", lang)), transform=top,
                        ha="center", va="top", fontsize=6, color="0.2")
            ax.set_yscale("log")
            ax.axhline(1.0, linestyle="--", color="0.5", linewidth=0.8, zorder=0)
            low_y, high_y = _limits(bounds, bool(oom_levels))
            ax.set_ylim(low_y, high_y)
            ax.yaxis.set_major_locator(FixedLocator(_ratio_ticks(low_y, high_y)))
            ax.yaxis.set_minor_locator(NullLocator())
            ax.yaxis.set_major_formatter(FuncFormatter(
                lambda v, _: f"{v:g}".replace(".", mark)))
            ax.set_xticks(range(len(order)))
            ax.set_xticklabels([level_text(lv, lang) for lv in order])
            ax.set_xlim(-0.5, len(order) - 0.5)
            ax.set_title(_panel_title(dataset, fixed))
            ax.set_xlabel(parameter)
            ax.set_ylabel(plain(label(axis_key, lang)))
        legend: dict[str, Any] = {}  # every pair once, whichever panel drew it
        for ax in axes:
            for handle, text in zip(*ax.get_legend_handles_labels(), strict=True):
                legend.setdefault(text, handle)
        fig.legend(list(legend.values()), list(legend), loc="outside lower center",
                   ncol=min(len(legend), 4), frameon=False, fontsize=6)
    return path


def has_ratio(fa: FactorAnalysis, parameter: str, which: str) -> bool:
    """Whether the parameter's time ("time") or memory ("memory") ratio figure has points."""
    field = RATIOS[which][0]
    return any(getattr(e, field).estimate is not None or e.oom for e in fa.of(parameter))


def speedup_figure(fa: FactorAnalysis, parameter: str, path: Path, lang: str = "en"
                   ) -> Path | None:
    """The time ratio a/b against the parameter's levels, with 95 % intervals: the
    thesis's speed-up figure. None when there is nothing to draw."""
    return ratio_figure(fa, parameter, Path(path), lang, "time")


def memory_ratio_figure(fa: FactorAnalysis, parameter: str, path: Path, lang: str = "en"
                        ) -> Path | None:
    """The memory ratio a/b (of fa.memory_metric) against the parameter's levels."""
    return ratio_figure(fa, parameter, Path(path), lang, "memory")


def make_sweep_figures(fa: FactorAnalysis, out_dir: Path, lang: str = "en"
                       ) -> dict[str, Path]:
    """Both figures of every parameter, keyed by name; file names never hold data names."""
    made = {}
    for i, parameter in enumerate(fa.parameters):
        for name, maker in ((f"speedup_{i}", speedup_figure),
                            (f"memory_ratio_{i}", memory_ratio_figure)):
            path = maker(fa, parameter, Path(out_dir) / f"{name}.pdf", lang)
            if path is not None:
                made[name] = path
    return made


# --------------------------------------------------------------------------- tables


def _pair(a: str, b: str) -> str:
    return f"{a} vs {b}"


def _ratio_cell(e: LevelRatio, ratio: MedianRatio, lang: str) -> Cell:
    """The ratio with its interval; "OOM (env)" where a side ran out of memory."""
    if e.oom:
        return text_cell(f"{label('oom', lang)} ({', '.join(e.oom)})")
    return ratio_cell(ratio)


def factor_table(fa: FactorAnalysis, parameter: str, lang: str = "en") -> Table | None:
    """One row per dataset, fixed combination, pair and level: the runs on each side, the
    time ratio and the memory ratio a/b with their 95 % intervals, "OOM" where a side ran
    out of memory. None when the parameter has no entry."""
    entries = fa.of(parameter)
    if not entries:
        return None
    with_fixed = any(e.fixed for e in entries)
    with_oom = any(e.oom_a or e.oom_b for e in entries)
    rows = []
    for e in entries:
        keys = [text_cell(e.dataset)] + ([text_cell(e.fixed)] if with_fixed else [])
        keys.append(text_cell(_pair(e.a, e.b)))
        cells = [text_cell(level_text(e.level, lang)), text_cell(f"{e.n_a}/{e.n_b}")]
        if with_oom:
            cells.append(text_cell(f"{e.oom_a}/{e.oom_b}"))
        cells += [_ratio_cell(e, e.time_ratio, lang), _ratio_cell(e, e.memory_ratio, lang)]
        rows.append(keys + cells)
    n_keys = 3 if with_fixed else 2
    head = [label("dataset", lang)] + ([label("fixed", lang)] if with_fixed else [])
    head += [label("pair", lang), parameter, label("n_ab", lang)]
    head += [label("oom_ab", lang)] if with_oom else []
    n_ratio = len(head)
    head += [label("time_ratio", lang), label("memory_ratio", lang)]
    memory = (metric_name(fa.memory_metric, lang) if fa.memory_metric is not None
              else MISSING)
    notes = [label("factor_note", lang, metric=metric_name(fa.metric, lang), memory=memory)]
    failed = {(e.dataset, e.fixed, e.level, env): n for e in entries
              for env, n in ((e.a, e.failed_a), (e.b, e.failed_b))}
    if sum(failed.values()):
        notes.append(label("factor_failed_note", lang, n=sum(failed.values())))
    columns = [Column(h, "l" if i <= n_keys else "r", 20 if i >= n_ratio else None)
               for i, h in enumerate(head)]
    return Table(slug("tab", "factor", parameter),
                 label("factor_caption", lang, parameter=parameter,
                       metric=metric_name(fa.metric, lang)),
                 columns, rows, notes, keys=n_keys, size="footnotesize")


def interaction_table(fa: FactorAnalysis, lang: str = "en") -> Table | None:
    """Per parameter, dataset, fixed combination and pair: the interaction's F(df1, df2) and
    p (does the time ratio change with the level?). None without tests."""
    tests = fa.interactions_of()
    if not tests:
        return None
    with_fixed = any(t.fixed for t in tests)
    marks = {reason: chr((0x1d43, 0x1d47, 0x1d9c)[i]) for i, reason in enumerate(REASONS)}
    used: list[str] = []
    rows = []
    for t in tests:
        keys = [text_cell(t.parameter), text_cell(t.dataset)]
        keys += [text_cell(t.fixed)] if with_fixed else []
        if t.F is None:
            reason = t.reason or REASONS[0]
            used.append(reason)
            stat = text_cell(MISSING + marks[reason])
        else:
            stat = Cell(t.F, "num", 2, suffix=f" ({t.df_num}, {t.df_den})")
        rows.append(keys + [text_cell(_pair(t.a, t.b)), stat, p_cell(t.p)])
    n_keys = 3 if with_fixed else 2
    head = [label("parameter", lang), label("dataset", lang)]
    head += [label("fixed", lang)] if with_fixed else []
    head += [label("pair", lang), label("interaction_f", lang), label("p", lang)]
    notes = [label("interaction_note", lang, metric=metric_name(fa.metric, lang))]
    notes += [f"{marks[r]} {label('interaction_' + r, lang)}." for r in REASONS if r in used]
    columns = [Column(h, "l" if i <= n_keys else "r") for i, h in enumerate(head)]
    return Table("tab:interaction",
                 label("interaction_caption", lang, metric=metric_name(fa.metric, lang)),
                 columns, rows, notes, keys=n_keys, size="footnotesize")

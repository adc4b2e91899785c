"""The report's tables as data (paper.model.Table) from the analysis and the runs frame.

The tables follow the layout of SPSS's output, which is what the reference paper shows
(Tables 2 to 4), so a reader can put the two side by side. Every aggregate (means, medians,
counts, costs) is computed here, once; the renderers only lay the cells out. A table with
nothing to show is None, so a template can simply skip it. Adding a table is one function
here (or in paper.build) plus its labels in paper/lang/<lang>.toml.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any

import pandas as pd

from cloudbench.analysis.compare import usable_runs
from cloudbench.analysis.results import (
    Analysis,
    BrunnerMunzel,
    Comparison,
    MannWhitney,
    MedianRatio,
)
from cloudbench.paper.model import Cell, Column, Group, Part, Table, text_cell
from cloudbench.paper.text import (
    MINUS,
    MISSING,
    auto_digits,
    code,
    fmt_df,
    fmt_num,
    is_missing,
    label,
    metric_name,
    var,
    where,
)

# --------------------------------------------------------------------------- the registry

#: The sections a registered table may close, in the order the report shows them.
SECTIONS = ("methodology", "results", "decisions")


@dataclass(frozen=True)
class Inputs:
    """What a registered table may read: every run as recorded (`frame`), the runs the
    analysis counts (`usable`), both with a sweep's cells named, the analysis, the study
    file (None for runs gathered elsewhere), a tagged notebook's phases, the language."""

    frame: pd.DataFrame
    usable: pd.DataFrame
    analysis: Analysis
    study: Any
    phases: list[str] | None
    lang: str


@dataclass(frozen=True)
class ReportPart:
    """A registered piece of the report, shown at the end of `section`."""

    name: str
    section: str
    build: Callable[[Inputs], Part | None]


#: Every registered part (and table), in the order they were registered.
REPORT_PARTS: list[ReportPart] = []

PartBuilder = Callable[[Inputs], Part | None]
TableBuilder = Callable[[Inputs], Table | None]


def report_part(name: str, section: str) -> Callable[[PartBuilder], PartBuilder]:
    """Register a part of the report (a heading, paragraphs, tables, figures): one function
    from Inputs to a Part (or None when the runs do not allow it), with its words in
    paper/lang/<lang>.toml; both renderings show it at the end of `section` (one of
    SECTIONS). A figure of a kind the renderers already draw needs nothing else."""
    if section not in SECTIONS:
        raise ValueError(f"section {section!r} is not one of {', '.join(SECTIONS)}")

    def register(build: PartBuilder) -> PartBuilder:
        REPORT_PARTS[:] = [t for t in REPORT_PARTS if t.name != name]
        REPORT_PARTS.append(ReportPart(name, section, build))
        return build

    return register


def report_table(name: str, section: str, heading: str | None = None
                 ) -> Callable[[TableBuilder], TableBuilder]:
    """Register a table: one function from Inputs to a Table (or None when the runs do not
    allow it) is all a new table needs, with its labels in paper/lang/<lang>.toml (its
    caption, and `heading`, a label key, when it opens a subsection of its own)."""

    def register(build: TableBuilder) -> TableBuilder:
        def part(inputs: Inputs) -> Part | None:
            table = build(inputs)
            if table is None:
                return None
            return Part(label(heading, inputs.lang) if heading else None, tables=[table])

        report_part(name, section)(part)
        return build

    return register


def registered_parts(inputs: Inputs) -> dict[str, list[Part]]:
    """Each section's registered parts that the runs allow."""
    out: dict[str, list[Part]] = {s: [] for s in SECTIONS}
    for entry in REPORT_PARTS:
        part = entry.build(inputs)
        if part is not None:
            out[entry.section].append(part)
    return out


def slug(*parts: Any) -> str:
    """A table id made only of safe characters, whatever the names hold."""
    return ":".join("".join(c if c.isalnum() else "-" for c in str(p)) for p in parts)


# --------------------------------------------------------------------------- data access


def comparisons(analysis: Analysis, metric: str | None = None) -> list[Comparison]:
    """The comparisons of one metric (all when None), in the analysis' order."""
    return analysis.of_metric(metric)


def _unique(items: Iterable[Any]) -> list[Any]:
    return list(dict.fromkeys(items))


def metrics_of(analysis: Analysis) -> list[str]:
    return analysis.metrics


def datasets_of(analysis: Analysis) -> list[str]:
    return analysis.datasets


def environments_of(analysis: Analysis) -> list[str]:
    return analysis.environments


def many_pairs(analysis: Analysis) -> bool:
    """With more than one pair of environments each row must name its pair."""
    return len(analysis.pairs) > 1


def pair_text(c: Any) -> str:
    return f"{c.a} vs {c.b}"


def outlier_count(c: Comparison, env: str) -> int:
    """Runs of one group that either outlier rule flags, each counted once."""
    return len(c.outliers[env].flagged())


def groups(analysis: Analysis, metric: str) -> list[tuple[str, str, Comparison]]:
    """(dataset [and configuration], environment, a comparison holding it), once per group.

    An environment appears in several pairs; its descriptives are the same in each.
    """
    seen: dict[tuple[str, str], Comparison] = {}
    for c in comparisons(analysis, metric):
        for env in (c.a, c.b):
            seen.setdefault((where(c), env), c)
    return [(ds, env, c) for (ds, env), c in seen.items()]


def _cols(labels: list[str], align: str, wraps: dict[int, int] | None = None
          ) -> list[Column]:
    """Columns from labels and an alignment string ("llrrr"), some with a wrap width."""
    wraps = wraps or {}
    return [Column(text, a, wraps.get(i)) for i, (text, a) in enumerate(zip(labels, align,
                                                                            strict=True))]


def num(value: Any, digits: int = 2, bounded: bool = False) -> Cell:
    return Cell(value, "num", digits, bounded)


def p_cell(value: Any) -> Cell:
    return Cell(value, "p")


def int_cell(value: Any) -> Cell:
    return Cell(value, "int")


def df_cell(value: Any) -> Cell:
    return Cell(value, "df")


# --------------------------------------------------------------------------- statistics tables


def descriptives_table(analysis: Analysis, metric: str, lang: str = "en") -> Table | None:
    """n, mean, SD, median, quartiles, range and CV per dataset and environment."""
    found = groups(analysis, metric)
    if not found:
        return None
    digits = auto_digits(c.descriptives[env].max for _, env, c in found)
    rows = []
    flagged = 0
    for ds, env, c in found:
        d = c.descriptives[env]
        n_out = outlier_count(c, env)
        flagged += n_out
        rows.append([text_cell(ds), text_cell(env), int_cell(d.n)]
                    + [num(v, digits) for v in
                       (d.mean, d.sd, d.median, d.q1, d.q3, d.min, d.max)]
                    + [num(d.cv, 3), Cell(n_out, "int") if n_out else text_cell("")])
    head = [label(k, lang) for k in ("dataset", "environment", "n", "mean", "sd", "median",
                                     "q1", "q3", "min", "max", "cv", "outliers_col")]
    notes = [label("outlier_note", lang, n=flagged)] if flagged else []
    return Table(slug("tab", "desc", metric),
                 label("descriptives_caption", lang, metric=metric_name(metric, lang)),
                 _cols(head, "ll" + "r" * 10), rows, notes, keys=1, size="footnotesize")


def shapiro_table(analysis: Analysis, metric: str, lang: str = "en") -> Table | None:
    """Statistic, df and Sig. per group, as the reference paper's Table 2."""
    found = groups(analysis, metric)
    if not found:
        return None
    rows, missing = [], False
    for ds, env, c in found:
        w, p = c.shapiro[env].W, c.shapiro[env].p
        missing |= w is None
        rows.append([text_cell(ds), text_cell(env),
                     Cell(w, "num", 3, True, suffix="\u1d43" if w is None else ""),
                     int_cell(c.descriptives[env].n), p_cell(p)])
    notes = [f"\u1d43 {label('not_computable', lang)}"] if missing else []
    head = [label(k, lang) for k in ("dataset", "environment", "statistic", "df", "sig")]
    return Table(slug("tab", "shapiro", metric),
                 label("shapiro_caption", lang, metric=metric_name(metric, lang)),
                 _cols(head, "llrrr"), rows, notes, keys=1)


def _row_key(c: Comparison, pairs: bool) -> str:
    return f"{where(c)} ({c.a} vs {c.b})" if pairs else where(c)


def mann_whitney_table(analysis: Analysis, metric: str, lang: str = "en",
                       alternative: str = "two-sided") -> Table | None:
    """U, Wilcoxon W, Z, asymptotic and exact Sig. and r, as the reference's Table 3."""
    found = comparisons(analysis, metric)
    if not found:
        return None
    one = alternative != "two-sided"
    pairs = many_pairs(analysis)
    rows = []
    for c in found:
        m = c.mann_whitney
        rows.append([text_cell(_row_key(c, pairs)), num(m.U), num(m.W), num(m.Z, 3),
                     p_cell(m.p_asymptotic), p_cell(m.p_exact), num(m.r, 3, True)])
    head = [label("dataset", lang), label("mann_whitney_u", lang), label("wilcoxon_w", lang),
            label("z", lang), label("p_asymptotic_one" if one else "p_asymptotic", lang),
            label("p_exact_one" if one else "p_exact", lang), label("r", lang)]
    return Table(slug("tab", "mw", metric),
                 label("mann_whitney_caption", lang, metric=metric_name(metric, lang)),
                 _cols(head, "lrrrrrr", dict.fromkeys(range(7), 14)), rows,
                 [label("grouping", lang)])


def ranks_table(analysis: Analysis, metric: str, lang: str = "en") -> Table | None:
    """N, mean rank and sum of ranks per group, as SPSS prints beside the test."""
    found = comparisons(analysis, metric)
    if not found:
        return None
    pairs = many_pairs(analysis)
    rows = []
    for c in found:
        for env in (c.a, c.b):
            r = c.ranks[env]
            rows.append([text_cell(_row_key(c, pairs)), text_cell(env), int_cell(r.n),
                         num(r.mean_rank), num(r.sum_ranks)])
    head = [label(k, lang) for k in ("dataset", "environment", "n", "mean_rank", "sum_ranks")]
    return Table(slug("tab", "ranks", metric),
                 label("ranks_caption", lang, metric=metric_name(metric, lang)),
                 _cols(head, "llrrr"), rows, keys=1)


def t_test_table(analysis: Analysis, metric: str, lang: str = "en",
                 alternative: str = "two-sided") -> Table | None:
    """Levene's F and Sig., then t, df, Sig., mean difference and its 95 % interval.

    One row with equal variances assumed (Student) and one without (Welch), as SPSS.
    The interval is the one the analysis computed (pooled or separate variances), two-sided
    whatever the hypothesis, as SPSS prints it.
    """
    found = comparisons(analysis, metric)
    if not found:
        return None
    pairs = many_pairs(analysis)
    digits = auto_digits(c.descriptives[c.a].mean for c in found)
    rows = []
    for c in found:
        lev = c.levene
        for welch, t in ((False, c.student_t), (True, c.welch_t)):
            rows.append([
                text_cell(_row_key(c, pairs)),
                text_cell(label("unequal_var" if welch else "equal_var", lang)),
                text_cell("") if welch else num(lev.F, 3),
                text_cell("") if welch else p_cell(lev.p),
                num(t.t, 3), df_cell(t.df), p_cell(t.p),
                num(t.mean_difference, digits), num(t.ci_low, digits),
                num(t.ci_high, digits)])
    p_label = label("p_one" if alternative != "two-sided" else "p_two", lang)
    head = [label("dataset", lang), label("variances", lang), "F", label("sig", lang), "t",
            label("df", lang), p_label, label("mean_difference", lang), label("lower", lang),
            label("upper", lang)]
    return Table(slug("tab", "t", metric),
                 label("t_caption", lang, metric=metric_name(metric, lang)),
                 _cols(head, "ll" + "r" * 8, {6: 10, 7: 10}), rows,
                 groups=[Group("Levene", 2, 2), Group(label("ci95", lang), 8, 2)],
                 keys=1, size="footnotesize")


def statistic_cell(c: Comparison) -> Cell:
    """The statistic of the test used, as it is quoted: "U = 265", "t(46) = 1.23"."""
    test = c.test
    if isinstance(test, MannWhitney):
        return Cell(test.U, "num", 2 if _fractional(test.U) else 0, prefix=var("U") + " = ")
    if isinstance(test, BrunnerMunzel):
        return bm_statistic(test, var("W") + " = ")
    if test.t is None:
        return text_cell(MISSING)
    return Cell(test.t, "num", 2, prefix=f"{var('t')}({fmt_df(test.df)}) = ")


def test_statistic(c: Comparison, lang: str = "en") -> str:
    """The statistic of the test used as text in the report's language."""
    return statistic_cell(c).text(lang)


def bm_statistic(test: BrunnerMunzel, prefix: str = "") -> Cell:
    """Brunner-Munzel's W, or plus or minus infinity for a complete separation."""
    if test.statistic is None:
        if test.estimate in (0.0, 1.0):
            return text_cell(prefix + ("\u221e" if test.estimate == 1.0 else MINUS + "\u221e"))
        return text_cell(MISSING)
    return Cell(test.statistic, "num", 2, prefix=prefix)


def _fractional(x: float | None) -> bool:
    return x is not None and abs(x - round(x)) > 1e-9


def ratio_cell(ratio: MedianRatio, digits: int = 2) -> Cell:
    """The ratio of medians a/b with its interval: "0.98 [0.95, 1.02]"."""
    return Cell(ratio.estimate, "interval", digits, low=ratio.ci_low, high=ratio.ci_high)


def ratio_text(ratio: MedianRatio, lang: str = "en") -> str:
    return ratio_cell(ratio).text(lang)


def decisions_table(analysis: Analysis, lang: str = "en", alpha: float = 0.05
                    ) -> Table | None:
    """One line per metric, dataset and pair: the test used, its p, Holm's p, the decision."""
    found = comparisons(analysis)
    if not found:
        return None
    pairs = many_pairs(analysis)
    rows = []
    for c in found:
        cells = [text_cell(metric_name(c.metric, lang, capital=True)), text_cell(where(c))]
        if pairs:
            cells.append(text_cell(pair_text(c)))
        cells += [statistic_cell(c), p_cell(c.p), p_cell(c.p_holm),
                  text_cell(label("yes" if c.significant else "no", lang)),
                  ratio_cell(c.median_ratio)]
        rows.append(cells)
    head = [label("metric", lang), label("dataset", lang)]
    head += [label("pair", lang)] if pairs else []
    head += [label(k, lang) for k in ("statistic", "p", "p_holm", "significant")]
    head.append(label("speedup", lang))
    align = "ll" + ("l" if pairs else "") + "lrrcr"
    note = "tests_note_robust" if analysis.procedure == "robust" else "tests_note"
    return Table("tab:decisions",
                 label("decisions_caption", lang, alpha=fmt_num(alpha, 2, lang, bounded=True)),
                 _cols(head, align, {len(head) - 1: 20}), rows, [label(note, lang)], keys=1,
                 size="footnotesize")


def brunner_munzel_table(analysis: Analysis, metric: str, lang: str = "en") -> Table | None:
    """The robust procedure's test per comparison: the relative effect, W, df, the t
    approximation's Sig. and the permutation test's, with how many relabellings."""
    found = [c for c in comparisons(analysis, metric) if c.brunner_munzel is not None]
    if not found:
        return None
    pairs = many_pairs(analysis)
    rows = []
    for c in found:
        bm = c.brunner_munzel
        count = text_cell(MISSING) if bm.permutations is None else (
            text_cell(label("all_relabellings", lang) + f" ({bm.permutations})") if bm.exact
            else int_cell(bm.permutations))
        rows.append([text_cell(_row_key(c, pairs)), num(bm.estimate, 3, True),
                     bm_statistic(bm), df_cell(bm.df), p_cell(bm.p),
                     p_cell(bm.p_permutation), count])
    head = [label("dataset", lang), label("relative_effect", lang), label("bm_w", lang),
            label("df", lang), label("bm_p_t", lang), label("bm_p_perm", lang),
            label("relabellings", lang)]
    return Table(slug("tab", "bm", metric),
                 label("bm_caption", lang, metric=metric_name(metric, lang)),
                 _cols(head, "lrrrrrr", {4: 10, 5: 10}), rows, [label("bm_note", lang)])


def equivalence_word(c: Comparison, lang: str = "en") -> str:
    """The conclusion as a table cell: "a faster", "equivalent", "inconclusive: ..."."""
    return label(f"c_{c.equivalence.conclusion}", lang) if c.equivalence else MISSING


def equivalence_table(analysis: Analysis, lang: str = "en") -> Table | None:
    """Per metric, dataset and pair: the ratio of geometric means a/b with its 90 % interval,
    the TOST's p and the four-way conclusion (only with an equivalence margin)."""
    found = [c for c in comparisons(analysis) if c.equivalence is not None]
    if not found:
        return None
    pairs = many_pairs(analysis)
    rows = []
    for c in found:
        eq = c.equivalence
        cells = [text_cell(metric_name(c.metric, lang, capital=True)), text_cell(where(c))]
        cells += [text_cell(pair_text(c))] if pairs else []
        cells += [Cell(eq.ratio, "interval", 3, low=eq.ci_low, high=eq.ci_high),
                  p_cell(eq.p), text_cell(equivalence_word(c, lang))]
        rows.append(cells)
    head = [label("metric", lang), label("dataset", lang)]
    head += [label("pair", lang)] if pairs else []
    head += [label("geo_ratio", lang), label("p_tost", lang), label("conclusion", lang)]
    margin = round(100 * found[0].equivalence.margin, 6)
    text = fmt_num(margin, 0 if margin.is_integer() else 1, lang)
    return Table("tab:equivalence", label("equivalence_caption", lang, margin=text + "\u2009%"),
                 _cols(head, "ll" + ("l" if pairs else "") + "rrl"), rows,
                 [label("equivalence_note", lang)], keys=1, size="footnotesize")


def kruskal_table(analysis: Analysis, lang: str = "en") -> Table | None:
    """H, df and Sig. per metric and dataset when more than two environments were compared."""
    entries = analysis.kruskal_wallis or ()
    if not entries:
        return None
    rows = [[text_cell(metric_name(str(e.metric), lang, capital=True)), text_cell(where(e)),
             num(e.H, 3), df_cell(e.df), p_cell(e.p)] for e in entries]
    head = [label(k, lang) for k in ("metric", "dataset", "h", "df", "sig")]
    return Table("tab:kruskal", label("kruskal_caption", lang), _cols(head, "llrrr"), rows,
                 keys=1)


# --------------------------------------------------------------------------- runs tables


def ordered(values: Iterable[Any]) -> list[str]:
    """Names in the order they first appear, as the analysis orders its pairs."""
    return _unique(str(v) for v in values if not (isinstance(v, float) and math.isnan(v)))


def _group_cells(frame: pd.DataFrame, columns: list[tuple[str, str, Any]],
                 envs: list[str], datasets: list[str]) -> list[list[Cell]]:
    """Rows of dataset x environment aggregates of the given (column, how, cell) specs."""
    rows = []
    grouped = {k: g for k, g in frame.groupby(["dataset", "environment"], sort=False)}
    for ds in datasets:
        for env in envs:
            g = grouped.get((ds, env))
            if g is None:
                continue
            cells = [text_cell(ds), text_cell(env)]
            for column, how, make in columns:
                values = pd.to_numeric(g[column], errors="coerce").dropna() \
                    if column in g else pd.Series(dtype=float)
                value = getattr(values, how)() if len(values) else math.nan
                cells.append(make(value))
            rows.append(cells)
    return rows


def quality_table(frame: pd.DataFrame, lang: str = "en") -> Table | None:
    """Mean test loss and accuracy per dataset, environments side by side (Table 4)."""
    metrics = [m for m in ("test_loss", "test_accuracy") if m in frame]
    if not metrics or frame.empty:
        return None
    envs, datasets = ordered(frame["environment"]), ordered(frame["dataset"])
    means = frame.assign(**{m: pd.to_numeric(frame[m], errors="coerce") for m in metrics}) \
        .groupby(["dataset", "environment"], sort=False)[metrics].mean()
    k = len(metrics)
    rows = []
    for ds in datasets:
        cells = [text_cell(ds)]
        for env in envs:
            for m in metrics:
                value = means[m].get((ds, env), math.nan) if (ds, env) in means.index \
                    else math.nan
                cells.append(num(value))
        rows.append(cells)
    head = [label("dataset", lang)] + [label(m, lang) for m in metrics] * len(envs)
    return Table("tab:quality", label("quality_caption", lang),
                 _cols(head, "l" + "r" * (k * len(envs))), rows, [label("source", lang)],
                 groups=[Group(e, 1 + i * k, k) for i, e in enumerate(envs)])


def epoch_table(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per run and epoch from the `epoch_s` lists (JSON strings or lists)."""
    if "epoch_s" not in frame:
        return pd.DataFrame(columns=["dataset", "environment", "run", "epoch", "seconds"])
    rows = []
    for i, (ds, env, raw) in enumerate(zip(frame["dataset"], frame["environment"],
                                           frame["epoch_s"], strict=True)):
        values = raw
        if isinstance(raw, str):
            try:
                values = json.loads(raw)
            except ValueError:
                continue
        if not isinstance(values, list | tuple):
            continue
        for epoch, seconds in enumerate(values, start=1):
            if not is_missing(seconds):
                rows.append((str(ds), str(env), i, epoch, float(seconds)))
    return pd.DataFrame(rows, columns=["dataset", "environment", "run", "epoch", "seconds"])


def _digits(column: str) -> int:
    """Memory in whole MB, times to the hundredth of a second."""
    return 0 if column.endswith("_mb") else 2


def resources_table(frame: pd.DataFrame, lang: str = "en") -> Table | None:
    """Medians of the first epoch, the later epochs, train without warm-up and peak memory."""
    if frame.empty:
        return None
    data = frame.copy()
    epochs = epoch_table(data)
    if "first_epoch_s" not in data and not epochs.empty:
        first = epochs[epochs["epoch"] == 1].set_index("run")["seconds"]
        data["first_epoch_s"] = pd.Series(first.values, index=data.index[first.index])
    if not epochs.empty:
        later = epochs[epochs["epoch"] > 1].groupby("run")["seconds"].mean()
        data["later_epoch_s"] = pd.Series(later.values, index=data.index[later.index])
    specs = [("first_epoch_s", "first_epoch"), ("later_epoch_s", "later_epochs"),
             ("train_nowarm_s", "train_nowarm"), ("peak_rss_mb", "peak_rss"),
             ("peak_gpu_mb", "peak_gpu")]
    present = [(col, key) for col, key in specs
               if col in data and pd.to_numeric(data[col], errors="coerce").notna().any()]
    if not present:
        return None
    columns = [(col, "median", partial(num, digits=_digits(col))) for col, _ in present]
    rows = _group_cells(data, columns, ordered(data["environment"]), ordered(data["dataset"]))
    head = [label("dataset", lang), label("environment", lang)] + \
        [label(k, lang) for _, k in present]
    return Table("tab:resources", label("resources_caption", lang),
                 _cols(head, "ll" + "r" * len(present),
                       {i: 12 for i in range(2, 2 + len(present))}), rows, keys=1)


def cost_table(frame: pd.DataFrame, lang: str = "en",
               sources: dict[str, str] | None = None) -> Table | None:
    """Per environment: price per hour, runs, billed time and training time per run, cost
    per run (medians) and in all; the prices' sources below. None when nothing has a cost.

    `frame` is every run (failed ones were billed too); the time per run is the median
    train_s of the ok ones, beside the cost per run so the two can be read together.
    """
    if "cost" not in frame or "environment" not in frame:
        return None
    cost = pd.to_numeric(frame["cost"], errors="coerce")
    if not cost.notna().any():
        return None
    billed = pd.to_numeric(frame.get("billed_s"), errors="coerce")
    train = pd.to_numeric(frame.get("train_s"), errors="coerce") \
        if "train_s" in frame else pd.Series(float("nan"), index=frame.index)
    ok = frame.index.isin(usable_runs(frame).index)
    currency = frame["currency"].astype("string").fillna("") if "currency" in frame \
        else pd.Series("", index=frame.index)
    rows = []
    for env in ordered(frame["environment"]):
        here = (frame["environment"].astype(str) == env) & cost.notna()
        if not here.any():
            continue
        unit = " " + str(currency[here].iloc[0])
        per_hour = (cost[here] / billed[here] * 3600).median()
        rows.append([text_cell(env), Cell(per_hour, "num", 2, suffix=unit),
                     int_cell(int(here.sum())), num(billed[here].median(), 1),
                     num(train[here & ok].median(), 2),
                     Cell(cost[here].median(), "num", 4, suffix=unit),
                     Cell(cost[here].sum(), "num", 2, suffix=unit)])
    head = [label(k, lang) for k in ("environment", "price_per_hour", "runs", "billed_per_run",
                                     "train_per_run", "cost_per_run", "cost_total")]
    notes = [label("cost_note", lang)]
    notes += [f"{env}: {src}" for env, src in (sources or {}).items() if src]
    return Table("tab:cost", label("cost_caption", lang),
                 _cols(head, "lrrrrrr", dict.fromkeys(range(7), 12)), rows, notes)


def runs_table(frame: pd.DataFrame, lang: str = "en") -> Table | None:
    """Runs per dataset and environment: ok, out of memory (a column only when some ran out:
    a result, shown as such), failed (any other status) and warm-up.

    `frame` is the whole runs table, failed and warm-up runs included.
    """
    if frame.empty or "environment" not in frame or "dataset" not in frame:
        return None
    status = frame["status"].fillna("ok").astype(str).str.strip() if "status" in frame \
        else pd.Series("ok", index=frame.index)
    counted = frame.index.isin(usable_runs(frame).index)
    oom = status == "oom"
    data = pd.DataFrame({"dataset": frame["dataset"].astype(str),
                         "environment": frame["environment"].astype(str),
                         "ok": counted, "oom": oom, "failed": (status != "ok") & ~oom,
                         "warmup": (status == "ok") & ~counted})
    kinds = ("ok", "oom", "failed", "warmup") if oom.any() else ("ok", "failed", "warmup")
    columns = [(k, "sum", lambda v: num(v, 0)) for k in kinds]
    rows = _group_cells(data, columns, ordered(data["environment"]), ordered(data["dataset"]))
    head = [label(k, lang) for k in ("dataset", "environment", *kinds)]
    return Table("tab:runs", label("runs_caption", lang), _cols(head, "ll" + "r" * len(kinds)),
                 rows, keys=1)


def environments_table(fingerprints: dict[str, dict[str, str]], lang: str = "en"
                       ) -> Table | None:
    """Hardware and software per environment: one column per environment, SPSS-free."""
    keys = _unique(k for fp in fingerprints.values() for k in fp)
    if not keys:
        return None
    envs = list(fingerprints)
    rows = [[text_cell(label(k, lang))] + [text_cell(fingerprints[e].get(k, "") or MISSING)
                                           for e in envs] for k in keys]
    return Table("tab:environments", label("environments_caption", lang),
                 [Column("", "l")] + [Column(e, "wrap") for e in envs], rows,
                 size="footnotesize")


def datasets_table(datasets: list[dict[str, str]], lang: str = "en") -> Table | None:
    """Name, source, images, resolution and the train/test split of each dataset."""
    keys = ("source_col", "images", "size", "n_train", "n_test")
    if not any(d.get(k) for d in datasets for k in keys):
        return None  # names alone: the text lists them
    rows = [[text_cell(d.get("name", ""))] + [text_cell(d.get(k, "") or MISSING) for k in keys]
            for d in datasets]
    head = [label("dataset", lang)] + [label(k, lang) for k in keys]
    return Table("tab:datasets", label("datasets_caption", lang), _cols(head, "llrrrr"), rows)


def phases_table(phases: list[tuple[str, list[tuple[int, str]]]], lang: str = "en"
                 ) -> Table | None:
    """A tagged notebook's phases in notebook order, each with its column and its cells
    (number and first line), so a reader sees what each time measured."""
    if not phases:
        return None
    rows = []
    for name, cells in phases:
        listed = "; ".join(f"{index}: {code(line)}" for index, line in cells)
        rows.append([text_cell(name), text_cell(code(name + "_s")), text_cell(listed)])
    head = [label(k, lang) for k in ("phase", "column", "cells")]
    return Table("tab:phases", label("phases_caption", lang),
                 [Column(head[0], "l"), Column(head[1], "l"),
                  Column(head[2], "wrap", width=0.6)], rows)


def calibration_table(calibration: dict[str, Any], lang: str = "en") -> Table | None:
    """The A/A calibration: per metric and dataset, the CV of each arm, the ratio of medians
    between identical arms with its interval (the noise floor) and the false-positive rate
    of the procedure against its nominal alpha (analysis.calibration's calibration.json,
    a file of its own, read as it is written: not the analysis JSON)."""
    entries = [e for e in calibration.get("entries") or [] if isinstance(e, dict)]
    if not entries:
        return None
    rows = []
    for e in entries:
        cv = e.get("cv") or {}
        fp = e.get("false_positive") or {}
        floor = e.get("noise_floor")
        low, high = fp.get("ci_low"), fp.get("ci_high")
        interval = not (is_missing(low) or is_missing(high))
        ratio = e.get("median_ratio")
        rows.append([text_cell(metric_name(str(e.get("metric", "")), lang, capital=True)),
                     text_cell(e.get("dataset", "")),
                     text_cell(f"{Cell(e.get('n_a'), 'int').text(lang)}/"
                               f"{Cell(e.get('n_b'), 'int').text(lang)}"),
                     *(num(v, 3) for v in list(cv.values())[:2]),
                     ratio_cell(MedianRatio.from_dict(ratio, "calibration median_ratio")
                                if ratio else MedianRatio()),
                     Cell(None if is_missing(floor) else 100 * float(floor), "percent", 1,
                          prefix="±"),
                     Cell(fp.get("rate"), "interval", 3, True,
                          low=low if interval else None, high=high if interval else None),
                     num(fp.get("nominal"), 2, True)])
    arms = list((entries[0].get("cv") or {}).keys())[:2] or ["A", "B"]
    head = [label("metric", lang), label("dataset", lang), label("n", lang)]
    head += [f"CV {a}" for a in arms]
    head += [label(k, lang) for k in ("speedup", "noise_floor", "false_positive")]
    head += ["α"]
    n = len(head)
    return Table("tab:calibration", label("calibration_caption", lang),
                 _cols(head, "ll" + "r" * (len(arms) + 5), {n - 4: 16, n - 3: 16, n - 2: 16}),
                 rows, keys=1, size="footnotesize")


# --------------------------------------------------------------------------- registered tables

#: The built-in protocol's phases, in the order it runs them (protocols/cnn_train.ipynb).
BUILTIN_PHASES = ("import", "load", "build", "train", "eval")


@report_table("phase_medians", "results", heading="phase_medians_heading")
def phase_medians_table(inputs: Inputs) -> Table | None:
    """The median seconds of each phase per dataset and environment: where a run's time
    goes, beside the tests of the totals. A tagged notebook's own phases (and its other
    cells), else the built-in protocol's; None with fewer than two phases timed."""
    frame, lang = inputs.usable, inputs.lang
    names = [*inputs.phases, "other"] if inputs.phases else list(BUILTIN_PHASES)
    columns = [f"{n}_s" for n in names if f"{n}_s" in frame
               and pd.to_numeric(frame[f"{n}_s"], errors="coerce").notna().any()]
    if len(columns) < 2 or frame.empty:
        return None
    rows = _group_cells(frame, [(c, "median", num) for c in columns],
                        ordered(frame["environment"]), ordered(frame["dataset"]))
    head = [label("dataset", lang), label("environment", lang)]
    head += [c.removesuffix("_s") for c in columns]
    return Table("tab:phase-medians", label("phase_medians_caption", lang),
                 _cols(head, "ll" + "r" * len(columns)), rows, keys=1)

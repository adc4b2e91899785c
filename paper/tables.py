"""Booktabs LaTeX tables from the analysis (analysis.results' typed results) and the runs frame.

The tables follow the layout of SPSS's output, which is what the reference paper shows
(Tables 2 to 4), so a reader can put the two side by side. Every name from the data is
escaped; every missing value prints as a dash, never as "nan", and a table with nothing
to show is the empty string, so the template can simply skip it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
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
from cloudbench.paper.latex import (
    MISSING,
    auto_digits,
    escape,
    fmt_df,
    fmt_int,
    fmt_num,
    fmt_p,
    is_missing,
    label,
    metric_name,
    number_format,
    where,
)

#: Longer tables (a sweep's cells) are set as longtables, which may break across pages.
LONG_TABLE_ROWS = 40


@dataclass
class Table:
    """A booktabs table: header lines and body rows already in LaTeX, plus notes below."""

    caption: str
    label: str
    align: str
    header: list[str]
    rows: list[list[str] | None] = field(default_factory=list)  # None: a small gap
    notes: list[str] = field(default_factory=list)
    size: str = "\\small"

    def render(self) -> str:
        """The table where it stands ([H], the float package's), so the paper's many tables
        never overflow LaTeX's queue of floats; a sweep's long tables break across pages."""
        body = []
        for row in self.rows:
            body.append("\\addlinespace" if row is None else " & ".join(row) + " \\\\")
        notes = "".join(f"\\par\\smallskip\\footnotesize {n}\n" for n in self.notes)
        if len(self.rows) > LONG_TABLE_ROWS:
            head = "\\toprule\n" + "\n".join(self.header) + "\n\\midrule\n"
            return (
                f"{{{self.size}\\setlength{{\\tabcolsep}}{{3pt}}\n"
                f"\\begin{{longtable}}{{{self.align}}}\n"
                f"\\caption{{{self.caption}}}\\label{{{self.label}}}\\\\\n"
                + head + "\\endfirsthead\n" + head + "\\endhead\n"
                "\\bottomrule\n\\endlastfoot\n"
                + "\n".join(body) + "\n\\end{longtable}}\n" + notes
            )
        return (
            "\\begin{table}[H]\n\\centering\n"
            f"\\caption{{{self.caption}}}\\label{{{self.label}}}\n{self.size}\n"
            # Shrunk to the text width only when wider (names can be long).
            "\\resizebox{\\ifdim\\width>\\linewidth\\linewidth\\else\\width\\fi}{!}{%\n"
            f"\\begin{{tabular}}{{{self.align}}}\n\\toprule\n"
            + "\n".join(self.header) + "\n\\midrule\n"
            + "\n".join(body) + "\n\\bottomrule\n\\end{tabular}}\n"
            + notes + "\\end{table}\n"
        )


def header_row(cells: Sequence[str]) -> str:
    return " & ".join(cells) + " \\\\"


def slug(*parts: Any) -> str:
    """A LaTeX label made only of safe characters, whatever the names hold."""
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


def pair_text(c: Comparison) -> str:
    return f"{escape(c.a)} vs {escape(c.b)}"


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


def _grouped(rows: list[tuple[str, list[str]]]) -> list[list[str] | None]:
    """SPSS's layout: the first cell shown once per group, a small gap between groups."""
    out: list[list[str] | None] = []
    previous = None
    for key, cells in rows:
        if previous is not None and key != previous:
            out.append(None)
        out.append([escape(key) if key != previous else ""] + cells)
        previous = key
    return out


# --------------------------------------------------------------------------- statistics tables


def descriptives_table(analysis: Analysis, metric: str, lang: str = "en") -> str:
    """n, mean, SD, median, quartiles, range and CV per dataset and environment."""
    found = groups(analysis, metric)
    if not found:
        return ""
    digits = auto_digits(c.descriptives[env].max for _, env, c in found)
    rows = []
    flagged = 0
    for ds, env, c in found:
        d = c.descriptives[env]
        n_out = outlier_count(c, env)
        flagged += n_out
        rows.append((ds, [escape(env), fmt_int(d.n)]
                     + [fmt_num(v, digits, lang) for v in
                        (d.mean, d.sd, d.median, d.q1, d.q3, d.min, d.max)]
                     + [fmt_num(d.cv, 3, lang), str(n_out) if n_out else ""]))
    head = [label(k, lang) for k in ("dataset", "environment", "n", "mean", "sd", "median",
                                     "q1", "q3", "min", "max", "cv", "outliers_col")]
    notes = [label("outlier_note", lang, n=flagged)] if flagged else []
    return Table(label("descriptives_caption", lang, metric=metric_name(metric, lang)),
                 slug("tab", "desc", metric), "ll" + "r" * 10, [header_row(head)],
                 _grouped(rows), notes, size="\\footnotesize").render()


def shapiro_table(analysis: Analysis, metric: str, lang: str = "en") -> str:
    """Statistic, df and Sig. per group, as the reference paper's Table 2."""
    found = groups(analysis, metric)
    if not found:
        return ""
    rows, missing = [], False
    for ds, env, c in found:
        w, p = c.shapiro[env].W, c.shapiro[env].p
        missing |= w is None
        rows.append((ds, [escape(env),
                          fmt_num(w, 3, lang, bounded=True) + ("$^a$" if w is None else ""),
                          fmt_int(c.descriptives[env].n), fmt_p(p, lang)]))
    notes = [f"$^a$ {label('not_computable', lang)}"] if missing else []
    head = [label(k, lang) for k in ("dataset", "environment", "statistic", "df", "sig")]
    return Table(label("shapiro_caption", lang, metric=metric_name(metric, lang)),
                 slug("tab", "shapiro", metric), "llrrr", [header_row(head)],
                 _grouped(rows), notes).render()


def _row_key(c: Comparison, pairs: bool) -> str:
    return f"{where(c)} ({c.a} vs {c.b})" if pairs else where(c)


def mann_whitney_table(analysis: Analysis, metric: str, lang: str = "en",
                       alternative: str = "two-sided") -> str:
    """U, Wilcoxon W, Z, asymptotic and exact Sig. and r, as the reference's Table 3."""
    found = comparisons(analysis, metric)
    if not found:
        return ""
    one = alternative != "two-sided"
    pairs = many_pairs(analysis)
    rows = []
    for c in found:
        m = c.mann_whitney
        rows.append([escape(_row_key(c, pairs)), fmt_num(m.U, 2, lang), fmt_num(m.W, 2, lang),
                     fmt_num(m.Z, 3, lang), fmt_p(m.p_asymptotic, lang),
                     fmt_p(m.p_exact, lang), fmt_num(m.r, 3, lang, bounded=True)])
    head = [label("dataset", lang), label("mann_whitney_u", lang), label("wilcoxon_w", lang),
            label("z", lang), label("p_asymptotic_one" if one else "p_asymptotic", lang),
            label("p_exact_one" if one else "p_exact", lang), label("r", lang)]
    head = [stacked(h) for h in head]
    return Table(label("mann_whitney_caption", lang, metric=metric_name(metric, lang)),
                 slug("tab", "mw", metric), "lrrrrrr", [header_row(head)], rows,
                 [label("grouping", lang)]).render()


def stacked(cell: str, width: int = 14) -> str:
    """A long header label broken over lines in a \\shortstack, to keep tables narrow."""
    lines: list[str] = []
    for word in cell.split(" "):
        if lines and len(lines[-1]) + len(word) + 1 <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    # "\\{}" rather than "\\": a line starting with "[" must not read as \\[length].
    return cell if len(lines) == 1 else "\\shortstack{" + "\\\\{}".join(lines) + "}"


def ranks_table(analysis: Analysis, metric: str, lang: str = "en") -> str:
    """N, mean rank and sum of ranks per group, as SPSS prints beside the test."""
    found = comparisons(analysis, metric)
    if not found:
        return ""
    pairs = many_pairs(analysis)
    rows = []
    for c in found:
        for env in (c.a, c.b):
            r = c.ranks[env]
            rows.append((_row_key(c, pairs), [escape(env), fmt_int(r.n),
                                              fmt_num(r.mean_rank, 2, lang),
                                              fmt_num(r.sum_ranks, 2, lang)]))
    head = [label(k, lang) for k in ("dataset", "environment", "n", "mean_rank", "sum_ranks")]
    return Table(label("ranks_caption", lang, metric=metric_name(metric, lang)),
                 slug("tab", "ranks", metric), "llrrr", [header_row(head)],
                 _grouped(rows)).render()


def t_test_table(analysis: Analysis, metric: str, lang: str = "en",
                 alternative: str = "two-sided") -> str:
    """Levene's F and Sig., then t, df, Sig., mean difference and its 95 % interval.

    One row with equal variances assumed (Student) and one without (Welch), as SPSS.
    The interval is the one the analysis computed (pooled or separate variances), two-sided
    whatever the hypothesis, as SPSS prints it.
    """
    found = comparisons(analysis, metric)
    if not found:
        return ""
    pairs = many_pairs(analysis)
    digits = auto_digits(c.descriptives[c.a].mean for c in found)
    rows = []
    for c in found:
        lev = c.levene
        for welch, t in ((False, c.student_t), (True, c.welch_t)):
            rows.append((_row_key(c, pairs), [
                label("unequal_var" if welch else "equal_var", lang),
                "" if welch else fmt_num(lev.F, 3, lang),
                "" if welch else fmt_p(lev.p, lang),
                fmt_num(t.t, 3, lang), fmt_df(t.df, lang), fmt_p(t.p, lang),
                fmt_num(t.mean_difference, digits, lang), fmt_num(t.ci_low, digits, lang),
                fmt_num(t.ci_high, digits, lang)]))
    p_label = label("p_one" if alternative != "two-sided" else "p_two", lang)
    head1 = ("& & \\multicolumn{2}{c}{Levene} & & & & & \\multicolumn{2}{c}{"
             + label("ci95", lang) + "} \\\\\n\\cmidrule(lr){3-4}\\cmidrule(lr){9-10}")
    head2 = header_row([label("dataset", lang), label("variances", lang), "F",
                        label("sig", lang), "t", label("df", lang), stacked(p_label, 10),
                        stacked(label("mean_difference", lang), 10), label("lower", lang),
                        label("upper", lang)])
    return Table(label("t_caption", lang, metric=metric_name(metric, lang)),
                 slug("tab", "t", metric), "ll" + "r" * 8, [head1, head2], _grouped(rows),
                 size="\\footnotesize").render()


def test_statistic(c: Comparison, lang: str = "en") -> str:
    """The statistic of the test used, as it is quoted in the text: "U = 265", "t(46) = 1.23"."""
    test = c.test
    if isinstance(test, MannWhitney):
        return "$U$ = " + fmt_num(test.U, 2 if _fractional(test.U) else 0, lang)
    if isinstance(test, BrunnerMunzel):
        return "$W$ = " + bm_statistic(test, lang)
    if test.t is None:
        return MISSING
    return f"$t$({fmt_df(test.df, lang)}) = {fmt_num(test.t, 2, lang)}"


def bm_statistic(test: BrunnerMunzel, lang: str = "en") -> str:
    """Brunner-Munzel's W, or plus or minus infinity for a complete separation."""
    if test.statistic is None:
        if test.estimate in (0.0, 1.0):
            return "$\\infty$" if test.estimate == 1.0 else "$-\\infty$"
        return MISSING
    return fmt_num(test.statistic, 2, lang)


def _fractional(x: float | None) -> bool:
    return x is not None and abs(x - round(x)) > 1e-9


def ratio_text(ratio: MedianRatio, lang: str = "en") -> str:
    """The ratio of medians a/b with its interval: "0.98 [0.95, 1.02]"."""
    if ratio.estimate is None:
        return MISSING
    sep = number_format("interval_separator", lang)
    text = fmt_num(ratio.estimate, 2, lang)
    if ratio.ci_low is not None and ratio.ci_high is not None:
        text += f" [{fmt_num(ratio.ci_low, 2, lang)}{sep}{fmt_num(ratio.ci_high, 2, lang)}]"
    return text


def decisions_table(analysis: Analysis, lang: str = "en", alpha: float = 0.05) -> str:
    """One line per metric, dataset and pair: the test used, its p, Holm's p, the decision."""
    found = comparisons(analysis)
    if not found:
        return ""
    pairs = many_pairs(analysis)
    rows = []
    for c in found:
        cells = [escape(where(c))]
        if pairs:
            cells.append(pair_text(c))
        cells += [test_statistic(c, lang), fmt_p(c.p, lang), fmt_p(c.p_holm, lang),
                  label("yes" if c.significant else "no", lang),
                  ratio_text(c.median_ratio, lang)]
        rows.append((metric_name(c.metric, lang, capital=True, latex=False), cells))
    head = [label("metric", lang), label("dataset", lang)]
    head += [label("pair", lang)] if pairs else []
    head += [label(k, lang) for k in ("statistic", "p", "p_holm", "significant")]
    head.append(stacked(label("speedup", lang), 20))
    align = "ll" + ("l" if pairs else "") + "lrrcr"
    note = "tests_note_robust" if analysis.procedure == "robust" else "tests_note"
    return Table(label("decisions_caption", lang, alpha=fmt_num(alpha, 2, lang, bounded=True)),
                 "tab:decisions", align, [header_row(head)], _grouped(rows),
                 [label(note, lang)], size="\\footnotesize").render()


def brunner_munzel_table(analysis: Analysis, metric: str, lang: str = "en") -> str:
    """The robust procedure's test per comparison: the relative effect, W, df, the t
    approximation's Sig. and the permutation test's, with how many relabellings."""
    found = [c for c in comparisons(analysis, metric) if c.brunner_munzel is not None]
    if not found:
        return ""
    pairs = many_pairs(analysis)
    rows = []
    for c in found:
        bm = c.brunner_munzel
        count = MISSING if bm.permutations is None else (
            label("all_relabellings", lang) + f" ({bm.permutations})" if bm.exact
            else str(bm.permutations))
        rows.append([escape(_row_key(c, pairs)), fmt_num(bm.estimate, 3, lang, bounded=True),
                     bm_statistic(bm, lang), fmt_df(bm.df, lang), fmt_p(bm.p, lang),
                     fmt_p(bm.p_permutation, lang), count])
    head = [label("dataset", lang), label("relative_effect", lang), label("bm_w", lang),
            label("df", lang), stacked(label("bm_p_t", lang), 10),
            stacked(label("bm_p_perm", lang), 10), label("relabellings", lang)]
    return Table(label("bm_caption", lang, metric=metric_name(metric, lang)),
                 slug("tab", "bm", metric), "lrrrrrr", [header_row(head)], rows,
                 [label("bm_note", lang)]).render()


def equivalence_word(c: Comparison, lang: str = "en") -> str:
    """The conclusion as a table cell: "a faster", "equivalent", "inconclusive: ..."."""
    return label(f"c_{c.equivalence.conclusion}", lang) if c.equivalence else MISSING


def equivalence_table(analysis: Analysis, lang: str = "en") -> str:
    """Per metric, dataset and pair: the ratio of geometric means a/b with its 90 % interval,
    the TOST's p and the four-way conclusion (only with an equivalence margin)."""
    found = [c for c in comparisons(analysis) if c.equivalence is not None]
    if not found:
        return ""
    pairs = many_pairs(analysis)
    sep = number_format("interval_separator", lang)
    rows = []
    for c in found:
        eq = c.equivalence
        ratio = fmt_num(eq.ratio, 3, lang)
        if eq.ci_low is not None and eq.ci_high is not None:
            ratio += f" [{fmt_num(eq.ci_low, 3, lang)}{sep}{fmt_num(eq.ci_high, 3, lang)}]"
        cells = [escape(where(c))] + ([pair_text(c)] if pairs else [])
        cells += [ratio, fmt_p(eq.p, lang), equivalence_word(c, lang)]
        rows.append((metric_name(c.metric, lang, capital=True, latex=False), cells))
    head = [label("metric", lang), label("dataset", lang)]
    head += [label("pair", lang)] if pairs else []
    head += [label("geo_ratio", lang), label("p_tost", lang), label("conclusion", lang)]
    margin = round(100 * found[0].equivalence.margin, 6)
    text = fmt_num(margin, 0 if margin.is_integer() else 1, lang)
    return Table(label("equivalence_caption", lang, margin=text + "\\,\\%"),
                 "tab:equivalence", "ll" + ("l" if pairs else "") + "rrl", [header_row(head)],
                 _grouped(rows), [label("equivalence_note", lang)],
                 size="\\footnotesize").render()


def kruskal_table(analysis: Analysis, lang: str = "en") -> str:
    """H, df and Sig. per metric and dataset when more than two environments were compared."""
    entries = analysis.kruskal_wallis or ()
    if not entries:
        return ""
    rows = []
    for e in entries:
        rows.append((metric_name(str(e.metric), lang, capital=True, latex=False),
                     [escape(where(e)), fmt_num(e.H, 3, lang), fmt_df(e.df, lang),
                      fmt_p(e.p, lang)]))
    head = [label(k, lang) for k in ("metric", "dataset", "h", "df", "sig")]
    return Table(label("kruskal_caption", lang), "tab:kruskal", "llrrr", [header_row(head)],
                 _grouped(rows)).render()


# --------------------------------------------------------------------------- runs tables


def ordered(values: Iterable[Any]) -> list[str]:
    """Names in the order they first appear, as the analysis orders its pairs."""
    return _unique(str(v) for v in values if not (isinstance(v, float) and math.isnan(v)))


def _group_cells(frame: pd.DataFrame, columns: list[tuple[str, str, int, bool]], lang: str,
                 envs: list[str], datasets: list[str]) -> list[list[str] | None]:
    """Rows of dataset x environment aggregates of the given (column, how, digits) specs."""
    rows = []
    grouped = {k: g for k, g in frame.groupby(["dataset", "environment"], sort=False)}
    for ds in datasets:
        for env in envs:
            g = grouped.get((ds, env))
            if g is None:
                continue
            cells = [escape(env)]
            for column, how, digits, bounded in columns:
                values = pd.to_numeric(g[column], errors="coerce").dropna() \
                    if column in g else pd.Series(dtype=float)
                value = getattr(values, how)() if len(values) else math.nan
                cells.append(fmt_num(value, digits, lang, bounded=bounded))
            rows.append((ds, cells))
    return _grouped(rows)


def quality_table(frame: pd.DataFrame, lang: str = "en") -> str:
    """Mean test loss and accuracy per dataset, environments side by side (Table 4)."""
    metrics = [m for m in ("test_loss", "test_accuracy") if m in frame]
    if not metrics or frame.empty:
        return ""
    envs, datasets = ordered(frame["environment"]), ordered(frame["dataset"])
    means = frame.assign(**{m: pd.to_numeric(frame[m], errors="coerce") for m in metrics}) \
        .groupby(["dataset", "environment"], sort=False)[metrics].mean()
    k = len(metrics)
    head1 = " & " + " & ".join(f"\\multicolumn{{{k}}}{{c}}{{{escape(e)}}}" for e in envs) \
        + " \\\\\n" + "".join(f"\\cmidrule(lr){{{2 + i * k}-{1 + (i + 1) * k}}}"
                              for i in range(len(envs)))
    head2 = header_row([label("dataset", lang)] + [label(m, lang) for m in metrics] * len(envs))
    rows: list[list[str] | None] = []
    for ds in datasets:
        cells = [escape(ds)]
        for env in envs:
            for m in metrics:
                value = means[m].get((ds, env), math.nan) if (ds, env) in means.index \
                    else math.nan
                cells.append(fmt_num(value, 2, lang))
        rows.append(cells)
    return Table(label("quality_caption", lang), "tab:quality", "l" + "r" * (k * len(envs)),
                 [head1, head2], rows, [label("source", lang)]).render()


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


def resources_table(frame: pd.DataFrame, lang: str = "en") -> str:
    """Medians of the first epoch, the later epochs, train without warm-up and peak memory."""
    if frame.empty:
        return ""
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
        return ""
    columns = [(col, "median", 0 if col.endswith("_mb") else 2, False) for col, _ in present]
    rows = _group_cells(data, columns, lang, ordered(data["environment"]),
                        ordered(data["dataset"]))
    head = [label("dataset", lang), label("environment", lang)] + \
        [stacked(label(k, lang), 12) for _, k in present]
    return Table(label("resources_caption", lang), "tab:resources", "ll" + "r" * len(present),
                 [header_row(head)], rows).render()


def cost_table(frame: pd.DataFrame, lang: str = "en",
               sources: dict[str, str] | None = None) -> str:
    """Per environment: price per hour, runs, billed time and training time per run, cost
    per run (medians) and in all; the prices' sources below. Empty when nothing has a cost.

    `frame` is every run (failed ones were billed too); the time per run is the median
    train_s of the ok ones, beside the cost per run so the two can be read together.
    """
    if "cost" not in frame or "environment" not in frame:
        return ""
    cost = pd.to_numeric(frame["cost"], errors="coerce")
    if not cost.notna().any():
        return ""
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
        unit = escape(str(currency[here].iloc[0]))
        per_hour = (cost[here] / billed[here] * 3600).median()
        rows.append([escape(env), f"{fmt_num(per_hour, 2, lang)} {unit}", fmt_int(int(here.sum())),
                     fmt_num(billed[here].median(), 1, lang),
                     fmt_num(train[here & ok].median(), 2, lang),
                     f"{fmt_num(cost[here].median(), 4, lang)} {unit}",
                     f"{fmt_num(cost[here].sum(), 2, lang)} {unit}"])
    head = [label(k, lang) for k in ("environment", "price_per_hour", "runs", "billed_per_run",
                                     "train_per_run", "cost_per_run", "cost_total")]
    notes = [label("cost_note", lang)]
    notes += [f"{escape(env)}: {escape(src)}" for env, src in (sources or {}).items() if src]
    return Table(label("cost_caption", lang), "tab:cost", "lrrrrrr",
                 [header_row([stacked(h, 12) for h in head])], rows, notes).render()


def runs_table(frame: pd.DataFrame, lang: str = "en") -> str:
    """Runs per dataset and environment: ok, out of memory (a column only when some ran out:
    a result, shown as such), failed (any other status) and warm-up.

    `frame` is the whole runs table, failed and warm-up runs included.
    """
    if frame.empty or "environment" not in frame or "dataset" not in frame:
        return ""
    status = frame["status"].fillna("ok").astype(str).str.strip() if "status" in frame \
        else pd.Series("ok", index=frame.index)
    counted = frame.index.isin(usable_runs(frame).index)
    oom = status == "oom"
    data = pd.DataFrame({"dataset": frame["dataset"].astype(str),
                         "environment": frame["environment"].astype(str),
                         "ok": counted, "oom": oom, "failed": (status != "ok") & ~oom,
                         "warmup": (status == "ok") & ~counted})
    kinds = ("ok", "oom", "failed", "warmup") if oom.any() else ("ok", "failed", "warmup")
    columns = [(k, "sum", 0, False) for k in kinds]
    rows = _group_cells(data, columns, lang, ordered(data["environment"]),
                        ordered(data["dataset"]))
    head = [label(k, lang) for k in ("dataset", "environment", *kinds)]
    return Table(label("runs_caption", lang), "tab:runs", "ll" + "r" * len(kinds),
                 [header_row(head)], rows).render()


def environments_table(fingerprints: dict[str, dict[str, str]], lang: str = "en") -> str:
    """Hardware and software per environment: one column per environment, SPSS-free."""
    keys = _unique(k for fp in fingerprints.values() for k in fp)
    if not keys:
        return ""
    envs = list(fingerprints)
    rows: list[list[str] | None] = [
        [label(k, lang)] + [escape(fingerprints[e].get(k, "")) or MISSING for e in envs]
        for k in keys]
    head = header_row([""] + [escape(e) for e in envs])
    width = max(2.0, 11.0 / max(len(envs), 1))
    align = "l" + f">{{\\raggedright\\arraybackslash}}p{{{width:.1f}cm}}" * len(envs)
    return Table(label("environments_caption", lang), "tab:environments", align, [head],
                 rows, size="\\footnotesize").render()


def datasets_table(datasets: list[dict[str, str]], lang: str = "en") -> str:
    """Name, source, images, resolution and the train/test split of each dataset."""
    keys = ("source_col", "images", "size", "n_train", "n_test")
    if not any(d.get(k) for d in datasets for k in keys):
        return ""  # names alone: the text lists them
    rows: list[list[str] | None] = [
        [escape(d.get("name", ""))] + [escape(d.get(k, "")) or MISSING for k in keys]
        for d in datasets]
    head = header_row([label("dataset", lang)] + [label(k, lang) for k in keys])
    return Table(label("datasets_caption", lang), "tab:datasets", "llrrrr", [head],
                 rows).render()


def phases_table(phases: list[tuple[str, list[tuple[int, str]]]], lang: str = "en") -> str:
    """A tagged notebook's phases in notebook order, each with its column and its cells
    (number and first line), so a reader sees what each time measured."""
    if not phases:
        return ""
    rows: list[list[str] | None] = []
    for name, cells in phases:
        listed = "; ".join(f"{index}: \\texttt{{{escape(line)}}}" for index, line in cells)
        rows.append([escape(name), f"\\texttt{{{escape(name + '_s')}}}", listed])
    head = header_row([label(k, lang) for k in ("phase", "column", "cells")])
    return Table(label("phases_caption", lang), "tab:phases", "llp{0.6\\linewidth}", [head],
                 rows).render()


def calibration_table(calibration: dict[str, Any], lang: str = "en") -> str:
    """The A/A calibration: per metric and dataset, the CV of each arm, the ratio of medians
    between identical arms with its interval (the noise floor) and the false-positive rate
    of the procedure against its nominal alpha (analysis.calibration's calibration.json,
    a file of its own, read as it is written: not the analysis JSON)."""
    entries = [e for e in calibration.get("entries") or [] if isinstance(e, dict)]
    if not entries:
        return ""
    rows = []
    for e in entries:
        cv = e.get("cv") or {}
        fp = e.get("false_positive") or {}
        floor = e.get("noise_floor")
        rate = fmt_num(fp.get("rate"), 3, lang, bounded=True)
        if not (is_missing(fp.get("ci_low")) or is_missing(fp.get("ci_high"))):
            sep = number_format("interval_separator", lang)
            rate += (f" [{fmt_num(fp['ci_low'], 3, lang, bounded=True)}{sep}"
                     f"{fmt_num(fp['ci_high'], 3, lang, bounded=True)}]")
        ratio = e.get("median_ratio")
        rows.append((metric_name(str(e.get("metric", "")), lang, capital=True, latex=False),
                     [escape(e.get("dataset", "")),
                      f"{fmt_int(e.get('n_a'))}/{fmt_int(e.get('n_b'))}",
                      *(fmt_num(v, 3, lang) for v in list(cv.values())[:2]),
                      ratio_text(MedianRatio.from_dict(ratio, "calibration median_ratio")
                                 if ratio else MedianRatio(), lang),
                      MISSING if is_missing(floor)
                      else "$\\pm$" + fmt_num(100 * float(floor), 1, lang) + "\\,\\%",
                      rate, fmt_num(fp.get("nominal"), 2, lang, bounded=True)]))
    arms = list((entries[0].get("cv") or {}).keys())[:2] or ["A", "B"]
    head = [label("metric", lang), label("dataset", lang), label("n", lang)]
    head += [f"CV {escape(a)}" for a in arms]
    head += [stacked(label(k, lang), 16) for k in ("speedup", "noise_floor", "false_positive")]
    head += ["$\\alpha$"]
    return Table(label("calibration_caption", lang), "tab:calibration",
                 "ll" + "r" * (len(arms) + 5), [header_row(head)], _grouped(rows),
                 size="\\footnotesize").render()


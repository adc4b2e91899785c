"""The report: LaTeX escaping and numbers, tables, figures, the paper's build and its cache.

The tables and sentences are tested on a real analysis (fixtures/analysis.py: analyze() on
a deterministic synthetic study), so they read exactly what analyze() produces.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import textwrap
import unicodedata
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from fixtures.analysis import fixture_analysis
from fixtures.synthetic import synthetic_runs

from cloudbench.analysis.results import Analysis, Comparison, KruskalWallis
from cloudbench.paper import tables as T
from cloudbench.paper.build import build_paper
from cloudbench.paper.cache import build_count, inputs_digest, study_name_from_csv
from cloudbench.paper.figures import make_figures
from cloudbench.paper.latex import escape, fmt_num, fmt_p, label, p_clause, render_table
from cloudbench.paper.latexmk import PaperError, run_latexmk
from cloudbench.paper.prose import conclusion
from cloudbench.study import sysdeps

HOSTILE = "a&b_%#$~^\\{}"
HOSTILE_DS = "d&s_%#$~^\\{}"


@pytest.fixture(scope="session")
def tex() -> None:
    """TeX Live and pdftotext, installed when missing (as root), else a clear failure."""
    sysdeps.ensure_commands(sysdeps.GROUPS["tex"])


needs_tex = pytest.mark.usefixtures("tex")


@pytest.fixture(scope="module")
def fixture() -> Analysis:
    """The real analysis of a deterministic study: pc vs colab on shapes and digits."""
    return fixture_analysis()


def entry(analysis: Analysis, metric: str, dataset: str) -> Comparison:
    return next(c for c in analysis.of_metric(metric) if c.dataset == dataset)


def latex_of(table: T.Table | None, lang: str = "en") -> str:
    """A table of the report model as the LaTeX renderer sets it ("" for no table)."""
    return render_table(table, lang)


def line_of(tex: str, start: str) -> str:
    return next(line for line in tex.splitlines() if line.startswith(start))


def pdf_text(pdf: Path) -> str:
    """The PDF's text as a reader would search it: ligatures expanded, the minus sign a
    hyphen, all whitespace single spaces."""
    out = subprocess.run(["pdftotext", "-layout", "-enc", "UTF-8", str(pdf), "-"],
                         capture_output=True, text=True, check=True).stdout
    out = unicodedata.normalize("NFKC", out).replace("\u2212", "-")
    return re.sub(r"\s+", " ", out)


def plain(latex: str) -> str:
    """What a LaTeX sentence of ours prints as (math dollars, thin spaces and escapes gone)."""
    for tex, txt in (("$-$", "-"), ("$<$\\,", "< "), ("\\,", " "), ("\\%", "%"), ("$", "")):
        latex = latex.replace(tex, txt)
    return re.sub(r"\s+", " ", latex)


# --------------------------------------------------------------------------- LaTeX text


def test_escape_prints_every_special_character_as_text() -> None:
    assert escape(HOSTILE) == (r"a\&b\_\%\#\$\textasciitilde{}\textasciicircum{}"
                               r"\textbackslash{}\{\}")
    assert escape("plain name-1.2") == "plain name-1.2"
    assert escape(None) == ""


def test_numbers_in_english_follow_apa() -> None:
    assert fmt_p(0.633) == ".633"
    assert fmt_p(0.0001) == "$<$\\,.001"
    assert fmt_p(None) == "---"
    assert fmt_num(-0.477, 3) == "$-$0.477"
    assert fmt_num(-0.0001, 2) == "0.00"  # no "-0.00"
    assert fmt_num(0.998, 3, bounded=True) == ".998"
    assert fmt_num(265, 2) == "265.00"
    assert fmt_num(float("nan")) == "---"
    assert p_clause(0.633) == "$p$ = .633"


def test_numbers_in_spanish_use_a_decimal_comma() -> None:
    assert fmt_p(0.633, "es") == ",633"
    assert fmt_p(0.0004, "es") == "$<$\\,,001"
    assert fmt_num(-0.477, 3, "es") == "$-$0,477"
    assert fmt_num(17.96, 2, "es") == "17,96"
    assert label("p_asymptotic", "es") == "Sig. asintótica (bilateral)"
    assert label("mann_whitney_u", "es") == "U de Mann-Whitney"
    assert label("wilcoxon_w", "es") == "W de Wilcoxon"
    assert label("p_exact", "es") == "Significación exacta [2*(sig. unilateral)]"
    assert label("mean_rank", "es") == "Rango promedio"


# --------------------------------------------------------------------------- tables


def test_the_fixture_holds_the_cases_the_tables_must_show(fixture: Analysis) -> None:
    """Guard: the tests below rely on these (a change of the generator would show here)."""
    shapes, digits = entry(fixture, "train_s", "shapes"), entry(fixture, "train_s", "digits")
    assert shapes.test_used == "mann_whitney" and shapes.p_method == "exact"
    assert not shapes.significant and shapes.outliers["pc"].flagged() == (5,)
    assert shapes.outliers["pc"].modified_z == shapes.outliers["pc"].tukey == (5,)
    assert digits.test_used == "student_t" and digits.significant
    small = entry(fixture, "test_accuracy", "shapes")
    assert small.n_a == small.n_b == 2 and small.shapiro["pc"].W is None


def test_mann_whitney_table_holds_the_spss_statistics(fixture: Analysis) -> None:
    mw = entry(fixture, "train_s", "shapes").mann_whitney
    tex = latex_of(T.mann_whitney_table(fixture, "train_s"))
    row = line_of(tex, "shapes")
    assert row == (f"shapes & {mw.U:.2f} & {mw.W:.2f} & $-${abs(mw.Z):.3f} & "
                   f"{fmt_p(mw.p_asymptotic)} & {fmt_p(mw.p_exact)} & "
                   f"{fmt_num(mw.r, 3, bounded=True)} \\\\")
    assert mw.p_exact is not None and fmt_p(mw.p_exact) != fmt_p(mw.p_asymptotic)
    assert "\\toprule" in tex and "Grouping variable" in tex
    es = latex_of(T.mann_whitney_table(fixture, "train_s", "es"), "es")
    assert line_of(es, "shapes") == row.replace(".", ",")  # every number: a decimal comma
    assert "U de" in es and "W de Wilcoxon" in es and "asintótica" in es
    assert "Variable de agrupación" in es


def test_shapiro_table_marks_groups_too_small_to_test(fixture: Analysis) -> None:
    sw = entry(fixture, "train_s", "shapes").shapiro["pc"]
    tex = latex_of(T.shapiro_table(fixture, "train_s", "es"), "es")
    assert (f"shapes & pc & {fmt_num(sw.W, 3, 'es', bounded=True)} & 12 & "
            f"{fmt_p(sw.p, 'es')} \\\\") in tex
    assert "$^a$" not in tex  # every group of train_s is large enough
    assert "Estadístico & gl & Sig." in tex
    small = latex_of(T.shapiro_table(fixture, "test_accuracy"))
    assert "shapes & pc & ---$^a$ & 2 & --- \\\\" in small
    assert " & colab & ---$^a$ & 2 & --- \\\\" in small and "fewer than 3" in small


def test_descriptives_ranks_and_outliers(fixture: Analysis) -> None:
    c = entry(fixture, "train_s", "shapes")
    d = c.descriptives["pc"]
    desc = latex_of(T.descriptives_table(fixture, "train_s"))
    assert (f"shapes & pc & 12 & {d.mean:.2f} & {d.sd:.2f} & {d.median:.2f} & {d.q1:.2f} & "
            f"{d.q3:.2f} & {d.min:.2f} & {d.max:.2f} & {fmt_num(d.cv, 3)} & 1 \\\\") in desc
    # the slow run is flagged by both rules and counted once, in its row and in the note
    assert "1 observation(s) flagged" in desc
    r = c.ranks["colab"]
    ranks = latex_of(T.ranks_table(fixture, "train_s", "es"), "es")
    assert (f" & colab & 12 & {fmt_num(r.mean_rank, 2, 'es')} & "
            f"{fmt_num(r.sum_ranks, 2, 'es')} \\\\") in ranks and "Suma de rangos" in ranks
    assert r.sum_ranks + c.ranks["pc"].sum_ranks == 24 * 25 / 2


def test_t_table_prints_the_analysis_t_tests_and_intervals(fixture: Analysis) -> None:
    """The rows are the StudentT and WelchT results (the table computes nothing); those
    intervals are SPSS's: mean difference -+ t quantile x standard error."""
    from scipy.stats import t as student

    c = entry(fixture, "train_s", "digits")
    da, db = c.descriptives["pc"], c.descriptives["colab"]
    pooled = ((da.n - 1) * da.sd**2 + (db.n - 1) * db.sd**2) / (da.n + db.n - 2)
    halves = {"student": student.ppf(0.975, da.n + db.n - 2)
              * math.sqrt(pooled * (1 / da.n + 1 / db.n)),
              "welch": student.ppf(0.975, c.welch_t.df)
              * math.sqrt(da.sd**2 / da.n + db.sd**2 / db.n)}
    for t, half in ((c.student_t, halves["student"]), (c.welch_t, halves["welch"])):
        assert t.mean_difference == pytest.approx(da.mean - db.mean, abs=1e-12)
        assert t.ci_low == pytest.approx(t.mean_difference - half, rel=1e-9)
        assert t.ci_high == pytest.approx(t.mean_difference + half, rel=1e-9)
    tex = latex_of(T.t_test_table(fixture, "train_s"))
    st, we, lev = c.student_t, c.welch_t, c.levene
    assert (f"digits & equal (Student) & {fmt_num(lev.F, 3)} & {fmt_p(lev.p)} & "
            f"{fmt_num(st.t, 3)} & 22 & {fmt_p(st.p)} & {fmt_num(st.mean_difference)} & "
            f"{fmt_num(st.ci_low)} & {fmt_num(st.ci_high)} \\\\") in tex
    assert (f" & unequal (Welch) &  &  & {fmt_num(we.t, 3)} & {fmt_num(we.df)} & "
            f"{fmt_p(we.p)} & {fmt_num(we.mean_difference)} & {fmt_num(we.ci_low)} & "
            f"{fmt_num(we.ci_high)} \\\\") in tex
    given = replace(c, student_t=replace(st, mean_difference=-0.5, ci_low=-1.5, ci_high=0.5))
    assert "$-$0.50 & $-$1.50 & 0.50" in latex_of(T.t_test_table(
        Analysis(comparisons=(given,)), "train_s"))


def test_decisions_table_and_conclusions(fixture: Analysis) -> None:
    first, second = entry(fixture, "train_s", "shapes"), entry(fixture, "train_s", "digits")
    mw, st, ratio = first.mann_whitney, second.student_t, first.median_ratio
    assert mw.U == round(mw.U)  # a whole U prints without decimals
    tex = latex_of(T.decisions_table(fixture))
    assert (f"shapes & $U$ = {mw.U:.0f} & {fmt_p(first.p)} & {fmt_p(first.p_holm)} & no & "
            f"{ratio.estimate:.2f} [{ratio.ci_low:.2f}, {ratio.ci_high:.2f}]") in tex
    assert (f"digits & $t$(22) = $-${abs(st.t):.2f} & $<$\\,.001 & $<$\\,.001 & yes & "
            f"{second.median_ratio.estimate:.2f} [") in tex
    z, p = f"{mw.Z:.2f}", fmt_p(first.p, latex=False)
    assert plain(escape(conclusion(first))) == (
        "There is no significant difference in training time between pc and colab on shapes "
        f"(U = {mw.U:.0f}, Z = {z}, p = {p}).")
    assert plain(escape(conclusion(first, "es"))) == (
        "No existe diferencia significativa en el tiempo de entrenamiento entre pc y colab "
        f"con el DataSet shapes (U = {mw.U:.0f}; Z = {z.replace('.', ',')}; "
        f"p = {p.replace('.', ',')}).")
    text = plain(escape(conclusion(second)))
    assert text.startswith(f"Training time on digits is significantly lower on pc than on "
                           f"colab (t(22) = -{abs(st.t):.2f}, p < .001); the median on pc is "
                           f"{second.median_ratio.estimate:.2f} times that on colab (95 % CI ")
    holm = plain(escape(conclusion(replace(first, p=0.03, p_holm=0.06))))
    assert holm.endswith(f"(U = {mw.U:.0f}, Z = {z}, p = .030, Holm-adjusted p = .060).")
    one_sided = plain(escape(conclusion(first, alternative="less")))
    assert one_sided.startswith("There is no significant evidence that training time on "
                                "shapes is lower on pc than on colab")


def test_hostile_names_are_escaped_in_every_table() -> None:
    hostile = fixture_analysis(environments=(HOSTILE, "colab"), datasets=(HOSTILE_DS, "digits"))
    assert hostile.environments == [HOSTILE, "colab"] and HOSTILE_DS in hostile.datasets
    with_envs = tuple(latex_of(t) for t in (T.descriptives_table(hostile, "train_s"),
                                             T.shapiro_table(hostile, "train_s"),
                                             T.ranks_table(hostile, "train_s")))
    for tex in (*with_envs, *(latex_of(t) for t in (T.decisions_table(hostile),
                                                    T.mann_whitney_table(hostile, "train_s"),
                                                    T.t_test_table(hostile, "train_s")))):
        assert escape(HOSTILE_DS) in tex
        assert "a&b" not in tex and "d&s" not in tex
    for tex in with_envs:
        assert escape(HOSTILE) in tex
    assert escape(HOSTILE) in escape(conclusion(hostile.comparisons[0]))


def test_kruskal_table_and_pairs_with_three_environments() -> None:
    three = fixture_analysis(environments=("pc", "colab", "lab"))
    tex = latex_of(T.kruskal_table(three))
    for k in three.kruskal_wallis:
        assert k.environments == ("pc", "colab", "lab") and k.df == 2
    k = three.kruskal_wallis[1]  # train_s on digits: lab is slowest
    assert (k.metric, k.dataset) == ("train_s", "digits") and k.p < 0.001
    assert f" & digits & {fmt_num(k.H, 3)} & 2 & $<$\\,.001 \\\\" in tex
    assert "Training time (s) & shapes & " in tex
    assert "shapes (pc vs colab) & " in latex_of(T.mann_whitney_table(three, "train_s"))
    assert "shapes (colab vs lab)" in latex_of(T.ranks_table(three, "train_s"))
    made = Analysis(kruskal_wallis=(KruskalWallis(metric="train_s", dataset="shapes",
                                                  environments=("a", "b", "c"), H=7.25, df=2,
                                                  p=0.0267),))
    assert r"Training time (s) & shapes & 7.250 & 2 & .027 \\" in latex_of(T.kruskal_table(made))
    # two environments: no Kruskal-Wallis
    assert latex_of(T.kruskal_table(fixture_analysis())) == ""
    assert latex_of(T.kruskal_table(Analysis())) == ""


def test_runs_quality_and_resources_tables(tmp_path: Path) -> None:
    csv = synthetic_runs(tmp_path / "runs.csv", repetitions=4)
    raw = pd.read_csv(csv)
    runs = latex_of(T.runs_table(raw))
    assert r"shapes & pc & 4 & 0 & 1 \\" in runs  # the warm-up run counted apart
    assert r" & colab & 4 & 1 & 1 \\" in runs  # the failed run (last row: colab, digits)
    usable = raw[raw["status"].eq("ok") & ~raw["warmup"]]
    assert "Test loss & Test accuracy & Test loss & Test accuracy" in \
        latex_of(T.quality_table(usable))
    res = latex_of(T.resources_table(usable))
    assert "First epoch" in res and "Peak RSS" in res and "Peak GPU" not in res
    assert latex_of(T.quality_table(usable.drop(columns=["test_loss", "test_accuracy"]))) == ""
    assert latex_of(T.resources_table(usable[["environment", "dataset", "train_s"]])) == ""


# --------------------------------------------------------------------------- figures


def test_figures_skip_what_the_columns_do_not_allow(tmp_path: Path) -> None:
    csv = synthetic_runs(tmp_path / "runs.csv", repetitions=4,
                         drop=["epoch_s", "test_accuracy", "test_loss"])
    made = make_figures(pd.read_csv(csv), tmp_path / "fig", ["train_s", "test_accuracy"])
    assert set(made) == {"train_total", "train_mean", "box_0"}
    assert all(p.read_bytes().startswith(b"%PDF") for p in made.values())
    bare = pd.DataFrame({"environment": ["x", "y"] * 3, "dataset": "d", "other": range(6)})
    assert make_figures(bare, tmp_path / "bare", ["other"]) == {"box_0": tmp_path / "bare" /
                                                                "box_0.pdf"}
    assert make_figures(bare[["environment", "dataset"]], tmp_path / "none", []) == {}


# --------------------------------------------------------------------------- the paper


@needs_tex
def test_paper_with_hostile_names_builds_once(tmp_path: Path) -> None:
    """Names print as given; the PDF holds the analysis JSON's U and p and the sentence;
    the second build with no change calls no latexmk."""
    csv = synthetic_runs(tmp_path / "results" / "hostile" / "runs.csv",
                         environments=(HOSTILE, "colab"), datasets=("shapes", HOSTILE_DS),
                         repetitions=8, study="hostile")
    out = tmp_path / "build"
    pdf = build_paper(csv, None, out)
    assert pdf == out / "hostile.pdf" and build_count(out, "hostile") == 1
    text = pdf_text(pdf)
    assert HOSTILE in text and HOSTILE_DS in text

    data = json.loads((csv.parent / "analysis.json").read_text(encoding="utf-8"))
    assert (data["format"], data["format_version"]) == ("cloudbench-analysis", 5)
    analysis = Analysis.from_dict(data)
    first = T.comparisons(analysis, "train_s")[0]
    mw = first.mann_whitney
    assert f"{mw.U:.2f} {mw.W:.2f} {mw.Z:.3f}" in text
    assert plain(fmt_p(mw.p_asymptotic)) in text
    # The sentence as it reads in the PDF: computed on stand-in names, then the real ones.
    stand_in = Comparison.from_dict(json.loads(
        json.dumps(first.to_dict()).replace(json.dumps(HOSTILE), '"ENVA"')))
    assert stand_in.a == "ENVA"
    assert plain(escape(conclusion(stand_in))).replace("ENVA", HOSTILE) in text

    mtime = pdf.stat().st_mtime_ns
    assert build_paper(csv, None, out) == pdf
    assert pdf.stat().st_mtime_ns == mtime and build_count(out, "hostile") == 1
    before = inputs_digest(csv, None)
    csv.write_text(csv.read_text(encoding="utf-8") + "\n", encoding="utf-8")
    assert inputs_digest(csv, None) != before  # a change in the data would rebuild


@needs_tex
def test_study_paper_command_in_spanish(tmp_path: Path, quick_study, monkeypatch) -> None:
    """`study paper SPEC`: runs from data/results/<name>/, Spanish labels, decimal comma."""
    from cloudbench.cli.main import main
    from cloudbench.cli.paper import paper_for

    monkeypatch.chdir(tmp_path)
    spec = quick_study(name="quick", environments="""
        [[environments]]
        name = "a"

        [[environments]]
        name = "b"

        [analysis]
        metrics = ["train_s"]
        language = "es"
    """)
    csv = synthetic_runs(tmp_path / "data" / "results" / "quick" / "runs.csv",
                         environments=("a", "b"), datasets=("shapes",), repetitions=6,
                         study="quick")
    (csv.parent / "manifest.json").write_text(json.dumps({
        "toolkit_version": "0.1.0", "git_commit": "0123456789abcdef", "git_dirty": False,
        "notebook": "quick.ipynb", "notebook_sha256": "ab" * 32, "parameters": {"epochs": 4},
        "study_sha256": "cd" * 32, "created_at": "2024-05-01T10:00:00Z",
        "stopping": {"rule": "ratio_ci_halfwidth", "metric": "train_s", "target_halfwidth": 0.05,
                     "repetitions": 6, "met": True, "halfwidths": {"shapes: a vs b": 0.041},
                     "reason": "within"}}), encoding="utf-8")
    (csv.parent / "calibration.json").write_text(json.dumps({
        "environment": "a", "alpha": 0.05, "alternative": "two-sided", "arms": ["a-A", "a-B"],
        "entries": [{"metric": "train_s", "dataset": "shapes", "n_a": 6, "n_b": 6,
                     "cv": {"A": 0.031, "B": 0.027},
                     "median_ratio": {"estimate": 1.004, "ci_low": 0.98, "ci_high": 1.03},
                     "noise_floor": 0.025, "test_used": "student_t", "p": 0.8,
                     "significant": False,
                     "false_positive": {"rate": 0.052, "ci_low": 0.038, "ci_high": 0.066,
                                        "splits": 1000, "nominal": 0.05}}]}), encoding="utf-8")
    assert main(["paper", str(spec)]) == 0
    pdf = tmp_path / "paper" / "build" / "quick.pdf"
    tex = (tmp_path / "paper" / "build" / "quick" / "quick.tex").read_text(encoding="utf-8")
    assert "spanish" in tex and "Metodología" in tex and "0123456789ab" in tex
    text = pdf_text(pdf)
    analysis = Analysis.from_dict(json.loads((csv.parent / "analysis.json")
                                             .read_text(encoding="utf-8")))
    first = analysis.comparisons[0]
    mw = first.mann_whitney
    assert (first.metric, first.dataset) == ("train_s", "shapes")
    # the Mann-Whitney table's row (shown whatever the test used), as the PDF prints it
    assert (f"shapes {fmt_num(mw.U, 2, 'es')} {fmt_num(mw.W, 2, 'es')} "
            f"{plain(fmt_num(mw.Z, 3, 'es'))} {plain(fmt_p(mw.p_asymptotic, 'es'))}") in text
    assert "asintótica" in text and "Hipótesis nula (H0)" in text
    assert "el estudio se detuvo tras 6 repeticiones: se alcanzó el objetivo" in text
    assert "Calibración A/A" in text and ",052 [,038; ,066]" in text
    assert plain(escape(conclusion(first, "es"))) in text
    assert build_count(Path("paper/build"), "quick") == 1
    assert paper_for(spec, None) == Path("paper/build/quick.pdf")  # no change: no rebuild
    assert build_count(Path("paper/build"), "quick") == 1


@needs_tex
def test_paper_from_timings_gathered_elsewhere(tmp_path: Path) -> None:
    """Only environment, dataset and one metric: no fingerprint, protocol or figure of
    epochs, and still a paper."""
    csv = tmp_path / "gathered" / "times.csv"
    csv.parent.mkdir()
    rows = [f"{env},x,{10 + 0.1 * i + (2 if env == 'server' else 0)}"
            for env in ("laptop", "server") for i in range(6)]
    csv.write_text("environment,dataset,seconds\n" + "\n".join(rows) + "\n", encoding="utf-8")
    pdf = build_paper(csv, None, tmp_path / "out")
    assert pdf.name == "gathered.pdf" and (csv.parent / "analysis.json").is_file()
    text = pdf_text(pdf)
    assert "gathered outside the toolkit" in text and "no fingerprint" in text
    assert "Seconds on x is significantly lower on laptop than on server" in text
    assert sorted(p.name for p in (tmp_path / "out" / "gathered" / "figures").iterdir()) == \
        ["box_0.pdf"]


@needs_tex
def test_latex_errors_quote_the_log(tmp_path: Path) -> None:
    (tmp_path / "bad.tex").write_text(textwrap.dedent(r"""
        \documentclass{article}
        \begin{document}
        \undefinedmacro
        \end{document}
    """), encoding="utf-8")
    with pytest.raises(PaperError, match=r"(?s)latexmk failed.*Undefined control sequence"):
        run_latexmk(tmp_path, "bad.tex", timeout=60)


def test_paper_needs_runs(tmp_path: Path) -> None:
    with pytest.raises(PaperError, match="no runs table"):
        build_paper(tmp_path / "missing.csv")
    csv = tmp_path / "elsewhere" / "runs.csv"
    csv.parent.mkdir()
    csv.write_text("environment,dataset,t\npc,x,1\n", encoding="utf-8")
    assert study_name_from_csv(csv) == "elsewhere"


# --------------------------------------------------------------------------- system packages


def test_ensure_commands_names_the_packages_without_root(monkeypatch) -> None:
    assert sysdeps.ensure_commands({"sh": ["dash"]}) == []
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(sysdeps.MissingCommandError,
                       match=r"apt-get install --no-install-recommends pkg-one pkg-two"):
        sysdeps.ensure_commands({"no-such-command-xyz": ["pkg-one", "pkg-two"]})
    assert "latexmk" in sysdeps.TEX_PACKAGES and sysdeps.R_PACKAGES == ("r-base-core",)


def test_ensure_commands_installs_as_root(monkeypatch) -> None:
    """apt-get install; when it fails, apt-get update and one more try."""
    calls: list[list[str]] = []
    installed = []

    def fake_apt(args: list[str]) -> subprocess.CompletedProcess[str]:
        calls.append(args)
        ok = args[0] == "update" or len(calls) > 1
        if ok and args[0] == "install":
            installed.append(True)
        return subprocess.CompletedProcess(args, 0 if ok else 100, "", "E: no such package")

    monkeypatch.setattr(sysdeps, "_can_install", lambda: True)
    monkeypatch.setattr(sysdeps, "_apt", fake_apt)
    monkeypatch.setattr(sysdeps, "missing", lambda cmds: [] if installed else list(cmds))
    assert sysdeps.ensure_commands({"x": ["pkg"]}) == ["pkg"]
    install = ["install", "-y", "--no-install-recommends", "pkg"]
    assert calls == [install, ["update"], install]


@needs_tex
def test_a_sweep_paper_shows_ratios_per_level_and_oom(tmp_path: Path) -> None:
    """Two backends x batch size x model, jax out of memory at the largest batch of the
    lstm: speed-up and memory-ratio figures per parameter, per-level tables with OOM, the
    interaction test, and runs.csv's OOM runs counted as such."""
    import numpy as np

    rng = np.random.default_rng(5)
    rows = []
    for model in ("fnn", "lstm"):
        for batch in (32, 64, 128):
            for env, speed in (("tensorflow", 1.0), ("jax", 0.8 * batch / 32)):
                for rep in range(1, 7):
                    oom = env == "jax" and model == "lstm" and batch == 128
                    config = f"batch_size={batch},model={model}"
                    rows.append({
                        "run_id": f"{env}+shapes+{config}+r{rep:03d}", "study": "sweepy",
                        "environment": env, "dataset": "shapes", "block": rep,
                        "repetition": rep, "status": "oom" if oom else "ok",
                        "train_s": None if oom else 10 / speed * rng.lognormal(0, 0.03),
                        "peak_rss_mb": 900.0 if oom else 400 + batch + rng.normal(0, 5),
                        "configuration": config, "batch_size": batch, "model": model})
    csv = tmp_path / "sweepy" / "runs.csv"
    csv.parent.mkdir()
    pd.DataFrame(rows).to_csv(csv, index=False)
    pdf = build_paper(csv, None, tmp_path / "out")
    folder = tmp_path / "out" / "sweepy"
    figures = sorted(p.name for p in (folder / "figures").iterdir())
    assert figures == ["memory_ratio_0.pdf", "memory_ratio_1.pdf", "speedup_0.pdf",
                       "speedup_1.pdf"]
    factors = json.loads((folder / "factors.json").read_text())
    assert factors["parameters"] == ["batch_size", "model"]
    text = pdf_text(pdf)
    assert "Along the sweep" in text and "6 run(s) ran out of memory" in text
    assert "OOM" in text and "Time ratio a/b against batch_size" in text
    assert "interaction" in text.lower()
    assert "shapes, batch_size=128, model=lstm" in text  # a per-level row
    analysis = json.loads((csv.parent / "analysis.json").read_text())
    assert {c.get("configuration") for c in analysis["comparisons"]} == {
        f"batch_size={b},model={m}" for b in (32, 64, 128) for m in ("fnn", "lstm")}

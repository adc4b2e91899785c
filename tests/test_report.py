"""The report: LaTeX escaping and numbers, tables, figures, the paper's build and its cache."""

from __future__ import annotations

import json
import os
import re
import subprocess
import textwrap
import unicodedata
from pathlib import Path

import pandas as pd
import pytest
from fixtures.synthetic import synthetic_runs

from paper import tables as T
from paper.build import build_paper
from paper.cache import build_count, inputs_digest, study_name_from_csv
from paper.figures import make_figures
from paper.latex import escape, fmt_num, fmt_p, label, p_clause
from paper.latexmk import PaperError, run_latexmk
from paper.prose import conclusion
from study import sysdeps

FIXTURE = Path(__file__).parent / "fixtures" / "analysis_fixture.json"
HOSTILE = "a&b_%#$~^\\{}"
HOSTILE_DS = "d&s_%#$~^\\{}"


@pytest.fixture(scope="session")
def tex() -> None:
    """TeX Live and pdftotext, installed when missing (as root), else a clear failure."""
    sysdeps.ensure_commands(sysdeps.GROUPS["tex"])


needs_tex = pytest.mark.usefixtures("tex")


@pytest.fixture(scope="module")
def fixture() -> dict:
    return json.loads(FIXTURE.read_text(encoding="utf-8"))


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


def test_mann_whitney_table_holds_the_spss_statistics(fixture: dict) -> None:
    tex = T.mann_whitney_table(fixture, "train_s")
    row = next(line for line in tex.splitlines() if line.startswith("shapes"))
    assert row == r"shapes & 265.00 & 565.00 & $-$0.477 & .633 & .641 & .069 \\"
    assert "\\toprule" in tex and "Grouping variable" in tex
    es = T.mann_whitney_table(fixture, "train_s", "es")
    assert r"shapes & 265,00 & 565,00 & $-$0,477 & ,633 & ,641 & ,069 \\" in es
    assert "U de" in es and "W de Wilcoxon" in es and "asintótica" in es
    assert "Variable de agrupación" in es


def test_shapiro_table_marks_groups_too_small_to_test(fixture: dict) -> None:
    tex = T.shapiro_table(fixture, "train_s", "es")
    assert r"shapes & pc & ,871 & 24 & ,005 \\" in tex
    assert "Estadístico & gl & Sig." in tex
    small = T.shapiro_table(fixture, "test_accuracy")
    assert "---$^a$ & 2 & ---" in small and "fewer than 3" in small


def test_descriptives_ranks_and_outliers(fixture: dict) -> None:
    desc = T.descriptives_table(fixture, "train_s")
    assert r"shapes & pc & 24 & 17.58 & 1.21 & 17.40" in desc
    assert "1 observation(s) flagged" in desc  # one run flagged by both rules counts once
    ranks = T.ranks_table(fixture, "train_s", "es")
    assert r" & colab & 24 & 25,46 & 611,00 \\" in ranks and "Suma de rangos" in ranks


def test_t_table_computes_the_interval_when_the_json_lacks_it(fixture: dict) -> None:
    tex = T.t_test_table(fixture, "train_s")
    # Student: diff -0.38, pooled SE 0.3823, t(46) 97.5 % quantile 2.0129.
    assert "equal (Student) & 0.812 & .372 & $-$0.994 & 46 & .325 & $-$0.38 & " \
           "$-$1.15 & 0.39" in tex
    given = {**fixture["comparisons"][0]}
    given["student_t"] = {**given["student_t"], "mean_difference": -0.5, "ci_low": -1.5,
                          "ci_high": 0.5}
    assert "$-$0.50 & $-$1.50 & 0.50" in T.t_test_table({"comparisons": [given]}, "train_s")


def test_decisions_table_and_conclusions(fixture: dict) -> None:
    tex = T.decisions_table(fixture)
    assert r"shapes & $U$ = 265 & .633 & .633 & no & 0.98 [0.95, 1.02]" in tex
    assert "digits & $t$(46) = 16.19 & $<$\\,.001 & $<$\\,.001 & yes" in tex
    first, second = fixture["comparisons"][:2]
    assert plain(conclusion(first)) == ("There is no significant difference in training time "
                                        "between pc and colab on shapes "
                                        "(U = 265, Z = -0.48, p = .633).")
    assert plain(conclusion(first, "es")) == (
        "No existe diferencia significativa en el tiempo de entrenamiento entre pc y colab "
        "con el DataSet shapes (U = 265; Z = -0,48; p = ,633).")
    text = plain(conclusion(second))
    assert text.startswith("Training time on digits is significantly higher on pc than on "
                           "colab (t(46) = 16.19, p < .001); the median on pc is 1.42 times")
    holm = plain(conclusion({**first, "p": 0.03, "p_holm": 0.06}))
    assert holm.endswith("(U = 265, Z = -0.48, p = .030, Holm-adjusted p = .060).")
    one_sided = plain(conclusion(first, alternative="less"))
    assert one_sided.startswith("There is no significant evidence that training time on "
                                "shapes is lower on pc than on colab")


def test_hostile_names_are_escaped_in_every_table(fixture: dict) -> None:
    text = json.dumps(fixture).replace('"pc"', json.dumps(HOSTILE)) \
        .replace('"shapes"', json.dumps(HOSTILE_DS))
    hostile = json.loads(text)
    for tex in (T.descriptives_table(hostile, "train_s"), T.decisions_table(hostile),
                T.mann_whitney_table(hostile, "train_s"), T.t_test_table(hostile, "train_s")):
        assert escape(HOSTILE_DS) in tex
        assert "a&b" not in tex and "d&s" not in tex


def test_runs_quality_and_resources_tables(tmp_path: Path) -> None:
    csv = synthetic_runs(tmp_path / "runs.csv", repetitions=4)
    raw = pd.read_csv(csv)
    runs = T.runs_table(raw)
    assert r"shapes & pc & 4 & 0 & 1 \\" in runs  # the warm-up run counted apart
    assert r" & colab & 4 & 1 & 1 \\" in runs  # the failed run (last row: colab, digits)
    usable = raw[raw["status"].eq("ok") & ~raw["warmup"]]
    assert "Test loss & Test accuracy & Test loss & Test accuracy" in T.quality_table(usable)
    res = T.resources_table(usable)
    assert "First epoch" in res and "Peak RSS" in res and "Peak GPU" not in res
    assert T.quality_table(usable.drop(columns=["test_loss", "test_accuracy"])) == ""
    assert T.resources_table(usable[["environment", "dataset", "train_s"]]) == ""


def test_kruskal_table_accepts_the_list_form() -> None:
    tex = T.kruskal_table({"kruskal_wallis": [
        {"metric": "train_s", "dataset": "shapes", "environments": ["a", "b", "c"],
         "H": 7.25, "df": 2, "p": 0.0267}]})
    assert r"Training time (s) & shapes & 7.250 & 2 & .027 \\" in tex
    assert T.kruskal_table({"comparisons": []}) == ""


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

    analysis = json.loads((csv.parent / "analysis.json").read_text(encoding="utf-8"))
    first = T.comparisons(analysis, "train_s")[0]
    mw = first["mann_whitney"]
    assert f"{mw['U']:.2f} {mw['W']:.2f} {mw['Z']:.3f}" in text
    assert plain(fmt_p(mw["p_asymptotic"])) in text
    # The sentence as it reads in the PDF: computed on stand-in names, then the real ones.
    stand_in = json.loads(json.dumps(first).replace(json.dumps(HOSTILE), '"ENVA"'))
    assert plain(conclusion(stand_in)).replace("ENVA", HOSTILE) in text

    mtime = pdf.stat().st_mtime_ns
    assert build_paper(csv, None, out) == pdf
    assert pdf.stat().st_mtime_ns == mtime and build_count(out, "hostile") == 1
    before = inputs_digest(csv, None)
    csv.write_text(csv.read_text(encoding="utf-8") + "\n", encoding="utf-8")
    assert inputs_digest(csv, None) != before  # a change in the data would rebuild


@needs_tex
def test_study_paper_command_in_spanish(tmp_path: Path, quick_study, monkeypatch) -> None:
    """`study paper SPEC`: runs from data/results/<name>/, Spanish labels, decimal comma."""
    from cli.main import main
    from cli.paper import paper_for

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
    analysis = json.loads((csv.parent / "analysis.json").read_text(encoding="utf-8"))
    mw = analysis["comparisons"][0]["mann_whitney"]
    assert fmt_num(mw["U"], 2, "es") in text and plain(fmt_p(mw["p_asymptotic"], "es")) in text
    assert "asintótica" in text and "Hipótesis nula (H0)" in text
    assert "el estudio se detuvo tras 6 repeticiones: se alcanzó el objetivo" in text
    assert "Calibración A/A" in text and ",052 [,038; ,066]" in text
    assert plain(conclusion(analysis["comparisons"][0], "es")) in text
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

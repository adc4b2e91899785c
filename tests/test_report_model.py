"""The report model (issue 28): one builder, two renderings. The PDF built from the model
prints what the LaTeX-only paper printed; paper/ holds LaTeX only in its LaTeX renderer;
the language files hold words only.
"""

from __future__ import annotations

import re
import subprocess
import unicodedata
from pathlib import Path

import pytest
from fixtures.report_cases import CASES, build_case
from test_report import tex  # noqa: F401  (the TeX Live fixture)

ROOT = Path(__file__).resolve().parent.parent
PAPER = ROOT / "paper"
REFERENCE = Path(__file__).resolve().parent / "fixtures" / "reference"
#: The LaTeX renderer: the only modules of paper/ that may write LaTeX.
LATEX_RENDERER = {"latex.py", "latexmk.py"}
#: Tables registered (paper.tables.report_table) after the reference texts were taken:
#: left out of the comparison with them.
ADDED_SINCE_REFERENCE = {"phase_medians", "verdicts"}


def words(text: str) -> list[str]:
    """A paper's text as a reader sees it, word by word: ligatures expanded, the minus a
    hyphen, words broken at a line's end joined, and the space around < and > (LaTeX's
    math spacing, not a character) dropped."""
    text = unicodedata.normalize("NFKC", text).replace("\u2212", "-")
    text = re.sub(r"-\n(?=[a-záéíóúñ])", "", text)
    text = re.sub(r"\s+", " ", text)
    # The study file's short hash: the file names the notebook by the checkout's path.
    text = re.sub(r"\b[0-9a-f]{12}\b", "<hash>", text)
    return re.sub(r" ?([<>]) ?", r"\1", text).strip().split(" ")


def pdf_words(pdf: Path) -> list[str]:
    return words(subprocess.run(["pdftotext", "-enc", "UTF-8", str(pdf), "-"],
                                capture_output=True, text=True, check=True).stdout)


@pytest.mark.usefixtures("tex")
@pytest.mark.parametrize("case", CASES)
def test_the_pdf_prints_what_the_latex_only_paper_printed(case: str, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    """Today's demo-like paper (and a Spanish one with cost, calibration and stopping, and a
    sweep's), built from the report model, has the reference's text word for word (less
    the tables added since)."""
    import difflib

    from cloudbench.paper import tables as T

    monkeypatch.setattr(T, "REPORT_PARTS", [t for t in T.REPORT_PARTS
                                             if t.name not in ADDED_SINCE_REFERENCE])
    pdf = build_case(case, tmp_path / "in", tmp_path / "build")
    expected = words((REFERENCE / f"{case}.txt").read_text(encoding="utf-8"))
    got = pdf_words(pdf)
    diff = list(difflib.unified_diff(expected, got, lineterm="", n=4))
    assert got == expected, "\n".join(diff[:60])


def _code_lines(path: Path) -> list[tuple[int, str]]:
    """A module's lines outside comments (docstrings may quote LaTeX to explain it)."""
    return [(i, line) for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
            if not line.lstrip().startswith("#")]


#: LaTeX in Python source: a command ("\\texttt", "\\ref"), math dollars around a letter.
_LATEX_IN_PY = re.compile(r"\\\\(?:[a-zA-Z]+|[,%&_#$])|\$[\\a-zA-Z<>-]+\$")


def test_paper_holds_no_latex_outside_the_latex_renderer() -> None:
    offenders = []
    for path in sorted(PAPER.glob("*.py")):
        if path.name in LATEX_RENDERER:
            continue
        source = path.read_text(encoding="utf-8")
        # docstrings may name LaTeX; the code may not
        code = re.sub(r'"""(?:.|\n)*?"""', "", source)
        offenders += [f"{path.name}: {m.group(0)}" for m in _LATEX_IN_PY.finditer(code)]
    templates = {p.name for p in (PAPER / "templates").iterdir()}
    assert all(n.endswith((".tex.j2", ".html.j2")) for n in templates), templates
    assert offenders == []


@pytest.mark.parametrize("lang", ["en", "es"])
def test_the_language_files_hold_words_only(lang: str) -> None:
    """No LaTeX (a backslash command, math dollars, "~") and no HTML tag: a renderer
    sets {var:..}, {code:..} and {ref:..} its own way."""
    text = (PAPER / "lang" / f"{lang}.toml").read_text(encoding="utf-8")
    values = "\n".join(line.split("=", 1)[1] for line in text.splitlines()
                       if "=" in line and not line.lstrip().startswith("#"))
    values += "\n".join(re.findall(r'"""(.*?)"""', text, re.S))
    assert re.findall(r"\\\\[a-zA-Z,%]|\$|~|</?[a-z]+>", values) == []


def test_one_body_template_per_format() -> None:
    names = sorted(p.name for p in (PAPER / "templates").iterdir())
    assert not [n for n in names if re.search(r"_(en|es)\.", n)], names
    assert "body.tex.j2" in names


def test_phase_medians_are_the_medians_of_the_runs(tmp_path: Path) -> None:
    """The registered per-phase table: the built-in protocol's phases, or a tagged
    notebook's own; the median of each per dataset and environment; none with one phase."""
    import pandas as pd
    from fixtures.synthetic import synthetic_runs

    from cloudbench.analysis.results import Analysis
    from cloudbench.paper import tables as T

    raw = pd.read_csv(synthetic_runs(tmp_path / "runs.csv", repetitions=4))
    usable = raw[raw["status"].eq("ok") & ~raw["warmup"]]
    table = T.phase_medians_table(T.Inputs(raw, usable, Analysis(), None, None, "es"))
    assert table is not None and table.id == "tab:phase-medians"
    assert [c.label for c in table.columns] == ["DataSet", "Entorno", "import", "load", "build",
                                                "train", "eval"]
    assert table.caption.startswith("Mediana del tiempo de cada fase")
    colab = usable[(usable["dataset"] == "digits") & (usable["environment"] == "colab")]
    row = next(r for r in table.rows if [c.value for c in r[:2]] == ["digits", "colab"])
    assert row[5].value == pytest.approx(colab["train_s"].median())
    assert row[5].text("es") == f"{colab['train_s'].median():.2f}".replace(".", ",")
    tagged = usable.assign(prepare_s=1.0, fit_s=usable["train_s"], other_s=0.5)
    table = T.phase_medians_table(T.Inputs(raw, tagged, Analysis(), None, ["prepare", "fit"],
                                           "en"))
    assert [c.label for c in table.columns][2:] == ["prepare", "fit", "other"]
    assert T.phase_medians_table(T.Inputs(raw, usable[["environment", "dataset", "train_s"]],
                                          Analysis(), None, None, "en")) is None
    assert "phase_medians" in {t.name for t in T.REPORT_PARTS}


@pytest.mark.usefixtures("tex")
def test_a_registered_part_shows_in_both_formats(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A new section (as a time-of-day one will be): one registered function with a
    heading, a sentence with its number, a figure of a kind both renderers draw and a
    table; the PDF and the page show it, nothing else changes."""
    from fixtures.report_cases import case_inputs

    from cloudbench.paper import tables as T
    from cloudbench.paper.build import build_paper
    from cloudbench.paper.figures import figure_specs
    from cloudbench.paper.model import Part, Statement
    from cloudbench.study.spec import load_study

    monkeypatch.setattr(T, "REPORT_PARTS", list(T.REPORT_PARTS))

    @T.report_part("late_runs", "results")
    def late_runs(inputs: T.Inputs) -> Part | None:
        late = inputs.usable[inputs.usable["block"] >= 5]
        figure = figure_specs(late, ["train_s"], inputs.lang)["box_0"]
        return Part("Late blocks", [Statement(f"{len(late)} runs ran in block 5 or later.",
                                              {"runs": len(late)})],
                    [T.runs_table(late, inputs.lang)], [figure])

    csv, spec = case_inputs("demo", tmp_path / "in")
    pdf = build_paper(csv, load_study(spec, check_data=False), tmp_path / "out",
                      formats=("pdf", "html"))
    text = " ".join(pdf_words(pdf))
    # blocks 5 to 10 of two environments (block 0 is the warm-up)
    assert "Late blocks" in text and "12 runs ran in block 5 or later." in text
    page = pdf.with_suffix(".html").read_text(encoding="utf-8")
    assert "<h3>Late blocks</h3>" in page and "12 runs ran in block 5 or later." in page
    assert page.count('data-kind="figure"') == page.count('class="figure-plot"') - 1


@pytest.mark.usefixtures("tex")
def test_study_paper_format_option_and_the_cache(tmp_path: Path, quick_study,
                                                 monkeypatch: pytest.MonkeyPatch, capsys
                                                 ) -> None:
    """`study paper SPEC --format html` writes the page alone (no TeX run); `--format both`
    then adds the PDF; a third call finds both up to date and builds nothing."""
    from fixtures.synthetic import synthetic_runs

    from cloudbench.cli.main import main
    from cloudbench.paper.cache import build_count

    monkeypatch.chdir(tmp_path)
    spec = quick_study(name="fmt", environments="""
        [[environments]]
        name = "a"

        [[environments]]
        name = "b"

        [analysis]
        metrics = ["train_s"]
    """)
    synthetic_runs(tmp_path / "data" / "results" / "fmt" / "runs.csv", environments=("a", "b"),
                   datasets=("shapes",), repetitions=6, study="fmt")
    build = Path("paper/build")
    assert main(["paper", str(spec), "--format", "html"]) == 0
    assert capsys.readouterr().out.split() == ["paper/build/fmt.html"]
    assert (build / "fmt.html").is_file() and not (build / "fmt.pdf").exists()
    assert not (build / "fmt" / "fmt.tex").exists()  # no LaTeX for the page
    assert main(["paper", str(spec), "--format", "both"]) == 0
    assert capsys.readouterr().out.split() == ["paper/build/fmt.pdf", "paper/build/fmt.html"]
    assert (build / "fmt.pdf").is_file() and build_count(build, "fmt") == 2
    assert main(["paper", str(spec), "--format", "both"]) == 0
    assert build_count(build, "fmt") == 2  # nothing changed: nothing rebuilt
    assert main(["paper", str(spec)]) == 0 and build_count(build, "fmt") == 2


def test_every_figure_kind_is_drawn_for_the_page(tmp_path: Path) -> None:
    """Box, bars, epochs, scatter and a tagged notebook's phases: plotly JSON with traces
    whose run points carry their run's id, environment and block."""
    import json

    import pandas as pd
    from fixtures.synthetic import synthetic_runs

    from cloudbench.paper.figures import figure_specs
    from cloudbench.paper.plots import plot

    raw = pd.read_csv(synthetic_runs(tmp_path / "runs.csv", repetitions=4))
    usable = raw[raw["status"].eq("ok") & ~raw["warmup"]].assign(prepare_s=1.0, fit_s=2.0)
    specs = figure_specs(usable, ["train_s"], "es", phases=["prepare", "fit"])
    assert {f.kind for f in specs.values()} == {"box", "bars", "epochs", "scatter", "phases"}
    for figure in specs.values():
        drawn = plot(figure, "es")
        json.dumps(drawn, allow_nan=False)  # embeddable as it is
        assert drawn["data"], figure.kind
    box = plot(specs["box_0"], "es")["data"][0]
    assert box["customdata"][0][0].startswith("pc-") and "Entorno" in box["hovertemplate"]

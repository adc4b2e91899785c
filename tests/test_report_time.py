"""The report's section across time (issue 27, item 5; paper/timeofday.py).

A study over 72 h with a 3 % afternoon slowdown of one environment (and that environment
on two devices) says so in the PDF and the page, in English and in Spanish; a study run in
one sitting has no such section; every number of the page's tables is the PDF's. Two
papers are built, once for the module.
"""

from __future__ import annotations

import html
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from fixtures.report_cases import case_inputs
from test_report_browser import Loaded, _Cells, _squeeze, browser  # noqa: F401  (fixture)
from test_report_model import pdf_words

from cloudbench.study import sysdeps

#: What each language's paper must say, in the PDF and in the page.
SAYS = {
    "time": ["Across time and devices",
             "The time of two-threads on shapes depends on the hour of the day",
             "slowest near 15 h",
             "The time of one-thread on shapes does not depend on the hour of the day",
             "two-threads is faster than one-thread only in the windows 00-04, 04-08, 08-12 "
             "and 20-24",
             "No drift was found in two-threads",
             "reaches the same decision as with the run as the unit",
             "two-threads ran on 2 devices: T4 (48) and P100 (48)"],
    "time_es": ["A lo largo del tiempo y de los dispositivos",
                "El tiempo de two-threads en shapes depende de la hora del día",
                "más lento hacia las 15 h",
                "El tiempo de one-thread en shapes no depende de la hora del día",
                "two-threads es más rápido que one-thread solo en las franjas 00-04, 04-08, "
                "08-12 y 20-24",
                "No se encontró deriva en two-threads",
                "llega a la misma decisión que con la ejecución como unidad",
                "two-threads se ejecutó en 2 dispositivos: T4 (48) y P100 (48)"],
}


def _model(case: str, tmp: Path) -> Any:
    """The report model of a case (no PDF, no page: cheap)."""
    from cloudbench.paper.build import _analyze, _load_frames, report_model
    from cloudbench.study.spec import load_study

    csv, spec = case_inputs(case, tmp)
    study = load_study(spec, check_data=False) if spec else None
    frame, usable = _load_frames(csv)
    analysis = _analyze(usable, study, None)
    return analysis, report_model(frame, usable, analysis, study, {}, {}, None, case)


@pytest.fixture(scope="module")
def papers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Path]]:
    """Each language's PDF and page of the 72 h study, built once."""
    from cloudbench.paper.build import build_paper
    from cloudbench.study.spec import load_study

    sysdeps.ensure_commands(sysdeps.GROUPS["tex"])
    out = {}
    for case in SAYS:
        tmp = tmp_path_factory.mktemp(case)
        csv, spec = case_inputs(case, tmp / "in")
        pdf = build_paper(csv, load_study(spec, check_data=False), tmp / "build",
                          formats=("pdf", "html"))
        out[case] = {"pdf": pdf, "html": pdf.with_suffix(".html")}
    return out


def _page_text(page: str) -> str:
    """The page's visible text, tags dropped, entities read, spaces squeezed."""
    body = page.split('<script type="application/json"')[0]
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", "", body)))


@pytest.mark.parametrize("case", list(SAYS))
def test_the_time_section_says_what_the_runs_show(case: str, papers: Any) -> None:
    """The afternoon slowdown (hour effect of the slowed environment only, faster only in
    the other windows), no drift, sessions agreeing and the two devices: in the PDF and in
    the page, with both figures drawn in the page, their points naming their runs."""
    pdf = " ".join(pdf_words(papers[case]["pdf"]))
    raw = papers[case]["html"].read_text(encoding="utf-8")
    page = _page_text(raw)
    for sentence in SAYS[case]:
        assert sentence in pdf, sentence
        assert sentence in page, sentence
    figures = json.loads(re.search(r'<script type="application/json"[^>]*>(.*?)</script>',
                                   raw, re.S).group(1).replace("<\\/", "</"))["figures"]
    timed = [f for f in figures if any(a.get("type") == "date" for k, a in
                                        f["layout"].items() if k.startswith("xaxis"))
             or any(a.get("range") == [0, 24] for k, a in f["layout"].items()
                    if k.startswith("xaxis"))]
    assert len(timed) == 2
    for figure in timed:
        points = [t for t in figure["data"] if t.get("customdata")]
        assert {t["name"] for t in points} == {"one-thread", "two-threads"}
        run, env, block = points[0]["customdata"][0]
        assert run == f"{env}+shapes+r{int(block):03d}"


@pytest.mark.parametrize("case", list(SAYS))
def test_every_number_of_the_time_tables_is_the_pdfs(case: str, papers: Any) -> None:
    """Each row's numbers, in order, on one line of the PDF's text (as test_report_browser
    checks the other tables); the time tables among them."""
    out = papers[case]
    page = out["html"].read_text(encoding="utf-8").split('<script type="application/json"')[0]
    assert 'id="tab-time-environments"' in page and 'id="tab-time-devices"' in page
    cells = _Cells()
    cells.feed(page)
    layout = subprocess.run(["pdftotext", "-layout", "-enc", "UTF-8", str(out["pdf"]), "-"],
                            capture_output=True, text=True, check=True).stdout
    lines = [_squeeze(line) for line in layout.splitlines()]
    captions = re.findall(r"^\s*(?:Table|Tabla) \d+:", layout, re.M)
    assert len(captions) == len(cells.tables) > 0
    for table in cells.tables:
        for row in table:
            pattern = re.compile(".*?".join(re.escape(_squeeze(c)) for c in row))
            assert any(pattern.search(line) for line in lines), row


def test_the_devices_table_compares_each_device(tmp_path: Path) -> None:
    """Two devices of one environment: a row each with its runs and sessions and its ratio
    to the other environment (the analysis' own numbers); the single-device one compares
    nothing."""
    from cloudbench.paper import timeofday as D

    analysis, report = _model("time", tmp_path)
    part = next(p for p in report.extra["results"] if p.heading == "Across time and devices")
    table = next(t for t in part.tables if t.id == "tab:time-devices")
    rows = {(r[1], r[2]): r for r in table.texts("en")}
    assert set(rows) == {("one-thread", "cpu"), ("two-threads", "T4"), ("two-threads", "P100")}
    assert rows["two-threads", "T4"][3:6] == ["48", "24", "one-thread"]
    assert rows["one-thread", "cpu"][5:] == ["", "—", "—"]
    (pair,) = D._primary(analysis)[0].pairs
    t4 = next(c.difference for c in pair.devices if c.difference.label == "T4")
    cell = next(r for r in table.rows if r[2].value == "T4")[6]
    assert (cell.value, cell.low, cell.high) == (t4.ratio, t4.ci_low, t4.ci_high)
    assert {f.kind for f in part.figures} == {"runchart", "hourly"}


def test_a_study_in_one_sitting_has_no_time_section(tmp_path: Path) -> None:
    """The demo's runs start within minutes: the analysis has its time section, the paper
    says nothing about the hour of the day."""
    analysis, report = _model("demo", tmp_path)
    assert analysis.time
    assert not any(p.heading == "Across time and devices" for parts in report.extra.values()
                   for p in parts)


def test_the_time_figures_draw_and_name_their_runs_in_the_browser(
        papers: Any, request: pytest.FixtureRequest) -> None:
    """In a real browser (test_report_browser's chromium) the page loads with no error,
    every figure draws, and hovering a point of the run chart names its run, environment
    and block."""
    loaded = Loaded(request.getfixturevalue("browser"), papers["time"]["html"])
    try:
        p = loaded.page
        assert loaded.console == []
        figures = p.locator("div.figure-plot")
        assert p.locator("div.figure-plot.js-plotly-plot").count() == figures.count()
        chart = p.locator("#fig-time-runs div.figure-plot")
        assert chart.locator("svg.main-svg").count() > 0
        chart.locator("path.point").first.hover(force=True)
        label = chart.locator(".hoverlayer .hovertext").first
        label.wait_for(timeout=5_000)
        text = label.text_content() or ""
        assert re.search(r"(one-thread|two-threads)\+shapes\+r\d{3}", text), text
        assert "Environment:" in text and "Block:" in text
        assert p.locator("#fig-time-hours div.figure-plot svg.main-svg").count() > 0
    finally:
        loaded.page.close()

"""The report's page in a real browser (issue 28): Debian's chromium, headless, driven by
playwright (its executable_path; playwright's own browser download is never used).

The page loads with no console error and no request beyond its own file, every figure
renders, hovering a run's point names the run, the metric selector redraws the explorer,
a table sorts, and every number of every table is the one the PDF prints. A screenshot of
the first screen is kept as an artifact (TEST_ARTIFACTS, default test-artifacts/).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import unicodedata
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from fixtures.report_cases import case_inputs

from cloudbench.study import sysdeps

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS", ROOT / "test-artifacts"))
#: The demo's page must stay small enough to mail and quick to open.
MAX_BYTES = 5_000_000
MAX_LOAD_S = 2.0


def build(case: str, tmp: Path, formats: tuple[str, ...]) -> dict[str, Path]:
    from cloudbench.paper.build import build_paper
    from cloudbench.study.spec import load_study

    csv, spec = case_inputs(case, tmp / "in")
    study = load_study(spec, check_data=False) if spec else None
    first = build_paper(csv, study, tmp / "build", formats=formats)
    return {f: first.with_suffix(f".{f}") for f in formats}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A case's PDF and page, from one build, built once per module."""
    sysdeps.ensure_commands(sysdeps.GROUPS["tex"])
    cache: dict[str, dict[str, Path]] = {}

    def get(case: str) -> dict[str, Path]:
        if case not in cache:
            cache[case] = build(case, tmp_path_factory.mktemp(case), ("pdf", "html"))
        return cache[case]

    return get


@pytest.fixture(scope="module")
def demo(built: Any) -> dict[str, Path]:
    """The demo-like study's PDF and page."""
    return built("demo")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's chromium (installed as root when missing), headless, through playwright."""
    sysdeps.ensure_commands(sysdeps.GROUPS["browser"])
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=shutil.which("chromium"),
                                     args=["--no-sandbox"])
        yield chromium
        chromium.close()


class Loaded:
    """A page opened in the browser, with what it logged and requested on the way."""

    def __init__(self, browser: Any, path: Path) -> None:
        self.page = browser.new_page(viewport={"width": 1280, "height": 900})
        self.console: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}")
                     if m.type in ("error", "warning") else None)
        self.page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))
        self.page.on("request", lambda r: self.requests.append(r.url))
        start = time.perf_counter()
        self.page.goto(path.as_uri())
        self.page.wait_for_selector("body[data-ready]", timeout=20_000)
        self.seconds = time.perf_counter() - start
        self.url = path.as_uri()


@pytest.fixture()
def page(browser: Any, demo: dict[str, Path]) -> Iterator[Loaded]:
    loaded = Loaded(browser, demo["html"])
    yield loaded
    loaded.page.close()


def test_the_page_loads_alone_with_every_figure(page: Loaded, demo: dict[str, Path]) -> None:
    p = page.page
    assert p.evaluate("document.body.dataset.ready") == "true"
    assert page.console == []
    assert page.requests == [page.url]  # the file itself, nothing else
    figures = p.locator("div.figure-plot")
    assert figures.count() >= 6  # explorer, bars, epochs, scatter, a box per metric
    assert p.locator("div.figure-plot.js-plotly-plot").count() == figures.count()
    for i in range(figures.count()):  # each drew its traces
        assert p.evaluate("d => d.data.length", figures.nth(i).element_handle()) > 0
        assert figures.nth(i).locator("svg.main-svg").count() > 0
    assert demo["html"].stat().st_size < MAX_BYTES
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "report-demo-first-screen.png"
    p.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000


def test_the_page_opens_in_under_two_seconds(browser: Any, demo: dict[str, Path]) -> None:
    """From navigation to every figure drawn, by the page's own clock: the best of up to
    five loads, so that a moment of load on a shared machine does not decide it (and on a
    machine with more runnable tasks than cores, a slow load is reported, not failed)."""
    times = []
    for _ in range(5):
        loaded = Loaded(browser, demo["html"])
        times.append(loaded.page.evaluate("TIMES.plotted") / 1000)
        text_shown = loaded.page.evaluate(
            "performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd") / 1000
        loaded.page.close()
        assert text_shown < MAX_LOAD_S
        if times[-1] < MAX_LOAD_S:
            break
    load = os.getloadavg()[0] / (os.cpu_count() or 1)
    if min(times) >= MAX_LOAD_S and load > 1.0:
        pytest.skip(f"the machine is overloaded ({load:.1f} runnable tasks per core): "
                    f"load times {times} say nothing about the page")
    assert min(times) < MAX_LOAD_S, times


def test_hovering_a_point_names_its_run(page: Loaded) -> None:
    p = page.page
    point = p.locator("#explorer-plot path.point").first
    point.hover(force=True)
    label = p.locator("#explorer-plot .hoverlayer .hovertext").first
    label.wait_for(timeout=5_000)
    text = label.text_content() or ""
    runs = p.evaluate("DATA.explorer[document.getElementById('metric-select').value]"
                      "[document.getElementById('dataset-select').value].run")
    assert any(run in text for run in runs), text
    assert "Environment:" in text and "Block:" in text


def test_the_metric_selector_redraws_the_explorer(page: Loaded) -> None:
    p = page.page
    div = "document.getElementById('explorer-plot')"
    before = p.evaluate(f"{div}.data.map(t => t.y)")
    metrics = p.evaluate("Array.from(document.querySelectorAll('#metric-select option'))"
                         ".map(o => o.value)")
    assert len(metrics) > 1
    p.select_option("#metric-select", metrics[-1])
    p.wait_for_function(f"{div}.dataset.metric === '{metrics[-1]}'")
    after = p.evaluate(f"{div}.data.map(t => t.y)")
    assert after != before
    assert p.evaluate(f"{div}.layout.yaxis.title.text") != ""


def test_a_table_sorts_by_a_column(page: Loaded) -> None:
    p = page.page
    table = p.locator("#tab-decisions table")
    headers = table.locator("thead tr:last-child th")
    # the p column of the decisions table: numbers, sorted by value
    col = next(i for i in range(headers.count())
               if (headers.nth(i).text_content() or "").strip() == "p")

    def column() -> list[float]:
        return p.evaluate("([t, c]) => Array.from(t.tBodies[0].rows)"
                          ".map(r => parseFloat(r.children[c].dataset.sort))",
                          [table.element_handle(), col])

    headers.nth(col).click()
    assert column() == sorted(column())
    assert headers.nth(col).get_attribute("aria-sort") == "ascending"
    headers.nth(col).click()
    assert column() == sorted(column(), reverse=True)
    assert len(set(column())) > 1


class _Cells(HTMLParser):
    """The page's tables: per table, per row, the texts of the cells that hold a number."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.row: list[str] | None = None
        self.cell: str | None = None
        self.number = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.row = []
        elif tag == "td":
            self.cell, self.number = "", "data-sort" in dict(attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self.row is not None and self.cell is not None:
            if self.number:
                self.row.append(self.cell)
            self.cell = None
        elif tag == "tr" and self.row is not None:
            if self.row:
                self.tables[-1].append(self.row)
            self.row = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell += data


def _squeeze(text: str) -> str:
    """Text with no whitespace at all, ligatures expanded and the minus as in the PDF."""
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", text))


@pytest.mark.parametrize("case", ["demo", "spanish", "sweep"])
def test_every_table_number_is_the_pdfs(case: str, built: Any) -> None:
    """Each row's numbers, in order, on one line of the PDF's text; as many tables."""
    out = built(case)
    page = out["html"].read_text(encoding="utf-8").split('<script type="application/json"')[0]
    cells = _Cells()
    cells.feed(page)
    layout = subprocess.run(["pdftotext", "-layout", "-enc", "UTF-8", str(out["pdf"]), "-"],
                            capture_output=True, text=True, check=True).stdout
    lines = [_squeeze(line) for line in layout.splitlines()]
    captions = re.findall(r"^\s*(?:Table|Tabla) \d+:", layout, re.M)
    assert len(captions) == len(cells.tables) > 0
    checked = 0
    for table in cells.tables:
        for row in table:
            pattern = re.compile(".*?".join(re.escape(_squeeze(c)) for c in row))
            assert any(pattern.search(line) for line in lines), row
            checked += len(row)
    assert checked > 50


@pytest.mark.parametrize("case", ["spanish", "sweep"])
def test_the_other_sections_render_in_the_browser(case: str, browser: Any, built: Any) -> None:
    """Spanish (cost, calibration, stopping) and a sweep's ratio figures, without errors."""
    out = built(case)
    loaded = Loaded(browser, out["html"])
    try:
        p = loaded.page
        assert loaded.console == [] and loaded.requests == [loaded.url]
        assert p.locator("div.figure-plot").count() == \
            p.locator("div.figure-plot.js-plotly-plot").count() > 0
        if case == "spanish":
            assert p.evaluate("document.documentElement.lang") == "es"
            text = p.locator("main").inner_text()
            assert "Metodología" in text and "Coste" in text and "Calibración A/A" in text
            assert re.search(r"Tabla\s1\.", text)
        else:
            assert p.locator("#fig-speedup-0 .js-plotly-plot, #fig-speedup-0 .main-svg") \
                .count() > 0
            assert "Along the sweep" in p.locator("main").inner_text()
    finally:
        loaded.page.close()


def test_hostile_names_print_as_given(browser: Any, tmp_path: Path) -> None:
    """Names that are HTML, LaTeX or a script's end print as text and break nothing."""
    from fixtures.synthetic import synthetic_runs

    from cloudbench.paper.build import build_paper

    hostile = "</script><b>a&b_%#$~^\\{}"
    csv = synthetic_runs(tmp_path / "hostile" / "runs.csv", environments=(hostile, "colab"),
                         datasets=("shapes", "<i>d&s</i>"), repetitions=6, study="hostile")
    page = build_paper(csv, None, tmp_path / "out", formats=("html",))
    loaded = Loaded(browser, page)
    try:
        p = loaded.page
        assert loaded.console == [] and loaded.requests == [loaded.url]
        assert p.evaluate("document.body.dataset.ready") == "true"
        assert hostile in p.locator("h1").inner_text()
        # the names' tags stayed text: no element made of them
        assert not p.evaluate("Array.from(document.querySelectorAll('b, i')).some("
                              "e => e.textContent.startsWith('a&b_') || e.textContent == 'd&s')")
        assert "<i>d&s</i>" in p.locator("#tab-runs").inner_text()
        assert p.locator("div.figure-plot.js-plotly-plot").count() > 0
    finally:
        p.close()

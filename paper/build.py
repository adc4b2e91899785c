"""The paper: methodology from the study file and the run fingerprints, results from the
analysis, conclusions written from the decisions; built with latexmk.

A build is keyed by a hash of everything it depends on (paper.cache). When nothing changed
the PDF on disk is returned at once: no analysis, no figures, no latexmk. That keeps
`study paper` cheap enough to run after every `study run`.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cloudbench.data.atomic import atomic_path, write_text_atomic
from cloudbench.paper.cache import (  # noqa: F401  (build_count: for tests and benchmarks)
    beside,
    build_count,
    inputs_digest,
    study_name_from_csv,
    up_to_date,
    write_stamp,
)
from cloudbench.paper.latex import (
    LABELS,
    check_language,
    escape,
    fmt_num,
    label,
    metric_name,
    number_format,
)
from cloudbench.paper.latexmk import PaperError, jinja_env, run_latexmk
from cloudbench.paper.methodology import dataset_rows, fingerprints, plain_value, short, summarise
from cloudbench.paper.prose import (
    conclusion,
    equivalence_conclusion,
    hypotheses,
    join_names,
    percent,
    procedure_name,
    simulated_error_text,
    stopping_text,
    the,
)
from cloudbench.study.manifest import toolkit_version
from cloudbench.study.notebook import Protocol
from cloudbench.study.notebook import inspect as inspect_notebook
from cloudbench.study.record import BOOKKEEPING_FIELDS, FINGERPRINT_FIELDS, RUNNER_FIELDS

if TYPE_CHECKING:
    import pandas as pd

    from cloudbench.analysis.results import Analysis
    from cloudbench.study.spec import Study

__all__ = ["PaperError", "build_paper", "paper_context"]
# The template's figures.
FIGURES = ("train_total", "train_mean", "epochs", "accuracy_time", "phases")


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON object from a file, or {} when it is absent or unreadable (optional inputs)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _load_frames(runs_csv: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(every run, as recorded; the runs the analysis counts, metrics as numbers).

    The first feeds the run counts and the fingerprints, the second the tests and figures.
    """
    import pandas as pd

    from cloudbench.analysis.compare import AnalysisError, load_runs

    try:
        usable = load_runs(runs_csv)
        raw = pd.read_csv(runs_csv, dtype=str, keep_default_na=False, skipinitialspace=True)
    except AnalysisError as exc:
        raise PaperError(str(exc)) from exc
    if usable.empty:
        raise PaperError(f"{runs_csv}: no successful runs to report")
    return raw, usable


def tagged_protocol(study: Study | None) -> Protocol | None:
    """The study's notebook when it is timed by its cell tags (not the built-in protocol)."""
    if study is None or not study.notebook.is_file():
        return None
    protocol = inspect_notebook(study.notebook)
    return None if protocol.writes_record else protocol


#: Columns of a tagged notebook's record that are neither phases nor its metrics.
_NOT_METRICS = frozenset(RUNNER_FIELDS + FINGERPRINT_FIELDS + BOOKKEEPING_FIELDS) | {
    "n_train", "n_test", "epochs", "batch_size", "seed", "peak_rss_mb", "peak_gpu_mb",
    "epoch_s"}


def default_metrics(protocol: Protocol | None, usable: pd.DataFrame) -> list[str]:
    """What to analyse when the study file does not say.

    The built-in protocol: DEFAULT_METRICS. A tagged notebook: train_s (or its longest
    phase when it has no train phase), total_s and every metric of its metrics cell.
    """
    from cloudbench.study.spec import DEFAULT_METRICS

    if protocol is None:
        return list(DEFAULT_METRICS)
    phases = [f"{p}_s" for p in protocol.phases if f"{p}_s" in usable]
    if "train_s" in phases or not phases:
        primary = ["train_s"]
    else:
        primary = [max(phases, key=lambda c: usable[c].median())]
    measured = [c for c in usable.columns if c not in _NOT_METRICS and c != "other_s"
                and not c.endswith(("_s", "_client_s"))]
    return list(dict.fromkeys(primary + ["total_s"] + measured))


def _analyze(usable: pd.DataFrame, study: Study | None, protocol: Protocol | None) -> Analysis:
    from cloudbench.analysis.compare import AnalysisError, analyze

    wanted = (study.analysis.metrics if study else ()) or default_metrics(protocol, usable)
    # A CSV gathered elsewhere may hold none of the usual metrics: then every numeric one.
    present = [m for m in wanted if m in usable and usable[m].notna().any()]
    options = {"alternative": study.hypothesis, "alpha": study.analysis.alpha,
               "environments": [e.name for e in study.environments],
               "procedure": study.analysis.procedure,
               "equivalence": study.analysis.equivalence} if study else {}
    try:
        return analyze(usable, metrics=present or None, **options)
    except AnalysisError as exc:
        raise PaperError(f"cannot analyse the runs: {exc}") from exc


def _write_analysis(analysis: Analysis, runs_csv: Path, folder: Path) -> Path:
    """analysis.json beside runs.csv (data/results/<study>/), or in the build folder."""
    text = json.dumps(analysis.to_dict(), indent=2, allow_nan=False) + "\n"
    write_text_atomic(folder / "analysis.json", text)
    target = runs_csv.parent / "analysis.json"
    try:
        write_text_atomic(target, text)
    except OSError:
        return folder / "analysis.json"
    return target


def _warmup_per_group(frame: pd.DataFrame, usable: pd.DataFrame, failed: int) -> int:
    """Warm-up runs per environment and dataset, when no study file says how many."""
    groups = frame.groupby(["environment", "dataset"]).ngroups or 1
    return round((len(frame) - len(usable) - failed) / groups)


def _range_text(counts: pd.Series | None, lang: str) -> str:
    """"12", or "10 to 12" when some runs failed ("de 10 a 12")."""
    if counts is None or counts.empty:
        return "0"
    low, high = int(counts.min()), int(counts.max())
    if low == high:
        return str(low)
    return number_format("range", lang, low=low, high=high)


def _date(frame: pd.DataFrame, manifest: dict[str, Any]) -> str:
    """The date of the last run (not of the build): the same inputs make the same paper."""
    if "started_at" in frame:
        stamps = [s for s in frame["started_at"].astype(str) if s.strip() and s != "nan"]
        if stamps:
            return max(stamps)[:10]
    return str(manifest.get("created_at", ""))[:10] or datetime.now(UTC).date().isoformat()


def _metric_sections(analysis: Analysis, metrics: list[str], lang: str,
                     alternative: str, table: Callable[[str, str], Any],
                     figures: dict[str, Any], swept: bool = False) -> list[dict[str, Any]]:
    """One results subsection per metric: its box plot, its tables, its decisions.

    The Mann-Whitney and ranks tables are always shown (the reference paper's test, and a
    robustness check beside a t-test); the t-test table where a t-test was used. A sweep's
    many cells state their significant differences one by one and count the others.
    """
    from markupsafe import Markup

    from cloudbench.paper import tables as T

    sections = []
    for i, metric in enumerate(metrics):
        found = T.comparisons(analysis, metric)
        parts = [table(f"desc_{i}", T.descriptives_table(analysis, metric, lang)),
                 table(f"shapiro_{i}", T.shapiro_table(analysis, metric, lang)),
                 table(f"mw_{i}", T.mann_whitney_table(analysis, metric, lang, alternative)),
                 table(f"ranks_{i}", T.ranks_table(analysis, metric, lang))]
        if {c.test_used for c in found} & {"student_t", "welch_t"}:
            parts.append(table(f"t_{i}", T.t_test_table(analysis, metric, lang, alternative)))
        parts.append(table(f"bm_{i}", T.brunner_munzel_table(analysis, metric, lang)))
        title = metric_name(metric, lang, capital=True)
        stated = [c for c in found if c.significant] if swept else found
        # with a margin, the four-way conclusion (faster, slower, equivalent, inconclusive)
        conclusions = [Markup(equivalence_conclusion(c, lang) if c.equivalence is not None
                              else conclusion(c, lang, alternative)) for c in stated]
        if len(stated) < len(found):
            conclusions.append(Markup(label("others_not_significant", lang,
                                            n=len(found) - len(stated), total=len(found),
                                            metric=metric_name(metric, lang))))
        sections.append({
            "title": Markup(title), "tables": [p for p in parts if p],
            "figure": figures.get(f"box_{i}"),
            "figure_caption": Markup(label("fig_box", lang, metric=title)),
            "conclusions": conclusions})
    return sections


def _simulated_error(analysis: Analysis, metric: str, alpha: float, lang: str) -> str:
    """The procedure's simulated type-I error for the study's own group sizes and observed
    variance ratios (the primary metric's comparisons; nearest simulated scenario)."""
    from cloudbench.analysis.simulation import procedure_error

    groups = []
    for c in analysis.of_metric(metric):
        sd_a, sd_b = c.descriptives[c.a].sd, c.descriptives[c.b].sd
        if sd_a and sd_b:
            groups.append((c.n_a, c.n_b, (sd_b / sd_a) ** 2))
    try:
        error = procedure_error(groups, analysis.procedure, alpha)
    except (OSError, ValueError, KeyError):  # the shipped results missing or unreadable
        return ""
    return simulated_error_text(error, lang)


def _price_sources(study: Study | None, manifest: dict[str, Any]) -> dict[str, str]:
    """Each priced environment's source, from the study file or, without it, the manifest."""
    if study is not None:
        return {e.name: e.price.source for e in study.environments if e.price is not None}
    return {str(e.get("name")): str((e.get("price") or {}).get("source", ""))
            for e in manifest.get("environments", []) if e.get("price")}


def _machines_text(study: Study | None, manifest: dict[str, Any], lang: str) -> str:
    """Which environments ran at the same time: those of different machines."""
    if study is not None:
        groups: dict[str, list[str]] = {}
        for env in study.environments:
            groups.setdefault(env.machine, []).append(env.name)
    else:
        groups = manifest.get("machines") or {}
    if not groups:
        return ""
    if len(groups) == 1:
        return label("machines_one", lang)
    listed = "; ".join(f"{escape(m)}: {join_names(envs, lang)}" for m, envs in groups.items())
    return label("machines_many", lang, n=len(groups), list=listed)


def swept(frame: pd.DataFrame) -> bool:
    """Whether the runs come from a sweep (a `configuration` column with values)."""
    return "configuration" in frame and bool(
        frame["configuration"].astype("string").fillna("").str.strip().ne("").any())


def _sweep_context(frame: pd.DataFrame, study: Study | None, envs: list[str], lang: str,
                   folder: Path, table: Callable[[str, str], Any]) -> dict[str, Any] | None:
    """The results along each sweep parameter (analysis.factors): time and memory ratios of
    every pair against the levels, with intervals and OOM marked, and the interaction test.
    Also writes factors.json beside the tables."""
    from markupsafe import Markup

    from cloudbench.analysis.factors import factor_analysis
    from cloudbench.paper import sweep as W

    if not swept(frame):
        return None
    fa = factor_analysis(frame, parameters=None, environments=envs,
                         alpha=study.analysis.alpha if study else 0.05,
                         seed=study.seed if study else 0,
                         level_order=study.sweep.parameters if study else None)
    write_text_atomic(folder / "factors.json",
                      json.dumps(fa.to_dict(), indent=2, allow_nan=False) + "\n")
    if fa.empty:
        return None
    figures = W.make_sweep_figures(fa, folder / "figures", lang)
    parameters = []
    for i, name in enumerate(fa.parameters):
        caption = {"parameter": escape(name)}
        parameters.append({
            "name": Markup(escape(name)),
            "levels": Markup(", ".join(W.level_text(v, lang) for v in fa.level_order[name])),
            "speedup": Markup(f"figures/{figures[f'speedup_{i}'].name}")
            if f"speedup_{i}" in figures else None,
            "memory": Markup(f"figures/{figures[f'memory_ratio_{i}'].name}")
            if f"memory_ratio_{i}" in figures else None,
            "speedup_caption": Markup(label("fig_time_ratio", lang, **caption)),
            "memory_caption": Markup(label("fig_memory_ratio", lang, **caption)),
            "table": table(f"factor_{i}", W.factor_table(fa, name, lang))})
    oom = int((frame["status"].astype(str).str.strip() == "oom").sum()) \
        if "status" in frame else 0
    return {"parameters": parameters, "oom_runs": oom,
            "configurations": int(frame["configuration"].nunique()),
            "memory_metric": Markup(metric_name(fa.memory_metric or "peak_rss_mb", lang)),
            "interactions": table("interactions", W.interaction_table(fa, lang))}


def paper_context(frame: pd.DataFrame, usable: pd.DataFrame, analysis: Analysis,
                  study: Study | None, manifest: dict[str, Any],
                  calibration: dict[str, Any], folder: Path,
                  protocol: Protocol | None = None) -> dict[str, Any]:
    """Everything the template shows; writes the tables and figures it refers to.

    `frame` holds every run as recorded, `usable` the runs the analysis counts; `protocol`
    is the study's notebook when it is timed by its tags (tagged_protocol).
    """
    from markupsafe import Markup

    from cloudbench.paper import figures as F
    from cloudbench.paper import tables as T

    lang = check_language(study.analysis.language if study else "en")
    alternative = study.hypothesis if study else "two-sided"
    alpha = study.analysis.alpha if study else 0.05
    envs = T.environments_of(analysis) or T.ordered(usable["environment"])
    metrics = T.metrics_of(analysis)
    pairs = analysis.pairs

    tables_dir, figures_dir = folder / "tables", folder / "figures"
    for d in (tables_dir, figures_dir):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)

    def table(name: str, text: str) -> Markup | None:
        if not text:
            return None
        write_text_atomic(tables_dir / f"{name}.tex", text)
        return Markup(f"tables/{name}.tex")

    made = dict.fromkeys(FIGURES)
    sweep = _sweep_context(frame, study, envs, lang, folder, table)
    if sweep is None:  # a sweep's cells are shown by its own figures instead
        made.update({k: Markup(f"figures/{p.name}") for k, p in
                     F.make_figures(usable, figures_dir, metrics, lang,
                                    list(protocol.phases) if protocol else None).items()})
    sections = _metric_sections(analysis, metrics, lang, alternative, table, made,
                                swept=sweep is not None)
    from cloudbench.analysis.compare import with_cells

    cells, usable_cells = with_cells(frame), with_cells(usable)
    fps = fingerprints(frame, study, lang)
    primary = metrics[0] if metrics else "train_s"
    if not pairs:
        pairs = [(envs[0], envs[1]) if len(envs) > 1 else ("A", "B")]
    h0, h1 = hypotheses(primary, pairs, lang, alternative)
    counts = usable.groupby(["environment", "dataset"]).size() if len(usable) else None
    failed = int((frame["status"].astype(str).str.strip() != "ok").sum()) \
        if "status" in frame else 0
    params = dict(manifest.get("parameters") or (study.parameters if study else {}))
    first_cols = [c for c in ("epochs", "batch_size", "model") if c in usable]
    for col in first_cols:
        value = summarise(usable[col], lang)
        if value and col not in params:
            params[col] = value
    warnings = analysis.warnings  # a group's warning once, not once per pair
    margins = [c.equivalence.margin for c in analysis.comparisons if c.equivalence]
    outliers = sum(T.outlier_count(c, env) for _, env, c in
                   (g for m in metrics for g in T.groups(analysis, m)))
    return {
        "lang": lang,
        "L": {k: Markup(v) for k, v in LABELS[lang].items()},
        "title": Markup(label("title", lang, envs=join_names(envs, lang))),
        "author": label("author", lang, version=toolkit_version()),
        "date": _date(frame, manifest),
        "description": study.description.strip().rstrip(".") if study else "",
        "env_list": Markup(join_names(envs, lang)),
        "datasets": T.ordered(usable["dataset"]) if len(usable) else [],
        "dataset_list": Markup(join_names(T.ordered(frame["dataset"]), lang)),
        "metric_list": Markup(join_names([the(m, lang) for m in metrics], lang, escaped=True)),
        "repetitions": study.repetitions if study else None,
        "reps": Markup(_range_text(counts, lang)),
        "warmup": study.warmup if study else _warmup_per_group(frame, usable, failed),
        "seed": study.seed if study else None,
        "order": study.order if study else None,
        "total_runs": len(frame),
        "failed_runs": failed,
        "notebook": study.notebook.name if study else manifest.get("notebook", ""),
        # Runs from another source may carry none of the protocol's timings.
        "protocol_known": bool(study or manifest or "train_s" in frame),
        "n_params": summarise(usable["n_params"], lang) if "n_params" in usable else None,
        "parameters": [(k, plain_value(v) if not isinstance(v, dict | list)
                        else json.dumps(v)) for k, v in params.items()],
        "manifest": {"version": manifest.get("toolkit_version") or toolkit_version(),
                     "commit": short(manifest.get("git_commit")),
                     "dirty": bool(manifest.get("git_dirty")),
                     "notebook_sha": short(manifest.get("notebook_sha256")),
                     "study_sha": short(manifest.get("study_sha256") or
                                         (study.file_sha256() if study else "")),
                     "created": str(manifest.get("created_at", ""))[:19]},
        "stopping": Markup(stopping_text(manifest.get("stopping"), lang)),
        "calibration_env": calibration.get("environment", ""),
        "alpha": Markup(fmt_num(alpha, 2, lang, bounded=True)),
        "alternative": alternative,
        "procedure": analysis.procedure,
        "procedure_name": Markup(procedure_name(analysis.procedure, lang)),
        "margin": Markup(percent(margins[0], lang)) if margins else None,
        "simulated_error": Markup(_simulated_error(analysis, primary, alpha, lang)),
        "h0": Markup(h0), "h1": Markup(h1),
        "tables": {
            "environments": table("environments", T.environments_table(fps, lang)),
            "phases": table("phases", T.phases_table(
                [(name, [(c.index, c.first_line) for c in protocol.cells if c.phase == name])
                 for name in protocol.phases] if protocol else [], lang)),
            "datasets": table("datasets", T.datasets_table(dataset_rows(frame, study), lang)),
            "runs": table("runs", T.runs_table(cells, lang)),
            "quality": table("quality", T.quality_table(usable_cells, lang)),
            "resources": table("resources", T.resources_table(usable_cells, lang)),
            "decisions": table("decisions", T.decisions_table(analysis, lang, alpha)),
            "equivalence": table("equivalence", T.equivalence_table(analysis, lang)),
            "kruskal": table("kruskal", T.kruskal_table(analysis, lang)),
            "calibration": table("calibration", T.calibration_table(calibration, lang)),
            "cost": table("cost", T.cost_table(frame, lang, _price_sources(study, manifest))),
        },
        "figures": made,
        "sections": sections,
        "sweep": sweep,
        "machines": Markup(_machines_text(study, manifest, lang)),
        "n_comparisons": len(analysis.comparisons),
        "n_significant": sum(c.significant for c in analysis.comparisons),
        "n_inconclusive": sum(c.equivalence is not None and c.equivalence.conclusion
                              == "inconclusive" for c in analysis.comparisons),
        "warnings": warnings,
        "outliers": outliers,
    }


def build_paper(runs_csv: Path, study: Study | None = None, out_dir: Path = Path("paper/build"),
                analysis: Analysis | None = None) -> Path:
    """Write out_dir/<study>/ (tex, tables, figures) and out_dir/<study>.pdf.

    `analysis`: an analysis of the runs already made (else the runs are analysed here).
    Returns at once, touching nothing, when no input changed since the last build.
    """
    runs_csv = Path(runs_csv)
    if not runs_csv.is_file():
        raise PaperError(f"no runs table at {runs_csv}; run the study first")
    name = study.name if study else study_name_from_csv(runs_csv)
    folder, pdf = Path(out_dir) / name, Path(out_dir) / f"{name}.pdf"
    extra = json.dumps(analysis.to_dict(), sort_keys=True) if analysis is not None else ""
    digest = inputs_digest(runs_csv, study.path if study else None, extra)
    if up_to_date(folder, pdf, digest):
        return pdf

    folder.mkdir(parents=True, exist_ok=True)
    frame, usable = _load_frames(runs_csv)
    protocol = tagged_protocol(study)  # read once: the metrics, the phases table and figure
    if analysis is None:
        analysis = _analyze(usable, study, protocol)
    _write_analysis(analysis, runs_csv, folder)
    manifest_file, calibration_file = beside(runs_csv)
    manifest = _read_json(manifest_file)
    calibration = _read_json(calibration_file) or manifest.get("calibration") or {}
    context = paper_context(frame, usable, analysis, study, manifest, calibration, folder,
                            protocol)
    tex = jinja_env().get_template("paper.tex.j2").render(**context)
    write_text_atomic(folder / f"{name}.tex", tex)
    built = run_latexmk(folder, f"{name}.tex")
    with atomic_path(pdf) as tmp:
        shutil.copyfile(built, tmp)
    write_stamp(folder, digest, datetime.now(UTC).isoformat(timespec="seconds"))
    return pdf

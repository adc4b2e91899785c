"""The report: methodology from the study file and the run fingerprints, results from the
analysis, conclusions written from the decisions.

:func:`report_model` builds the report once, in no output format (paper.model): every
table, sentence and figure's data. The renderers lay it out: paper.latex and latexmk for
the PDF, paper.html for a self-contained interactive page. :func:`build_paper` writes
the formats asked for.

A build is keyed by a hash of everything it depends on (paper.cache). When nothing changed
the files on disk are returned at once: no analysis, no figures, no latexmk. That keeps
`study paper` cheap enough to run after every `study run`.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cloudbench.data.atomic import atomic_path, write_text_atomic
from cloudbench.paper import timeofday  # noqa: F401  (registers the section across time)
from cloudbench.paper.cache import (  # noqa: F401  (build_count: for tests and benchmarks)
    beside,
    build_count,
    inputs_digest,
    study_name_from_csv,
    up_to_date,
    write_stamp,
)
from cloudbench.paper.latexmk import PaperError
from cloudbench.paper.methodology import dataset_rows, fingerprints, plain_value, short, summarise
from cloudbench.paper.model import Figure, MetricSection, Report, Statement, SweepParameter
from cloudbench.paper.prose import (
    conclusion,
    equivalence_conclusion,
    hypotheses,
    join_names,
    procedure_name,
    simulated_error_text,
    stopping_text,
    the,
)
from cloudbench.paper.text import (
    check_language,
    code,
    fmt_num,
    label,
    metric_name,
    number_format,
    percent,
)
from cloudbench.study.manifest import toolkit_version
from cloudbench.study.notebook import Protocol
from cloudbench.study.notebook import inspect as inspect_notebook
from cloudbench.study.record import (
    BOOKKEEPING_FIELDS,
    FINGERPRINT_FIELDS,
    OCCASIONAL_FIELDS,
    RUNNER_FIELDS,
)

if TYPE_CHECKING:
    import pandas as pd

    from cloudbench.analysis.results import Analysis
    from cloudbench.study.spec import Study

__all__ = ["FORMATS", "PaperError", "build_paper", "report_model"]
#: The output formats: the PDF (LaTeX) and a self-contained interactive page.
FORMATS = ("pdf", "html")


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON object from a file, or {} when it is absent or unreadable (optional inputs)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


#: What the paper reads of a manifest, with the type each key must have to be used.
_MANIFEST_TYPES: dict[str, type | tuple[type, ...]] = {
    "notebook": str, "notebook_sha256": str, "study_sha256": str, "study_file": str,
    "toolkit_version": str, "git_commit": str, "git_dirty": bool, "created_at": str,
    "updated_at": str, "seed": int, "order": str, "repetitions": (int, str), "warmup": int,
    "environments": list, "machines": dict, "parameters": dict, "datasets": list,
    "files": list, "stopping": dict, "sweep": dict, "study": str, "calibration": dict}


def _read_manifest(path: Path) -> dict[str, Any]:
    """manifest.json beside the runs, keeping only the keys of the types the paper expects
    (a manifest from elsewhere, or damaged, costs the paper those facts, never the build);
    the environments and files are kept only where each is an object."""
    data = _read_json(path)
    out = {k: v for k, v in data.items()
           if k in _MANIFEST_TYPES and isinstance(v, _MANIFEST_TYPES[k])
           and not (isinstance(v, bool) and _MANIFEST_TYPES[k] is int)}
    for key in ("environments", "files", "datasets"):
        if key in out:
            out[key] = [e for e in out[key] if isinstance(e, dict)]
    return out


def _load_frames(runs_csv: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(every run, as recorded; the runs the analysis counts, metrics as numbers).

    The first feeds the run counts and the fingerprints, the second the tests and figures.
    """
    import pandas as pd

    from cloudbench.analysis.compare import load_runs

    usable = load_runs(runs_csv)  # a table it refuses is refused input (AnalysisError: 2)
    raw = pd.read_csv(runs_csv, dtype=str, keep_default_na=False, skipinitialspace=True)
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
_NOT_METRICS = frozenset(RUNNER_FIELDS + FINGERPRINT_FIELDS + BOOKKEEPING_FIELDS
                         + OCCASIONAL_FIELDS) | {
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
    except AnalysisError as exc:  # the runs table was refused: input, not the build (exit 2)
        raise AnalysisError(f"cannot analyse the runs: {exc}") from exc


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
    listed = "; ".join(f"{m}: {join_names(envs, lang)}" for m, envs in groups.items())
    return label("machines_many", lang, n=len(groups), list=listed)


def swept(frame: pd.DataFrame) -> bool:
    """Whether the runs come from a sweep (a `configuration` column with values)."""
    return "configuration" in frame and bool(
        frame["configuration"].astype("string").fillna("").str.strip().ne("").any())


def _statement(text: str, c: Any = None, kind: str = "") -> Statement:
    """A sentence with the numbers of its comparison as data."""
    numbers: dict[str, float | None] = {}
    if c is not None:
        numbers = {"p": c.p, "p_holm": c.p_holm, "ratio": c.median_ratio.estimate,
                   "ratio_low": c.median_ratio.ci_low, "ratio_high": c.median_ratio.ci_high}
    return Statement(text, numbers, kind)


def _metric_sections(analysis: Analysis, metrics: list[str], lang: str, alternative: str,
                     figures: dict[str, Figure], swept: bool = False) -> list[MetricSection]:
    """One results subsection per metric: its box plot, its tables, its decisions.

    The Mann-Whitney and ranks tables are always shown (the reference paper's test, and a
    robustness check beside a t-test); the t-test table where a t-test was used. A sweep's
    many cells state their significant differences one by one and count the others.
    """
    from cloudbench.paper import tables as T

    sections = []
    for i, metric in enumerate(metrics):
        found = T.comparisons(analysis, metric)
        parts = [T.descriptives_table(analysis, metric, lang),
                 T.shapiro_table(analysis, metric, lang),
                 T.mann_whitney_table(analysis, metric, lang, alternative),
                 T.ranks_table(analysis, metric, lang)]
        if {c.test_used for c in found} & {"student_t", "welch_t"}:
            parts.append(T.t_test_table(analysis, metric, lang, alternative))
        parts.append(T.brunner_munzel_table(analysis, metric, lang))
        stated = [c for c in found if c.significant] if swept else found
        # with a margin, the four-way conclusion (faster, slower, equivalent, inconclusive)
        conclusions = [_statement(equivalence_conclusion(c, lang) if c.equivalence is not None
                                  else conclusion(c, lang, alternative), c, "conclusion")
                       for c in stated]
        if len(stated) < len(found):
            conclusions.append(_statement(label(
                "others_not_significant", lang, n=len(found) - len(stated), total=len(found),
                metric=metric_name(metric, lang)), kind="count"))
        sections.append(MetricSection(metric, metric_name(metric, lang, capital=True),
                                      figures.get(f"box_{i}"), [t for t in parts if t],
                                      conclusions))
    return sections


def _sweep_model(frame: pd.DataFrame, study: Study | None, envs: list[str], lang: str
                 ) -> tuple[Any, dict[str, Any] | None]:
    """The results along each sweep parameter (analysis.factors): time and memory ratios of
    every pair against the levels, with intervals and OOM marked, and the interaction test.
    Returns the factor analysis too (None without a sweep), which the build writes as
    factors.json."""
    from cloudbench.analysis.factors import factor_analysis
    from cloudbench.paper import sweep as W

    if not swept(frame):
        return None, None
    fa = factor_analysis(frame, parameters=None, environments=envs,
                         alpha=study.analysis.alpha if study else 0.05,
                         seed=study.seed if study else 0,
                         level_order=study.sweep.parameters if study else None)
    if fa.empty:
        return fa, None
    parameters = []
    for i, name in enumerate(fa.parameters):
        figures = [Figure(f"fig:{kind}:{i}", "ratio",
                          label(f"fig_{which}_ratio", lang, parameter=name), fa,
                          {"parameter": name, "which": which, "file": f"{kind}_{i}"})
                   for kind, which in (("speedup", "time"), ("memory_ratio", "memory"))
                   if W.has_ratio(fa, name, which)]
        parameters.append(SweepParameter(
            name, ", ".join(W.level_text(v, lang) for v in fa.level_order[name]), figures,
            W.factor_table(fa, name, lang)))
    oom = int((frame["status"].astype(str).str.strip() == "oom").sum()) \
        if "status" in frame else 0
    return fa, {"parameters": parameters, "oom_runs": oom,
            "configurations": int(frame["configuration"].nunique()),
            "memory_metric": metric_name(fa.memory_metric or "peak_rss_mb", lang),
            "interactions": W.interaction_table(fa, lang)}


def report_model(frame: pd.DataFrame, usable: pd.DataFrame, analysis: Analysis,
                 study: Study | None, manifest: dict[str, Any],
                 calibration: dict[str, Any], protocol: Protocol | None = None,
                 name: str = "") -> Report:
    """The report, once, in no output format: every table, sentence and figure's data.

    `frame` holds every run as recorded, `usable` the runs the analysis counts; `protocol`
    is the study's notebook when it is timed by its tags (tagged_protocol). Writes nothing:
    the renderers and the build do.
    """
    from cloudbench.analysis.compare import with_cells
    from cloudbench.paper import figures as F
    from cloudbench.paper import tables as T

    lang = check_language(study.analysis.language if study else "en")
    alternative = study.hypothesis if study else "two-sided"
    alpha = study.analysis.alpha if study else 0.05
    envs = T.environments_of(analysis) or T.ordered(usable["environment"])
    metrics = T.metrics_of(analysis)
    pairs = analysis.pairs

    factors, sweep = _sweep_model(frame, study, envs, lang)
    # a sweep's cells are shown by its own figures instead
    figures = {} if sweep is not None else F.figure_specs(
        usable, metrics, lang, list(protocol.phases) if protocol else None)
    sections = _metric_sections(analysis, metrics, lang, alternative, figures,
                                swept=sweep is not None)
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
    for col in [c for c in ("epochs", "batch_size", "model") if c in usable]:
        value = summarise(usable[col], lang)
        if value and col not in params:
            params[col] = value
    margins = [c.equivalence.margin for c in analysis.comparisons if c.equivalence]
    outliers = sum(T.outlier_count(c, env) for _, env, c in
                   (g for m in metrics for g in T.groups(analysis, m)))
    parameters = [(k, plain_value(v) if not isinstance(v, dict | list) else json.dumps(v))
                  for k, v in params.items()]
    facts = {
        "description": study.description.strip().rstrip(".") if study else "",
        "envs": envs,
        "env_list": join_names(envs, lang),
        "datasets": T.ordered(usable["dataset"]) if len(usable) else [],
        "dataset_list": join_names(T.ordered(frame["dataset"]), lang),
        "metrics": metrics,
        "metric_list": join_names([the(m, lang) for m in metrics], lang),
        "repetitions": study.repetitions if study else None,
        "reps": _range_text(counts, lang),
        "warmup": study.warmup if study else _warmup_per_group(frame, usable, failed),
        "seed": study.seed if study else None,
        "order": study.order if study else None,
        "total_runs": len(frame),
        "failed_runs": failed,
        "notebook": study.notebook.name if study else manifest.get("notebook", ""),
        # A notebook timed by its tags: the paper speaks of it, not of the built-in CNN.
        "own_notebook": protocol is not None,
        "phase_list": join_names([code(p) for p in protocol.phases], lang) if protocol else "",
        # Runs from another source may carry none of the protocol's timings.
        "protocol_known": bool(study or manifest or "train_s" in frame),
        "n_params": summarise(usable["n_params"], lang) if "n_params" in usable else None,
        "parameters": parameters,
        "parameter_list": "; ".join(f"{code(k)} = {v}" for k, v in parameters),
        "manifest": {"version": manifest.get("toolkit_version") or toolkit_version(),
                     "commit": short(manifest.get("git_commit")),
                     "dirty": bool(manifest.get("git_dirty")),
                     "notebook_sha": short(manifest.get("notebook_sha256")),
                     "study_sha": short(manifest.get("study_sha256") or
                                         (study.file_sha256() if study else "")),
                     "created": str(manifest.get("created_at", ""))[:19]},
        "stopping": stopping_text(manifest.get("stopping"), lang),
        "calibration_env": calibration.get("environment", ""),
        "alpha": fmt_num(alpha, 2, lang, bounded=True),
        "alternative": alternative,
        "procedure": analysis.procedure,
        "procedure_name": procedure_name(analysis.procedure, lang),
        "margin": percent(margins[0], lang) if margins else None,
        "simulated_error": _simulated_error(analysis, primary, alpha, lang),
        "h0": h0, "h1": h1,
        "machines": _machines_text(study, manifest, lang),
        "n_comparisons": len(analysis.comparisons),
        "n_significant": sum(c.significant for c in analysis.comparisons),
        "n_inconclusive": sum(c.equivalence is not None and c.equivalence.conclusion
                              == "inconclusive" for c in analysis.comparisons),
        "warnings": list(analysis.warnings),  # a group's warning once, not once per pair
        "outliers": outliers,
    }
    tables = {
        "environments": T.environments_table(fps, lang),
        "phases": T.phases_table(
            [(name, [(c.index, c.first_line) for c in protocol.cells if c.phase == name])
             for name in protocol.phases] if protocol else [], lang),
        "datasets": T.datasets_table(dataset_rows(frame, study), lang),
        "runs": T.runs_table(cells, lang),
        "calibration": T.calibration_table(calibration, lang),
        "quality": T.quality_table(usable_cells, lang),
        "cost": T.cost_table(frame, lang, _price_sources(study, manifest)),
        "resources": T.resources_table(usable_cells, lang),
        "decisions": T.decisions_table(analysis, lang, alpha),
        "equivalence": T.equivalence_table(analysis, lang),
        "kruskal": T.kruskal_table(analysis, lang),
    }
    extra = T.registered_parts(T.Inputs(cells, usable_cells, analysis, study,
                                         list(protocol.phases) if protocol else None, lang))
    return Report(
        lang=lang, name=name,
        title=label("title_notebook" if protocol is not None else "title", lang,
                    envs=join_names(envs, lang), notebook=facts["notebook"]),
        author=label("author", lang, version=toolkit_version()),
        date=_date(frame, manifest), facts=facts, tables=tables, figures=figures,
        sections=sections, sweep=sweep, explorer=F.explorer_spec(usable, metrics, lang),
        extra=extra, factors=factors)


def _outputs(out_dir: Path, name: str, formats: tuple[str, ...]) -> dict[str, Path]:
    return {f: Path(out_dir) / f"{name}.{f}" for f in formats}


def build_paper(runs_csv: Path, study: Study | None = None, out_dir: Path = Path("paper/build"),
                analysis: Analysis | None = None, formats: tuple[str, ...] = ("pdf",)) -> Path:
    """Write out_dir/<study>/ (tex, tables, figures) and out_dir/<study>.pdf, and with "html"
    in `formats` the self-contained page out_dir/<study>.html; the first format's path.

    `analysis`: an analysis of the runs already made (else the runs are analysed here).
    Returns at once, touching nothing, when no input changed since the last build.
    """
    runs_csv = Path(runs_csv)
    if not runs_csv.is_file():
        raise PaperError(f"no runs table at {runs_csv}; run the study first")
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise PaperError(f"unknown format {unknown[0] if unknown else '(none)'}; "
                         f"choose from {', '.join(FORMATS)}")
    name = study.name if study else study_name_from_csv(runs_csv)
    folder = Path(out_dir) / name
    outputs = _outputs(out_dir, name, formats)
    extra = json.dumps(analysis.to_dict(), sort_keys=True) if analysis is not None else ""
    digest = inputs_digest(runs_csv, study.path if study else None, extra)
    if up_to_date(folder, list(outputs.values()), digest):
        return outputs[formats[0]]

    folder.mkdir(parents=True, exist_ok=True)
    frame, usable = _load_frames(runs_csv)
    protocol = tagged_protocol(study)  # read once: the metrics, the phases table and figure
    if analysis is None:
        analysis = _analyze(usable, study, protocol)
    _write_analysis(analysis, runs_csv, folder)
    manifest_file, calibration_file = beside(runs_csv)
    manifest = _read_manifest(manifest_file)
    calibration = _read_json(calibration_file) or manifest.get("calibration") or {}
    report = report_model(frame, usable, analysis, study, manifest, calibration, protocol,
                          name)
    if report.factors is not None:  # a sweep's factor analysis, beside the paper's files
        write_text_atomic(folder / "factors.json",
                          json.dumps(report.factors.to_dict(), indent=2, allow_nan=False) + "\n")
    if "pdf" in outputs:
        from cloudbench.paper.latex import render_paper
        from cloudbench.paper.latexmk import run_latexmk

        tex = render_paper(report, folder)
        write_text_atomic(folder / f"{name}.tex", tex)
        built = run_latexmk(folder, f"{name}.tex")
        with atomic_path(outputs["pdf"]) as tmp:
            shutil.copyfile(built, tmp)
    if "html" in outputs:
        from cloudbench.paper.html import render_page

        write_text_atomic(outputs["html"], render_page(report))
    write_stamp(folder, digest, datetime.now(UTC).isoformat(timespec="seconds"), formats)
    return outputs[formats[0]]

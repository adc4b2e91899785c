"""The paper: methodology from the study file and the run fingerprints, results from the
analysis, conclusions written from the decisions; built with latexmk.

A build is keyed by a hash of everything it depends on (runs.csv, the study file, the
manifest, the templates and this toolkit's report code). When nothing changed the PDF on
disk is returned at once: no analysis, no figures, no latexmk. That keeps `study paper`
cheap enough to run after every `study run`.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import shutil
import subprocess
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from analysis.latex import (
    LABELS,
    METRIC_NAMES,
    check_language,
    escape,
    fmt_num,
    fmt_p,
    label,
    metric_name,
    p_clause,
)

if TYPE_CHECKING:
    import pandas as pd

    from study.spec import Study

PACKAGE_DIR = Path(__file__).resolve().parent
ROOT = PACKAGE_DIR.parent
TEMPLATE_DIR = PACKAGE_DIR / "templates"
# The code whose change must rebuild the paper even when the data did not change.
CODE_FILES = ("analysis/latex.py", "analysis/tables.py", "analysis/figures.py",
              "analysis/compare.py", "analysis/stats.py", "paper/build.py")
STAMP = "build.json"
FIGURES = ("train_total", "train_mean", "epochs", "accuracy_time")  # the template's figures
LATEXMK = ["latexmk", "-pdf", "-interaction=nonstopmode", "-halt-on-error"]
FINGERPRINT_KEYS = (("runner", "runner"), ("accelerator", "accelerator"),
                    ("device_name", "device"), ("cpu_model", "cpu"), ("cpu_count", "cores"),
                    ("ram_gb", "ram"), ("os", "os"), ("python", "python"),
                    ("tensorflow", "tensorflow"), ("keras", "keras"))


class PaperError(RuntimeError):
    """The paper could not be built; the message quotes the LaTeX log where it helps."""


# --------------------------------------------------------------------------- inputs and hash


def study_name_from_csv(runs_csv: Path) -> str:
    """The study's name from the CSV's `study` column, else the CSV's folder name.

    Reads only the first data row: this runs on the no-change path, where time counts.
    """
    with runs_csv.open(newline="", encoding="utf-8") as fh:
        row = next(csv.DictReader(fh), None) or {}
    name = (row.get("study") or "").strip()
    return name or runs_csv.resolve().parent.name


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def toolkit_version() -> str:
    try:
        from importlib.metadata import version

        return version("cloudbench-study")
    except Exception:  # not installed: running from a checkout
        return "0+checkout"


def inputs_digest(runs_csv: Path, study_file: Path | None, extra: str = "") -> str:
    """One hash over every input of the paper, so an unchanged paper is never rebuilt:
    runs.csv and what lies beside it (manifest, calibration), the study file, the
    templates and the report's code."""
    h = hashlib.sha256(toolkit_version().encode())
    files: list[Path | None] = [runs_csv, study_file, *beside(runs_csv)]
    files += sorted(TEMPLATE_DIR.glob("*"))
    files += [ROOT / f for f in CODE_FILES]
    for path in files:
        h.update(b"\0" + (str(path.name).encode() if path else b"-") + b"\0")
        if path is not None and path.is_file():
            h.update(_sha256(path.read_bytes()).encode())
    h.update(extra.encode())
    return h.hexdigest()


def _read_stamp(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def up_to_date(folder: Path, pdf: Path, digest: str) -> bool:
    return pdf.is_file() and _read_stamp(folder).get("digest") == digest


def beside(runs_csv: Path) -> tuple[Path, Path]:
    """The manifest and the A/A calibration the results store keeps beside runs.csv."""
    return runs_csv.parent / "manifest.json", runs_csv.parent / "calibration.json"


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON object from a file, or {} when it is absent or unreadable (optional inputs)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


# --------------------------------------------------------------------------- sentences


def join_names(names: Sequence[str], lang: str, escaped: bool = False) -> str:
    """"a, b and c" / "a, b y c"; names are escaped unless they are LaTeX already."""
    items = list(names) if escaped else [escape(n) for n in names]
    if len(items) < 2:
        return "".join(items)
    word = " y " if lang == "es" else " and "
    return ", ".join(items[:-1]) + word + items[-1]


def short_metric(metric: str, lang: str) -> str:
    """The metric's name for sentences: without its unit, which reads badly in prose."""
    return re.sub(r"\s*\([^)]*\)$", "", metric_name(metric, lang))


def _the(metric: str, lang: str, capital: bool = False) -> str:
    """The metric with its article in Spanish ("el tiempo de entrenamiento")."""
    name = short_metric(metric, lang)
    if lang == "es":
        name = ("el " + name) if metric in METRIC_NAMES["es"] else f"la métrica {name}"
    return name[0].upper() + name[1:] if capital else name


def statistics_clause(c: dict[str, Any], lang: str) -> str:
    """"U = 265, Z = -0.48, p = .633" (Spanish: separated by semicolons, decimal comma)."""
    from analysis.tables import test_statistic

    sep = "; " if lang == "es" else ", "
    parts = [test_statistic(c, lang)]
    if c.get("test_used") == "mann_whitney":
        parts.append("$Z$ = " + fmt_num((c.get("mann_whitney") or {}).get("Z"), 2, lang))
    parts.append(p_clause(c.get("p"), lang))
    holm = c.get("p_holm")
    # Holm's p is quoted only where it reads differently (not when both are "< .001").
    if holm is not None and fmt_p(holm, lang) != fmt_p(c.get("p"), lang):
        word = "$p$ ajustada (Holm)" if lang == "es" else "Holm-adjusted $p$"
        parts.append(word + p_clause(holm, lang)[3:])
    return sep.join(parts)


def _centre(c: dict[str, Any], env: str) -> float | None:
    """The median (rank test) or mean (t-test) of one group, to say which way it goes."""
    d = (c.get("descriptives") or {}).get(env) or {}
    value = d.get("median" if c.get("test_used") == "mann_whitney" else "mean")
    return None if value is None else float(value)


def conclusion(c: dict[str, Any], lang: str = "en", alternative: str = "two-sided") -> str:
    """One sentence per decision, e.g. "There is no significant difference in training
    time between pc and colab on shapes (U = 265, Z = -0.48, p = .633).\""""
    a, b, ds = escape(c["a"]), escape(c["b"]), escape(c["dataset"])
    stats = statistics_clause(c, lang)
    if c.get("significant"):
        ca, cb = _centre(c, c["a"]), _centre(c, c["b"])
        lower = alternative == "less" if alternative != "two-sided" else (
            ca is not None and cb is not None and ca < cb)
        if lang == "es":
            text = (f"{_the(c['metric'], lang, True)} con el DataSet {ds} es significativamente "
                    f"{'menor' if lower else 'mayor'} en {a} que en {b} ({stats})")
        else:
            text = (f"{short_metric(c['metric'], lang).capitalize()} on {ds} is significantly "
                    f"{'lower' if lower else 'higher'} on {a} than on {b} ({stats})")
        return text + _ratio_clause(c, lang) + "."
    if alternative != "two-sided":
        word = {"en": {"less": "lower", "greater": "higher"},
                "es": {"less": "menor", "greater": "mayor"}}[lang][alternative]
        if lang == "es":
            return (f"No hay evidencia significativa de que {_the(c['metric'], lang)} con el "
                    f"DataSet {ds} sea {word} en {a} que en {b} ({stats}).")
        return (f"There is no significant evidence that {short_metric(c['metric'], lang)} on "
                f"{ds} is {word} on {a} than on {b} ({stats}).")
    if lang == "es":
        return (f"No existe diferencia significativa en {_the(c['metric'], lang)} entre {a} y "
                f"{b} con el DataSet {ds} ({stats}).")
    return (f"There is no significant difference in {short_metric(c['metric'], lang)} between "
            f"{a} and {b} on {ds} ({stats}).")


def _ratio_clause(c: dict[str, Any], lang: str) -> str:
    """"; the median on a is 0.71 times that on b (95 % CI 0.68 to 0.74)"."""
    ratio = c.get("median_ratio") or {}
    if ratio.get("estimate") is None:
        return ""
    a, b = escape(c["a"]), escape(c["b"])
    est = fmt_num(ratio["estimate"], 2, lang)
    ci = ""
    if ratio.get("ci_low") is not None and ratio.get("ci_high") is not None:
        lo, hi = fmt_num(ratio["ci_low"], 2, lang), fmt_num(ratio["ci_high"], 2, lang)
        ci = f" (IC 95\\,\\% {lo} a {hi})" if lang == "es" else f" (95\\,\\% CI {lo} to {hi})"
    if lang == "es":
        return f"; la mediana en {a} es {est} veces la de {b}{ci}"
    return f"; the median on {a} is {est} times that on {b}{ci}"


def hypotheses(metric: str, pairs: Sequence[tuple[str, str]], lang: str,
               alternative: str) -> tuple[str, str]:
    """H0 and H1 in words for the primary metric, as the reference paper states them."""
    if len(pairs) == 1:
        a, b = (escape(x) for x in pairs[0])
    else:
        a, b = ("A", "B")
    many = len(pairs) > 1
    if lang == "es":
        m = _the(metric, lang)
        h0 = f"No existe diferencia en {m} entre {a} y {b}."
        h1 = {"two-sided": f"{m[0].upper() + m[1:]} difiere entre {a} y {b}.",
              "less": f"{m[0].upper() + m[1:]} en {a} es menor que en {b}.",
              "greater": f"{m[0].upper() + m[1:]} en {a} es mayor que en {b}."}[alternative]
        prefix = ("Para cada par de entornos A y B (en el orden de la "
                  "Tabla~\\ref{tab:environments}): ") if many else ""
    else:
        m = short_metric(metric, lang)
        h0 = f"There is no difference in {m} between {a} and {b}."
        h1 = {"two-sided": f"{m.capitalize()} differs between {a} and {b}.",
              "less": f"{m.capitalize()} is lower on {a} than on {b}.",
              "greater": f"{m.capitalize()} is higher on {a} than on {b}."}[alternative]
        prefix = ("For each pair of environments A and B (in the order of "
                  "Table~\\ref{tab:environments}): ") if many else ""
    return prefix + h0, prefix + h1


def _percent(x: float, lang: str) -> str:
    return fmt_num(100 * float(x), 1, lang) + "\\,\\%"


def stopping_text(stopping: Any, lang: str) -> str:
    """Why an "auto" study stopped when it did, from the scheduler's record in the manifest."""
    if not isinstance(stopping, dict) or not stopping:
        return ""
    reps = escape(stopping.get("repetitions", "?"))
    target = stopping.get("target_halfwidth")
    if not isinstance(target, int | float):  # a rule this template does not know: quote it
        reason = escape(stopping.get("reason", ""))
        return (f"El estudio se detuvo tras {reps} repeticiones: {reason}." if lang == "es"
                else f"The study stopped after {reps} repetitions: {reason}.")
    widths = [float(v) for v in (stopping.get("halfwidths") or {}).values()
              if isinstance(v, int | float) and not isinstance(v, bool)]
    met = bool(stopping.get("met"))
    metric = str(stopping.get("metric", "train_s"))
    if lang == "es":
        of_metric = "del " + _the(metric, lang)[3:] if _the(metric, lang).startswith("el ") \
            else "de " + _the(metric, lang)
        widest = f" (el más ancho: $\\pm${_percent(max(widths), lang)})" if widths else ""
        end = "se alcanzó el objetivo" if met else \
            "se alcanzó el máximo de repeticiones sin lograr el objetivo"
        return (f"Se añadieron bloques de repeticiones hasta que cada intervalo del 95\\,\\% "
                f"de la razón de medianas {of_metric} entre entornos tuviera una "
                f"semiamplitud de $\\pm${_percent(target, lang)} como máximo; el estudio se "
                f"detuvo tras {reps} repeticiones: {end}{widest}.")
    widest = f" (widest: $\\pm${_percent(max(widths), lang)})" if widths else ""
    end = "the target was met" if met else \
        "the maximum number of repetitions was reached before the target"
    return (f"Repetitions were added block by block until every 95\\,\\% interval of the "
            f"ratio of median {short_metric(metric, lang)} between environments was within "
            f"$\\pm${_percent(target, lang)}; the study stopped after {reps} repetitions: "
            f"{end}{widest}.")


# --------------------------------------------------------------------------- methodology data


def _plain_value(value: Any) -> str:
    """A fingerprint value as text: whole floats without ".0", missing as empty."""
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _summarise(values: Iterable[Any], lang: str) -> str:
    """The value the runs of an environment share, or the distinct values if they vary."""
    distinct = list(dict.fromkeys(v for v in map(_plain_value, values) if v))
    if len(distinct) <= 1:
        return "".join(distinct)
    shown = "; ".join(distinct[:3])
    return shown + (f" ({label('varies', lang)})" if len(distinct) > 3 else "")


def fingerprints(frame: pd.DataFrame, study: Study | None, lang: str
                 ) -> dict[str, dict[str, str]]:
    """Hardware and software per environment from the runs, the study adding the runner."""
    envs = list(dict.fromkeys(frame["environment"].astype(str)))
    spec = {e.name: e for e in study.environments} if study else {}
    out: dict[str, dict[str, str]] = {}
    for env in envs:
        rows = frame[frame["environment"].astype(str) == env]
        fp: dict[str, str] = {}
        for column, key in FINGERPRINT_KEYS:
            value = _summarise(rows[column], lang) if column in rows else ""
            if column == "runner" and env in spec:
                value = spec[env].runner
            if column == "accelerator" and env in spec and not value:
                e = spec[env]
                value = e.accelerator + (f" ({e.gpu or e.tpu})" if e.gpu or e.tpu else "")
            if value:
                fp[key] = value
        out[env] = fp
    return out


def dataset_rows(frame: pd.DataFrame, study: Study | None) -> list[dict[str, str]]:
    """Name, source, images, size and the train/test split of each dataset."""
    spec = {d.name: d for d in study.datasets} if study else {}
    rows = []
    for name in dict.fromkeys(frame["dataset"].astype(str)):
        runs = frame[frame["dataset"].astype(str) == name]
        d = spec.get(name)
        row = {"name": name, "source_col": d.keras_name or d.source if d else "",
               "images": _plain_value(d.images) if d and d.images else "",
               "size": "x".join(map(str, d.size)) if d and d.size else
               ("28x28" if d and d.source == "shapes" else "")}
        for key in ("n_train", "n_test"):
            row[key] = _summarise(runs[key], "en") if key in runs else ""
        rows.append(row)
    return rows


def _short(text: Any, n: int = 12) -> str:
    return str(text)[:n] if text else ""


# --------------------------------------------------------------------------- LaTeX


def _jinja_env() -> Any:
    """Jinja with LaTeX-safe delimiters; every value is escaped unless marked as LaTeX."""
    import jinja2
    from markupsafe import Markup

    def finalize(value: Any) -> Any:
        return value if isinstance(value, Markup) else escape(value)

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)), autoescape=False,
        block_start_string=r"\BLOCK{", block_end_string="}",
        variable_start_string=r"\VAR{", variable_end_string="}",
        comment_start_string=r"\#{", comment_end_string="}",
        line_comment_prefix="%#", trim_blocks=True, lstrip_blocks=True,
        undefined=jinja2.StrictUndefined, finalize=finalize, keep_trailing_newline=True)


def log_excerpt(log: Path, context: int = 3, limit: int = 40) -> str:
    """The error lines of a LaTeX log ("! ..." and the "l.<n>" line after), for the message."""
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return f"(no log at {log})"
    picked: list[str] = []
    for i, line in enumerate(lines):
        if line.startswith("!") or re.match(r"^.*:\d+: ", line):
            picked += lines[i:i + context + 1]
            picked += [ln for ln in lines[i + context + 1:i + 12] if ln.startswith("l.")][:1]
    if not picked:
        picked = lines[-15:]
    return "\n".join(picked[:limit])


def run_latexmk(folder: Path, tex_name: str, timeout: float = 300) -> Path:
    """pdflatex through latexmk; on failure, a PaperError quoting the log's errors."""
    from study.sysdeps import require_command

    require_command("latexmk")
    cmd = [*LATEXMK, tex_name]
    try:
        # TeX writes 8-bit text (accents in Spanish): never fail on decoding its chatter.
        proc = subprocess.run(cmd, cwd=folder, capture_output=True, text=True, errors="replace",
                              timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise PaperError(f"latexmk took more than {timeout:.0f} s on {folder / tex_name}") \
            from exc
    stem = Path(tex_name).stem
    pdf = folder / f"{stem}.pdf"
    if proc.returncode != 0 or not pdf.is_file():
        log = folder / f"{stem}.log"
        raise PaperError(f"latexmk failed (exit {proc.returncode}) on {folder / tex_name}; "
                         f"from {log}:\n{log_excerpt(log)}")
    return pdf


# --------------------------------------------------------------------------- the build


def _load_frames(runs_csv: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(every run, as recorded; the runs the analysis counts, metrics as numbers).

    The first feeds the run counts and the fingerprints, the second the tests and figures.
    """
    import pandas as pd

    from analysis.compare import AnalysisError, load_runs

    try:
        usable = load_runs(runs_csv)
        raw = pd.read_csv(runs_csv, dtype=str, keep_default_na=False, skipinitialspace=True)
    except AnalysisError as exc:
        raise PaperError(str(exc)) from exc
    if usable.empty:
        raise PaperError(f"{runs_csv}: no successful runs to report")
    return raw, usable


def _analyze(usable: pd.DataFrame, study: Study | None) -> dict[str, Any]:
    from analysis.compare import AnalysisError, analyze
    from study.spec import DEFAULT_METRICS

    wanted = study.analysis.metrics if study else DEFAULT_METRICS
    # A CSV gathered elsewhere may hold none of the usual metrics: then every numeric one.
    present = [m for m in wanted if m in usable and usable[m].notna().any()]
    options = {"alternative": study.hypothesis, "alpha": study.analysis.alpha,
               "environments": [e.name for e in study.environments]} if study else {}
    try:
        return analyze(usable, metrics=present or None, **options)
    except AnalysisError as exc:
        raise PaperError(f"cannot analyse the runs: {exc}") from exc


def _write_analysis(analysis: dict[str, Any], runs_csv: Path, folder: Path) -> Path:
    """analysis.json beside runs.csv (data/results/<study>/), or in the build folder."""
    text = json.dumps(analysis, indent=2, sort_keys=False, default=_json_default) + "\n"
    (folder / "analysis.json").write_text(text, encoding="utf-8")
    target = runs_csv.parent / "analysis.json"
    try:
        target.write_text(text, encoding="utf-8")
    except OSError:
        return folder / "analysis.json"
    return target


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


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
    return f"de {low} a {high}" if lang == "es" else f"{low} to {high}"


def _date(frame: pd.DataFrame, manifest: dict[str, Any]) -> str:
    """The date of the last run (not of the build): the same inputs make the same paper."""
    if "started_at" in frame:
        stamps = [s for s in frame["started_at"].astype(str) if s.strip() and s != "nan"]
        if stamps:
            return max(stamps)[:10]
    return str(manifest.get("created_at", ""))[:10] or datetime.now(UTC).date().isoformat()


def _metric_sections(analysis: dict[str, Any], metrics: list[str], lang: str,
                     alternative: str, table: Callable[[str, str], Any],
                     figures: dict[str, Any]) -> list[dict[str, Any]]:
    """One results subsection per metric: its box plot, its tables, its decisions.

    The Mann-Whitney and ranks tables are always shown (the reference paper's test, and a
    robustness check beside a t-test); the t-test table where a t-test was used.
    """
    from markupsafe import Markup

    from analysis import tables as T

    sections = []
    for i, metric in enumerate(metrics):
        found = T.comparisons(analysis, metric)
        parts = [table(f"desc_{i}", T.descriptives_table(analysis, metric, lang)),
                 table(f"shapiro_{i}", T.shapiro_table(analysis, metric, lang)),
                 table(f"mw_{i}", T.mann_whitney_table(analysis, metric, lang, alternative)),
                 table(f"ranks_{i}", T.ranks_table(analysis, metric, lang))]
        if {c.get("test_used") for c in found} & {"student_t", "welch_t"}:
            parts.append(table(f"t_{i}", T.t_test_table(analysis, metric, lang, alternative)))
        title = metric_name(metric, lang, capital=True)
        sections.append({
            "title": Markup(title), "tables": [p for p in parts if p],
            "figure": figures.get(f"box_{i}"),
            "figure_caption": Markup(label("fig_box", lang, metric=title)),
            "conclusions": [Markup(conclusion(c, lang, alternative)) for c in found]})
    return sections


def paper_context(frame: pd.DataFrame, usable: pd.DataFrame, analysis: dict[str, Any],
                  study: Study | None, manifest: dict[str, Any],
                  calibration: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Everything the template shows; writes the tables and figures it refers to.

    `frame` holds every run as recorded, `usable` the runs the analysis counts.
    """
    from markupsafe import Markup

    from analysis import figures as F
    from analysis import tables as T

    lang = check_language(study.analysis.language if study else "en")
    alternative = study.hypothesis if study else "two-sided"
    alpha = study.analysis.alpha if study else 0.05
    envs = T.environments_of(analysis) or T.ordered(usable["environment"])
    metrics = T.metrics_of(analysis)
    pairs = list(dict.fromkeys((c["a"], c["b"]) for c in T.comparisons(analysis)))

    tables_dir, figures_dir = folder / "tables", folder / "figures"
    for d in (tables_dir, figures_dir):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)

    def table(name: str, text: str) -> Markup | None:
        if not text:
            return None
        (tables_dir / f"{name}.tex").write_text(text, encoding="utf-8")
        return Markup(f"tables/{name}.tex")

    made = dict.fromkeys(FIGURES)
    made.update({k: Markup(f"figures/{p.name}") for k, p in
                 F.make_figures(usable, figures_dir, metrics, lang).items()})
    sections = _metric_sections(analysis, metrics, lang, alternative, table, made)
    fps = fingerprints(frame, study, lang)
    primary = metrics[0] if metrics else (study.analysis.metrics[0] if study else "train_s")
    if not pairs:
        pairs = [(envs[0], envs[1]) if len(envs) > 1 else ("A", "B")]
    h0, h1 = hypotheses(primary, pairs, lang, alternative)
    counts = usable.groupby(["environment", "dataset"]).size() if len(usable) else None
    failed = int((frame["status"].astype(str).str.strip() != "ok").sum()) \
        if "status" in frame else 0
    params = dict(manifest.get("parameters") or (study.parameters if study else {}))
    first_cols = [c for c in ("epochs", "batch_size", "model") if c in usable]
    for col in first_cols:
        value = _summarise(usable[col], lang)
        if value and col not in params:
            params[col] = value
    warnings = [*(w for c in T.comparisons(analysis) for w in c.get("warnings") or []),
                *(analysis.get("warnings") or [])]
    # A group's warning is repeated in each of its pairs: once is enough.
    warnings = list(dict.fromkeys(w if isinstance(w, str) else json.dumps(w) for w in warnings))
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
        "metric_list": Markup(join_names([_the(m, lang) for m in metrics], lang, escaped=True)),
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
        "n_params": _summarise(usable["n_params"], lang) if "n_params" in usable else None,
        "parameters": [(k, _plain_value(v) if not isinstance(v, dict | list)
                        else json.dumps(v)) for k, v in params.items()],
        "manifest": {"version": manifest.get("toolkit_version") or toolkit_version(),
                     "commit": _short(manifest.get("git_commit")),
                     "dirty": bool(manifest.get("git_dirty")),
                     "notebook_sha": _short(manifest.get("notebook_sha256")),
                     "study_sha": _short(manifest.get("study_sha256") or
                                         (study.file_sha256() if study else "")),
                     "created": str(manifest.get("created_at", ""))[:19]},
        "stopping": Markup(stopping_text(manifest.get("stopping"), lang)),
        "calibration_env": calibration.get("environment", ""),
        "alpha": Markup(fmt_num(alpha, 2, lang, bounded=True)),
        "alternative": alternative,
        "h0": Markup(h0), "h1": Markup(h1),
        "tables": {
            "environments": table("environments", T.environments_table(fps, lang)),
            "datasets": table("datasets", T.datasets_table(dataset_rows(frame, study), lang)),
            "runs": table("runs", T.runs_table(frame, lang)),
            "quality": table("quality", T.quality_table(usable, lang)),
            "resources": table("resources", T.resources_table(usable, lang)),
            "decisions": table("decisions", T.decisions_table(analysis, lang, alpha)),
            "kruskal": table("kruskal", T.kruskal_table(analysis, lang)),
            "calibration": table("calibration", T.calibration_table(calibration, lang)),
        },
        "figures": made,
        "sections": sections,
        "n_comparisons": len(T.comparisons(analysis)),
        "n_significant": sum(bool(c.get("significant")) for c in T.comparisons(analysis)),
        "warnings": warnings,
        "outliers": outliers,
    }


def build_paper(runs_csv: Path, study: Study | None = None, out_dir: Path = Path("paper/build"),
                analysis: dict[str, Any] | None = None) -> Path:
    """Write out_dir/<study>/ (tex, tables, figures) and out_dir/<study>.pdf.

    Returns at once, touching nothing, when no input changed since the last build.
    """
    runs_csv = Path(runs_csv)
    if not runs_csv.is_file():
        raise PaperError(f"no runs table at {runs_csv}; run the study first")
    name = study.name if study else study_name_from_csv(runs_csv)
    folder, pdf = Path(out_dir) / name, Path(out_dir) / f"{name}.pdf"
    extra = json.dumps(analysis, sort_keys=True, default=_json_default) if analysis else ""
    digest = inputs_digest(runs_csv, study.path if study else None, extra)
    if up_to_date(folder, pdf, digest):
        return pdf

    folder.mkdir(parents=True, exist_ok=True)
    frame, usable = _load_frames(runs_csv)
    if analysis is None:
        analysis = _analyze(usable, study)
    _write_analysis(analysis, runs_csv, folder)
    manifest_file, calibration_file = beside(runs_csv)
    manifest = _read_json(manifest_file)
    calibration = _read_json(calibration_file) or manifest.get("calibration") or {}
    context = paper_context(frame, usable, analysis, study, manifest, calibration, folder)
    tex = _jinja_env().get_template("paper.tex.j2").render(**context)
    (folder / f"{name}.tex").write_text(tex, encoding="utf-8")
    built = run_latexmk(folder, f"{name}.tex")
    shutil.copyfile(built, pdf)
    stamp = _read_stamp(folder)
    (folder / STAMP).write_text(json.dumps({
        "digest": digest, "builds": int(stamp.get("builds", 0)) + 1,
        "built_at": datetime.now(UTC).isoformat(timespec="seconds")}, indent=2) + "\n",
        encoding="utf-8")
    return pdf


def build_count(out_dir: Path, name: str) -> int:
    """How many times latexmk built this paper (the stamp's counter): for tests and benchmarks."""
    return int(_read_stamp(Path(out_dir) / name).get("builds", 0))

"""A tagged notebook's record, read from the executed notebook: phases, metrics, fingerprint.

nbclient stamps every cell with the kernel's own times: ``iopub.execute_input`` when the
kernel starts the cell and ``shell.execute_reply`` when it has finished. Their difference is
the cell's kernel-side time, which excludes the client and, for a remote kernel, the
network; papermill's per-cell ``duration`` (client-side) is kept beside it. The metrics
cell's last expression comes back as its ``text/plain`` output, read without evaluating
code. Every runner produces the executed notebook the same way, so every runner times a
notebook the same way.
"""

from __future__ import annotations

import ast
import datetime as dt
import json
import math
import re
from typing import Any

from cloudbench.study.notebook import METRICS_TAG, PHASE_PREFIX, describe, first_line
from cloudbench.study.record import (
    BOOKKEEPING_FIELDS,
    FINGERPRINT_FIELDS,
    OCCASIONAL_FIELDS,
    RUNNER_FIELDS,
    RecordError,
)
from cloudbench.study.spec import PROJECT_ROOT

__all__ = ["RecordError", "failed_cell", "fingerprint", "metrics", "phase_times", "record"]

FINGERPRINT_TAG = "cloudbench-fingerprint"
ERROR_MARKER_TAG = "papermill-error-cell-tag"  # papermill.execute.ERROR_MARKER_TAG
FINGERPRINT_MARK = "CLOUDBENCH-FINGERPRINT "
METRICS_MARK = "CLOUDBENCH-METRICS "
#: Columns the toolkit measures or writes itself, which no metrics key may take.
MEASURED = frozenset(RUNNER_FIELDS + FINGERPRINT_FIELDS + BOOKKEEPING_FIELDS
                     + OCCASIONAL_FIELDS) - {
    "model", "n_params"} | {"peak_rss_mb", "peak_gpu_mb", "peak_gpu_nvml_mb", "other_s",
                            "total_s", "total_client_s"}
#: The id of the toolkit's own last cell: a cell of the notebook with its tag is not it.
FINGERPRINT_CELL_ID = "cloudbench-fingerprint"



def fingerprint_cell_source(metric_names: tuple[str, ...] = ()) -> str:
    """The last cell added to the executed copy (never to the researcher's notebook): the
    kernel describes itself after the protocol ran, with the frameworks the notebook
    imported, in a cell that is not timed and needs no toolkit import. With `metric_names`
    (a metrics cell that assigns its results) it also prints their values."""
    body = (PROJECT_ROOT / "protocols" / "fingerprint.py").read_text(encoding="utf-8")
    values = ""
    if metric_names:
        values = ("import json as _cbj\n"
                  f"print({METRICS_MARK!r} + _cbj.dumps({{_n: repr(globals().get(_n)) for _n "
                  f"in {list(metric_names)!r}}}), flush=True)\ndel _cbj\n")
    return ("# cloudbench: the kernel's fingerprint (added by the toolkit; not timed)\n"
            f"_cb = {{}}\nexec(compile({body!r}, 'cloudbench-fingerprint', 'exec'), _cb)\n"
            f"_cb['print_fingerprint']({FINGERPRINT_MARK!r})\ndel _cb\n{values}")


def _stamp(value: Any) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def kernel_seconds(cell: dict[str, Any]) -> float | None:
    """The cell's kernel-side time: shell.execute_reply - iopub.execute_input."""
    execution = cell.get("metadata", {}).get("execution", {})
    start = _stamp(execution.get("iopub.execute_input"))
    end = _stamp(execution.get("shell.execute_reply"))
    return None if start is None or end is None else max(0.0, (end - start).total_seconds())


def _phase(cell: dict[str, Any]) -> str:
    tags = cell.get("metadata", {}).get("tags", [])
    return next((t[len(PHASE_PREFIX):] for t in tags if t.startswith(PHASE_PREFIX)), "other")


def _timed_cells(nb: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in nb.get("cells", []) if c.get("cell_type") == "code"
            and FINGERPRINT_TAG not in c.get("metadata", {}).get("tags", [])]


def phase_times(nb: dict[str, Any]) -> dict[str, float]:
    """NAME_s per phase (kernel-side), other_s, total_s, and NAME_client_s (papermill's)."""
    kernel: dict[str, float] = {}
    client: dict[str, float] = {}
    for cell in _timed_cells(nb):
        seconds = kernel_seconds(cell)
        if seconds is None:  # not executed (the run stopped before it)
            continue
        name = _phase(cell)
        kernel[name] = kernel.get(name, 0.0) + seconds
        duration = cell.get("metadata", {}).get("papermill", {}).get("duration")
        if isinstance(duration, int | float):
            client[name] = client.get(name, 0.0) + float(duration)
    out = {f"{name}_s": round(v, 6) for name, v in kernel.items()}
    out.setdefault("other_s", 0.0)
    out["total_s"] = round(sum(kernel.values()), 6)
    out.update({f"{name}_client_s": round(v, 6) for name, v in client.items()})
    out["total_client_s"] = round(sum(client.values()), 6)
    return out


def _literal(node: ast.AST) -> Any:
    """A literal, where numpy and torch scalars (`np.float64(0.5)`, `tensor(0.5)`) count as
    their number; anything else is refused."""
    if isinstance(node, ast.Call) and len(node.args) == 1 and not node.keywords:
        return _literal(node.args[0])
    if isinstance(node, ast.Dict):
        return {_literal(k): _literal(v) for k, v in zip(node.keys, node.values, strict=True)
                if k is not None}
    return ast.literal_eval(node)


def _value(text: str) -> Any:
    """A printed value as data, without evaluating code (numpy/torch scalars as numbers)."""
    return _literal(ast.parse(text.strip(), mode="eval").body)


def _numbers(where: str, value: dict[Any, Any]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for key, number in value.items():
        ok = isinstance(key, str) and key.isidentifier()
        if not ok or isinstance(number, bool) or not isinstance(number, int | float):
            raise RecordError(f"the metrics {where}: {key!r}: {number!r} is not a number "
                              "under a name that can be a column")
        try:
            out[key] = float(number) if math.isfinite(number) else None
        except OverflowError:  # an int beyond float range (10**400)
            out[key] = None
    return out


def _assigned(nb: dict[str, Any], where: str) -> dict[str, float | None]:
    """The values of the names a metrics cell assigned, printed by the toolkit's last cell:
    a number under its name, a dict of numbers under its keys, a pair (loss, accuracy...)
    refused unless it is a number."""
    for line in _fingerprint_output(nb):
        if line.startswith(METRICS_MARK):
            printed = json.loads(line[len(METRICS_MARK):])
            out: dict[str, float | None] = {}
            for name, text in printed.items():
                try:
                    value = _value(text)
                except (SyntaxError, ValueError, TypeError, RecursionError) as exc:
                    raise RecordError(f"the metrics {where}: {name} = {text[:60]} is not a "
                                      "number or a dict of numbers") from exc
                out.update(_numbers(where, value if isinstance(value, dict) else {name: value}))
            return out
    raise RecordError(f"the metrics {where} assigned its results, but the run ended before "
                      "they could be read")


def metrics(nb: dict[str, Any], assigned: bool = False) -> dict[str, float | None]:
    """The metrics cell's dict of numbers, or (`assigned`) the values of the names it
    assigned; {} when the notebook has no metrics cell."""
    for index, cell in enumerate(nb.get("cells", [])):
        if METRICS_TAG not in cell.get("metadata", {}).get("tags", []) or _is_ours(nb, cell):
            continue
        where = describe(index, first_line(cell.get("source", "")))
        if assigned:
            return _assigned(nb, where)
        texts = [o.get("data", {}).get("text/plain") for o in cell.get("outputs", [])
                 if o.get("output_type") == "execute_result"]
        if not texts:
            raise RecordError(f"the metrics {where} has no value: its last line must be an "
                              "expression such as {'test_accuracy': acc}")
        text = "".join(texts[-1]) if isinstance(texts[-1], list) else str(texts[-1])
        try:
            value = _value(text)
        except (SyntaxError, ValueError, TypeError, RecursionError) as exc:
            raise RecordError(f"the metrics {where} gave {text[:80]!r}, not a dict of "
                              f"numbers ({type(exc).__name__})") from exc
        if not isinstance(value, dict) or not value:
            raise RecordError(f"the metrics {where} gave {text[:80]!r}, not a dict of numbers")
        return _numbers(where, value)
    return {}


def _is_ours(nb: dict[str, Any], cell: dict[str, Any]) -> bool:
    """The toolkit's fingerprint cell is the last cell (the runner appends it): a
    notebook's own cell tagged like it, to fake a host id, is not. (Its id is no proof:
    papermill gives cells of an older nbformat new ids.)"""
    cells = [c for c in nb.get("cells", [])
             if ERROR_MARKER_TAG not in c.get("metadata", {}).get("tags", [])]
    return bool(cells) and cell is cells[-1] \
        and FINGERPRINT_TAG in cell.get("metadata", {}).get("tags", [])


def _fingerprint_output(nb: dict[str, Any]) -> list[str]:
    for cell in nb.get("cells", []):
        if _is_ours(nb, cell):
            text = "".join("".join(o.get("text", "")) for o in cell.get("outputs", [])
                           if o.get("output_type") == "stream" and o.get("name") == "stdout")
            return text.splitlines()
    return []


def fingerprint(nb: dict[str, Any]) -> dict[str, Any]:
    for line in _fingerprint_output(nb):
        if line.startswith(FINGERPRINT_MARK):
            found = json.loads(line[len(FINGERPRINT_MARK):])
            return found if isinstance(found, dict) else {}
    return {}


def failed_cell(nb: dict[str, Any], index: int | None) -> str:
    """"cell 5 (phase:train, `model.fit(...)`)": where a failed run stopped, numbered as in
    the researcher's notebook (papermill's injected-parameters cell does not count).

    papermill's index is into the notebook before it added its two error-marker cells."""
    cells = [c for c in nb.get("cells", [])
             if ERROR_MARKER_TAG not in c.get("metadata", {}).get("tags", [])]
    if index is None or not 0 <= index < len(cells):
        return ""
    cell = cells[index]
    injected = [i for i, c in enumerate(cells)
                if "injected-parameters" in c.get("metadata", {}).get("tags", [])]
    shown = index - sum(1 for i in injected if i < index)
    text = first_line(cell.get("source", ""))
    line = failing_line(cell)
    if line is not None and line[0] > 1:
        text = f"line {line[0]}: `{line[1]}`"
    elif text:
        text = f"`{text}`"
    phase = _phase(cell)
    inside = ", ".join(([f"phase:{phase}"] if phase != "other" else []) + ([text] if text else []))
    return f"cell {shown}" + (f" ({inside})" if inside else "")


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
#: IPython 8's name for a frame in a cell: "Cell In[7], line 3" (older: "<ipython-input-7-...>
#: in <module>" followed by "----> 3 ...").
_CELL_FRAME = re.compile(r"Cell In\[\d*\], line (\d+)|<ipython-input-[^>]*>.*?\n-+> (\d+)")


def plain(text: str) -> str:
    """Text without terminal escapes (a traceback's colours): records and logs read plain."""
    return _ANSI.sub("", text)


def failing_line(cell: dict[str, Any]) -> tuple[int, str] | None:
    """The line of the cell where its error happened (the traceback's last frame in the
    cell), numbered from 1, with its text; None when the traceback does not say."""
    for output in cell.get("outputs", []):
        if output.get("output_type") != "error":
            continue
        text = _ANSI.sub("", "\n".join(str(t) for t in output.get("traceback", [])))
        found = [int(a or b) for a, b in _CELL_FRAME.findall(text)]
        if not found:
            return None
        source = cell.get("source", "")
        lines = ("".join(source) if isinstance(source, list) else str(source)).splitlines()
        number = found[-1]
        if 1 <= number <= len(lines):
            shown = lines[number - 1].strip()
            return number, shown if len(shown) <= 60 else shown[:57] + "..."
    return None


def hint(error: str) -> str:
    """What to do about an error a researcher's notebook meets only outside its home."""
    if "No module named 'google.colab'" in error or "No module named 'google'" in error:
        return (" (google.colab exists only on Colab: tag the cell 'colab-only' to run it on "
                "Colab runners alone, or 'skip'; see docs/own-notebook.md)")
    return ""


def record(nb: dict[str, Any], assigned: bool = False) -> dict[str, Any]:
    """Everything a tagged notebook's run records beside the runner's fields. A metrics
    key may not take the name of a column the toolkit measures (a phase time, the
    fingerprint): the run fails with the key named rather than report a number it did
    not measure."""
    measured = {**fingerprint(nb), **phase_times(nb)}
    found = metrics(nb, assigned)
    clash = sorted((set(found) & set(measured)) | (set(found) & MEASURED))
    if clash:
        raise RecordError(f"the metrics cell reports {clash[0]!r}, a column the toolkit "
                          "measures itself; rename it in the notebook")
    return {**measured, **found}

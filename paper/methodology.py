"""The methodology's facts from the runs and the study file: hardware and software of each
environment as the protocol recorded them, and the datasets as they were used."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from cloudbench.paper.text import label
from cloudbench.study.spec import OWN_DATA

if TYPE_CHECKING:
    import pandas as pd

    from cloudbench.study.spec import Study

FINGERPRINT_KEYS = (("runner", "runner"), ("accelerator", "accelerator"),
                    ("device_name", "device"), ("cpu_model", "cpu"), ("cpu_count", "cores"),
                    ("ram_gb", "ram"), ("os", "os"), ("python", "python"),
                    ("tensorflow", "tensorflow"), ("keras", "keras"))


def plain_value(value: Any) -> str:
    """A fingerprint value as text: whole floats without ".0", missing as empty."""
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def summarise(values: Iterable[Any], lang: str) -> str:
    """The value the runs of an environment share, or the distinct values if they vary."""
    distinct = list(dict.fromkeys(v for v in map(plain_value, values) if v))
    if len(distinct) <= 1:
        return "".join(distinct)
    shown = "; ".join(distinct[:3])
    return shown + (f" ({label('varies', lang)})" if len(distinct) > 3 else "")


def fingerprints(frame: pd.DataFrame, study: Study | None, lang: str
                 ) -> dict[str, dict[str, str]]:
    """Hardware and software per environment from the runs, the study adding the runner.

    In the study file's order (the order the hypotheses and the comparisons are stated
    in), then any other environment in the order its runs appear."""
    present = list(dict.fromkeys(frame["environment"].astype(str)))
    spec = {e.name: e for e in study.environments} if study else {}
    envs = [e for e in spec if e in present] + [e for e in present if e not in spec]
    out: dict[str, dict[str, str]] = {}
    for env in envs:
        rows = frame[frame["environment"].astype(str) == env]
        fp: dict[str, str] = {}
        for column, key in FINGERPRINT_KEYS:
            value = summarise(rows[column], lang) if column in rows else ""
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
        source = d.keras_name or d.source if d else ""
        if d is not None and d.source == OWN_DATA and study is not None:
            # The data the notebook read itself: its files as every run had them.
            source = ", ".join(f"{f.name} ({_size(f.size)}, {f.sha256()[:12]})"
                               for f in study.files) or OWN_DATA
        row = {"name": name, "source_col": source,
               "images": plain_value(d.images) if d and d.images else "",
               "size": "x".join(map(str, d.size)) if d and d.size else
               ("28x28" if d and d.source == "shapes" else "")}
        for key in ("n_train", "n_test"):
            row[key] = summarise(runs[key], "en") if key in runs else ""
        rows.append(row)
    return rows


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{max(1, round(n / 2**10))} KB"


def short(text: Any, n: int = 12) -> str:
    return str(text)[:n] if text else ""

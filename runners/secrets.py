"""Secrets (tokens) never land in a file: every text a run leaves behind is scrubbed.

A runner that holds a token passes it only through the environment of the processes that
need it; what those processes write (logs, executed notebooks, error messages) goes through
:func:`scrub_file` or :func:`scrub` before the study keeps it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cloudbench.data.atomic import write_text_atomic

MASK = "***"


def scrub(text: str, secret: str | None) -> str:
    """The text with every occurrence of the secret masked."""
    return text.replace(secret, MASK) if secret and text else text


def _scrub_json(value: Any, secret: str) -> Any:
    if isinstance(value, str):
        return scrub(value, secret)
    if isinstance(value, list):
        return [_scrub_json(v, secret) for v in value]
    if isinstance(value, dict):
        return {k: _scrub_json(v, secret) for k, v in value.items()}
    return value


def scrub_file(path: Path, secret: str | None) -> None:
    """Mask the secret in a log (as text) or a notebook (string by string, keeping it valid)."""
    if not secret or not path.is_file():
        return
    text = path.read_text(encoding="utf-8", errors="replace")
    if secret not in text:
        return
    if path.suffix == ".ipynb":
        try:
            text = json.dumps(_scrub_json(json.loads(text), secret), indent=1)
        except json.JSONDecodeError:
            text = scrub(text, secret)
    else:
        text = scrub(text, secret)
    write_text_atomic(path, text)

"""Secrets (tokens) never land in a file: every text a run leaves behind is scrubbed.

A runner that holds a token passes it only through the environment of the processes that
need it; what those processes write (logs, executed notebooks, error messages) goes through
:func:`scrub_file` or :func:`scrub` before the study keeps it.
"""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

from cloudbench.data.atomic import write_text_atomic

MASK = "***"
#: Credentials a client may print that the toolkit never held itself: a token in a URL's
#: query (Colab's `colab-runtime-proxy-token=`, `access_token=`...) and HTTP bearer tokens.
_QUERY_TOKEN = re.compile(r"(?i)([?&;][\w.-]*(?:token|key|secret|signature|auth)[\w.-]*=)"
                          r"[^&\s'\"<>]+")
_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}")


def forms(secret: str) -> list[str]:
    """Every way a secret can be written into a file: as it is, escaped in JSON (a notebook
    or a record), URL-encoded (a request's query), HTML-escaped, in base64 (a basic-auth
    header); longest first, so that no form is masked only in part."""
    found = {secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1],
             quote(secret, safe=""), quote_plus(secret), html.escape(secret),
             base64.b64encode(secret.encode()).decode().rstrip("=")}
    return sorted((f for f in found if f), key=len, reverse=True)


def redact(text: str) -> str:
    """Mask the credentials a client prints on its own (tokens in URLs, bearer headers)."""
    return _BEARER.sub(lambda m: m.group(1) + MASK, _QUERY_TOKEN.sub(
        lambda m: m.group(1) + MASK, text))


def scrub(text: str, secret: str | None) -> str:
    """The text with every form of the secret masked, and any token a client printed."""
    if not text:
        return text
    if secret:
        for form in forms(secret):
            text = text.replace(form, MASK)
    return redact(text)


def _scrub_json(value: Any, secret: str | None) -> Any:
    if isinstance(value, str):
        return scrub(value, secret)
    if isinstance(value, list):
        return [_scrub_json(v, secret) for v in value]
    if isinstance(value, dict):
        return {k: _scrub_json(v, secret) for k, v in value.items()}
    return value


def scrub_file(path: Path, secret: str | None) -> None:
    """Mask the secret in a log (as text) or a notebook (string by string, keeping it valid,
    then as text for any form the strings did not show)."""
    if not path.is_file():
        return
    text = path.read_text(encoding="utf-8", errors="replace")
    if scrub(text, secret) == text:
        return
    if path.suffix == ".ipynb":
        try:
            text = json.dumps(_scrub_json(json.loads(text), secret), indent=1)
        except (json.JSONDecodeError, RecursionError):
            pass
        text = scrub(text, secret)
    else:
        text = scrub(text, secret)
    write_text_atomic(path, text)

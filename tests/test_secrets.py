"""A token never survives in a file, in any form it can take there."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote, quote_plus

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloudbench.runners.secrets import MASK, forms, redact, scrub, scrub_file

from conftest import examples

tokens = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=12,
                 max_size=40).filter(lambda t: t.strip() == t and MASK not in t)


@settings(max_examples=examples(200), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(token=tokens)
def test_no_form_of_the_token_is_left_in_a_notebook_or_a_log(tmp_path: Path, token: str
                                                             ) -> None:
    notebook = tmp_path / "run.ipynb"
    notebook.write_text(json.dumps({"cells": [{"outputs": [
        {"text": f"connecting with {token}"},
        {"text": f"GET /api?colab-runtime-proxy-token={quote(token, safe='')}&x=1"}]}],
        "metadata": {}}), encoding="utf-8")
    log = tmp_path / "run.log"
    log.write_text(f"token={token}\nquoted: {json.dumps(token)}\nplus: {quote_plus(token)}\n",
                   encoding="utf-8")
    for path in (notebook, log):
        scrub_file(path, token)
        text = path.read_text(encoding="utf-8")
        assert not any(form in text for form in forms(token)), (path.name, text)
    assert json.loads(notebook.read_text(encoding="utf-8"))["cells"][0]["outputs"]


def test_tokens_a_client_prints_are_masked_without_knowing_them() -> None:
    """google-colab-cli prints the URL of a failed transfer, proxy token included, and its
    debug log the bearer header."""
    line = ("Upload failed: 403 Client Error: Forbidden for url: https://x.colab.dev/api/"
            "contents/a.zip?authuser=0&colab-runtime-proxy-token=ya29.A0AbCdEf-123_x")
    assert redact(line).endswith("&colab-runtime-proxy-token=***")
    assert "ya29" not in redact("headers: {'Authorization': 'Bearer ya29.a0AfH6SMBx123'}")
    assert scrub("HTTP 401 for abc\"def\\ghi-long", 'abc"def\\ghi-long') == "HTTP 401 for ***"

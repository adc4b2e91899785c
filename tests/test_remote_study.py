"""One study, three kinds of environment: local, a remote Jupyter gateway and Colab."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from remote_support import (  # noqa: F401 - pytest fixtures
    TOKEN_ENV,
    ColabStandIn,
    Gateway,
    colab,
    files_containing,
    gateway,
    run,
    write_study,
)


@pytest.mark.slow
def test_local_jupyter_and_colab_environments_make_one_runs_csv(
        gateway: Gateway, colab: ColabStandIn, tmp_path: Path,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, gateway.token)
    spec = write_study(tmp_path / "study.toml", [
        {"name": "pc", "runner": "local"},
        {"name": "lab", "runner": "jupyter", "url": gateway.url, "token_env": TOKEN_ENV},
        {"name": "vm", "runner": "colab"}], name="mixed")
    out = tmp_path / "results"
    result = run(spec, out)

    assert len(result.executed) == 3 and not result.failed, [r["error"] for r in result.failed]
    runs = pd.read_csv(out / "runs.csv")
    assert sorted(runs["environment"]) == ["lab", "pc", "vm"]
    assert dict(zip(runs["environment"], runs["runner"], strict=True)) == {
        "pc": "local", "lab": "jupyter", "vm": "colab"}
    assert (runs["status"] == "ok").all() and runs["train_s"].gt(0).all()
    assert files_containing(out, gateway.token) == []
    assert colab.verbs().count("new") == colab.verbs().count("stop") == 1

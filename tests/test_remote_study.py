"""One study, three kinds of environment: local, a remote Jupyter gateway and Colab."""

from __future__ import annotations

import json
import subprocess
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

from cloudbench.paper.build import build_paper
from cloudbench.study.spec import load_study


def test_local_jupyter_and_colab_environments_make_one_runs_csv_and_one_paper(
        gateway: Gateway, colab: ColabStandIn, tmp_path: Path,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch, quick_protocol: Path) -> None:
    monkeypatch.setenv(TOKEN_ENV, gateway.token)
    spec = write_study(tmp_path / "study.toml", [
        {"name": "pc", "runner": "local"},
        {"name": "lab", "runner": "jupyter", "url": gateway.url, "token_env": TOKEN_ENV},
        {"name": "vm", "runner": "colab"}], name="mixed", repetitions=2, notebook=quick_protocol)
    out = tmp_path / "results"
    result = run(spec, out)

    assert len(result.executed) == 6 and not result.failed, [r["error"] for r in result.failed]
    runs = pd.read_csv(out / "runs.csv")
    assert sorted(runs["environment"]) == ["lab"] * 2 + ["pc"] * 2 + ["vm"] * 2
    assert dict(zip(runs["environment"], runs["runner"], strict=True)) == {
        "pc": "local", "lab": "jupyter", "vm": "colab"}
    assert (runs["status"] == "ok").all() and runs["train_s"].gt(0).all()
    assert files_containing(out, gateway.token) == []
    assert colab.verbs().count("new") == colab.verbs().count("stop") == 2  # one per block

    pdf = build_paper(out / "runs.csv", load_study(spec), tmp_path / "paper")
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True,
                          text=True, check=True).stdout
    analysis = json.loads((tmp_path / "paper" / "mixed" / "analysis.json").read_text())
    pairs = {(c["a"], c["b"]) for c in analysis["comparisons"]}
    assert pairs == {("pc", "lab"), ("pc", "vm"), ("lab", "vm")} and analysis["kruskal_wallis"]
    # Table 1, the environments' fingerprints: one column per environment, with its runner.
    lines = [line.split() for line in text.splitlines()]
    table = next(k for k, line in enumerate(lines) if line[:2] == ["Table", "1:"])
    header = next(line for line in lines[table + 1:] if line)
    runners = next(line for line in lines[table + 1:] if line[:1] == ["Runner"])
    assert dict(zip(header, runners[1:], strict=True)) == {
        "pc": "local", "lab": "jupyter", "vm": "colab"}, (header, runners)
    # In the study file's order, which the hypotheses refer to ("in the order of Table 1").
    assert header == ["pc", "lab", "vm"]

"""Provenance of a study's runs: what produced them, so the paper can say it and a reader check it.

The manifest also guards the results folder: runs of two different protocols are never
mixed under one study name.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from cloudbench.study.spec import PROJECT_ROOT, Study
from cloudbench.study.store import ResultsStore, StoreError

MANIFEST_FORMAT_VERSION = 1


def toolkit_version() -> str:
    try:
        return metadata.version("cloudbench-study")
    except metadata.PackageNotFoundError:
        return "0+checkout"


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(PROJECT_ROOT), *args], capture_output=True,
                             text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def machines(study: Study) -> dict[str, list[str]]:
    """The environments of each machine, in the study file's order: environments of one
    machine ran one at a time, different machines at the same time."""
    out: dict[str, list[str]] = {}
    for env in study.environments:
        out.setdefault(env.machine, []).append(env.name)
    return out


def build_manifest(study: Study) -> dict[str, Any]:
    """Toolkit version, git commit, hashes of the notebook and the study file, the design."""
    commit = _git("rev-parse", "HEAD")
    return {
        "format_version": MANIFEST_FORMAT_VERSION,
        "study": study.name, "toolkit_version": toolkit_version(), "git_commit": commit,
        "git_dirty": bool(_git("status", "--porcelain")) if commit else None,
        "notebook": study.notebook.name, "notebook_sha256": sha256_file(study.notebook),
        "parameters": study.parameters, "study_file": study.path.name,
        "study_sha256": study.file_sha256(), "seed": study.seed, "order": study.order,
        "repetitions": study.repetitions, "warmup": study.warmup,
        "environments": [{"name": e.name, "runner": e.runner, "accelerator": e.accelerator,
                          "env": e.env, "parameters": e.parameters, "gpu": e.gpu, "tpu": e.tpu,
                          "options": dict(e.options), "backend": e.backend,
                          "machine": e.machine,
                          "price": dataclasses.asdict(e.price) if e.price else None}
                         for e in study.environments],
        "machines": machines(study),
        "sweep": {k: list(v) for k, v in study.sweep.parameters.items()} or None,
        "datasets": [d.protocol_config() for d in study.datasets],
        # The files the notebook reads beside it, as every run's working folder held them.
        "files": [{"name": f.name, "bytes": f.size, "sha256": f.sha256()} for f in study.files],
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def check_manifest(store: ResultsStore, study: Study) -> dict[str, Any]:
    """The manifest to write: a fresh one, or the old one's history if the protocol matches.

    Refuses to mix runs of two different protocols under one study name.
    """
    fresh = build_manifest(study)
    old = store.read_manifest()
    if old is not None and store.has_records():
        for key, what in (("notebook_sha256", "the protocol notebook"),
                          ("parameters", "the protocol parameters")):
            if old.get(key) != fresh[key]:
                raise StoreError(
                    f"{store.root}: {what} changed since this study's first runs "
                    f"({key}: {json.dumps(old.get(key))} then, {json.dumps(fresh[key])} now); "
                    "give the study a new name or --output, or remove the old results")
        fresh["created_at"] = old.get("created_at", fresh["created_at"])
        fresh["stopping"] = old.get("stopping")
    return fresh

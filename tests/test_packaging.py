"""What installing the toolkit puts in a user's environment, and a plugin from outside.

`pip install .` must add one import name, `cloudbench`, never the generic names of its
folders (`data`, `analysis`, `study`...) that a researcher's own code uses too; and a runner
living in another distribution registers through the `cloudbench.runners` entry point and
runs a study. Both install into a target folder of their own (no network: the toolkit's
dependencies are those of the test environment, nothing is downloaded).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SANDBOX = ROOT / "tests" / "plugins" / "sandbox_runner.py"
HIDE_REPO = ROOT / "tests" / "standin" / "hide_repo"


def pip_install(source: Path, target: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                           "--no-build-isolation", "--no-index", "--target", str(target),
                           str(source)], capture_output=True, text=True, cwd=source)
    assert proc.returncode == 0, proc.stderr[-3000:]


def run_installed(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m cloudbench.cli.main ARGS` with the installed copy first on the path."""
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run([sys.executable, "-m", "cloudbench.cli.main", *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    site = tmp_path_factory.mktemp("site")
    pip_install(ROOT, site)
    return site


def top_level_names(site: Path) -> set[str]:
    [dist_info] = site.glob("cloudbench_study-*.dist-info")
    names = set()
    for line in (dist_info / "RECORD").read_text(encoding="utf-8").splitlines():
        first = line.split(",")[0].split("/")[0]
        if not first.endswith((".dist-info", ".data")) and first not in ("..", "bin"):
            names.add(first.removesuffix(".py"))
    return names


def test_installing_adds_exactly_one_top_level_package(installed: Path) -> None:
    assert top_level_names(installed) == {"cloudbench"}
    package = installed / "cloudbench"
    # The data files the commands read travel with the code.
    for path in ("protocols/cnn_train.ipynb", "study/demo.toml", "study/prices.toml",
                 "study/examples/own_notebook.toml", "paper/lang/en.toml",
                 "paper/templates/paper.tex.j2", "analysis/simulated_rates.json"):
        assert (package / path).is_file(), path


def test_the_installed_copy_validates_the_demo_from_anywhere(installed: Path,
                                                             tmp_path: Path) -> None:
    probe = subprocess.run(
        [sys.executable, "-c", "import cloudbench.study.spec as s; print(s.__file__)"],
        env={**os.environ, "PYTHONPATH": str(installed)}, cwd=tmp_path,
        capture_output=True, text=True)
    assert probe.stdout.strip().startswith(str(installed)), probe.stderr
    proc = run_installed(installed, tmp_path, "validate",
                         str(installed / "cloudbench" / "study" / "demo.toml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def write_plugin(folder: Path) -> Path:
    """The documented sandbox runner as a distribution of its own, outside the checkout."""
    package = folder / "cloudbench_sandbox"
    package.mkdir(parents=True)
    source = SANDBOX.read_text(encoding="utf-8").replace(
        'Path(__file__).resolve().parent.parent / "standin" / "hide_repo"',
        repr(str(HIDE_REPO)))
    (package / "__init__.py").write_text(source, encoding="utf-8")
    (folder / "pyproject.toml").write_text(textwrap.dedent("""
        [build-system]
        requires = ["setuptools>=68"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "cloudbench-sandbox"
        version = "1.0"

        [project.entry-points."cloudbench.runners"]
        sandbox = "cloudbench_sandbox:SandboxRunner"

        [tool.setuptools]
        packages = ["cloudbench_sandbox"]
    """), encoding="utf-8")
    return folder


def test_a_plugin_from_another_distribution_runs_a_study(tmp_path: Path, quick_study) -> None:
    site = tmp_path / "site"
    pip_install(write_plugin(tmp_path / "plugin"), site)
    assert not (ROOT / "cloudbench_sandbox").exists()
    machines = tmp_path / "machines"
    spec = quick_study(name="outside", repetitions=2, environments=f"""
        [[environments]]
        name = "box"
        runner = "sandbox"
        root = "{machines}"
    """)
    # Without the plugin installed, the runner is unknown and the study is refused.
    refused = subprocess.run([sys.executable, "-m", "cloudbench.cli.main", "validate",
                              str(spec)], cwd=tmp_path, capture_output=True, text=True)
    assert refused.returncode == 2 and "'sandbox' is not one of" in refused.stderr
    proc = run_installed(site, tmp_path, "run", str(spec), "--output", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    records = [json.loads(p.read_text()) for p in (tmp_path / "out" / "records").glob("*.json")]
    assert sorted(r["status"] for r in records) == ["ok", "ok"]
    assert {r["runner"] for r in records} == {"sandbox"}
    assert list(machines.iterdir()) == []  # each block's session was stopped and removed

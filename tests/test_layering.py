"""The layering, checked: the folders show the pipeline and dependencies point one way.

    data, protocols            the timed kernel's side (datasets, the protocol's helpers)
    study                      the core: study file, plan, results store, record schema
    runners                    how runs execute; on the core only
    analysis                   statistics on runs tables; on the record schema only
    paper                      the report, from analysis results (and the study file)
    cli                        the `study` command, wiring them all

Every import counts, at the top of a module or inside a function, since a lazy import is
a dependency all the same.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMPORT_NAME = "cloudbench"  # the one top-level package; the folders are its subpackages
PACKAGES = ("data", "protocols", "study", "runners", "analysis", "paper", "cli")
#: package -> the project modules (or packages) it may import besides its own.
ALLOWED = {
    "data": (),
    "protocols": ("data",),
    "study": ("data",),
    "runners": ("data", "study"),
    "analysis": ("data", "study.record"),
    "paper": ("data", "analysis", "study"),
    "cli": PACKAGES,
}


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            if {"results", "build"} & set(rel.parts[:-1]):  # generated folders
                continue
            name = ".".join(rel.parts)
            found[name.removesuffix(".__init__")] = path
    return found


def imports(path: Path, known: set[str]) -> set[str]:
    """The project modules a file imports, anywhere in it (named by folder: study.spec)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            name = name.removeprefix(f"{IMPORT_NAME}.")
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name:
                out.add(name)
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {m: imports(p, set(mods)) - {m} for m, p in mods.items()}


def test_each_package_imports_only_the_layers_below_it() -> None:
    wrong = []
    for module, deps in graph().items():
        package = module.split(".")[0]
        for dep in deps:
            if dep.split(".")[0] == package:
                continue
            if not any(dep == a or dep.startswith(a + ".") for a in ALLOWED[package]):
                wrong.append(f"{module} imports {dep}")
    assert wrong == []


#: The scheduler's side of the runner contract, the only runners that see the results store:
#: the scheduler, its retry loop, the archive import (`study import` writes records) and the
#: VM-side driver (the remote side's scheduler). Every other runner gets paths, not the store.
STORE_USERS = {"runners.scheduler", "runners.attempts", "runners.bundle", "runners.vm"}


def test_only_the_scheduler_side_of_runners_imports_the_store() -> None:
    deps = graph()
    users = {m for m, d in deps.items() if m.startswith("runners.") and "study.store" in d}
    assert users == STORE_USERS


def test_no_import_cycle_among_modules() -> None:
    deps = graph()
    # Tarjan's strongly connected components: a cycle is a component of two or more.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for dep in deps[node]:
            if dep not in index:
                visit(dep)
                low[node] = min(low[node], low[dep])
            elif dep in stack:
                low[node] = min(low[node], index[dep])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in deps:
        if node not in index:
            visit(node)
    assert cycles == []


def test_the_checks_see_real_imports() -> None:
    """Guard against a checker that finds nothing: known edges must be there."""
    deps = graph()
    assert "runners.base" in deps["runners.local"]
    assert "study.spec" in deps["runners.base"]
    assert "analysis.compare" in deps["paper.build"] or "analysis.compare" in deps["paper.tables"]
    assert "cli.run" in deps["cli.main"]


def test_no_private_scipy_api() -> None:
    offenders = [str(p.relative_to(ROOT)) for p in modules().values()
                 if "scipy.stats._" in p.read_text(encoding="utf-8")
                 or "from scipy.stats import _" in p.read_text(encoding="utf-8")]
    assert offenders == []

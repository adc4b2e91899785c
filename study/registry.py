"""Runner plugins: from an environment's `runner = "..."` to the class that runs it.

As papermill registers its engines, runners are entry points in the group
``cloudbench.runners`` (``[project.entry-points."cloudbench.runners"]`` in pyproject.toml):
the built-in ones are listed there, a third-party package adds its own the same way, and
:func:`register_runner` adds one at run time (a test, a notebook). A runner module is
imported only when a study names it, and the core never imports one by name, so no runner
can pull the core into an import cycle.

A runner declares the study-file keys it takes beyond the common ones (:class:`Option`)
and checks them in ``validate``, which raises :class:`OptionError`; the study loader turns
that into an error naming the file and the key.
"""

from __future__ import annotations

import importlib
import tomllib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar, Protocol

from cloudbench.errors import InputError

ENTRY_POINT_GROUP = "cloudbench.runners"
_PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


@dataclass(frozen=True)
class Option:
    """One study-file key of a runner: its type, default, allowed values and meaning."""

    name: str
    kind: type | tuple[type, ...] = str
    default: Any = None
    required: bool = False
    choices: tuple[Any, ...] | None = None
    doc: str = ""


class OptionError(InputError, ValueError):
    """A runner's key is wrong: `key` is the key within the environment's table."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(message)


class RunnerPlugin(Protocol):
    """What the core needs of a runner class before any run (runners.base.Runner has it)."""

    options: ClassVar[tuple[Option, ...]]
    local_files: ClassVar[bool]

    @classmethod
    def validate(cls, environment: Any) -> None:  # a study.spec.Environment
        ...

    @classmethod
    def default_machine(cls, environment: Any) -> str:  # the machine it runs on
        ...


_registered: dict[str, Any] = {}  # name -> class, or "module:attribute"
_loaded: dict[str, Any] = {}


def register_runner(name: str, target: Any) -> None:
    """Add (or replace) a runner: a class, or "module:Class" imported on first use."""
    _registered[name] = target
    _loaded.pop(name, None)


def _declared() -> dict[str, str]:
    """The entry points of every installed distribution, and of this checkout's pyproject.toml.

    The second keeps a checkout that is not (or not freshly) installed working.
    """
    found = {ep.name: ep.value for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}
    try:
        project = tomllib.loads(_PYPROJECT.read_text(encoding="utf-8"))["project"]
        found.update(project["entry-points"][ENTRY_POINT_GROUP])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        pass
    return found


def runner_names() -> list[str]:
    return sorted({**_declared(), **_registered})


def load_runner(name: str) -> Any:
    """The runner class registered under `name`; KeyError naming the known runners."""
    if name in _loaded:
        return _loaded[name]
    target = _registered.get(name) or _declared().get(name)
    if target is None:
        raise KeyError(f"no runner {name!r}; known runners: {', '.join(runner_names())}")
    if isinstance(target, str):
        module, _, attribute = target.partition(":")
        target = getattr(importlib.import_module(module), attribute)
    _loaded[name] = target
    return target

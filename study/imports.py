"""Keep a slow optional import off the toolkit's hot paths.

papermill imports nbformat, whose validator imports jsonschema, which tries the optional
``rfc3987_syntax`` for its "iri" string formats. Importing that package compiles a parser
grammar: about 1.7 s on this machine, paid by every run's papermill child and by `study
validate` (papermill's whole import is 2.1 s with it, 0.5 s without). nbformat's schema
uses no iri format, so the toolkit marks the package absent (``sys.modules[name] = None``
makes ``import name`` raise ImportError, which jsonschema expects and handles) before
papermill or nbformat is imported. Nothing else changes: a process that already imported
it keeps it.
"""

from __future__ import annotations

import sys

SLOW_OPTIONAL_IMPORTS = ("rfc3987_syntax",)


def skip_slow_optional_imports() -> None:
    for name in SLOW_OPTIONAL_IMPORTS:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]

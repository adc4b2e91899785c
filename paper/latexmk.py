"""The PDF from LaTeX: latexmk, and its log's errors quoted when it fails."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from cloudbench.errors import BuildError
from cloudbench.study.sysdeps import require_command

LATEXMK = ["latexmk", "-pdf", "-interaction=nonstopmode", "-halt-on-error"]


class PaperError(BuildError, RuntimeError):
    """The paper could not be built; the message quotes the LaTeX log where it helps."""


def log_excerpt(log: Path, context: int = 3, limit: int = 40) -> str:
    """The error lines of a LaTeX log ("! ..." and the "l.<n>" line after), for the message."""
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return f"(no log at {log})"
    picked: list[str] = []
    for i, line in enumerate(lines):
        if line.startswith("!") or re.match(r"^.*:\d+: ", line):
            picked += lines[i:i + context + 1]
            picked += [ln for ln in lines[i + context + 1:i + 12] if ln.startswith("l.")][:1]
    if not picked:
        picked = lines[-15:]
    return "\n".join(picked[:limit])


def run_latexmk(folder: Path, tex_name: str, timeout: float = 300) -> Path:
    """pdflatex through latexmk; on failure, a PaperError quoting the log's errors."""
    require_command("latexmk")
    cmd = [*LATEXMK, tex_name]
    try:
        # TeX writes 8-bit text (accents in Spanish): never fail on decoding its chatter.
        proc = subprocess.run(cmd, cwd=folder, capture_output=True, text=True, errors="replace",
                              timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise PaperError(f"latexmk took more than {timeout:.0f} s on {folder / tex_name}") \
            from exc
    stem = Path(tex_name).stem
    pdf = folder / f"{stem}.pdf"
    if proc.returncode != 0 or not pdf.is_file():
        log = folder / f"{stem}.log"
        raise PaperError(f"latexmk failed (exit {proc.returncode}) on {folder / tex_name}; "
                         f"from {log}:\n{log_excerpt(log)}")
    return pdf

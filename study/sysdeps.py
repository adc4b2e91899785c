"""System commands the toolkit needs (latexmk, pdftotext, Rscript, chromium, SLURM),
installed from Debian.

`study paper` and `study all` call :func:`ensure_commands` first, so the main command works
on a fresh Debian machine: as root with apt-get, missing packages are installed; without
root the error names the exact packages, rather than failing later inside latexmk.

    python -m cloudbench.study.sysdeps tex|r|browser|slurm|cron|all     # used by tox and .ci/run

The slurm group is for the tests: they start a single-node SLURM cluster of their own
(tests/slurm_support.py), which needs the daemons (slurmctld, slurmd, munged) beside the
client commands.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence

from cloudbench.errors import InfrastructureError

# Debian packages the paper's template needs (checked with kpsewhich: booktabs, float,
# caption, geometry and microtype live in texlive-latex-recommended; Spanish hyphenation
# and babel-spanish in texlive-lang-spanish; the fonts in lmodern).
TEX_PACKAGES = ("latexmk", "texlive-latex-base", "texlive-latex-recommended",
                "texlive-fonts-recommended", "texlive-lang-spanish", "lmodern")
PDFTOTEXT_PACKAGES = ("poppler-utils",)
R_PACKAGES = ("r-base-core",)
# slurm-wlm brings slurmctld, slurmd and the client commands (sbatch, squeue, scontrol,
# scancel, sinfo); munge the authentication daemon they use.
SLURM_PACKAGES = ("slurm-wlm", "munge")
# The browser the report's page is tested in (tests/test_report_browser.py): Debian's
# chromium, driven headless by playwright (its own browser download is not used).
BROWSER_PACKAGES = ("chromium",)
# crontab: `study schedule install` falls back to a crontab line where systemd's user
# manager is absent (containers, WSL); the tests install and remove one for real.
CRON_PACKAGES = ("cron",)

TEX_COMMANDS: dict[str, Sequence[str]] = {"latexmk": TEX_PACKAGES, "pdflatex": TEX_PACKAGES}
R_COMMANDS: dict[str, Sequence[str]] = {"Rscript": R_PACKAGES}
PDFTOTEXT_COMMANDS: dict[str, Sequence[str]] = {"pdftotext": PDFTOTEXT_PACKAGES}
SLURM_COMMANDS: dict[str, Sequence[str]] = {
    c: SLURM_PACKAGES for c in ("sbatch", "squeue", "scontrol", "scancel", "sinfo",
                                "slurmctld", "slurmd", "munged")}
BROWSER_COMMANDS: dict[str, Sequence[str]] = {"chromium": BROWSER_PACKAGES}
CRON_COMMANDS: dict[str, Sequence[str]] = {"crontab": CRON_PACKAGES}
GROUPS: dict[str, dict[str, Sequence[str]]] = {
    "tex": {**TEX_COMMANDS, **PDFTOTEXT_COMMANDS},
    "r": R_COMMANDS,
    "browser": BROWSER_COMMANDS,
    "slurm": SLURM_COMMANDS,
    "cron": CRON_COMMANDS,
    "all": {**TEX_COMMANDS, **PDFTOTEXT_COMMANDS, **R_COMMANDS, **BROWSER_COMMANDS,
            **SLURM_COMMANDS, **CRON_COMMANDS},
}
APT_ENV = {"DEBIAN_FRONTEND": "noninteractive"}


class MissingCommandError(InfrastructureError, RuntimeError):
    """A command is missing and could not be installed; the message says what to install."""


def missing(commands: Iterable[str]) -> list[str]:
    return [c for c in commands if shutil.which(c) is None]


def _packages(commands: Mapping[str, Sequence[str]], names: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(p for name in names for p in commands[name]))


def _can_install() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get") is not None


def _apt(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["apt-get", *args], env={**os.environ, **APT_ENV},
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)


def apt_install(packages: Sequence[str]) -> None:
    """Install Debian packages; refresh the package lists only if the first try fails."""
    args = ["install", "-y", "--no-install-recommends", *packages]
    proc = _apt(args)
    if proc.returncode != 0:
        _apt(["update"])
        proc = _apt(args)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).splitlines()[-10:])
        raise MissingCommandError(f"apt-get install {' '.join(packages)} failed:\n{tail}")


def ensure_commands(commands: Mapping[str, Sequence[str]], install: bool = True) -> list[str]:
    """Make sure each command is on PATH, installing its Debian packages when allowed.

    `commands` maps a command to the packages that provide it. Returns the packages
    installed (empty when nothing was missing).
    """
    absent = missing(commands)
    if not absent:
        return []
    packages = _packages(commands, absent)
    if not (install and _can_install()):
        why = "installing needs root and apt-get" if install else "installing was not allowed"
        raise MissingCommandError(
            f"missing command(s): {', '.join(absent)} ({why}). Install them with:\n"
            f"  sudo apt-get install --no-install-recommends {' '.join(packages)}")
    apt_install(packages)
    still = missing(absent)
    if still:
        raise MissingCommandError(f"{', '.join(still)} still missing after installing "
                                  f"{' '.join(packages)}")
    return packages


def require_command(command: str) -> str:
    """The path of a command the caller cannot do without, or a clear error (no install)."""
    path = shutil.which(command)
    if path is None:
        known = next((g[command] for g in GROUPS.values() if command in g), ())
        hint = f"; install: apt-get install {' '.join(known)}" if known else ""
        raise MissingCommandError(f"{command} is not on PATH{hint}")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cloudbench.study.sysdeps",
                                     description="install the Debian packages the toolkit needs")
    parser.add_argument("group", choices=sorted(GROUPS), help="tex: latexmk, pdflatex and "
                        "pdftotext; r: Rscript; browser: chromium; slurm: SLURM and munge (the "
                        "tests' cluster); cron: crontab (study schedule); all: every group")
    parser.add_argument("--check", action="store_true", help="only report; install nothing")
    args = parser.parse_args(argv)
    try:
        installed = ensure_commands(GROUPS[args.group], install=not args.check)
    except MissingCommandError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"installed: {' '.join(installed)}" if installed
          else f"{args.group}: all commands present")
    return 0


if __name__ == "__main__":
    sys.exit(main())

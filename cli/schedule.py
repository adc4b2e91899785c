"""`study schedule install | remove | show`: run a study's blocks when they are due, unattended.

    study schedule install SPEC [--output DIR] [--using auto|systemd|cron] [--every MIN]
    study schedule remove SPEC [--output DIR]
    study schedule show SPEC [--output DIR] [--now ISO]

A study with a [schedule] (study.schedule) runs its blocks over hours and days: something
must call `study run SPEC --due` every few minutes. `install` writes that call, with the
absolute paths of this interpreter and of the study file and the current folder as the
working folder (where the default results folder is), as a systemd user timer
(~/.config/systemd/user/cloudbench-<study>-<id>.service and .timer, Persistent=true so a
slot missed while the machine slept runs at the next boot) when `systemctl --user` works,
else as a crontab line tagged with a comment naming the study. `remove` deletes exactly what
`install` wrote (the two unit files, the tagged line); `show` prints the timetable, each
block's state (done, due or pending, from the results folder's records) and what is
installed.

The timer fires every 5 minutes when slots are less than an hour apart (a spread schedule:
slots fall on any minute), else every 15: a block starts at most that late.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cloudbench.errors import InfrastructureError, InputError

console = Console()

#: The file in the results folder that fixes the anchor of a schedule without `start`:
#: {"anchor": "<UTC ISO>"}, written by the first `study run --due`.
ANCHOR_FILE = "schedule.json"
#: The tag that ends each crontab line `install` writes; `remove` deletes the lines with it.
CRON_TAG = "# cloudbench schedule:"
SYSTEMCTL_TIMEOUT_S = 20


class ScheduleCommandError(InfrastructureError, RuntimeError):
    """systemctl or crontab failed: the message quotes what it said."""


@dataclass(frozen=True)
class Target:
    """What `install` calls and where it puts it, for one study file and results folder."""

    study: str
    spec: Path  # absolute
    workdir: Path  # absolute: where the default results folder is relative to
    output: Path | None  # absolute, when --output was given
    python: str

    @property
    def ident(self) -> str:
        """One id per study file and results folder: two studies never share a unit."""
        key = f"{self.spec}\0{self.workdir}\0{self.output or ''}"
        return hashlib.sha256(key.encode()).hexdigest()[:8]

    @property
    def unit(self) -> str:
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", self.study).strip("-.") or "study"
        return f"cloudbench-{safe[:40]}-{self.ident}"

    @property
    def tag(self) -> str:
        # no % (cron's newline) and no line break, so remove finds the line as written
        text = f"{CRON_TAG} {self.unit} (study {self.study!r}, {self.spec})"
        return re.sub(r"[%\r\n]", "_", text)

    def command(self) -> list[str]:
        out = [self.python, "-m", "cloudbench.cli.main", "run", str(self.spec), "--due"]
        return out + (["--output", str(self.output)] if self.output else [])


# --------------------------------------------------------------------------- where things go


def unit_dir() -> Path:
    """systemd's user unit folder: $XDG_CONFIG_HOME/systemd/user (~/.config by default)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "systemd" / "user"


def systemd_user() -> str | None:
    """None when `systemctl --user` works here, else why not (the reason is printed)."""
    systemctl = shutil.which("systemctl")
    if systemctl is None:
        return "systemctl is not on PATH"
    try:
        done = subprocess.run([systemctl, "--user", "show-environment"], capture_output=True,
                              text=True, timeout=SYSTEMCTL_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"systemctl --user failed: {exc}"
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip().splitlines()
        return f"systemctl --user does not work here ({said[0] if said else done.returncode})"
    return None


def _systemctl(*args: str) -> None:
    done = subprocess.run(["systemctl", "--user", *args], capture_output=True, text=True,
                          timeout=SYSTEMCTL_TIMEOUT_S, check=False)
    if done.returncode != 0:
        raise ScheduleCommandError(f"systemctl --user {' '.join(args)} failed: "
                                   f"{(done.stderr or done.stdout).strip()}")


def _crontab() -> str:
    from cloudbench.study.sysdeps import require_command

    return require_command("crontab")


def read_crontab() -> str:
    """The user's crontab ("" when there is none)."""
    done = subprocess.run([_crontab(), "-l"], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        if "no crontab" in (done.stderr + done.stdout).lower():
            return ""
        raise ScheduleCommandError(f"crontab -l failed: {done.stderr.strip()}")
    return done.stdout


def write_crontab(text: str) -> None:
    done = subprocess.run([_crontab(), "-"], input=text, capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        raise ScheduleCommandError(f"crontab - failed: {done.stderr.strip()}")


# --------------------------------------------------------------------------- what is written


def period_minutes(slots: list[Any]) -> int:
    """How often the timer fires: 5 minutes when slots come less than an hour apart (or fall
    on any minute), else 15."""
    times = sorted(s.at for s in slots)
    gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)]
    any_minute = any(t.minute % 15 for t in times)
    return 5 if any_minute or (gaps and min(gaps) < 3600) else 15


def service_text(target: Target) -> str:
    env = f"Environment=PYTHONPATH={os.environ['PYTHONPATH']}\n" \
        if os.environ.get("PYTHONPATH") else ""
    return (f"# Written by `study schedule install`; `study schedule remove` deletes it.\n"
            f"[Unit]\nDescription=cloudbench study {target.study}: run the blocks that are "
            f"due ({target.spec})\n\n"
            f"[Service]\nType=oneshot\nWorkingDirectory={target.workdir}\n{env}"
            f"ExecStart={shlex.join(target.command())}\n")


def timer_text(target: Target, minutes: int) -> str:
    return (f"# Written by `study schedule install`; `study schedule remove` deletes it.\n"
            f"[Unit]\nDescription=cloudbench study {target.study}: every {minutes} minutes\n\n"
            f"[Timer]\nOnCalendar=*:0/{minutes}\nPersistent=true\nAccuracySec=1min\n"
            f"Unit={target.unit}.service\n\n"
            f"[Install]\nWantedBy=timers.target\n")


def cron_line(target: Target, minutes: int, log: Path) -> str:
    env = f"PYTHONPATH={shlex.quote(os.environ['PYTHONPATH'])} " \
        if os.environ.get("PYTHONPATH") else ""
    line = (f"*/{minutes} * * * * cd {shlex.quote(str(target.workdir))} && {env}"
            f"{shlex.join(target.command())} >> {shlex.quote(str(log))} 2>&1 {target.tag}")
    return line.replace("%", "\\%")  # cron reads % as a newline


# --------------------------------------------------------------------------- the commands


def _study(args: argparse.Namespace, need_schedule: bool = True
           ) -> tuple[Any, Any, Target, Path]:
    from cloudbench.study.spec import load_study
    from cloudbench.study.store import default_results_dir

    spec = Path(args.spec).absolute()
    study = load_study(spec, check_data=False)
    if study.schedule is None and need_schedule:
        raise InputError("no [schedule] table: add one (spread = \"72h\" or every = \"2h\") "
                         "to run the blocks over time", path=spec, key="schedule")
    output = Path(args.output).absolute() if args.output else None
    target = Target(study.name, spec, Path.cwd().absolute(), output,
                    str(Path(sys.executable).absolute()))
    results = output or (Path.cwd() / default_results_dir(study.name)).absolute()
    return study, study.schedule, target, results


def anchor(schedule: Any, results: Path) -> dt.datetime | None:
    """The schedule's anchor: its `start`, else the one the first `study run --due` kept."""
    if schedule.start is not None:
        return schedule.start
    try:
        data = json.loads((results / ANCHOR_FILE).read_text(encoding="utf-8"))
        at = dt.datetime.fromisoformat(str(data["anchor"]).replace("Z", "+00:00"))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return at if at.tzinfo else at.replace(tzinfo=dt.UTC)


def slots_of(study: Any, results: Path, now: dt.datetime) -> tuple[list[Any], bool]:
    """The timetable, and whether its anchor is fixed (else it is shown from now)."""
    from cloudbench.study.schedule import timetable

    fixed = anchor(study.schedule, results)
    return (timetable(study.schedule, study.planned_repetitions, study.seed, fixed or now),
            fixed is not None)


def installed(target: Target) -> list[str]:
    """What `install` wrote for this study that is still there."""
    found = [str(unit_dir() / f"{target.unit}.{kind}") for kind in ("service", "timer")
             if (unit_dir() / f"{target.unit}.{kind}").exists()]
    if shutil.which("crontab"):
        found += [f"crontab: {line}" for line in read_crontab().splitlines()
                  if line.endswith(target.tag)]
    return found


def cmd_install(args: argparse.Namespace) -> int:
    study, schedule, target, results = _study(args)
    slots, _ = slots_of(study, results, dt.datetime.now(dt.UTC))
    minutes = args.every or period_minutes(slots)
    why_not = systemd_user() if args.using != "cron" else "cron asked for"
    if args.using == "systemd" or (args.using == "auto" and why_not is None):
        folder = unit_dir()
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{target.unit}.service").write_text(service_text(target), encoding="utf-8")
        (folder / f"{target.unit}.timer").write_text(timer_text(target, minutes),
                                                     encoding="utf-8")
        console.print(f"wrote {escape(str(folder / target.unit))}.service and .timer "
                      f"(every {minutes} minutes)")
        if why_not is None:
            _systemctl("daemon-reload")
            _systemctl("enable", "--now", f"{target.unit}.timer")
            console.print(f"enabled {escape(target.unit)}.timer")
        else:
            console.print(f"[yellow]not enabled[/]: {escape(why_not)}; where systemd runs, "
                          f"enable it with: systemctl --user enable --now "
                          f"{escape(target.unit)}.timer")
        return 0
    table = read_crontab()
    lines = [line for line in table.splitlines() if not line.endswith(target.tag)]
    results.mkdir(parents=True, exist_ok=True)
    lines.append(cron_line(target, minutes, results / "schedule.log"))
    write_crontab("\n".join(lines) + "\n")
    reason = "" if args.using == "cron" else f" ({why_not})"
    console.print(f"added a crontab line (every {minutes} minutes){escape(reason)}: "
                  f"{escape(lines[-1])}")
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    _, _, target, _ = _study(args, need_schedule=False)  # [schedule] may be gone since
    removed = []
    units = [unit_dir() / f"{target.unit}.{kind}" for kind in ("timer", "service")]
    if any(u.exists() for u in units):
        if systemd_user() is None:
            subprocess.run(["systemctl", "--user", "disable", "--now", f"{target.unit}.timer"],
                           capture_output=True, text=True, timeout=SYSTEMCTL_TIMEOUT_S,
                           check=False)
        for unit in units:
            if unit.exists():
                unit.unlink()
                removed.append(str(unit))
        if systemd_user() is None:
            _systemctl("daemon-reload")
    if shutil.which("crontab"):
        table = read_crontab()
        kept = [line for line in table.splitlines() if not line.endswith(target.tag)]
        if len(kept) != len(table.splitlines()):
            removed.append("the crontab line")
            write_crontab("\n".join(kept) + "\n" if kept else "")
    console.print(f"removed {escape(', '.join(removed))}" if removed
                  else f"nothing installed for {escape(str(target.spec))}")
    return 0


def block_states(study: Any, results: Path, slots: list[Any], now: dt.datetime
                 ) -> dict[int, str]:
    """done (every run of the block ok or out of memory), due (its time has come) or
    pending; the statuses from the results folder's runs.csv (two columns read, no lock
    taken: a study may be running) when there is one."""
    from cloudbench.study.plan import block_jobs
    from cloudbench.study.record import FINAL_STATUSES

    statuses = {}
    try:
        with (results / "runs.csv").open(encoding="utf-8", newline="") as handle:
            statuses = {row.get("run_id"): row.get("status") for row in csv.DictReader(handle)}
    except (OSError, csv.Error, UnicodeDecodeError):
        pass  # no results yet, or a table being rebuilt: nothing is done
    out = {}
    for slot in slots:
        jobs = block_jobs(study, slot.block)
        if jobs and all(statuses.get(j.run_id) in FINAL_STATUSES for j in jobs):
            out[slot.block] = "done"
        else:
            out[slot.block] = "due" if slot.at <= now else "pending"
    return out


def cmd_show(args: argparse.Namespace) -> int:
    study, schedule, target, results = _study(args)
    now = args.now or dt.datetime.now(dt.UTC)
    slots, fixed = slots_of(study, results, now)
    states = block_states(study, results, slots, now)
    zone = schedule.timezone
    table = Table(title=f"{escape(study.name)}: {len(slots)} blocks"
                        + ("" if fixed else " (not anchored yet: shown from now; the first "
                                            "`study run --due` fixes the times)"))
    for column in ("block", "slot (UTC)", f"slot ({escape(zone)})", "window", "state"):
        table.add_column(column)
    hours = 24 // schedule.windows if 24 % schedule.windows == 0 else 24 / schedule.windows
    for slot in slots:
        window = "-" if slot.window is None else \
            f"{slot.window} ({slot.window * hours:02g}-{(slot.window + 1) * hours:02g} h)"
        table.add_row(str(slot.block), slot.at.strftime("%Y-%m-%d %H:%M"),
                      slot.local(schedule).strftime("%a %Y-%m-%d %H:%M"), window,
                      states[slot.block])
    console.print(table)
    counts = {s: list(states.values()).count(s) for s in ("done", "due", "pending")}
    console.print(", ".join(f"{n} {s}" for s, n in counts.items()))
    found = installed(target)
    console.print("installed: " + ("; ".join(escape(f) for f in found) if found else
                                   "nothing (study schedule install SPEC)"))
    return 0


def _utc_time(text: str) -> dt.datetime:
    try:
        at = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date and time, got {text!r}") from None
    return at if at.tzinfo else at.replace(tzinfo=dt.UTC)


def _minutes(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 59:
        raise argparse.ArgumentTypeError(f"minutes from 1 to 59, got {text}")
    return value


def register(subparsers: Any) -> None:
    """Add `schedule install | remove | show` to the study command."""
    p = subparsers.add_parser("schedule", help="run a study's blocks when due: a systemd timer "
                                               "or a crontab line",
                              description="Install, remove or show what runs `study run SPEC "
                                          "--due` every few minutes, for a study with a "
                                          "[schedule].")
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, func, text in (("install", cmd_install, "a systemd user timer, else a crontab "
                                                      "line, calling study run SPEC --due"),
                             ("remove", cmd_remove, "delete what install wrote"),
                             ("show", cmd_show, "the timetable, each block's state and what "
                                                "is installed")):
        q = sub.add_parser(name, help=text)
        q.add_argument("spec", type=Path, metavar="SPEC")
        q.add_argument("--output", type=Path, metavar="DIR",
                       help="results folder (default data/results/<study>)")
        if name == "install":
            q.add_argument("--using", choices=("auto", "systemd", "cron"), default="auto",
                           help="auto: a systemd user timer where systemctl --user works, "
                                "else a crontab line; systemd writes the units even where "
                                "they cannot be enabled")
            q.add_argument("--every", type=_minutes, metavar="MIN",
                           help="fire every MIN minutes (default: 5, or 15 when slots are an "
                                "hour or more apart on quarter hours)")
        if name == "show":
            q.add_argument("--now", type=_utc_time, metavar="ISO",
                           help="the time to show the states at (default: now)")
        q.set_defaults(func=func)

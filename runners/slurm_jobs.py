"""SLURM's command-line tools as a small typed client: submit, read state, wait, cancel, classify.

Why not submitit: its job state comes only from ``sacct``, which fails on every cluster without
slurmdbd ("accounting storage is disabled"), and its waits have no deadline. Here the state of
a job is read from ``squeue`` while the job is queued or running, from ``scontrol show job``
once it has left the queue (slurmctld keeps it for MinJobAge, 300 s by default), and from
``sacct`` only after that, where accounting exists; every command runs with a timeout and is
retried with back-off while the controller does not answer, up to a deadline.

A final state maps to the toolkit's statuses (study/record.py STATUSES) by :func:`classify`:
COMPLETED is ok, TIMEOUT timeout, OUT_OF_MEMORY oom, and every other end (CANCELLED, FAILED,
NODE_FAIL, PREEMPTED, BOOT_FAIL, DEADLINE, ...) failed, with SLURM's reason and exit code and
the tail of the job's error file in the message, so a job killed by SLURM is a record, never
a hang. This module does not depend on the runner contract (runners/base.py).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cloudbench.errors import InfrastructureError

#: States after which a job does not change any more (squeue's %T / scontrol's JobState).
FINAL_STATES = frozenset({
    "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED",
    "BOOT_FAIL", "DEADLINE", "REVOKED", "SPECIAL_EXIT"})
#: The toolkit's status for each final state; every other final state is "failed".
STATUS_OF_STATE = {"COMPLETED": "ok", "TIMEOUT": "timeout", "OUT_OF_MEMORY": "oom"}
#: What a state means, for the error message of a record.
STATE_MEANING = {
    "TIMEOUT": "the job exceeded its time limit",
    "OUT_OF_MEMORY": "the job exceeded its memory limit",
    "CANCELLED": "the job was cancelled",
    "FAILED": "the job's script exited non-zero",
    "NODE_FAIL": "the job's node failed",
    "PREEMPTED": "the job was preempted",
    "BOOT_FAIL": "the job's node failed to boot",
    "DEADLINE": "the job reached its deadline",
    "REVOKED": "the job was revoked (federation)",
    "SPECIAL_EXIT": "the job exited with a special exit state",
}
#: Errors of a SLURM command that mean "try again" (controller busy, restarting, unreachable).
TRANSIENT = re.compile(r"Socket timed out|Unable to contact slurm controller|"
                       r"Connection refused|Zero Bytes were transmitted|"
                       r"Resource temporarily unavailable|Transport endpoint", re.I)
#: slurmstepd's own words, in the job's error file, when it killed the job for its memory.
#: Without cgroups (task/none) SLURM 22.05 enforces --mem through jobacct_gather's
#: OverMemoryKill and records the job as FAILED (reason JobLaunchFailure, signal 9), not
#: OUT_OF_MEMORY: these lines are then the only sign of it. With task/cgroup it says
#: "Detected N oom_kill event(s)" and the state is OUT_OF_MEMORY.
OOM_MARKERS = re.compile(r"slurmstepd\S*: error: (?:Exceeded (?:job|step) memory limit|"
                         r"StepId=\S+ exceeded memory limit|Detected \d+ oom[-_]kill event)")
#: scontrol/squeue's answer for a job slurmctld no longer (or never) knew.
UNKNOWN_JOB = re.compile(r"Invalid job id", re.I)
SBIN = ("/usr/sbin", "/sbin")


class SlurmError(InfrastructureError, RuntimeError):
    """A SLURM command failed for a reason that waiting will not fix (bad option, refused job)."""


class SlurmUnavailable(SlurmError):
    """The controller did not answer before the deadline."""


class JobWaitTimeout(SlurmError):
    """A job had not ended by the caller's deadline; `last` is its latest state."""

    def __init__(self, job_id: str, last: JobState | None, waited_s: float):
        self.job_id, self.last, self.waited_s = job_id, last, waited_s
        state = last.state if last else "unknown"
        super().__init__(f"SLURM job {job_id} still {state} after {waited_s:.0f} s")


@dataclass(frozen=True)
class JobSpec:
    """What to submit: a batch script's text and the sbatch options that matter for a study.

    ``time_limit`` is seconds (rounded up to whole minutes by SLURM) or SLURM's own form
    ("1:00:00", "2-00:00:00"); ``memory`` is MB or SLURM's form ("4G"); ``array`` is sbatch's
    --array ("0-9", "0-9%2"), and its tasks write ``%A_%a`` files where output names them.
    """

    script: str
    name: str = "cloudbench"
    partition: str | None = None
    time_limit: int | str | None = None
    cpus: int | None = None
    memory: int | str | None = None
    gpus: int | str | None = None
    gres: str | None = None
    account: str | None = None
    qos: str | None = None
    output: Path | str | None = None
    error: Path | str | None = None
    array: str | None = None
    workdir: Path | str | None = None
    extra: tuple[str, ...] = ()

    def sbatch_args(self) -> list[str]:
        """sbatch's options for this spec (the script itself goes on standard input)."""
        args = ["--parsable", f"--job-name={self.name}"]
        options: list[tuple[str, object]] = [
            ("partition", self.partition), ("cpus-per-task", self.cpus),
            ("gres", self.gres), ("account", self.account), ("qos", self.qos),
            ("output", self.output), ("error", self.error), ("array", self.array),
            ("chdir", self.workdir)]
        if self.time_limit is not None:
            options.append(("time", format_time_limit(self.time_limit)))
        if self.memory is not None:
            memory = self.memory
            options.append(("mem", f"{memory}M" if isinstance(memory, int) else memory))
        if self.gpus is not None:
            options.append(("gpus", self.gpus))
        args += [f"--{key}={value}" for key, value in options if value is not None]
        return args + list(self.extra)


@dataclass(frozen=True)
class JobState:
    """A job's (or array task's) state as SLURM reported it.

    ``state`` is SLURM's name (PENDING, RUNNING, COMPLETED, TIMEOUT, ...; "UNKNOWN" when no
    command knew the job); ``reason`` SLURM's reason ("" for None); ``exit_code`` and
    ``signal`` come from ExitCode=<code>:<signal> once the job has ended; ``source`` says
    which command answered.
    """

    job_id: str
    state: str
    reason: str = ""
    exit_code: int | None = None
    signal: int | None = None
    source: str = "squeue"
    fields: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES or self.state == "UNKNOWN"


@dataclass(frozen=True)
class JobResult:
    """A final state in the toolkit's terms: status is one of study/record.py's STATUSES."""

    job_id: str
    status: str
    state: str
    reason: str
    exit_code: int | None
    error: str | None


def format_time_limit(limit: int | str) -> str:
    """Seconds as SLURM's [D-]HH:MM:SS; a string is SLURM's own form and is kept."""
    if isinstance(limit, str):
        return limit
    if limit <= 0:
        raise ValueError(f"a time limit must be positive, not {limit}")
    days, rest = divmod(int(limit), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    clock = f"{hours:02d}:{minutes:02d}:{seconds:02d}"
    return f"{days}-{clock}" if days else clock


def batch_script(commands: Sequence[str], setup: Sequence[str] = (),
                 shell: str = "/bin/bash") -> str:
    """A batch script that runs `setup` then `commands`, stopping at the first failure.

    A failing setup command ends the job non-zero (FAILED), with the command named on
    standard error, so the record says which step failed.
    """
    lines = [f"#!{shell}", "set -eo pipefail"]
    for command in setup:
        quoted = shlex.quote(command)
        lines.append(f"{command} || {{ rc=$?; echo \"setup command failed (exit $rc): \"{quoted}"
                     " >&2; exit $rc; }")
    lines += list(commands)
    return "\n".join(lines) + "\n"


def parse_record(text: str) -> dict[str, str]:
    """`scontrol show job -o` prints one job per line as Key=Value pairs; values may hold
    spaces only in the last fields (Command, WorkDir...), which are not needed here."""
    fields: dict[str, str] = {}
    for token in text.split():
        key, sep, value = token.partition("=")
        if sep:
            fields[key] = value
    return fields


def _exit(value: str | None) -> tuple[int | None, int | None]:
    if not value or ":" not in value:
        return None, None
    code, _, sig = value.partition(":")
    try:
        return int(code), int(sig)
    except ValueError:
        return None, None


def _reason(value: str | None) -> str:
    return "" if value in (None, "", "None", "(null)") else value


def _is_task_range(key: str) -> bool:
    return "_" in key and not key.rpartition("_")[2].isdigit()


def tail(path: Path | str | None, lines: int = 20, max_chars: int = 4000) -> str:
    """The last lines of a job's output or error file ("" when absent)."""
    if path is None:
        return ""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])[-max_chars:]


def classify(state: JobState, error_tail: str = "") -> JobResult:
    """A final state as the toolkit's status, with SLURM's reason and the error file's tail."""
    if not state.final:
        raise ValueError(f"job {state.job_id} has not ended: {state.state}")
    status = STATUS_OF_STATE.get(state.state, "failed")
    memory_killed = status == "failed" and bool(OOM_MARKERS.search(error_tail))
    if memory_killed:
        status = "oom"
    if state.state == "COMPLETED" and state.exit_code not in (None, 0):
        status = "failed"  # never seen from SLURM itself, but a record must not claim ok
    error = None
    if status != "ok":
        if state.state == "UNKNOWN":
            meaning = "SLURM no longer knows the job (not in squeue, scontrol or sacct)"
        else:
            meaning = STATE_MEANING.get(state.state, "the job ended")
        if memory_killed:
            meaning = "SLURM killed the job for exceeding its memory limit"
        parts = [f"SLURM job {state.job_id} {state.state}: {meaning}"]
        if state.reason:
            parts.append(f"reason {state.reason}")
        if state.exit_code is not None:
            parts.append(f"exit code {state.exit_code}"
                         + (f", signal {state.signal}" if state.signal else ""))
        error = "; ".join(parts)
        if error_tail:
            error += "\n" + error_tail
    return JobResult(job_id=state.job_id, status=status, state=state.state,
                     reason=state.reason, exit_code=state.exit_code, error=error)


@dataclass(frozen=True)
class Backoff:
    """Delays between polls: first, then times factor, at most maximum seconds."""

    first: float = 0.5
    factor: float = 1.5
    maximum: float = 10.0

    def delays(self) -> Callable[[], float]:
        current = [self.first]

        def next_delay() -> float:
            delay = current[0]
            current[0] = min(self.maximum, delay * self.factor)
            return delay
        return next_delay


class SlurmClient:
    """SLURM's commands for one cluster (``conf`` is its SLURM_CONF; None: the default).

    ``command_timeout`` bounds one command; ``query_timeout`` bounds the retries of a query
    while the controller does not answer (then SlurmUnavailable).
    """

    def __init__(self, conf: Path | str | None = None, env: Mapping[str, str] | None = None,
                 command_timeout: float = 30.0, query_timeout: float = 120.0,
                 backoff: Backoff = Backoff()):
        self.env = dict(os.environ if env is None else env)
        self.env["PATH"] = os.pathsep.join([self.env.get("PATH", ""), *SBIN])
        if conf is not None:
            self.env["SLURM_CONF"] = str(conf)
        self.command_timeout = command_timeout
        self.query_timeout = query_timeout
        self.backoff = backoff
        self._sacct_works: bool | None = None

    # -- commands -------------------------------------------------------------------------

    def _run(self, args: Sequence[str], stdin: str | None = None,
             deadline: float | None = None) -> subprocess.CompletedProcess[str]:
        """Run a command; retry while the controller does not answer, until the deadline."""
        if shutil.which(args[0], path=self.env["PATH"]) is None:
            raise SlurmError(f"{args[0]} is not on PATH (install slurm-wlm, or slurm-client)")
        deadline = deadline if deadline is not None else time.monotonic() + self.query_timeout
        delay = self.backoff.delays()
        while True:
            timeout = max(1.0, min(self.command_timeout, deadline - time.monotonic()))
            try:
                proc = subprocess.run(list(args), input=stdin, env=self.env, text=True,
                                      capture_output=True, timeout=timeout,
                                      stdin=None if stdin is not None else subprocess.DEVNULL)
            except subprocess.TimeoutExpired:
                proc = None
            if proc is not None and (proc.returncode == 0 or not TRANSIENT.search(proc.stderr)):
                return proc
            if time.monotonic() + 0.1 >= deadline:
                why = "timed out" if proc is None else proc.stderr.strip()
                raise SlurmUnavailable(f"{' '.join(args[:3])}: no answer from SLURM before "
                                       f"the deadline ({why})")
            time.sleep(min(delay(), max(0.0, deadline - time.monotonic())))

    def submit(self, spec: JobSpec) -> str:
        """Submit the spec's script with sbatch; the job's id (an array's parent id)."""
        proc = self._run(["sbatch", *spec.sbatch_args()], stdin=spec.script)
        if proc.returncode != 0:
            raise SlurmError(f"sbatch refused the job: {proc.stderr.strip()}")
        job_id = proc.stdout.strip().split(";")[0]
        if not re.fullmatch(r"\d+", job_id):
            raise SlurmError(f"sbatch --parsable printed {proc.stdout.strip()!r}, not a job id")
        return job_id

    def cancel(self, job_id: str, signal: str | None = None) -> None:
        """scancel the job (all of an array); a job that has already ended is no error."""
        args = ["scancel", *([f"--signal={signal}", "--full"] if signal else []), job_id]
        proc = self._run(args)
        if proc.returncode != 0 and not UNKNOWN_JOB.search(proc.stderr) \
                and "already completing or completed" not in proc.stderr:
            raise SlurmError(f"scancel {job_id}: {proc.stderr.strip()}")

    # -- state ----------------------------------------------------------------------------

    def _squeue(self, job_id: str, deadline: float) -> dict[str, JobState]:
        proc = self._run(["squeue", "-h", "-r", "-j", job_id, "-o", "%i|%T|%r"],
                         deadline=deadline)
        if proc.returncode != 0:
            if UNKNOWN_JOB.search(proc.stderr):
                return {}
            raise SlurmError(f"squeue -j {job_id}: {proc.stderr.strip()}")
        states = {}
        for line in proc.stdout.splitlines():
            parts = line.strip().split("|")
            if len(parts) == 3:
                states[parts[0]] = JobState(parts[0], parts[1], _reason(parts[2]),
                                            source="squeue")
        return states

    def _scontrol(self, job_id: str, deadline: float) -> dict[str, JobState]:
        proc = self._run(["scontrol", "-o", "show", "job", job_id], deadline=deadline)
        if proc.returncode != 0:
            if UNKNOWN_JOB.search(proc.stderr):
                return {}
            raise SlurmError(f"scontrol show job {job_id}: {proc.stderr.strip()}")
        states = {}
        for line in proc.stdout.splitlines():
            fields = parse_record(line)
            if "JobId" not in fields:
                continue
            task = fields.get("ArrayTaskId")
            key = f"{fields['ArrayJobId']}_{task}" if task and "ArrayJobId" in fields \
                else fields["JobId"]
            code, sig = _exit(fields.get("ExitCode"))
            states[key] = JobState(key, fields.get("JobState", "UNKNOWN"),
                                   _reason(fields.get("Reason")), code, sig, "scontrol", fields)
        return states

    def _sacct(self, job_id: str, deadline: float) -> dict[str, JobState]:
        """sacct where accounting exists; {} on a cluster without slurmdbd (remembered)."""
        if self._sacct_works is False or shutil.which("sacct", path=self.env["PATH"]) is None:
            return {}
        proc = self._run(["sacct", "-n", "-P", "-X", "-j", job_id,
                          "-o", "JobID,State,ExitCode,Reason"], deadline=deadline)
        if proc.returncode != 0:
            self._sacct_works = False
            return {}
        self._sacct_works = True
        states = {}
        for line in proc.stdout.splitlines():
            parts = line.split("|")
            if len(parts) >= 3:
                state = parts[1].split()[0] if parts[1] else "UNKNOWN"  # "CANCELLED by 0"
                code, sig = _exit(parts[2])
                reason = _reason(parts[3]) if len(parts) > 3 else ""
                states[parts[0]] = JobState(parts[0], state, reason, code, sig, "sacct")
        return states

    def states(self, job_id: str) -> dict[str, JobState]:
        """The state of a job, or of each task of an array job (keyed "<id>_<task>").

        Queued and running tasks come from squeue; the rest from scontrol (details of the end:
        exit code, reason), then sacct. A job no command knows is {job_id: UNKNOWN}.
        """
        deadline = time.monotonic() + self.query_timeout
        live = {k: s for k, s in self._squeue(job_id, deadline).items()
                if s.state not in FINAL_STATES}
        known = self._scontrol(job_id, deadline)
        # squeue is the word on what still runs; scontrol fills in the ended tasks. A pending
        # array's tasks are one scontrol record ("<id>_0-9%2") but one squeue line each.
        merged = {k: s for k, s in known.items()
                  if (s.final or k not in live) and not (live and _is_task_range(k))}
        merged.update(live)
        if not merged:
            merged = self._sacct(job_id, deadline)
        return merged or {job_id: JobState(job_id, "UNKNOWN", "", source="none")}

    def state(self, job_id: str) -> JobState:
        """The state of a single job (for an array, use :meth:`states`)."""
        states = self.states(job_id)
        if job_id in states:
            return states[job_id]
        if len(states) == 1:
            return next(iter(states.values()))
        raise SlurmError(f"job {job_id} is an array of {len(states)} tasks: use states()")

    def wait(self, job_id: str, timeout: float | None = None,
             on_poll: Callable[[dict[str, JobState]], None] | None = None) -> dict[str, JobState]:
        """Poll with back-off until the job (every task of an array) has ended.

        Raises JobWaitTimeout after `timeout` seconds (None: no deadline but SLURM's own,
        the job's time limit); the caller then cancels the job and waits briefly for its end.
        """
        start = time.monotonic()
        delay = self.backoff.delays()
        last: dict[str, JobState] = {}
        while True:
            last = self.states(job_id)
            if on_poll is not None:
                on_poll(last)
            if all(s.final for s in last.values()):
                return last
            waited = time.monotonic() - start
            if timeout is not None and waited >= timeout:
                first = next(iter(last.values()), None)
                raise JobWaitTimeout(job_id, first, waited)
            pause = delay()
            if timeout is not None:
                pause = min(pause, max(0.0, timeout - waited))
            time.sleep(pause)

    def wait_one(self, job_id: str, timeout: float | None = None) -> JobState:
        """:meth:`wait` for a single (non-array) job."""
        states = self.wait(job_id, timeout)
        return states.get(job_id) or next(iter(states.values()))

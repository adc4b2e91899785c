"""The SLURM runner: each block's runs of an environment as one SLURM job (or a job array).

An environment with ``runner = "slurm"`` hands its pending runs of a block to the cluster
as ONE batch job: the node prepares its Python (the study's ``setup`` commands: module
loads, a venv or conda activation), unpacks the staged toolkit, protocol notebook and folder
datasets (runners.vm.build_vm_stage, one zip in the block's folder under the ``shared``
folder, which this machine and the nodes both see) and runs the runs one at a time, each in
a fresh kernel, in the plan's order, with the local runner (runners.vm.run_job): the same
timeout, memory sampling and record as here. With ``array = true`` each run is one task of
a job array instead, which the cluster may run side by side.

Each run's zip (record, executed notebook, log) comes back through the shared folder, is
checked as any remote machine's result is (runners.session.read_result plus the checks of
``study import``: study, environment, record format) and yielded as soon as it is there.
A job that SLURM ends (time limit, memory, node failure, preemption, scancel) is classified
by runners.slurm_jobs.classify: the run in flight gets the status and SLURM's reason, the
runs that never started are the infrastructure's failures (retried); nothing waits forever:
the wait has a deadline (the queue's ``max_pending_s``, then the job's time limit). Ctrl-C
(``interrupt``), a generator closed early and the deadline all ``scancel`` the job; the
block's folder is removed afterwards, so neither a job nor a file is left behind.

The environment is a machine of its own (``runs_here = False``), so it runs at the same time
as the local environments. The records carry the node as a hash (``node_id``), its GPU
(``node_gpu``, from nvidia-smi on the node) and the job's id (``slurm_job``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import re
import shutil
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from cloudbench.runners.base import (
    BatchRunner,
    Outcome,
    RunResult,
    Try,
    exception_outcome,
    utc_now,
)
from cloudbench.runners.session import TransportError, read_result
from cloudbench.runners.slurm_jobs import (
    SBIN,
    Backoff,
    JobSpec,
    JobState,
    SlurmClient,
    SlurmError,
    batch_script,
    classify,
    tail,
)
from cloudbench.runners.staging import UNPACK_SOURCE, Stage
from cloudbench.runners.vm import build_vm_stage
from cloudbench.study.record import RecordError, upgrade
from cloudbench.study.registry import Option, OptionError
from cloudbench.study.spec import Environment, SpecError

#: SLURM's forms of a time limit: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS.
TIME_RE = re.compile(r"^(\d+-)?\d+(:\d{1,2}){0,2}$")
MEMORY_RE = re.compile(r"^\d+[KMGT]?$", re.I)
#: Ends of a job that are the cluster's doing, not the run's: the run is tried again.
NODE_ENDS = frozenset({"NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "REVOKED", "UNKNOWN"})
SHARED_DIR = "cloudbench"  # the runner's folder under `shared`
TRIES_FILE = "tries.json"
DRIVER_FILE = "driver.py"

# Runs on the node with the node's Python (after `setup`); the standard library only until
# the stage is unpacked. Writes started-<k> before try k and results/<k>.zip (atomically,
# by rename) after it, so the controller can tell what ran, what runs and what never did.
DRIVER = '''# cloudbench: a SLURM job's runs on its node (from runners/slurm.py)
{unpack}

def _cloudbench_gpu():
    import os, subprocess
    args = ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    if visible and visible != "NoDevFiles":
        args += ["-i", visible]
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    names = [line.strip() for line in out.stdout.splitlines() if line.strip()]
    return ", ".join(names) if out.returncode == 0 and names else None


def _cloudbench_main():
    import json, os, socket, sys
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, {tries!r})) as fh:
        tries = json.load(fh)
    task = os.environ.get("SLURM_ARRAY_TASK_ID")
    mine = [int(task)] if task is not None else list(range(len(tries)))
    name = "task-" + task if task is not None else "job"
    node = {{"node": socket.gethostname(), "gpu": _cloudbench_gpu(),
            "job": os.environ.get("SLURM_JOB_ID"), "python": sys.executable}}
    with open(os.path.join(here, "node-" + name + ".json.tmp"), "w") as fh:
        json.dump(node, fh)
    os.replace(os.path.join(here, "node-" + name + ".json.tmp"),
               os.path.join(here, "node-" + name + ".json"))
    root = _cloudbench_unpack(os.path.join(here, {archive!r}), os.path.join(here, "stage"))
    if root not in sys.path:
        sys.path.insert(0, root)
    from cloudbench.runners.vm import run_job
    os.makedirs(os.path.join(here, "results"), exist_ok=True)
    for k in mine:
        one = tries[k]
        open(os.path.join(here, "started-%d" % k), "w").close()
        print("cloudbench: run %s (try %d) on %s" % (one["job"]["run_id"], one["attempt"],
                                                      node["node"]), flush=True)
        made = run_job(root, one["job"], one["attempt"], os.path.join(here, "node-%d" % k))
        os.replace(os.path.abspath(made), os.path.join(here, "results", "%d.zip" % k))
        print("cloudbench: run %s done" % one["job"]["run_id"], flush=True)


_cloudbench_main()
'''


def node_hash(node: str) -> str:
    """The node as the records keep it: a hash, never the host name (as protocol host_id)."""
    return hashlib.sha256(f"slurm-node|{node}".encode()).hexdigest()[:12]


def time_limit_s(limit: int | str) -> int | None:
    """SLURM's time limit in seconds (None: a form this cannot read, e.g. "UNLIMITED")."""
    if isinstance(limit, int):
        return limit
    days, _, clock = limit.rpartition("-")
    parts = [int(p) for p in clock.split(":")] if clock else [0]
    if days:  # D-HH[:MM[:SS]]
        parts += [0] * (3 - len(parts))
        hours, minutes, seconds = parts
    elif len(parts) == 1:  # minutes
        hours, minutes, seconds = 0, parts[0], 0
    elif len(parts) == 2:  # MM:SS
        hours, (minutes, seconds) = 0, parts
    else:
        hours, minutes, seconds = parts
    return (int(days or 0) * 24 + hours) * 3600 + minutes * 60 + seconds


@dataclass
class Submitted:
    """One submitted job of a block: its folder, its tries and what is known of it."""

    job_id: str
    folder: Path
    tries: list[Try]
    array: bool
    submitted: float  # time.monotonic()
    running_since: float | None = None
    final: bool = False

    def task_key(self, k: int) -> str:
        return f"{self.job_id}_{k}" if self.array else self.job_id

    def error_file(self, k: int) -> Path:
        return self.folder / (f"task-{k}.err" if self.array else "job.err")

    def node_file(self, k: int) -> Path:
        return self.folder / (f"node-task-{k}.json" if self.array else "node-job.json")


class SlurmRunner(BatchRunner):
    """One SLURM job (or job array) per block; the node runs the block's runs with the
    local runner, and the results come back through the shared folder."""

    options = (
        Option("shared", str, required=True,
               doc="an absolute folder that this machine and the nodes both see (NFS, "
                   "Lustre, a home folder): the stage goes in, the results come out"),
        Option("partition", str, doc="the partition (sbatch --partition); default the "
                                     "cluster's default partition"),
        Option("time_limit", (int, str),
               doc="the job's limit: seconds, or SLURM's form (\"1:00:00\", \"2-00:00:00\"); "
                   "default the runs' timeouts plus a margin"),
        Option("gpus", (int, str), doc="GPUs per job (sbatch --gpus): 1, or a type: \"a100:1\""),
        Option("gres", str, doc="generic resources instead of gpus (sbatch --gres), "
                                "e.g. \"gpu:a100:1\""),
        Option("cpus", int, doc="CPUs per task (sbatch --cpus-per-task)"),
        Option("memory", (int, str), doc="memory per node: MB, or SLURM's form (\"16G\")"),
        Option("account", str, doc="the account charged (sbatch --account)"),
        Option("qos", str, doc="the quality of service (sbatch --qos)"),
        Option("setup", list, [], doc="shell commands that prepare the node's Python, in "
                                      "order: module loads, `source venv/bin/activate`..."),
        Option("python", str, "python3", doc="the node's Python after `setup`"),
        Option("array", bool, False, doc="one array task per run instead of one job per "
                                         "block (the runs may then run side by side)"),
        Option("max_pending_s", (int, float), 3600.0,
               doc="how long a job may wait in the queue before it is cancelled"),
        Option("sbatch_args", list, [], doc="further sbatch options, e.g. [\"--constraint=v100\"]"),
    )
    local_files = False
    runs_here = False
    margin_s = 120.0  # per run beyond its timeout: a kernel's start, the stage's unpacking
    setup_s = 300.0  # per job: the node's setup commands
    grace_s = 60.0  # after the time limit, before the controller gives up on SLURM's end
    poll = Backoff(first=0.5, factor=1.5, maximum=5.0)

    # -- the study file -----------------------------------------------------------------------

    @classmethod
    def validate(cls, environment: Environment) -> None:
        opts = environment.options
        shared = opts["shared"]
        if not shared or not Path(shared).expanduser().is_absolute():
            raise OptionError("shared", f"expected an absolute folder that the nodes see too, "
                              f"got {shared!r}")
        if opts.get("gpus") is not None and opts.get("gres") is not None:
            raise OptionError("gres", "give gpus or gres, not both")
        gpus = opts.get("gpus")
        if gpus is not None and (isinstance(gpus, bool) or
                                 not re.fullmatch(r"([\w.-]+:)?[1-9]\d*", str(gpus))):
            raise OptionError("gpus", f"expected a number of GPUs or type:count, got {gpus!r}")
        gres = opts.get("gres")
        if gres is not None and not re.fullmatch(r"[\w.-]+(:[\w.-]+)*(,[\w.-]+(:[\w.-]+)*)*",
                                                 gres):
            raise OptionError("gres", f"expected SLURM's form, e.g. gpu:a100:1, got {gres!r}")
        limit = opts.get("time_limit")
        if limit is not None and (isinstance(limit, bool) or
                                  (isinstance(limit, int) and limit <= 0) or
                                  (isinstance(limit, str) and not TIME_RE.match(limit))):
            raise OptionError("time_limit", f"expected seconds (> 0) or SLURM's form "
                              f"(\"90\" minutes, \"1:00:00\", \"2-00:00:00\"), got {limit!r}")
        memory = opts.get("memory")
        if memory is not None and (isinstance(memory, bool) or
                                   (isinstance(memory, int) and memory <= 0) or
                                   (isinstance(memory, str) and not MEMORY_RE.match(memory))):
            raise OptionError("memory", f"expected MB (> 0) or a size such as 16G, got "
                              f"{memory!r}")
        cpus = opts.get("cpus")
        if cpus is not None and cpus < 1:
            raise OptionError("cpus", f"expected 1 or more, got {cpus}")
        for key in ("setup", "sbatch_args"):
            if not all(isinstance(c, str) and c.strip() for c in opts[key]):
                raise OptionError(key, "expected a list of non-empty strings")
        if opts["max_pending_s"] <= 0:
            raise OptionError("max_pending_s", "expected a positive number of seconds")
        if environment.tpu is not None:
            raise OptionError("tpu", "the slurm runner requests GPUs only (gpus or gres)")

    # -- set-up -------------------------------------------------------------------------------

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.opts = self.env.options
        self.block = 0
        self._active: Submitted | None = None  # the job in flight (interrupt)
        self._interrupted = False

    @cached_property
    def client(self) -> SlurmClient:
        return SlurmClient(command_timeout=30.0, query_timeout=120.0)

    @property
    def shared(self) -> Path:
        return Path(self.opts["shared"]).expanduser()

    def _refuse(self, key: str, message: str) -> SpecError:
        return SpecError(self.study.path, f"{self.key}.{key}", message)

    def check(self) -> None:
        """SLURM's commands, the shared folder and the partition, before anything runs."""
        path = ":".join([*(self.client.env.get("PATH", "").split(":")), *SBIN])
        missing = [c for c in ("sbatch", "squeue", "scontrol", "scancel", "sinfo")
                   if shutil.which(c, path=path) is None]
        if missing:
            raise self._refuse("runner", f"runner \"slurm\" needs SLURM's commands on PATH "
                               f"(missing: {', '.join(missing)}): run the study on a login "
                               "node, or install slurm-client with the cluster's slurm.conf")
        shared = self.shared
        if not shared.is_dir():
            raise self._refuse("shared", f"the shared folder {shared} does not exist: create "
                               "it on a file system the nodes mount (see docs/remote.md)")
        probe = shared / f".cloudbench-probe-{uuid.uuid4().hex[:8]}"
        try:
            probe.write_text("")
            probe.unlink()
        except OSError as exc:
            raise self._refuse("shared", f"cannot write to the shared folder {shared}: "
                               f"{exc}") from exc
        try:
            proc = self.client._run(["sinfo", "-h", "-o", "%P"])
        except SlurmError as exc:
            raise self._refuse("runner", f"SLURM does not answer: {exc}") from exc
        if proc.returncode != 0:
            raise self._refuse("runner", f"sinfo failed: {proc.stderr.strip()}")
        partitions = [p.rstrip("*") for p in proc.stdout.split()]
        partition = self.opts.get("partition")
        if partition is not None and partition not in partitions:
            raise self._refuse("partition", f"no partition {partition!r} on this cluster; it "
                               f"has: {', '.join(partitions) or 'none'}")

    @cached_property
    def stage(self) -> Stage:
        """The toolkit, protocol notebook, folder datasets and study, once per study run."""
        return build_vm_stage(self.study)

    def open_block(self, block: int) -> None:
        self.block = block

    def interrupt(self) -> None:
        """Ctrl-C, SIGTERM: scancel the job in flight now; run_batch then raises."""
        active = self._active
        self._interrupted = True
        if active is not None:
            with contextlib.suppress(Exception):
                self.client.cancel(active.job_id)

    # -- a block ------------------------------------------------------------------------------

    def run_batch(self, tries: Iterable[Try]) -> Iterator[RunResult]:
        """ONE job (or array) of exactly the tries given, in their order; each result as
        soon as its zip is in the shared folder. A refused submission is every try's
        infrastructure failure; Ctrl-C cancels the job and raises."""
        batch = list(tries)
        if not batch:
            return
        self._interrupted = False
        started_at, start = utc_now(), time.perf_counter()
        try:
            submitted = self._submit(batch)
        except (KeyboardInterrupt, SystemExit, GeneratorExit):
            raise
        except BaseException as exc:  # noqa: BLE001 - every try's failed record
            failed = exception_outcome(exc)
            seconds = (time.perf_counter() - start) / len(batch)
            for one in batch:
                yield self.result(one.job, one.attempt, failed, started_at, seconds)
            return
        self._active = submitted
        try:
            for k, outcome in self._outcomes(submitted):
                one = batch[k]
                yield self.result(one.job, one.attempt, outcome, started_at,
                                  time.perf_counter() - start)
                if not submitted.array:  # the next run starts where this one ended
                    started_at, start = utc_now(), time.perf_counter()
        finally:
            self._active = None
            self._finish(submitted)

    def _submit(self, batch: list[Try]) -> Submitted:
        """The block's folder in the shared one (stage, tries, driver), then sbatch."""
        label = f"{self.study.name}-{self.env.name}-b{self.block}-{uuid.uuid4().hex[:6]}"
        folder = self.shared / SHARED_DIR / re.sub(r"[^A-Za-z0-9_.-]", "-", label)
        folder.mkdir(parents=True)
        folder.chmod(0o755)
        archive = f"cloudbench-{self.stage.version}.zip"
        self.stage.write_zip(folder / archive)
        tries = [{"job": dataclasses.asdict(j), "attempt": a} for j, a in batch]
        (folder / TRIES_FILE).write_text(json.dumps(tries, indent=1), encoding="utf-8")
        (folder / DRIVER_FILE).write_text(DRIVER.format(
            unpack=UNPACK_SOURCE.strip(), tries=TRIES_FILE, archive=archive), encoding="utf-8")
        array = bool(self.opts["array"]) and len(batch) > 1
        runs = 1 if array else len(batch)
        limit = self.opts.get("time_limit") or int(
            self.setup_s + runs * (self.timeout_s + self.margin_s))
        gpus = self.opts.get("gpus")
        if gpus is None and self.opts.get("gres") is None and self.env.gpu is not None:
            gpus = 1  # gpu = "..." asks the protocol to check for one: the job must get it
        out = "task-%a" if array else "job"
        spec = JobSpec(
            script=batch_script([f"{self.opts['python']} {DRIVER_FILE}"], self.opts["setup"]),
            name=f"cb-{self.env.name}-b{self.block}"[:60], partition=self.opts.get("partition"),
            time_limit=limit, cpus=self.opts.get("cpus"), memory=self.opts.get("memory"),
            gpus=gpus, gres=self.opts.get("gres"), account=self.opts.get("account"),
            qos=self.opts.get("qos"), output=str(folder / f"{out}.out"),
            error=str(folder / f"{out}.err"), array=f"0-{len(batch) - 1}" if array else None,
            workdir=str(folder), extra=tuple(self.opts["sbatch_args"]))
        try:
            job_id = self.client.submit(spec)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        self._log(f"block {self.block}: job {job_id} ({'array of ' if array else ''}"
                  f"{len(batch)} run(s): {', '.join(t.job.run_id for t in batch)}) in {folder}")
        return Submitted(job_id, folder, batch, array, time.monotonic())

    def _outcomes(self, sub: Submitted) -> Iterator[tuple[int, Outcome]]:
        """Each try's outcome in order, as its result appears or as SLURM ends the job."""
        delay = self.poll.delays()
        limit = self.opts.get("time_limit")
        limit_s = time_limit_s(limit) if limit is not None else int(
            self.setup_s + (1 if sub.array else len(sub.tries)) * (self.timeout_s + self.margin_s))
        if limit_s is not None and sub.array:  # the tasks may run one after another
            limit_s *= len(sub.tries)
        k = 0
        while k < len(sub.tries):
            if (sub.folder / "results" / f"{k}.zip").is_file():
                yield k, self._read(sub, k)
                k += 1
                continue
            if self._interrupted:
                self._cancel(sub)
                raise KeyboardInterrupt
            try:
                states = self.client.states(sub.job_id)
            except SlurmError as exc:  # the controller is gone (after its own retries)
                self._log(f"job {sub.job_id}: {exc}")
                for rest in range(k, len(sub.tries)):
                    yield rest, Outcome.failure(
                        f"SLURM job {sub.task_key(rest)}: its state could not be read: {exc}",
                        infrastructure=True).replace(fields=self._node_fields(sub, rest))
                return
            now = time.monotonic()
            if sub.running_since is None and any(s.state == "RUNNING" for s in states.values()):
                sub.running_since = now
            if all(s.final for s in states.values()):
                sub.final = True
                yield from self._ended(sub, k, states)
                return
            overdue = (now - sub.submitted > self.opts["max_pending_s"]
                       if sub.running_since is None else
                       limit_s is not None and now - sub.running_since > limit_s + self.grace_s)
            if overdue:
                why = ("still queued after max_pending_s" if sub.running_since is None else
                       "not ended by SLURM at its time limit")
                self._log(f"job {sub.job_id}: {why}; cancelled")
                self._cancel(sub)
                yield from self._ended(sub, k, self._final_states(sub), why)
                return
            time.sleep(delay())

    def _ended(self, sub: Submitted, first: int, states: dict[str, JobState],
               why: str | None = None) -> Iterator[tuple[int, Outcome]]:
        """The job has ended: each remaining try's result, or how SLURM's end met it."""
        grace = time.monotonic() + 10.0  # a shared file system may show the last file late
        for k in range(first, len(sub.tries)):
            result = sub.folder / "results" / f"{k}.zip"
            while not result.is_file() and time.monotonic() < grace and \
                    (sub.folder / f"started-{k}").exists() and \
                    self._state(sub, k, states).state == "COMPLETED":
                time.sleep(0.5)
            if result.is_file():
                yield k, self._read(sub, k)
                continue
            state = self._state(sub, k, states)
            ended = classify(state, tail(sub.error_file(k)))
            fields = self._node_fields(sub, k)
            if why is not None:  # our deadline: a run in flight timed out, others never ran
                started = (sub.folder / f"started-{k}").exists()
                yield k, Outcome.failure(f"SLURM job {sub.task_key(k)} cancelled: {why} "
                                         f"({ended.error or state.state})",
                                         status="timeout" if started else "failed",
                                         infrastructure=True).replace(fields=fields)
            elif (sub.folder / f"started-{k}").exists():  # the run in flight
                status = "failed" if ended.status == "ok" else ended.status
                error = ended.error or (f"SLURM job {sub.job_id} {state.state}, but the run "
                                        "left no result in the shared folder")
                yield k, Outcome(status, error, infrastructure=state.state in NODE_ENDS,
                                 fields=fields)
            else:
                where = next((sub.tries[j].job.run_id for j in range(k - 1, -1, -1)
                              if (sub.folder / f"started-{j}").exists()), None)
                during = f" during {where}" if where else " before its first run"
                message = (f"did not run: SLURM job {sub.task_key(k)} ended{during}: "
                           f"{ended.error or state.state}")
                yield k, Outcome.failure(message, infrastructure=True).replace(fields=fields)

    @staticmethod
    def _state(sub: Submitted, k: int, states: dict[str, JobState]) -> JobState:
        key = sub.task_key(k)
        if key in states:
            return states[key]
        if not sub.array and len(states) == 1:
            return next(iter(states.values()))
        return JobState(key, "UNKNOWN", source="none")

    def _read(self, sub: Submitted, k: int) -> Outcome:
        """A run's zip through the checks of any remote result; the node's fields added."""
        job, attempt = sub.tries[k]
        fields = self._node_fields(sub, k)
        try:
            outcome = read_result(sub.folder / "results" / f"{k}.zip", job,
                                  self.paths.run(job.run_id, attempt), self._check_record)
        except TransportError as exc:
            return Outcome.failure(str(exc), status=exc.status, infrastructure=True
                                   ).replace(fields=fields)
        return outcome.replace(fields={**outcome.fields, **fields})

    def _node_fields(self, sub: Submitted, k: int) -> dict[str, Any]:
        fields: dict[str, Any] = {"slurm_job": sub.task_key(k)}
        try:
            node = json.loads(sub.node_file(k).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return fields
        if isinstance(node, dict) and isinstance(node.get("node"), str):
            fields["node_id"] = node_hash(node["node"])
            fields["node_gpu"] = node.get("gpu") if isinstance(node.get("gpu"), str) else None
        return fields

    def _check_record(self, record: dict[str, Any]) -> None:
        """The checks that `study import` makes of a record made elsewhere: study,
        environment, a format this toolkit reads (the fields are checked with the record)."""
        if record.get("study") != self.study.name or record.get("environment") != self.env.name:
            raise TransportError(f"the job returned a run of study {record.get('study')!r}, "
                                 f"environment {record.get('environment')!r}, not of "
                                 f"{self.study.name!r}, {self.env.name!r}")
        try:
            upgrade(dict(record))
        except RecordError as exc:
            raise TransportError(f"the job's record: {exc}") from exc

    # -- the end ------------------------------------------------------------------------------

    def _cancel(self, sub: Submitted) -> None:
        with contextlib.suppress(SlurmError):
            self.client.cancel(sub.job_id)

    def _final_states(self, sub: Submitted, timeout: float = 60.0) -> dict[str, JobState]:
        """The job's states once it has ended after a scancel (UNKNOWN if it never says)."""
        deadline = time.monotonic() + timeout
        states: dict[str, JobState] = {}
        while time.monotonic() < deadline:
            with contextlib.suppress(SlurmError):
                states = self.client.states(sub.job_id)
                if all(s.final for s in states.values()):
                    sub.final = True
                    return states
            time.sleep(0.5)
        return states

    def _finish(self, sub: Submitted) -> None:
        """Whatever happened: no job left in the queue, the job's output in the runner's
        log, the block's folder gone from the shared folder."""
        if not sub.final:
            self._cancel(sub)
            self._final_states(sub, timeout=30.0)
        for name in sorted(p.name for p in sub.folder.glob("*.out")) + \
                sorted(p.name for p in sub.folder.glob("*.err")):
            text = (sub.folder / name).read_text(errors="replace").strip()
            if text:
                self._log(f"job {sub.job_id} {name}:\n{text}")
        shutil.rmtree(sub.folder, ignore_errors=True)
        with contextlib.suppress(OSError):
            sub.folder.parent.rmdir()  # the runner's folder, when no other block uses it

    def _log(self, text: str) -> None:
        self.paths.runner_log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.paths.runner_log, "a", encoding="utf-8") as fh:
            fh.write(f"[{utc_now()}] {text}\n")

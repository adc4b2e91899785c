"""The Colab runner: each block's repetitions in a fresh Colab VM, through Google's `colab` client.

A session runner (runners.session): one VM per block, staged once, every repetition run
there with the local runner. This module is only the transport: Google's command-line
client, command by command, with what it printed logged (cleaned) and its failures classified.

Client syntax (google-colab-cli 0.7): `colab new -s NAME [--gpu T4|--tpu v5e1]`,
`colab upload -s NAME LOCAL REMOTE`, `colab install -s NAME -r REQUIREMENTS`,
`colab exec -s NAME -f FILE --timeout S`, `colab download -s NAME REMOTE LOCAL`,
`colab stop -s NAME`, `colab sessions`, `colab usage`, `colab version`. Remote paths are
relative to the VM's `/`; `exec` runs in `/content`, in one kernel that persists across
calls. What the client does not do, the runner does itself: `exec` exits 0 even when the
code raised and never enforces `--timeout` (the runner kills the client, with its process
tree, at its own deadline); `install` exits 0 even when pip failed (its output is checked);
`stop` may fail and keep the VM (the runner checks `colab sessions` after it).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import time
import warnings
from pathlib import Path
from typing import Any

from cloudbench.runners.base import Amendments, Outcome, utc_now
from cloudbench.runners.processes import kill_tree
from cloudbench.runners.session import SessionRunner, Transport, TransportError, tail
from cloudbench.study.layout import RunPaths
from cloudbench.study.plan import RunJob
from cloudbench.study.registry import OptionError
from cloudbench.study.spec import Environment, SpecError

#: Extra global options for the client, e.g. "--auth=adc" or "--config /path/sessions.json".
OPTIONS_ENV = "STUDY_COLAB_OPTIONS"
#: The Jupyter-contents path of `exec`'s working folder (/content) in the VM.
REMOTE_HOME = "content"
#: Accelerators as google-colab-cli 0.7 spells them (it maps unknown ones silently).
GPUS = ("t4", "l4", "g4", "a100", "h100")
TPUS = ("v5e1", "v6e1")
CLIENT_VERSION = (0, 7)
INSTALL_HINT = ("uv tool install --python 3.12 'google-colab-cli==0.7.*' (or: pipx install "
                "--python python3.12 'google-colab-cli==0.7.*')")
#: The versions the toolkit was tested with, pinned in the VM (`colab install -r`).
PINS = {"papermill": "2.7.0"}
#: Refusals that no retry can change: stop the environment.
PERMANENT = ("Backend rejected accelerator", "no quota or entitlement", "Aborted.",
             "No valid default credentials", "unsupported client")
#: Failures worth another try after a wait.
TRANSIENT = ("Allocation refused", "Connection was lost", "not found", "HTTP 5", " 500 ",
             " 502 ", " 503 ", " 504 ", "Internal Server Error", "Service Unavailable",
             "Bad Gateway", "TimeoutError")
INSTALL_ERRORS = ("ERROR:", "No matching distribution", "Could not find a version")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07|\x1b[@-Z\\-_]")
_BOX = re.compile(r"[\u2500-\u259f]+")
_BALANCE = re.compile(r"balance[^0-9\n]*([0-9]+(?:\.[0-9]+)?)", re.IGNORECASE)

# Runs the driver in a child Python: the exec kernel persists across calls, and nothing of
# its state (sys.path, modules of an earlier stage, globals) may reach a timed repetition.
# It also enforces the deadline inside the VM, which the client does not.
CHILD = '''# cloudbench: the driver in a fresh Python (from runners/colab.py)
def _cloudbench_child(source, timeout):
    import os, signal, subprocess, sys
    child = subprocess.Popen([sys.executable, "-c", source], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        out, err = child.communicate()
        err += "\\nTimeoutError: the run passed its %g s in the VM and was killed" % timeout
    sys.stdout.write(out)
    sys.stderr.write(err)


_cloudbench_child({source!r}, {timeout!r})
'''

# Shuts down the idle kernels the VM has besides this busy one (`colab install` leaves one).
IDLE_KERNELS = '''# cloudbench: no idle kernel beside the timed runs (from runners/colab.py)
def _cloudbench_idle_kernels():
    import glob, json, os, urllib.request
    from jupyter_core.paths import jupyter_runtime_dir
    stopped = 0
    for info in glob.glob(os.path.join(jupyter_runtime_dir(), "jpserver-*.json")):
        server = json.load(open(info))
        url, head = server["url"].rstrip("/") + "/api/kernels", {
            "Authorization": "token " + server.get("token", "")}
        try:
            kernels = json.load(urllib.request.urlopen(urllib.request.Request(
                url, headers=head), timeout=10))
        except OSError:
            continue
        for kernel in kernels:
            if kernel.get("execution_state") == "idle":
                urllib.request.urlopen(urllib.request.Request(
                    url + "/" + kernel["id"], headers=head, method="DELETE"), timeout=10)
                stopped += 1
    print("CLOUDBENCH-IDLE-KERNELS %d" % stopped)


_cloudbench_idle_kernels()
'''


def clean(text: str) -> str:
    """The client's output without ANSI colours or rich's box drawing, for logs and errors."""
    text = _BOX.sub(" ", _ANSI.sub("", text))
    return "\n".join(line.strip() for line in text.splitlines() if line.strip())


def classify(text: str) -> str:
    """"permanent", "transient" or "failed" (retried as an infrastructure failure)."""
    if any(m in text for m in PERMANENT):
        return "permanent"
    return "transient" if any(m in text for m in TRANSIENT) else "failed"


class ColabError(TransportError):
    """A client failure, with its class: permanent refusals stop the environment."""

    def __init__(self, message: str, kind: str, status: str = "failed"):
        super().__init__(message, status)
        self.kind = kind


class ColabTransport(Transport):
    """Google's `colab` client on one session; every command logged to `log`."""

    executable = "colab"

    def __init__(self, environment: Environment, log: Path | None, setup_timeout_s: float,
                 grace_s: float, config: Path | None = None):
        self.env, self.log = environment, log
        self.setup_timeout_s, self.grace_s = setup_timeout_s, grace_s
        self.config = config
        self.session: str | None = None
        self.failure: str | None = None  # the kind of the last failure it raised
        self.left: list[str] = []  # sessions `colab sessions` still listed after their stop

    def start(self, label: str) -> None:
        accelerator = (["--gpu", self.env.gpu.upper()] if self.env.gpu else
                       ["--tpu", self.env.tpu.lower()] if self.env.tpu else [])
        self.session = label  # set first: a `new` that timed out may still have made one
        self._client(["new", "-s", label, *accelerator], self.setup_timeout_s,
                     f"Colab did not give a {self.env.accelerator.upper()} session")

    def upload(self, local: Path, remote: str) -> None:
        self._client(["upload", "-s", self._name, str(local), f"{REMOTE_HOME}/{remote}"],
                     self.setup_timeout_s, "uploading the protocol, helper code and datasets "
                     "failed")

    def install(self, packages: tuple[str, ...]) -> None:
        """Pinned, checked by what pip printed (the client exits 0 whatever happened), and
        the idle kernel the client's install leaves behind shut down before any timing."""
        folder = self.log.parent if self.log is not None else Path.cwd()
        requirements = folder / f"{self.env.name}.colab-requirements.txt"
        requirements.write_text("".join(f"{p}=={PINS[p]}\n" if p in PINS else f"{p}\n"
                                        for p in packages), encoding="utf-8")
        proc = self._client(["install", "-s", self._name, "-r", str(requirements)],
                            self.setup_timeout_s, "installing in the VM failed")
        printed = clean(f"{proc.stdout}\n{proc.stderr}")
        if any(m in printed for m in INSTALL_ERRORS):
            kind = "permanent" if "No matching distribution" in printed or \
                "Could not find a version" in printed else "failed"
            self.failure = kind
            raise ColabError(f"installing {', '.join(packages)} in the VM failed: "
                             f"{tail(printed)}", kind)
        script = folder / f"{self.env.name}.colab-idle.py"
        script.write_text(IDLE_KERNELS, encoding="utf-8")
        self._client(["exec", "-s", self._name, "-f", str(script), "--timeout", "60"],
                     120.0, "shutting down the VM's idle kernels failed")

    def exec(self, script: Path, timeout: float) -> str:
        """The script in a child Python of the exec kernel; the runner's own deadline."""
        wrapper = script.with_name(script.stem + ".child.py")
        wrapper.write_text(CHILD.format(source=script.read_text(encoding="utf-8"),
                                        timeout=timeout), encoding="utf-8")
        proc = self._client(["exec", "-s", self._name, "-f", str(wrapper), "--timeout",
                             f"{timeout:g}"], timeout + self.grace_s, "the run in the VM failed")
        return clean(f"{proc.stdout}\n{proc.stderr}")  # a traceback of the driver is on stderr

    def download(self, remote: str, local: Path) -> None:
        self._client(["download", "-s", self._name, f"{REMOTE_HOME}/{remote}", str(local)],
                     self.setup_timeout_s, "downloading the run's results failed")

    def stop(self) -> None:
        """Stop (twice if the backend's unassign failed), then make sure no VM is left."""
        name, self.session = self.session, None
        if name is None:
            return
        kept = self.failure  # the run's failure, not the stop's, decides what follows
        try:
            self._stop_and_check(name)
        finally:
            self.failure = kept

    def _stop_and_check(self, name: str) -> None:
        for _ in range(2):
            try:
                self._client(["stop", "-s", name], 120.0, "stopping the session failed")
                break
            except TransportError as exc:  # noted in the client log
                if "not found" in str(exc):
                    break  # no local entry: `colab sessions` says whether a VM is left
        try:
            listed = self._client(["sessions"], 120.0, "listing the sessions failed")
        except TransportError:
            listed = None
        if listed is None or name in listed.stdout:
            self.left.append(name)
            message = (f"the Colab session {name} may still be running (and billed): free it "
                       f"with `colab stop -s {name}` (with the study's options: "
                       f"{shlex.join(self._options()) or 'none'}), or in Colab's web UI, "
                       "Runtime > Manage sessions")
            self._note(message)
            warnings.warn(message, ColabSessionLeft, stacklevel=2)

    def usage(self) -> float | None:
        """The account's compute-unit balance (`colab usage`), None when it cannot tell."""
        kept = self.failure
        try:
            proc = self._client(["usage"], 120.0, "reading the compute units failed")
        except TransportError:
            return None
        finally:
            self.failure = kept
        found = _BALANCE.search(clean(proc.stdout))
        return float(found.group(1)) if found else None

    @property
    def _name(self) -> str:
        if self.session is None:
            raise TransportError("no Colab session is open")
        return self.session

    def _options(self) -> list[str]:
        options = shlex.split(os.environ.get(OPTIONS_ENV, ""))
        if self.config is not None and not any(o.startswith("--config") for o in options):
            options += ["--config", str(self.config)]
        return options

    def _client(self, args: list[str], timeout: float, what: str
                ) -> subprocess.CompletedProcess[str]:
        """Run one client command under our own deadline (the client keeps none), log what
        it said, and raise ColabError, classified, when it failed."""
        command = [self.executable, *self._options(), *args]
        env = {**os.environ, "TYPER_STANDARD_TRACEBACK": "1", "NO_COLOR": "1", "TERM": "dumb"}
        if self.config is not None:
            self.config.parent.mkdir(parents=True, exist_ok=True)
        try:
            proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    stdin=subprocess.DEVNULL, text=True, env=env,
                                    start_new_session=True)
        except OSError as exc:
            raise ColabError(f"{what}: cannot run the colab client: {exc}", "permanent") \
                from exc
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            kill_tree(proc)  # the client and everything it started, its group included
            out, err = proc.communicate()
            self._log(args, out, err, f"killed after {timeout:g} s")
            self.failure = "transient"
            raise ColabError(f"{what}: `colab {args[0]}` did not return within {timeout:g} s "
                             "and was killed", "transient", status="timeout") from exc
        self._log(args, out, err, f"exit {proc.returncode}")
        done = subprocess.CompletedProcess(command, proc.returncode, out, err)
        if proc.returncode != 0:
            last = tail(clean(f"{out}\n{err}"))
            kind = self.failure = classify(last)
            if kind == "permanent":
                raise ColabError(f"{what}: Colab refused for good: {last}", kind)
            if args[0] in ("exec", "download") and ("not found" in last or "lost" in last):
                raise ColabError(f"the Colab session was lost during the run: {last}", kind)
            raise ColabError(f"{what}: {last}", kind)
        return done

    def _log(self, args: list[str], out: str | None, err: str | None, outcome: str) -> None:
        if self.log is None:  # check(): nothing is written before the study starts
            return
        with open(self.log, "a", encoding="utf-8") as fh:
            fh.write(f"[{utc_now()}] $ colab {shlex.join(args)}  ({outcome})\n")
            for text in (out, err):
                text = clean(text or "")
                if text:
                    fh.write(text + "\n")

    def _note(self, message: str) -> None:
        if self.log is None:
            return
        with open(self.log, "a", encoding="utf-8") as fh:
            fh.write(f"[{utc_now()}] WARNING {message}\n")


class ColabSessionLeft(UserWarning):
    """A Colab VM of the study may still be running after its stop."""


class ColabRunner(SessionRunner):
    """One Colab session per block, with the environment's gpu or tpu."""

    setup_timeout_s = 900.0  # allocating a VM, uploading, installing
    backoff_s = 30.0  # the wait before a try after a transient failure, doubled each time

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.refused: str | None = None  # a permanent refusal: no more runs here
        self._failures = 0
        self._failed_at = 0.0
        self._last: ColabTransport | None = None
        self._block_runs: list[RunJob] = []
        self._balance: float | None = None

    @classmethod
    def validate(cls, environment: Environment) -> None:
        """Refuse what the client would silently turn into another accelerator."""
        if environment.gpu is not None and environment.gpu.lower() not in GPUS:
            raise OptionError("gpu", f"{environment.gpu!r} is not a Colab GPU: one of "
                              f"{', '.join(GPUS)} (any case)")
        if environment.tpu is not None and environment.tpu.lower() not in TPUS:
            raise OptionError("tpu", f"{environment.tpu!r} is not a Colab TPU: one of "
                              f"{', '.join(TPUS)} (any case)")

    def check(self) -> None:
        """The client is there, of a version we know, and authenticated."""
        if not shutil.which(ColabTransport.executable):
            self._refuse("runner \"colab\" needs Google's `colab` client on PATH (it needs "
                         f"Python 3.12+, apart from the toolkit): {INSTALL_HINT}; then "
                         "authenticate once (see docs/remote.md), or export the environment "
                         "as a notebook with `study export colab`")
        probe = self._transport(None)
        try:
            version = probe._client(["version"], 60.0, "`colab version` failed").stdout
        except TransportError as exc:
            self._refuse(f"{exc}; reinstall the client: {INSTALL_HINT}")
        found = re.search(r"(\d+)\.(\d+)\.(\d+)", version)
        if found is None or tuple(int(v) for v in found.groups()[:2]) != CLIENT_VERSION:
            self._refuse(f"unsupported client: `colab version` says {version.strip()!r}, the "
                         f"runner needs google-colab-cli 0.7.x: {INSTALL_HINT}")
        try:
            probe._client(["usage"], 120.0, "the authentication probe (`colab usage`) failed")
        except TransportError as exc:
            self._refuse(f"{exc}; authenticate the client (see docs/remote.md, e.g. "
                         "STUDY_COLAB_OPTIONS=\"--auth=adc\" after gcloud's login)")

    def _refuse(self, message: str) -> None:
        raise SpecError(self.study.path, f"{self.key}.runner", message)

    def _transport(self, config: Path | None) -> ColabTransport:
        log = self.paths.runner_log if config else None
        return ColabTransport(self.env, log, self.setup_timeout_s, self.margin_s, config)

    def make_transport(self) -> ColabTransport:
        """A transport with the study's own client state file, apart from other studies."""
        self.paths.logs.mkdir(parents=True, exist_ok=True)
        self._last = self._transport(self.paths.state / "sessions.json")
        if self._balance is None:
            self._balance = self._last.usage()
        return self._last

    def execute(self, job: RunJob, attempt: int, paths: RunPaths) -> Outcome:
        """A permanent refusal ends the environment; a transient one waits before the try."""
        if self.refused is not None:
            return Outcome.failure(f"not run: Colab refused environment {self.env.name} "
                                   f"earlier in this study: {self.refused}", wall_s=0.0)
        self._block_runs.append(job)  # its share of the block's compute units
        if self._failures:
            wait = min(self.backoff_s * 2 ** (self._failures - 1), 600.0)
            time.sleep(max(0.0, self._failed_at + wait - time.monotonic()))
        if self._last is not None:
            self._last.failure = None
        outcome = super().execute(job, attempt, paths)
        failure = self._last.failure if self._last is not None else None
        if outcome.infrastructure and failure == "permanent":
            self.refused = str(outcome.error)
            outcome = outcome.replace(
                infrastructure=False, error=f"{outcome.error} (not retried; the other runs "
                                            f"of {self.env.name} are not started)")
        elif outcome.infrastructure:
            self._failures, self._failed_at = self._failures + 1, time.monotonic()
        else:
            self._failures = 0
        return outcome

    def close_block(self) -> Amendments:
        """Stop the session; the compute units of the block, shared among its tries, as
        amendments to the runs' records (the scheduler writes them through the store)."""
        transport, self._last = self._last, None
        super().close_block()
        jobs, self._block_runs = self._block_runs, []
        before, self._balance = self._balance, None
        if transport is None or before is None or not jobs:
            return {}
        after = transport.usage()
        if after is None:
            return {}
        share = round(max(0.0, before - after) / len(jobs), 6)
        return {job.run_id: {"compute_units": share} for job in jobs}

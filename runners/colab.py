"""The Colab runner: each block's repetitions in a fresh Colab VM, through Google's `colab` client.

A session runner (runners.session): one VM per block, staged once, every repetition run
there with the local runner. This module is only the transport: Google's command-line
client, command by command, with what it printed logged (cleaned, tokens masked) and its
failures classified.

Client syntax (google-colab-cli 0.7): `colab new -s NAME [--gpu T4|--tpu v5e1]`,
`colab upload -s NAME LOCAL REMOTE`, `colab exec -s NAME -f FILE --timeout S`,
`colab download -s NAME REMOTE LOCAL`, `colab stop -s NAME`, `colab sessions`, `colab usage`,
`colab version`. Remote paths are relative to the VM's `/`; `exec` runs in `/content`, in one
kernel that persists across calls. What the client does not do, the runner does itself
(docs/remote.md has the details, read from the client's source):
- `exec` exits 0 even when the code raised, and past its `--timeout` its wait loop spins at
  a full core (for ever when the kernel died): the runner passes a `--timeout` (and
  jupyter-kernel-client's REQUEST_TIMEOUT) beyond its own deadline, so the client blocks
  until the runner kills it, with its process tree, at that deadline.
- `install` exits 0 when pip failed and has a hidden 10 s deadline: the runner installs
  with pip through `exec` and checks pip's exit status.
- a `new` that timed out may leave a VM the client has no entry for (`[?] ENDPOINT` in
  `colab sessions`): the runner compares the endpoints listed before and after, and stops
  such an orphan through a state file naming its endpoint, the only way the client can.
- the client prints transfer URLs with the runtime proxy token, logs the bearer token and
  keeps every exec's code and output under ~/.config/colab-cli: it runs with a HOME of the
  runner's (<results>/colab/home/ENV, its update check off), cleared after each block, and
  what it prints is masked (runners.secrets.redact) before any log or error.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, NamedTuple

from cloudbench.runners.base import Amendments, Outcome, utc_now
from cloudbench.runners.processes import kill_tree
from cloudbench.runners.secrets import redact
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
#: The versions the toolkit was tested with, pinned in the VM.
PINS = {"papermill": "2.7.0"}
#: What the client's deadlines get beyond the runner's own, so that the runner's kill comes
#: first: past its deadline the client's wait loop would spin at a full core.
CLIENT_SLACK_S = 120.0
#: The client's settings in the runner's HOME: no daily update check, no upgrade banner.
SETTINGS = {"enable_update_check": False}
#: The scopes `gcloud auth application-default login` needs for the client.
SCOPES = ("openid,https://www.googleapis.com/auth/cloud-platform,"
          "https://www.googleapis.com/auth/userinfo.email,"
          "https://www.googleapis.com/auth/colaboratory")
#: What the client prints when it has no usable credentials (ADC: a SystemExit after "No valid
#: default credentials found", or an uncaught DefaultCredentialsError; OAuth: the consent
#: prompt, with stdin closed). `usage` turns them into a warning, `sessions` may exit 0.
CREDENTIALS = ("DefaultCredentialsError", "default credentials were not found",
               "No valid default credentials", "To authorize colab-cli", "RefreshError",
               "invalid_grant", "Aborted.")
AUTH_FIX = ("authenticate the client once: `gcloud auth application-default login "
            f"--scopes={SCOPES}` with STUDY_COLAB_OPTIONS=\"--auth=adc\", or the browser "
            "consent of `colab sessions` in a terminal (see docs/remote.md)")
#: Refusals that no retry can change: stop the environment.
PERMANENT = ("Backend rejected accelerator", "no quota or entitlement", "unsupported client",
             "No matching distribution", "Could not find a version")
#: A session that is gone: "appears to be lost (404/401)", "Session 'X' not found." (its
#: assignment gone when the client refreshed its token), or a dropped websocket.
LOST = re.compile(r"Session '[^']*' (?:appears to be lost|not found)|Connection was lost")
#: A file the VM does not have (a 404 of the contents API): not a lost session.
MISSING = "File or directory not found"
#: Failures worth another try after a wait.
TRANSIENT = ("Allocation refused", "HTTP 5", " 500 ", " 502 ", " 503 ", " 504 ",
             "Internal Server Error", "Service Unavailable", "Bad Gateway", "TimeoutError")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07|\x1b[@-Z\\-_]")
_BOX = re.compile(r"[\u2500-\u259f]+")
#: The upgrade banner's lines (off in the runner's settings, dropped should it show).
_BANNER = re.compile(r"^\[colab\] (?:A new version of Colab CLI|You can run 'colab update|"
                     r"Run '.*' to update|To silence this check)")
#: `colab usage`: "Current balance: 97.53 compute units" (two decimals, the whole account).
_BALANCE = re.compile(r"Current balance:\s*(-?[0-9]+(?:\.[0-9]+)?)")
_ACTIVE = re.compile(r"Active assignments:\s*([0-9]+)")
#: `colab sessions`: "[NAME] ENDPOINT | Hardware: T4 | ..."; NAME is "?" for an orphan.
_LISTED = re.compile(r"^\[(?P<name>[^\]]*)\] (?P<endpoint>\S+) \| Hardware: (?P<hw>[^|]+)",
                     re.MULTILINE)
_NO_SESSIONS = "No active sessions found on server."

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

# Installs through `exec`, in the one kernel: pip's output is captured there (the client's
# `install` loses it, runs with a hidden 10 s deadline, and exits 0 when pip failed).
INSTALL = '''# cloudbench: the pinned packages, pip's exit status checked (from runners/colab.py)
def _cloudbench_install(packages):
    import subprocess, sys
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-input",
                           "--disable-pip-version-check", *packages], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    print(proc.stdout[-6000:])
    print("CLOUDBENCH-PIP-EXIT %d" % proc.returncode, flush=True)


_cloudbench_install({packages!r})
'''
_PIP_EXIT = re.compile(r"CLOUDBENCH-PIP-EXIT (-?[0-9]+)")


def clean(text: str) -> str:
    """The client's output without ANSI colours, rich's box drawing or the upgrade banner,
    its tokens masked (a transfer's URL, a bearer header): for logs and errors."""
    text = _BOX.sub(" ", _ANSI.sub("", text))
    return redact("\n".join(line.strip() for line in text.splitlines()
                            if line.strip() and not _BANNER.match(line.strip())))


def credentials_failed(text: str) -> bool:
    """Whether the client said that it has no usable credentials."""
    return any(m in text for m in CREDENTIALS)


def classify(text: str) -> str:
    """"permanent", "transient" or "failed" (retried as an infrastructure failure)."""
    if credentials_failed(text) or any(m in text for m in PERMANENT):
        return "permanent"
    if MISSING in text:
        return "failed"
    if LOST.search(text) or any(m in text for m in TRANSIENT):
        return "transient"
    return "failed"


class Listed(NamedTuple):
    """One assignment of `colab sessions`: its local name ("?": none) and hardware."""

    name: str
    hardware: str


def listed(text: str) -> dict[str, Listed]:
    """The assignments `colab sessions` printed, by endpoint."""
    return {m["endpoint"]: Listed(m["name"], m["hw"].strip()) for m in _LISTED.finditer(text)}


def client_home(home: Path) -> dict[str, str]:
    """Make `home` the client's HOME (its history, colab.log and settings live under
    ~/.config/colab-cli): the update check off, the user's OAuth token and client config
    linked, and what else the client finds through HOME (gcloud's ADC, a user install)
    pointed back at the user's own. Returns the environment variables to set."""
    real = Path.home()
    config = home / ".config" / "colab-cli"
    config.mkdir(parents=True, exist_ok=True)
    (config / "settings.json").write_text(json.dumps(SETTINGS), encoding="utf-8")
    for rel in (".config/colab-cli/token.json", ".colab-cli-oauth-config.json"):
        source, link = real / rel, home / rel
        if source.exists() and not link.exists() and not link.is_symlink():
            link.symlink_to(source)
    env = {"HOME": str(home)}
    for name, path in (("CLOUDSDK_CONFIG", real / ".config" / "gcloud"),
                       ("PYTHONUSERBASE", real / ".local"), ("PYENV_ROOT", real / ".pyenv")):
        if name not in os.environ and path.exists():
            env[name] = str(path)
    return env


def clear_home(home: Path) -> None:
    """Delete what the client kept of the study's sessions: every exec's code and output
    (history/), and its debug log, which holds the bearer token."""
    config = home / ".config" / "colab-cli"
    shutil.rmtree(config / "history", ignore_errors=True)
    for log in config.glob("colab.log*"):
        log.unlink(missing_ok=True)


class ColabError(TransportError):
    """A client failure, with its class: permanent refusals stop the environment."""

    def __init__(self, message: str, kind: str, status: str = "failed"):
        super().__init__(message, status)
        self.kind = kind


class ColabTransport(Transport):
    """Google's `colab` client on one session; every command logged to `log`."""

    executable = "colab"

    def __init__(self, environment: Environment, log: Path | None, setup_timeout_s: float,
                 grace_s: float, config: Path | None = None, home: Path | None = None):
        self.env, self.log = environment, log
        self.setup_timeout_s, self.grace_s = setup_timeout_s, grace_s
        self.config, self.home = config, home
        self.session: str | None = None
        self.failure: str | None = None  # the kind of the last failure it raised
        self.left: list[str] = []  # sessions `colab sessions` still listed after their stop
        self.assignments = 0  # the account's active assignments at the last `colab usage`
        self._before: dict[str, Listed] | None = None  # listed before `new`
        self._asked = False  # whether `new` was called: else there is no VM to stop
        self._made = False  # whether `new` returned: else it may have left an orphan

    @property
    def hardware(self) -> str:
        """The environment's accelerator as `colab sessions` shows it."""
        return (self.env.gpu or self.env.tpu or "CPU").upper()

    def start(self, label: str) -> None:
        accelerator = (["--gpu", self.env.gpu.upper()] if self.env.gpu else
                       ["--tpu", self.env.tpu.lower()] if self.env.tpu else [])
        self.session, self._made = label, False  # first: a `new` that failed may have made one
        self._before = self._listing(strict=True)
        self._asked = True
        self._client(["new", "-s", label, *accelerator], self.setup_timeout_s,
                     f"Colab did not give a {self.env.accelerator.upper()} session")
        self._made = True

    def upload(self, local: Path, remote: str) -> None:
        self._client(["upload", "-s", self._name, str(local), f"{REMOTE_HOME}/{remote}"],
                     self.setup_timeout_s, "uploading the protocol, helper code and datasets "
                     "failed")

    def install(self, packages: tuple[str, ...]) -> None:
        """Pinned, with pip run through `exec` and its exit status checked."""
        folder = self.log.parent if self.log is not None else Path.cwd()
        script = folder / f"{self.env.name}.colab-install.py"
        script.write_text(INSTALL.format(packages=[f"{p}=={PINS[p]}" if p in PINS else p
                                                   for p in packages]), encoding="utf-8")
        printed = self._exec(script, self.setup_timeout_s, "installing in the VM failed")
        status = _PIP_EXIT.search(printed)
        if status is None or status.group(1) != "0":
            kind = self.failure = classify(printed) if status else "failed"
            said = f"pip exited {status.group(1)}" if status else "pip did not finish"
            raise ColabError(f"installing {', '.join(packages)} in the VM failed ({said}): "
                             f"{tail(printed)}", kind)

    def exec(self, script: Path, timeout: float) -> str:
        """The script in a child Python of the exec kernel; the runner's own deadline."""
        wrapper = script.with_name(script.stem + ".child.py")
        wrapper.write_text(CHILD.format(source=script.read_text(encoding="utf-8"),
                                        timeout=timeout), encoding="utf-8")
        return self._exec(wrapper, timeout + self.grace_s, "the run in the VM failed")

    def _exec(self, script: Path, deadline: float, what: str) -> str:
        """`colab exec` killed at `deadline`: its own `--timeout` lies beyond, so that its
        wait loop blocks until then instead of spinning."""
        proc = self._client(["exec", "-s", self._name, "-f", str(script), "--timeout",
                             f"{math.ceil(deadline + CLIENT_SLACK_S)}"], deadline, what)
        return clean(f"{proc.stdout}\n{proc.stderr}")  # a traceback of the driver is on stderr

    def download(self, remote: str, local: Path) -> None:
        self._client(["download", "-s", self._name, f"{REMOTE_HOME}/{remote}", str(local)],
                     self.setup_timeout_s, "downloading the run's results failed")

    def stop(self) -> None:
        """Stop (twice if the backend's unassign failed), stop an orphan of a `new` that
        failed, then make sure no VM is left."""
        name, self.session = self.session, None
        if name is None or not self._asked:
            return
        kept = self.failure  # the run's failure, not the stop's, decides what follows
        try:
            self._stop_and_check(name)
        finally:
            self.failure = kept

    def _stop_and_check(self, name: str) -> None:
        for _ in range(2):
            try:  # a session without a local entry is "not found", exit 0
                self._client(["stop", "-s", name], 120.0, "stopping the session failed")
                break
            except TransportError:  # noted in the client log
                continue
        now = self._listing()
        orphans = self._orphans(now)
        adopted: Path | None = None
        if len(orphans) == 1:
            adopted = self._stop_orphan(name, orphans[0])
            now = self._listing()
            orphans = self._orphans(now)
        if now is None or orphans or any(s.name == name for s in now.values()):
            self.left.append(name)
            options = shlex.join(self._options(adopted)) or "none"
            command = (f"`colab --config {adopted} stop -s {name}`" if adopted and orphans
                       else f"`colab stop -s {name}` (with the study's options: {options})")
            found = f" (its endpoint: {', '.join(orphans)})" if orphans else ""
            message = (f"the Colab session {name} may still be running (and billed){found}: "
                       f"free it with {command}, or in Colab's web UI, Runtime > Manage "
                       "sessions")
            self._note(message)
            warnings.warn(message, ColabSessionLeft, stacklevel=2)
        elif adopted is not None:
            adopted.unlink(missing_ok=True)
            Path(f"{adopted}.lock").unlink(missing_ok=True)

    def _orphans(self, now: dict[str, Listed] | None) -> list[str]:
        """Endpoints that appeared during a `new` that did not return, listed without a name
        and with the environment's hardware: the VM that `new` made."""
        if self._made or now is None or self._before is None:
            return []
        return [e for e, s in now.items() if e not in self._before and s.name == "?"
                and s.hardware.upper() == self.hardware]

    def _stop_orphan(self, name: str, endpoint: str) -> Path:
        """Stop a VM the client has no entry for: `colab stop` with a state file of its own
        naming the endpoint (without a token expiry, the client refreshes the entry from the
        server's assignments, then unassigns that endpoint)."""
        folder = self.config.parent if self.config is not None else self.home or Path.cwd()
        adopted = folder / f"{name}.orphan.json"
        adopted.parent.mkdir(parents=True, exist_ok=True)
        adopted.write_text(json.dumps({name: {"name": name, "token": "", "url": "",
                                              "endpoint": endpoint}}), encoding="utf-8")
        self._note(f"`colab new -s {name}` did not return and left {endpoint}: stopping it")
        try:
            self._client(["stop", "-s", name], 120.0, "stopping the orphaned VM failed",
                         config=adopted)
        except TransportError:
            pass
        return adopted

    def _listing(self, strict: bool = False) -> dict[str, Listed] | None:
        """`colab sessions` by endpoint; None when it cannot tell. `strict`: a credentials
        failure raises (before `new`: it would fail every command after it)."""
        try:
            proc = self._client(["sessions"], 120.0, "listing the sessions failed")
        except ColabError as exc:
            if strict and exc.kind == "permanent":
                raise
            return None
        except TransportError:
            return None
        return listed(clean(proc.stdout))

    def usage(self) -> float | None:
        """The account's compute-unit balance (`colab usage`, two decimals, every session of
        the account), None when it cannot tell; `assignments` keeps its session count."""
        kept = self.failure
        try:
            proc = self._client(["usage"], 120.0, "reading the compute units failed")
        except TransportError:
            return None
        finally:
            self.failure = kept
        printed = clean(proc.stdout)
        found, active = _BALANCE.search(printed), _ACTIVE.search(printed)
        self.assignments = int(active.group(1)) if active else 0
        return float(found.group(1)) if found else None

    @property
    def _name(self) -> str:
        if self.session is None:
            raise TransportError("no Colab session is open")
        return self.session

    def _options(self, config: Path | None = None) -> list[str]:
        """The user's global options, then the study's state file (`config` replaces any)."""
        options = shlex.split(os.environ.get(OPTIONS_ENV, ""))
        if config is not None:
            kept = [o for i, o in enumerate(options) if not o.startswith("--config")
                    and (i == 0 or options[i - 1] != "--config")]
            return [*kept, "--config", str(config)]
        if self.config is not None and not any(o.startswith("--config") for o in options):
            options += ["--config", str(self.config)]
        return options

    def _environment(self, deadline: float) -> dict[str, str]:
        """The client's environment: plain output, a HOME of the runner's, and
        jupyter-kernel-client's request deadline beyond the runner's own."""
        env = {**os.environ, "TYPER_STANDARD_TRACEBACK": "1", "NO_COLOR": "1", "TERM": "dumb",
               "REQUEST_TIMEOUT": str(math.ceil(deadline + CLIENT_SLACK_S))}
        if self.home is not None:
            env.update(client_home(self.home))
        return env

    def _client(self, args: list[str], timeout: float, what: str,
                config: Path | None = None) -> subprocess.CompletedProcess[str]:
        """Run one client command under our own deadline, log what it said (cleaned, its
        tokens masked), and raise ColabError, classified, when it failed."""
        command = [self.executable, *self._options(config), *args]
        env = self._environment(timeout)
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
        # `sessions` exits 0 when the login failed with no local session (it lists none).
        unauthorised = args[0] != "exec" and credentials_failed(clean(err or ""))
        if proc.returncode != 0 or unauthorised:
            printed = clean(f"{out}\n{err}")
            last = tail(printed)
            kind = self.failure = classify(printed if unauthorised else last)
            if credentials_failed(printed):
                kind = self.failure = "permanent"
                raise ColabError(f"{what}: the colab client has no valid credentials: {last}; "
                                 f"{AUTH_FIX}", kind)
            if kind == "permanent":
                raise ColabError(f"{what}: Colab refused for good: {last}", kind)
            if MISSING in last:
                raise ColabError(f"{what}: the file is not in the VM: {last}", kind)
            if LOST.search(last):
                raise ColabError(f"the Colab session was lost: {last}", kind)
            raise ColabError(f"{what}: {last}", kind)
        return done

    def _log(self, args: list[str], out: str | None, err: str | None, outcome: str) -> None:
        if self.log is None:  # check(): nothing is written before the study starts
            return
        with open(self.log, "a", encoding="utf-8") as fh:
            fh.write(f"[{utc_now()}] $ colab {redact(shlex.join(args))}  ({outcome})\n")
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
        self._others = 0  # the account's other sessions at the block's first usage read

    @classmethod
    def validate(cls, environment: Environment) -> None:
        """Refuse what the client would silently turn into another accelerator."""
        if environment.gpu is not None and environment.gpu.lower() not in GPUS:
            raise OptionError("gpu", f"{environment.gpu!r} is not a Colab GPU: one of "
                              f"{', '.join(GPUS)} (any case)")
        if environment.tpu is not None and environment.tpu.lower() not in TPUS:
            raise OptionError("tpu", f"{environment.tpu!r} is not a Colab TPU: one of "
                              f"{', '.join(TPUS)} (any case)")

    @property
    def home(self) -> Path:
        """The client's HOME for this environment: its history and log, cleared after each
        block (docs/remote.md)."""
        return self.paths.state / "home" / re.sub(r"[^A-Za-z0-9_.-]", "-", self.env.name)

    def check(self) -> None:
        """The client is there, of a version we know, and authenticated."""
        if not shutil.which(ColabTransport.executable):
            self._refuse("runner \"colab\" needs Google's `colab` client on PATH (it needs "
                         f"Python 3.12+, apart from the toolkit): {INSTALL_HINT}; then "
                         "authenticate once (see docs/remote.md), or export the environment "
                         "as a notebook with `study export colab`")
        with tempfile.TemporaryDirectory(prefix="cloudbench-colab-") as home:
            probe = ColabTransport(self.env, None, self.setup_timeout_s, self.margin_s,
                                   home=Path(home))
            try:
                version = probe._client(["version"], 60.0, "`colab version` failed").stdout
            except TransportError as exc:
                self._refuse(f"{exc}; reinstall the client: {INSTALL_HINT}")
            found = re.search(r"(\d+)\.(\d+)\.(\d+)", version)
            if found is None or tuple(int(v) for v in found.groups()[:2]) != CLIENT_VERSION:
                self._refuse(f"unsupported client: `colab version` says {version.strip()!r}, "
                             f"the runner needs google-colab-cli 0.7.x: {INSTALL_HINT}")
            try:
                probe._client(["usage"], 120.0, "the authentication probe (`colab usage`) "
                              "failed")
            except TransportError as exc:
                hint = "" if AUTH_FIX in str(exc) else f"; {AUTH_FIX}"
                self._refuse(f"{exc}{hint}")

    def _refuse(self, message: str) -> None:
        raise SpecError(self.study.path, f"{self.key}.runner", message)

    def make_transport(self) -> ColabTransport:
        """A transport with the study's own client state file and HOME, apart from other
        studies and from the user's own client."""
        self.paths.logs.mkdir(parents=True, exist_ok=True)
        self._last = ColabTransport(self.env, self.paths.runner_log, self.setup_timeout_s,
                                    self.margin_s, self.paths.state / "sessions.json",
                                    self.home)
        if self._balance is None:
            self._balance = self._last.usage()
            self._others = self._last.assignments
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
        """Stop the session; clear the client's history and log; the account's compute
        units spent over the block, shared among its tries, as amendments to the runs'
        records (the scheduler writes them through the store)."""
        transport, self._last = self._last, None
        try:
            super().close_block()
            jobs, self._block_runs = self._block_runs, []
            before, self._balance = self._balance, None
            if transport is None or before is None or not jobs:
                return {}
            after = transport.usage()
            if after is None:
                return {}
        finally:
            clear_home(self.home)
        share = round(max(0.0, before - after) / len(jobs), 6)
        others = max(self._others, transport.assignments)
        return {job.run_id: {"compute_units_account": share,
                             "compute_units_other_sessions": others} for job in jobs}

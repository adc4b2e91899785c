"""The Colab runner: each block's repetitions in a fresh Colab VM, through Google's `colab` client.

A session runner (runners.session): one VM per block, staged once, every repetition run
there with the local runner. This module is only the transport: Google's command-line
client, command by command, with what it printed logged and its failures classified.

Client syntax (google-colab-cli 0.7): `colab new -s NAME [--gpu T4|--tpu v5e1]`,
`colab upload -s NAME LOCAL REMOTE`, `colab install -s NAME PKG...`,
`colab exec -s NAME -f FILE --timeout S`, `colab download -s NAME REMOTE LOCAL`,
`colab stop -s NAME`. Remote paths are relative to the VM's `/`; `exec` runs in `/content`.
`exec` exits 0 even when the code raised, so the driver prints a result line to look for.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

from runners.base import utc_now
from runners.session import SessionRunner, Transport, TransportError, tail
from study.registry import OptionError
from study.spec import Environment, SpecError

#: Extra global options for the client, e.g. "--auth=adc" or "--config /path/sessions.json".
OPTIONS_ENV = "STUDY_COLAB_OPTIONS"
#: The Jupyter-contents path of `exec`'s working folder (/content) in the VM.
REMOTE_HOME = "content"
LOST_MARKERS = ("lost", "404", "401", "not found", "Connection", "WebSocket")
GPUS = ("t4", "l4", "a100", "h100")
TPUS = ("v5e1", "v6e1")


def _tail(proc: subprocess.CompletedProcess[str] | subprocess.TimeoutExpired) -> str:
    """The last lines the client printed, for an error message."""
    return tail("\n".join(str(getattr(proc, s) or "") for s in ("stdout", "stderr")))


class ColabTransport(Transport):
    """Google's `colab` client on one session; every command logged to `log`."""

    executable = "colab"

    def __init__(self, environment: Environment, log: Path, setup_timeout_s: float,
                 grace_s: float):
        self.env, self.log = environment, log
        self.setup_timeout_s, self.grace_s = setup_timeout_s, grace_s
        self.session: str | None = None

    def start(self, label: str) -> None:
        accelerator = (["--gpu", self.env.gpu.upper()] if self.env.gpu else
                       ["--tpu", self.env.tpu] if self.env.tpu else [])
        self.session = label  # set first: a `new` that timed out may still have made one
        self._client(["new", "-s", label, *accelerator], self.setup_timeout_s,
                     f"Colab did not give a {self.env.accelerator.upper()} session "
                     "(quota, capacity or authentication)")

    def upload(self, local: Path, remote: str) -> None:
        self._client(["upload", "-s", self._name, str(local), f"{REMOTE_HOME}/{remote}"],
                     self.setup_timeout_s, "uploading the protocol, helper code and datasets "
                     "failed")

    def install(self, packages: tuple[str, ...]) -> None:
        self._client(["install", "-s", self._name, *packages], self.setup_timeout_s,
                     f"installing {', '.join(packages)} in the VM failed")

    def exec(self, script: Path, timeout: float) -> str:
        proc = self._client(["exec", "-s", self._name, "-f", str(script), "--timeout",
                             f"{timeout:g}"], timeout + self.grace_s, "the run in the VM failed")
        return f"{proc.stdout}\n{proc.stderr}"  # a traceback of the driver is on stderr

    def download(self, remote: str, local: Path) -> None:
        self._client(["download", "-s", self._name, f"{REMOTE_HOME}/{remote}", str(local)],
                     self.setup_timeout_s, "downloading the run's results failed")

    def stop(self) -> None:
        name, self.session = self.session, None
        if name is None:
            return
        try:
            self._client(["stop", "-s", name], 120.0, "stopping the session failed")
        except TransportError:
            pass  # noted in the client log; a session the backend already dropped is fine

    @property
    def _name(self) -> str:
        if self.session is None:
            raise TransportError("no Colab session is open")
        return self.session

    def _client(self, args: list[str], timeout: float, what: str
                ) -> subprocess.CompletedProcess[str]:
        """Run one client command, log what it said, and raise TransportError when it failed."""
        command = [self.executable, *shlex.split(os.environ.get(OPTIONS_ENV, "")), *args]
        try:
            proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            self._log(args, exc, f"timed out after {timeout:g} s")
            raise TransportError(f"{what}: `colab {args[0]}` did not return within "
                                 f"{timeout:g} s", status="timeout") from exc
        except OSError as exc:
            raise TransportError(f"{what}: cannot run the colab client: {exc}") from exc
        self._log(args, proc, f"exit {proc.returncode}")
        if proc.returncode != 0:
            last = _tail(proc)
            if "Timeout" in last:
                raise TransportError(f"{what}: the client timed out waiting for the VM: "
                                     f"{last}", status="timeout")
            if args[0] == "exec" and any(m in last for m in LOST_MARKERS):
                raise TransportError(f"the Colab session was lost during the run: {last}")
            raise TransportError(f"{what}: {last}")
        return proc

    def _log(self, args: list[str], proc: Any, outcome: str) -> None:
        with open(self.log, "a", encoding="utf-8") as fh:
            fh.write(f"[{utc_now()}] $ colab {shlex.join(args)}  ({outcome})\n")
            for stream in ("stdout", "stderr"):
                text = getattr(proc, stream, None) or ""
                if isinstance(text, bytes):
                    text = text.decode("utf-8", "replace")
                if text.strip():
                    fh.write(text if text.endswith("\n") else text + "\n")


class ColabRunner(SessionRunner):
    """One Colab session per block, with the environment's gpu or tpu."""

    setup_timeout_s = 900.0  # allocating a VM, uploading, installing

    @classmethod
    def validate(cls, environment: Environment) -> None:
        if environment.gpu is not None and environment.gpu not in GPUS:
            raise OptionError("gpu", f"{environment.gpu!r} is not one of {', '.join(GPUS)}")
        if environment.tpu is not None and environment.tpu not in TPUS:
            raise OptionError("tpu", f"{environment.tpu!r} is not one of {', '.join(TPUS)}")

    @property
    def key(self) -> str:
        return f"environments[{self.study.environments.index(self.env)}]"

    def check(self) -> None:
        if not shutil.which(ColabTransport.executable):
            raise SpecError(self.study.path, f"{self.key}.runner",
                            "runner \"colab\" needs Google's `colab` client on PATH: "
                            "pip install google-colab-cli (Python 3.12+), then authenticate "
                            "once (see docs/remote.md), or export the environment as a "
                            "notebook with `study export colab`")

    def make_transport(self) -> ColabTransport:
        return ColabTransport(self.env, self.store.logs_dir / f"{self.env.name}.colab.log",
                              self.setup_timeout_s, self.margin_s)

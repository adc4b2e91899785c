"""A runner in one module, as docs/runners.md writes it: a "machine" that is a folder here.

Each session is a fresh folder under the environment's `root`; scripts run there in a
Python process that cannot import this checkout, so everything the runs need must arrive
through the transport, as it would on a remote host. It exercises the whole plugin path:
the registry, a declared and validated key, and the shared session runner.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from cloudbench.runners.session import SessionRunner, Transport, TransportError, tail
from cloudbench.study.registry import Option, OptionError

#: Makes the "machine's" Python blind to this checkout, like a remote host.
HIDE_REPO = Path(__file__).resolve().parent.parent / "standin" / "hide_repo"


class FolderTransport(Transport):
    def __init__(self, root: Path):
        self.root, self.home = root, None

    def start(self, label: str) -> None:
        self.home = self.root / label
        self.home.mkdir(parents=True)

    def upload(self, local: Path, remote: str) -> None:
        shutil.copyfile(local, self.home / remote)

    def install(self, packages: tuple[str, ...]) -> None:
        pass  # this "machine" has the test environment's packages already

    def exec(self, script: Path, timeout: float) -> str:
        env = {**os.environ, "PYTHONPATH": str(HIDE_REPO)}
        try:
            proc = subprocess.run([sys.executable, str(script)], cwd=self.home, env=env,
                                  capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise TransportError(f"the run did not return within {timeout:g} s",
                                 status="timeout") from exc
        if proc.returncode != 0:
            raise TransportError(f"the script failed: {tail(proc.stderr)}")
        return proc.stdout

    def download(self, remote: str, local: Path) -> None:
        shutil.copyfile(self.home / remote, local)

    def stop(self) -> None:
        if self.home is not None:
            shutil.rmtree(self.home, ignore_errors=True)


class SandboxRunner(SessionRunner):
    options = (Option("root", str, required=True, doc="where the session folders go"),)

    @classmethod
    def validate(cls, environment) -> None:
        if not Path(environment.options["root"]).is_absolute():
            raise OptionError("root", "must be an absolute path")

    def make_transport(self) -> Transport:
        return FolderTransport(Path(self.env.options["root"]))

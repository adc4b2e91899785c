"""The remote Jupyter runner: papermill on this machine, the kernel on a Jupyter server.

The protocol runs in a fresh kernel of a Jupyter Kernel Gateway or Jupyter Server, reached
through jupyter_server's gateway client. Everything else (the whole-run timeout, the
classification of failures, the executed notebook) is the local runner's.

The kernel manager the papermill child uses (token on the websocket, staging, the record
read back) is in runners.gateway; this module is the study's side, light to import. The
token must never land in a file: it reaches only the papermill child's environment and is
scrubbed from anything the run leaves behind (runners.secrets).
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from cloudbench.runners.base import Outcome, run_parameters
from cloudbench.runners.local import LocalRunner
from cloudbench.runners.secrets import scrub, scrub_file
from cloudbench.runners.staging import KERNEL_PACKAGES, build_stage, dataset_dir
from cloudbench.study.layout import RunPaths
from cloudbench.study.plan import RunJob
from cloudbench.study.registry import Option, OptionError
from cloudbench.study.spec import Environment, SpecError

#: The papermill child reads its remote settings (never the token) from this variable.
#: From a run's home on the server (runs/<study>/<run>.home) up to the remote dir.
HOME_UP = "../../../"
#: Where what a remote run wrote is brought back to, inside the run's local work folder.
WRITTEN = "remote-home"
SETTINGS_ENV = "CLOUDBENCH_GATEWAY"
HTTP_TIMEOUT_S = 15.0
AUTH_MARKERS = ("401", "403", "Unauthorized", "Forbidden")


def _join(base: str, path: str) -> str:
    return base.rstrip("/") + "/" + path.lstrip("/")


class JupyterRunner(LocalRunner):
    """papermill here, the kernel on the study's Jupyter server; the token from token_env."""

    local_files = False
    runs_here = False
    kernel_manager_class = "cloudbench.runners.gateway.StagedGatewayKernelManager"
    options = (
        Option("url", str, required=True,
               doc="the Jupyter Kernel Gateway or Jupyter Server, http:// or https://"),
        Option("token_env", str, doc="the variable that holds the server's token"),
    )

    @classmethod
    def validate(cls, environment: Environment) -> None:
        url = environment.options["url"]
        if not re.match(r"^https?://", url):
            raise OptionError("url", f"expected http:// or https://, got {url!r}")

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._stage_zip: Path | None = None
        self._stage_version = ""
        self._run: dict[str, Any] = {}

    # -- configuration --------------------------------------------------------------------

    @property
    def url(self) -> str:
        return str(self.env.options["url"])

    @property
    def token_env(self) -> str | None:
        return self.env.options.get("token_env")

    @property
    def token(self) -> str | None:
        return os.environ.get(self.token_env) if self.token_env else None

    @property
    def kernel_name(self) -> str:
        return self.env.kernel or self.study.kernel

    def check(self) -> None:
        """Fail before the first run: token variable unset, token refused, server unreachable."""
        if self.token_env and not self.token:
            raise SpecError(self.study.path, f"{self.key}.token_env",
                            f"the variable {self.token_env} is not set; export the "
                            f"server's token in it (it is never stored in the study file)")
        try:
            specs = json.loads(self._http("GET", "api/kernelspecs"))
        except urllib.error.HTTPError as exc:
            raise SpecError(self.study.path, f"{self.key}.url", self._http_error(exc)) from exc
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise SpecError(self.study.path, f"{self.key}.url", scrub(
                f"cannot reach the Jupyter server at {self.url}: {reason}", self.token)
                ) from exc
        if self.kernel_name not in specs.get("kernelspecs", {}):
            raise SpecError(self.study.path, f"{self.key}.kernel",
                            f"the server at {self.url} has no kernel {self.kernel_name!r}; "
                            f"it has: {', '.join(sorted(specs.get('kernelspecs', {})))}")

    def _http(self, method: str, path: str) -> bytes:
        request = urllib.request.Request(_join(self.url, path), method=method)
        if self.token:
            request.add_header("Authorization", f"token {self.token}")
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:  # noqa: S310
            return response.read()

    def _http_error(self, exc: urllib.error.HTTPError) -> str:
        if exc.code in (401, 403):
            return self._auth_message(f"HTTP {exc.code}")
        return f"the Jupyter server at {self.url} answered HTTP {exc.code} {exc.reason}"

    def _auth_message(self, detail: str) -> str:
        source = (f"the token in ${self.token_env}" if self.token_env
                  else "a request without a token (set token_env)")
        return (f"authentication failed: the Jupyter server at {self.url} refused "
                f"{source} ({detail}); check the token")

    # -- one run ----------------------------------------------------------------------------

    def stage(self) -> None:
        """Pack helper code and folder datasets once per study process (hash-named)."""
        if self._stage_zip is None:
            stage = build_stage(self.study, KERNEL_PACKAGES)
            self._stage_version = stage.version
            self._stage_zip = stage.write_zip(self.paths.work / f"stage-{stage.version}.zip")

    def parameters(self, job: RunJob, record_path: Path) -> dict[str, Any]:
        """Paths as the remote kernel sees them: relative to its working folder, the run's
        home under runs/<study>/ (three folders below the remote dir)."""
        remote_record = f"runs/{self.study.name}/{record_path.parent.name}.json"
        dataset = self.study.dataset(job.dataset)
        remote_dataset = (f"{HOME_UP}stage/{self._stage_version}/{dataset_dir(dataset)}"
                          if dataset.source == "folder" else None)
        self._run["record"] = [remote_record, str(record_path)]
        return run_parameters(self.study, self.env, job, HOME_UP + remote_record,
                              remote_dataset, self.protocol.parameters)

    def stage_home(self, paths: RunPaths) -> dict[str, tuple[int, int]]:
        """The home is on the server: the kernel copies the staged files into it when it
        starts (runners.gateway), and what the run wrote comes back at its end."""
        self._run["home"] = f"runs/{self.study.name}/{paths.work.name}.home"
        self._run["written"] = str(paths.work / WRITTEN)
        self._run["keep_bytes"] = self.study.keep_artifacts
        paths.home.mkdir(parents=True, exist_ok=True)  # papermill's cwd here; unused
        return {}

    def keep_artifacts(self, paths: RunPaths, staged: dict[str, tuple[int, int]],
                       folder: Path | None = None, left: list[str] | None = None
                       ) -> dict[str, Any]:
        try:
            left = json.loads((paths.work / "not-kept.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            left = []
        return super().keep_artifacts(paths, {}, paths.work / WRITTEN, left)

    def kernel_env(self, mark: str | None = None) -> dict[str, str]:
        """The child's environment: the gateway's URL and token, our settings; never a file."""
        env = super().kernel_env(mark)
        for stale in [k for k in env if k.startswith("JUPYTER_GATEWAY_")]:
            del env[stale]
        env["JUPYTER_GATEWAY_URL"] = self.url or ""
        if self.token:
            env["JUPYTER_GATEWAY_AUTH_TOKEN"] = self.token
        env[SETTINGS_ENV] = json.dumps({
            "stage_zip": str(self._stage_zip), "stage_version": self._stage_version,
            "study": self.study.name, "env": self.env.env, **self._run})
        return env

    def execute(self, job: RunJob, attempt: int, paths: RunPaths) -> Outcome:
        self.stage()
        kernel_id_file = paths.work / "kernel-id"
        self._run = {"kernel_id_file": str(kernel_id_file)}
        # The order of LocalRunner.execute: the home (stage_home), then the parameters.
        outcome = Outcome("failed")
        try:
            outcome = super().execute(job, attempt, paths)
        finally:
            self._run = {}
            if kernel_id_file.exists():
                kernel_id = kernel_id_file.read_text(encoding="utf-8").strip()
                kernel_id_file.unlink()
                if outcome.status != "ok":
                    self._stop_kernel(kernel_id)
        return self._clean(outcome, paths)

    def _stop_kernel(self, kernel_id: str) -> None:
        """A run killed at its timeout (or interrupted) leaves its remote kernel busy: stop it."""
        try:
            self._http("DELETE", "api/kernels/" + urllib.parse.quote(kernel_id, safe=""))
        except (urllib.error.URLError, OSError):
            pass  # already gone (404) or the server is down: nothing left to stop here

    def _clean(self, outcome: Outcome, paths: RunPaths) -> Outcome:
        """Clear authentication errors; no trace of the token in the record, log or notebook."""
        error = outcome.error or ""
        if outcome.status != "ok" and any(m in error for m in AUTH_MARKERS):
            # Retrying with the same token cannot help.
            outcome = outcome.replace(error=self._auth_message(error.split("\n")[0][:200]),
                                      infrastructure=False)
        if outcome.error:
            outcome = outcome.replace(error=scrub(outcome.error, self.token))
        for path in (paths.log, paths.notebook):
            scrub_file(path, self.token)
        return outcome

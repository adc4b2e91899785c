"""In the papermill child of a jupyter run: the kernel client and manager papermill uses.

Two things the stock gateway client does not do are done here:

* it sends the token on HTTP requests but not on the kernel's websocket, whose handshake
  then fails with 401: :class:`TokenGatewayKernelClient` sends it there too;
* the remote kernel does not see this disk: :class:`StagedGatewayKernelManager` stages the
  helper code and folder datasets once per content hash through the kernel, puts them on
  the kernel's import path, and after the run reads the record back through the kernel.

Settings come from the environment the runner (runners.jupyter) gives the child; the
token reaches only that environment.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import os
import time
from collections.abc import Iterable
from pathlib import Path
from queue import Empty
from threading import Thread
from typing import Any

import websocket
from jupyter_client.asynchronous.client import AsyncKernelClient
from jupyter_client.utils import ensure_async
from jupyter_server.gateway.gateway_client import GatewayClient
from jupyter_server.gateway.managers import GatewayKernelClient, GatewayKernelManager
from jupyter_server.utils import url_escape, url_path_join
from traitlets import DottedObjectName, Type

from cloudbench.data.atomic import write_json_atomic
from cloudbench.errors import InfrastructureError
from cloudbench.runners.jupyter import SETTINGS_ENV
from cloudbench.runners.staging import FILES_DIR, UNPACK_SOURCE

#: On the remote host: where staged versions and run records live (default ~/.cache/cloudbench).
REMOTE_DIR_ENV = "CLOUDBENCH_REMOTE_DIR"
CHUNK_BYTES = 1 << 20  # well under the websocket's default 10 MiB message limit
REMOTE_TIMEOUT_S = 120.0
FETCH_TIMEOUT_S = 30.0  # a dead kernel must not hold the run up

_BASE_EXPR = (f"os.environ.get({REMOTE_DIR_ENV!r}) or "
              "os.path.join(os.path.expanduser('~'), '.cache', 'cloudbench')")


class RemoteCodeError(InfrastructureError, RuntimeError):
    """Staging or bootstrap code failed inside the remote kernel."""


class TokenGatewayKernelClient(GatewayKernelClient):
    """The gateway kernel client, with the auth header also on the websocket handshake.

    jupyter_server's client opens the channels websocket without any header, so a server that
    requires a token answers 401; the HTTP requests already carry it.
    """

    async def start_channels(self, shell: bool = True, iopub: bool = True, stdin: bool = True,
                             hb: bool = True, control: bool = True) -> None:
        gateway = GatewayClient.instance()
        ws_url = url_path_join(gateway.ws_url or "", gateway.kernels_endpoint,
                               url_escape(self.kernel_id), "channels")
        headers = gateway.load_connection_args().get("headers", {})
        self.channel_socket = websocket.create_connection(
            ws_url, timeout=gateway.KERNEL_LAUNCH_TIMEOUT, enable_multithread=True,
            sslopt={"ca_certs": gateway.ca_certs, "certfile": gateway.client_cert,
                    "keyfile": gateway.client_key},
            header=[f"{key}: {value}" for key, value in headers.items()])
        await ensure_async(AsyncKernelClient.start_channels(
            self, shell=shell, iopub=iopub, stdin=stdin, hb=hb, control=control))
        self.response_router = Thread(target=self._route_responses, daemon=True)
        self.response_router.start()


class StagedGatewayKernelManager(GatewayKernelManager):
    """A gateway kernel prepared for the protocol: staged code on its path, record read back.

    Settings come from the SETTINGS_ENV variable (JSON) that the runner gives the child:
    the stage zip and its version, the study's kernel variables, the remote and local record
    paths and a file to note the kernel id in (so the runner can stop a kernel it abandons).
    """

    client_class = DottedObjectName("cloudbench.runners.gateway.TokenGatewayKernelClient")
    client_factory = Type(klass="cloudbench.runners.gateway.TokenGatewayKernelClient")

    @property
    def settings(self) -> dict[str, Any]:
        return json.loads(os.environ.get(SETTINGS_ENV, "{}"))

    async def _async_is_alive(self) -> bool:
        # jupyter_client asks a local provisioner, which a remote kernel has not got.
        return await self.is_alive()

    async def start_kernel(self, **kwargs: Any) -> None:
        # nbclient names the kernel when it creates the manager, not when it starts the kernel.
        kwargs.setdefault("kernel_name", self.kernel_name or "python3")
        await super().start_kernel(**kwargs)
        settings = self.settings
        if settings.get("kernel_id_file"):
            Path(settings["kernel_id_file"]).write_text(str(self.kernel_id), encoding="utf-8")
        if settings.get("stage_version"):
            await self._prepare(settings)

    async def shutdown_kernel(self, now: bool = False, restart: bool = False) -> None:
        settings = self.settings
        if self.has_kernel and not restart and settings.get("record"):
            try:
                await self._fetch_record(*settings["record"])
            except Exception as exc:  # the run's status says what happened; keep shutting down
                self.log.warning("could not read the run record from the kernel: %s", exc)
        if self.has_kernel and not restart and settings.get("home"):
            try:
                await self._fetch_written(settings["home"], Path(settings["written"]),
                                          int(settings.get("keep_bytes", 0)))
            except Exception as exc:  # the record says how many were kept; keep shutting down
                self.log.warning("could not bring back what the run wrote: %s", exc)
        await super().shutdown_kernel(now=now, restart=restart)

    async def _prepare(self, settings: dict[str, Any]) -> None:
        """Put the staged version on the kernel's path, uploading it first if it is missing."""
        boot = _boot_code(settings["stage_version"], settings.get("study", "study"),
                          settings.get("env", {}), settings.get("home"))
        state = json.loads((await self.run_code(boot)).strip().splitlines()[-1])
        if state["ready"]:
            return
        await self._upload(Path(settings["stage_zip"]), settings["stage_version"])
        state = json.loads((await self.run_code(boot)).strip().splitlines()[-1])
        if not state["ready"]:
            raise RemoteCodeError("the staged helper code is still missing on the server")

    async def _upload(self, archive: Path, version: str) -> None:
        """Send the zip in pieces over one connection, check its hash, unpack it atomically."""
        data = archive.read_bytes()
        part = f"{version}.{os.getpid()}.part"
        start = _remote(f"""
    d = os.path.join(base, "incoming"); os.makedirs(d, exist_ok=True)
    open(os.path.join(d, {part!r}), "wb").close()""")
        chunks = (_remote(f"""
    with open(os.path.join(base, "incoming", {part!r}), "ab") as fh:
        fh.write(base64.b64decode({base64.b64encode(data[i:i + CHUNK_BYTES]).decode()!r}))""")
                  for i in range(0, len(data), CHUNK_BYTES))
        finish = _remote(f"""
    part = os.path.join(base, "incoming", {part!r})
    with open(part, "rb") as fh:
        if hashlib.sha256(fh.read()).hexdigest() != {hashlib.sha256(data).hexdigest()!r}:
            raise ValueError("the staged archive arrived damaged")
    ns = {{}}
    exec({UNPACK_SOURCE!r}, ns)
    ns["_cloudbench_unpack"](part, os.path.join(base, "stage", {version!r}))
    os.remove(part)""")
        await self.run_code(itertools.chain([start], chunks, [finish]))

    async def _fetch_written(self, home: str, local: Path, keep_bytes: int) -> None:
        """Bring back what the run wrote in its remote home (up to keep_bytes, the rest
        listed), then remove that home: the remote dir keeps no run's files."""
        out = await self.run_code(_written_code(home, 10_000), timeout=FETCH_TIMEOUT_S)
        written = json.loads(out.strip().splitlines()[-1].split(" ", 1)[1])
        local.mkdir(parents=True, exist_ok=True)
        total, left = 0, []
        for name, size in written:
            if total + size > keep_bytes:
                left.append(f"{name} ({size} bytes)")
                continue
            data = await self.run_code(_file_code(home, name), timeout=FETCH_TIMEOUT_S)
            target = local / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(base64.b64decode(data.strip().splitlines()[-1].split(" ", 1)[1]))
            total += size
        (local.parent / "not-kept.json").write_text(json.dumps(left), encoding="utf-8")
        await self.run_code(_cleanup_code(home), timeout=FETCH_TIMEOUT_S)

    async def _fetch_record(self, remote: str, local: str) -> None:
        out = await self.run_code(_remote(f"""
    p = os.path.join(base, {remote!r})
    data = open(p, "rb").read() if os.path.isfile(p) else b""
    print("CLOUDBENCH-RECORD " + (base64.b64encode(data).decode() or "-"))"""),
                                  timeout=FETCH_TIMEOUT_S)
        payload = out.strip().splitlines()[-1].split(" ", 1)[1]
        if payload != "-":
            write_json_atomic(local, json.loads(base64.b64decode(payload)))

    async def run_code(self, code: str | Iterable[str], timeout: float = REMOTE_TIMEOUT_S
                       ) -> str:
        """Execute code (or blocks of it, in order) in the kernel on a connection of its own.

        Returns what the last block printed. Nothing enters the kernel's history, so the
        notebook's execution counts are those of a local run.
        """
        kc = self.client()
        await kc.start_channels()
        try:
            await kc.wait_for_ready(timeout=timeout)
            printed = ""
            for block in [code] if isinstance(code, str) else code:
                printed = await _execute(kc, block, timeout)
            return printed
        finally:
            kc.stop_channels()


async def _execute(kc: GatewayKernelClient, code: str, timeout: float) -> str:
    """One execute request: what it printed, or RemoteCodeError with the kernel's error."""
    msg_id = kc.execute(code, silent=False, store_history=False)
    deadline = time.monotonic() + timeout
    printed: list[str] = []
    error = None
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"the remote kernel did not answer in {timeout:g} s")
        try:
            msg = await kc.get_iopub_msg(timeout=remaining)
        except Empty:
            continue
        if msg.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        content = msg["content"]
        if msg["msg_type"] == "stream":
            printed.append(content["text"])
        elif msg["msg_type"] == "error":
            error = f"{content['ename']}: {content['evalue']}"
        elif msg["msg_type"] == "status" and content["execution_state"] == "idle":
            break
    if error:
        raise RemoteCodeError(f"staging code failed in the remote kernel: {error}")
    return "".join(printed)


def _remote(body: str) -> str:
    """Wrap statements in a function, so nothing leaks into the notebook's namespace."""
    return ("def _cloudbench():\n    import base64, hashlib, os\n"
            f"    base = {_BASE_EXPR}\n{body.strip(chr(10))}\n_cloudbench()\ndel _cloudbench\n")


def _boot_code(version: str, study: str, env: dict[str, str], home: str | None = None) -> str:
    """Make the staged version importable, give the study's variables, and work in the run's
    home folder (`home`, relative to the remote dir), where the notebook's staged files are
    copied, so its relative paths hold as they do in Jupyter; else in the remote dir."""
    return _remote(f"""
    import json, shutil, sys
    root = os.path.join(base, "stage", {version!r})
    ready = os.path.isfile(os.path.join(root, ".complete"))
    if ready:
        if root not in sys.path:
            sys.path.insert(0, root)
        os.makedirs(os.path.join(base, "runs", {study!r}), exist_ok=True)
        os.chdir(base)
        home = {home!r}
        if home:
            home = os.path.join(base, home)
            shutil.rmtree(home, ignore_errors=True)
            files = os.path.join(root, {FILES_DIR!r})
            if os.path.isdir(files):
                shutil.copytree(files, home)
            os.makedirs(home, exist_ok=True)
            staged = {{}}
            for d, _, names in os.walk(home):
                for n in names:
                    p = os.path.join(d, n)
                    st = os.stat(p)
                    staged[os.path.relpath(p, home)] = [st.st_size, st.st_mtime_ns]
            with open(home + ".staged.json", "w") as fh:
                json.dump(staged, fh)
            os.chdir(home)
        os.environ.update({env!r})
    print(json.dumps({{"ready": ready}}))""")


def _written_code(home: str, limit: int) -> str:
    """List what the run wrote in its home (new or changed files) with their sizes."""
    return _remote(f"""
    import json
    home = os.path.join(base, {home!r})
    try:
        with open(home + ".staged.json") as fh:
            staged = json.load(fh)
    except OSError:
        staged = {{}}
    out = []
    for d, _, names in os.walk(home):
        for n in sorted(names):
            p = os.path.join(d, n)
            if os.path.islink(p):
                continue
            st = os.stat(p)
            rel = os.path.relpath(p, home)
            if staged.get(rel) != [st.st_size, st.st_mtime_ns]:
                out.append([rel, st.st_size])
    print("CLOUDBENCH-WRITTEN " + json.dumps(sorted(out)[:{limit}]))""")


def _file_code(home: str, name: str) -> str:
    return _remote(f"""
    p = os.path.join(base, {home!r}, {name!r})
    print("CLOUDBENCH-FILE " + base64.b64encode(open(p, "rb").read()).decode())""")


def _cleanup_code(home: str) -> str:
    return _remote(f"""
    import shutil
    home = os.path.join(base, {home!r})
    os.chdir(base)
    shutil.rmtree(home, ignore_errors=True)
    if os.path.exists(home + ".staged.json"):
        os.remove(home + ".staged.json")""")

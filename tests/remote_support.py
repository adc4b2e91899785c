"""Fixtures for the remote runners: a real kernel gateway, a stand-in Colab client, tiny studies.

The "remote" side must not see the project's working tree, as a real remote host would not:
its Python processes get tests/standin/hide_repo on PYTHONPATH, whose sitecustomize removes
the editable install and any path inside the project. Everything they import of ours must
therefore have been staged by the runner under test.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from rich.console import Console

from cloudbench.runners.scheduler import StudyResult, run_study
from cloudbench.study.spec import PROJECT_ROOT, load_study

REAL_PROTOCOL = "protocols/cnn_train.ipynb"
STANDIN = PROJECT_ROOT / "tests" / "standin"
HIDE_REPO = STANDIN / "hide_repo"
TOKEN_ENV = "CLOUDBENCH_TEST_GATEWAY_TOKEN"
# Two cores are shared with other engineers: one thread per kernel, tiny workloads.
THREADS = {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1",
           "OMP_NUM_THREADS": "1"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_process_tree(proc: subprocess.Popen[bytes]) -> None:
    """Terminate a server and every kernel it started, politely first."""
    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    for child in children:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(children, timeout=10)


@dataclass
class Gateway:
    url: str
    token: str
    root: Path
    remote_dir: Path
    log: Path

    def request(self, path: str) -> int:
        req = urllib.request.Request(f"{self.url}/{path}")
        req.add_header("Authorization", f"token {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=5) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code

    def kernels(self) -> list[dict[str, object]]:
        req = urllib.request.Request(f"{self.url}/api/kernels")
        req.add_header("Authorization", f"token {self.token}")
        with urllib.request.urlopen(req, timeout=5) as response:
            return json.loads(response.read())


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A real `jupyter kernelgateway` on 127.0.0.1 with a token, whose kernels see no repo."""
    with start_gateway(tmp_path_factory.mktemp("gateway")) as server:
        yield server


@pytest.fixture(scope="session")
def second_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """Another gateway, a second remote machine, with a token of its own."""
    with start_gateway(tmp_path_factory.mktemp("gateway2")) as server:
        yield server


@contextlib.contextmanager
def start_gateway(root: Path) -> Iterator[Gateway]:
    """Start a gateway in `root`, wait until it answers, stop it and its kernels after."""
    remote_dir, cwd = root / "remote", root / "cwd"
    cwd.mkdir()
    spec_dir = root / "share" / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (remote stand-in)", "language": "python",
        "env": {"PYTHONPATH": str(HIDE_REPO), "CLOUDBENCH_REMOTE_DIR": str(remote_dir),
                "TF_CPP_MIN_LOG_LEVEL": "2", **THREADS}}))
    token = secrets.token_hex(16)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTER_GATEWAY")}
    env.update({"JUPYTER_PATH": str(root / "share"), "JUPYTER_DATA_DIR": str(root / "data"),
                "JUPYTER_RUNTIME_DIR": str(root / "runtime"),
                "JUPYTER_CONFIG_DIR": str(root / "config"), "KG_AUTH_TOKEN": token,
                "PYTHONPATH": str(HIDE_REPO)})
    log = root / "gateway.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "jupyter"), "kernelgateway",
             "--KernelGatewayApp.ip=127.0.0.1", f"--KernelGatewayApp.port={port}",
             "--JupyterWebsocketPersonality.list_kernels=True"],
            cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    server = Gateway(f"http://127.0.0.1:{port}", token, root, remote_dir, log)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if server.request("api/kernelspecs") == 200:
                    break
            except (urllib.error.URLError, OSError):
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the kernel gateway did not start:\n{log.read_text()}")
            time.sleep(0.3)
        yield server
    finally:
        stop_process_tree(proc)


@dataclass
class ColabStandIn:
    root: Path
    monkeypatch: pytest.MonkeyPatch

    def calls(self) -> list[list[str]]:
        path = self.root / "calls.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]

    def verbs(self) -> list[str]:
        """The verbs, past the global options (the runner passes the study's `--config`)."""
        return [c[2] if c[:1] == ["--config"] else c[0] for c in self.calls()]

    def fail(self, **flags: str) -> None:
        """E.g. fail(REFUSE_NEW="1", DISCONNECT_EXEC="1")."""
        for name, value in flags.items():
            self.monkeypatch.setenv(f"COLAB_STANDIN_{name}", value)

    def clear(self) -> None:
        for name in ("REFUSE_NEW", "DISCONNECT_EXEC", "TIMEOUT_EXEC", "HANG_EXEC"):
            self.monkeypatch.delenv(f"COLAB_STANDIN_{name}", raising=False)

    def live_sessions(self) -> list[str]:
        vms = self.root / "vms"
        return sorted(p.name for p in vms.iterdir()) if vms.exists() else []


@pytest.fixture
def colab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ColabStandIn:
    """The stand-in `colab` client first on PATH, with its VMs under a temporary folder."""
    root = tmp_path / "colab-standin"
    monkeypatch.setenv("PATH", f"{STANDIN}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("COLAB_STANDIN_ROOT", str(root))
    monkeypatch.setenv("COLAB_STANDIN_PYTHON", sys.executable)
    monkeypatch.delenv("STUDY_COLAB_OPTIONS", raising=False)
    standin = ColabStandIn(root, monkeypatch)
    standin.clear()
    yield standin
    assert standin.live_sessions() == [], "a Colab session was left running"


def make_folder_dataset(root: Path, per_class: int = 12) -> Path:
    """A tiny image folder: one subfolder per class, PNG files the loader resizes."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for k, name in enumerate(("dark", "mid", "light")):
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(per_class):
            pixels = np.clip(rng.normal(60 + 70 * k, 20, (20, 20)), 0, 255).astype("uint8")
            Image.fromarray(pixels).save(folder / f"{i:02d}.png")
    return root


def toml_value(value: object) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)


def write_study(path: Path, environments: list[dict[str, object]], *, name: str = "remote",
                repetitions: int = 1, retries: int = 1, timeout_s: float = 300,
                dataset: dict[str, object] | None = None,
                parameters: dict[str, object] | None = None,
                notebook: Path | str = REAL_PROTOCOL) -> Path:
    """A tiny shapes_cnn study (1 epoch, a few hundred images at most).

    `notebook` is the real protocol unless a test passes the quick one (conftest's
    `quick_protocol` fixture), which takes the same parameters and runs in about a second.
    """
    dataset = dataset or {"name": "shapes", "source": "shapes", "images": 150}
    params = {"model": "shapes_cnn", "epochs": 1, "batch_size": 32, **(parameters or {})}
    lines = ["[study]", f'name = "{name}"', f"repetitions = {repetitions}", "seed = 11",
             f"retries = {retries}", f"timeout_s = {timeout_s}", "",
             "[protocol]", f"notebook = {json.dumps(str(notebook))}", "[protocol.parameters]",
             *(f"{k} = {toml_value(v)}" for k, v in params.items()), "", "[[datasets]]",
             *(f"{k} = {toml_value(v)}" for k, v in dataset.items())]
    for env in environments:
        env = {"env": THREADS, **env}
        lines += ["", "[[environments]]", *(f"{k} = {toml_value(v)}" for k, v in env.items())]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def run(spec: Path, output: Path, repetitions: int | None = None) -> StudyResult:
    """Run a study in this process, quietly."""
    return run_study(load_study(spec), output=output, repetitions=repetitions,
                     console=Console(file=io.StringIO(), width=200))


def records(output: Path) -> dict[str, dict[str, object]]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((output / "records").glob("*.json"))}


def attempts(output: Path) -> list[dict[str, object]]:
    return [json.loads(p.read_text()) for p in sorted((output / "attempts").glob("*.json"))]


def files_containing(root: Path, secret: str) -> list[Path]:
    """Every file under root whose bytes hold the secret."""
    return [p for p in root.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


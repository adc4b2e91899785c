"""The stand-in's "server": a state folder, scripted faults, and the worker that runs a version.

State folder (KAGGLE_STANDIN_STATE, required by every API call):

    control.json      scripted faults, written by the tests (see CONTROL_KEYS)
    calls.jsonl       one line per API call: {"call": name, "args": {...}}
    datasets/<owner>/<slug>/<n>/files/...     each version's files; meta.json
    kernels/<owner>/<slug>/<n>/               one pushed version:
        meta.json, source.ipynb, status.json, worker.pid, executed.ipynb, log.json
        kaggle/working/   the notebook's working folder (/kaggle/working on Kaggle)
        kaggle/input/<dataset-slug>/   its dataset sources, unpacked (/kaggle/input/<slug>)

A pushed version runs in a detached worker process (`python -m kaggle._standin run DIR`):
QUEUED for `queue_s`, then RUNNING while papermill executes the notebook in kaggle/working,
then COMPLETE or ERROR. `stop_all(state)` ends every worker (tests call it on teardown).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

STATE_ENV = "KAGGLE_STANDIN_STATE"
#: control.json keys. Counters and one-shot messages are consumed as they are used.
CONTROL_KEYS = {
    "rate_limit": "int: the next N API calls raise HTTPError 429",
    "retry_after": "str: the Retry-After header of those 429 responses (absent if unset)",
    "queued_then_error": "str: the next pushed version stays QUEUED, then ends ERROR with "
                         "this failure_message, without running",
    "push_error": "str: the next kernels_push returns a response whose .error is this",
    "queue_s": "float: how long a version stays QUEUED (default 0.2)",
    "invalid_token": "bool: access tokens fail introspection (the client then ignores them)",
    "user": "str: the user an access token belongs to (default 'standin')",
}
STANDIN_DIR = Path(__file__).resolve().parent.parent


def state_dir() -> Path:
    value = os.environ.get(STATE_ENV)
    if not value:
        raise RuntimeError(f"the kaggle stand-in needs {STATE_ENV}: its state folder")
    path = Path(value)
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path.with_suffix(".lock"), "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def read_json(path: Path, default: Any = None) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return default


def write_json(path: Path, value: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=1))
    os.replace(tmp, path)


def control(state: Path) -> dict[str, Any]:
    return read_json(state / "control.json", {}) or {}


def set_control(state: Path, **values: Any) -> None:
    """Script faults (tests): merged into control.json."""
    path = state / "control.json"
    with _locked(path):
        write_json(path, {**control(state), **values})


def take(state: Path, key: str) -> Any:
    """Consume one use of a scripted fault: a counter goes down by one, a message is removed."""
    path = state / "control.json"
    with _locked(path):
        values = control(state)
        value = values.get(key)
        if value in (None, 0, ""):
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            values[key] = value - 1
        else:
            values.pop(key)
        write_json(path, values)
        return value


def log_call(state: Path, call: str, **args: Any) -> None:
    with _locked(state / "calls.jsonl"), open(state / "calls.jsonl", "a") as fh:
        fh.write(json.dumps({"call": call, "args": args}, default=str) + "\n")


def calls(state: Path) -> list[dict[str, Any]]:
    path = state / "calls.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def set_status(version_dir: Path, status: str, failure_message: str = "") -> None:
    write_json(version_dir / "status.json", {"status": status, "failure_message": failure_message,
                                             "time": time.time()})


def versions(folder: Path) -> list[int]:
    if not folder.is_dir():
        return []
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit())


def start_worker(version_dir: Path) -> int:
    """Run the version in a detached process (as the server runs it after push returns)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(STANDIN_DIR), *filter(None, [os.environ.get("PYTHONPATH")])])}
    with open(version_dir / "worker.out", "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "kaggle._standin", "run", str(version_dir)],
                                env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    (version_dir / "worker.pid").write_text(str(proc.pid))
    return proc.pid


def _log_entries(text: str, stream: str, start: float) -> list[dict[str, Any]]:
    now = round(time.time() - start, 3)
    return [{"stream_name": stream, "time": now, "data": line + "\n"}
            for line in text.splitlines()]


def run_version(version_dir: Path) -> int:
    """The worker: QUEUED -> RUNNING -> COMPLETE/ERROR (or QUEUED -> ERROR when scripted)."""
    meta = read_json(version_dir / "meta.json", {})
    queue_s = float(meta.get("queue_s", 0.2))
    time.sleep(queue_s)
    failure = meta.get("queued_then_error")
    if failure:
        set_status(version_dir, "ERROR", failure)
        return 0
    set_status(version_dir, "RUNNING")
    working = version_dir / "kaggle" / "working"
    start = time.time()
    args = [sys.executable, "-m", "papermill", str(version_dir / "source.ipynb"),
            str(version_dir / "executed.ipynb"), "-k", meta.get("kernel_name", "python3"),
            "--cwd", str(working), "--log-output", "--no-progress-bar"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update({"KAGGLE_KERNEL_RUN_TYPE": "Batch", "KAGGLE_STANDIN": "1",
                "KAGGLE_URL_BASE": "https://www.kaggle.com"})
    timeout = meta.get("session_timeout_seconds")
    try:
        proc = subprocess.run(args, env=env, capture_output=True, text=True,
                              timeout=float(timeout) if timeout else None,
                              stdin=subprocess.DEVNULL)
        code, out, err = proc.returncode, proc.stdout, proc.stderr
        message = ""
    except subprocess.TimeoutExpired as exc:
        code = -1
        out = exc.stdout if isinstance(exc.stdout, str) else ""
        err = exc.stderr if isinstance(exc.stderr, str) else ""
        message = f"stand-in: session exceeded its timeout of {timeout} s"
    write_json(version_dir / "log.json",
               _log_entries(out, "stdout", start) + _log_entries(err, "stderr", start))
    set_status(version_dir, "COMPLETE" if code == 0 else "ERROR", message)
    return 0


def workers(state: Path) -> dict[int, Path]:
    """pid -> version folder of every worker this state folder started."""
    found = {}
    for pid_file in (state / "kernels").glob("*/*/*/worker.pid"):
        with contextlib.suppress(ValueError, OSError):
            found[int(pid_file.read_text())] = pid_file.parent
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z"):
            return False
    return True


def _ended(version_dir: Path) -> bool:
    return read_json(version_dir / "status.json", {}).get("status") in ("COMPLETE", "ERROR")


def stop_all(state: Path, grace: float = 5.0, timeout: float = 10.0) -> list[int]:
    """End every worker of this state folder (with its papermill and kernel: its process
    group). A worker whose version has ended gets `grace` seconds to exit by itself. Returns
    the pids of workers whose version had not ended (a test left one running)."""
    found = workers(state)
    deadline = time.monotonic() + grace
    while any(_alive(p) and _ended(d) for p, d in found.items()) and \
            time.monotonic() < deadline:
        time.sleep(0.05)
    running = [pid for pid in found if _alive(pid)]
    unfinished = [pid for pid in running if not _ended(found[pid])]
    for pid in running:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while any(_alive(p) for p in running) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in running:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
    return unfinished


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "run":
        sys.exit(run_version(Path(sys.argv[2])))
    print("usage: python -m kaggle._standin run VERSION_DIR", file=sys.stderr)
    sys.exit(2)

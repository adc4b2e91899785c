"""A real single-node SLURM cluster on loopback for the tests (Debian's slurm-wlm, no slurmdbd).

The fixture `slurm_cluster` (module-scoped) starts its own munged (own key and socket, so the
machine's munge is neither needed nor touched), slurmctld and slurmd in a temporary folder
with free ports, waits until the node is idle, yields a :class:`SlurmCluster`, and stops every
daemon by its pid file afterwards, also when a test failed. Without the commands, and without
root and apt-get to install them, the tests skip with the reason.

One cluster at a time on a machine: slurmd finds its node by the host's name, so two clusters
would both claim node `<hostname -s>`; a file lock (CLUSTER_LOCK) serialises the clusters of
several pytest-xdist workers, and the tests carry `xdist_group("slurm")` so that
`--dist loadgroup` keeps them in one worker and no worker waits for another.

The slurm.conf is tuned for quick tests: OverTimeLimit=0 and KillWait=1, so a job over its
time limit ends at the next time-limit check (slurmctld checks every 30 s, a fixed interval,
and a limit is whole minutes: a 1-minute job ends 60-90 s after it started), and
jobacct_gather/linux with OverMemoryKill polling every second, so a job over its `--mem` is
killed as OUT_OF_MEMORY without cgroups (task/none, proctrack/linuxproc).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CLUSTER_LOCK = Path(tempfile.gettempdir()) / "cloudbench-slurm-cluster.lock"
LOCK_WAIT_S = 900.0
START_TIMEOUT_S = 60.0
PARTITION = "debug"
COMMANDS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel", "sinfo")
SBIN = ("/usr/sbin", "/sbin")

# Mark a test module with this (pytestmark = SLURM_MARKS) to keep its tests in one worker.
SLURM_MARKS = [pytest.mark.xdist_group("slurm")]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _which(command: str) -> str | None:
    path = os.pathsep.join([os.environ.get("PATH", ""), *SBIN])
    return shutil.which(command, path=path)


def ensure_slurm_commands() -> str | None:
    """None when every command is there (installing slurm-wlm and munge as root if needed),
    else the reason to skip."""
    if all(_which(c) for c in COMMANDS):
        return None
    from cloudbench.study.sysdeps import SLURM_COMMANDS, MissingCommandError, ensure_commands
    try:
        ensure_commands({c: SLURM_COMMANDS[c] for c in COMMANDS if not _which(c)})
    except MissingCommandError as exc:
        return f"SLURM is not available: {exc}"
    absent = [c for c in COMMANDS if not _which(c)]
    return f"SLURM commands still missing after install: {absent}" if absent else None


@dataclass
class SlurmCluster:
    """A running cluster: `conf` is its SLURM_CONF; `env` is os.environ with SLURM_CONF set."""

    root: Path
    conf: Path
    partition: str
    shared: Path
    node: str
    cpus: int
    memory_mb: int
    env: dict[str, str] = field(repr=False)
    pid_files: dict[str, Path] = field(repr=False)
    logs: dict[str, Path] = field(repr=False)

    def run(self, *args: str, timeout: float = 30.0,
            check: bool = False) -> subprocess.CompletedProcess[str]:
        """Run a SLURM command against this cluster (its SLURM_CONF), with a timeout."""
        return subprocess.run(list(args), env=self.env, capture_output=True, text=True,
                              timeout=timeout, check=check, stdin=subprocess.DEVNULL)

    def node_state(self) -> str:
        proc = self.run("sinfo", "-h", "-o", "%t", "-p", self.partition)
        return proc.stdout.strip() if proc.returncode == 0 else f"error: {proc.stderr.strip()}"

    def wait_idle(self, timeout: float = START_TIMEOUT_S) -> None:
        """Wait until the node is idle (jobs of an earlier test gone); fail with the logs."""
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            state = self.node_state()
            if state == "idle":
                return
            if state in ("drain", "drng", "down", "down*"):
                # ReturnToService=2 brings a node back on registration; resume a drained one.
                self.run("scontrol", "update", f"NodeName={self.node}", "State=RESUME")
            time.sleep(0.5)
        raise RuntimeError(f"node not idle after {timeout:.0f} s (state {state!r})\n"
                           + self.log_tails())

    def jobs(self) -> list[str]:
        """Ids of the jobs still in the queue."""
        proc = self.run("squeue", "-h", "-o", "%i")
        return proc.stdout.split()

    def cancel_all(self, timeout: float = 30.0) -> None:
        """Cancel every job and wait until the queue is empty and the node idle again."""
        self.run("scancel", "--full", "--user", str(os.getuid()))
        deadline = time.monotonic() + timeout
        while self.jobs() and time.monotonic() < deadline:
            time.sleep(0.3)
        self.wait_idle(timeout=max(1.0, deadline - time.monotonic()))

    @contextlib.contextmanager
    def fresh(self) -> Iterator[SlurmCluster]:
        """For one test: the node idle at the start, every job cancelled at the end."""
        self.wait_idle()
        try:
            yield self
        finally:
            self.cancel_all()

    def log_tails(self, lines: int = 15) -> str:
        """The last lines of each daemon's log, for a failure message."""
        parts = []
        for name, path in self.logs.items():
            text = path.read_text(errors="replace") if path.exists() else "(no log)"
            parts.append(f"--- {name} ({path})\n" + "\n".join(text.splitlines()[-lines:]))
        return "\n".join(parts)


def _hostname() -> str:
    return socket.gethostname().split(".")[0]


def _memory_mb() -> int:
    """RealMemory for the node: at most 8000 MB, and never more than the machine has (a node
    that reports less memory than slurm.conf says is drained as "Low RealMemory")."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    return max(256, min(8000, int(total * 0.8)))


def write_conf(root: Path, node: str, cpus: int, memory_mb: int, munge_socket: Path) -> Path:
    """slurm.conf for one node on 127.0.0.1, every file under `root`."""
    state = root / "state"
    spool = root / "spool"
    for folder in (state, spool):
        folder.mkdir(mode=0o755)
    conf = root / "slurm.conf"
    conf.write_text(f"""\
ClusterName=cloudbench
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge_socket}
StateSaveLocation={state}
SlurmdSpoolDir={spool}
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=task=1
JobAcctGatherParams=OverMemoryKill
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
OverTimeLimit=0
KillWait=1
MinJobAge=300
DefMemPerCPU=256
MessageTimeout=10
InactiveLimit=0
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
SlurmdTimeout=60
NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN
PartitionName={PARTITION} Nodes={node} Default=YES MaxTime=INFINITE State=UP
""")
    return conf


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours counts as gone.
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z"):
            return False
    return True


def stop_daemon(pid_file: Path, timeout: float = 15.0) -> None:
    """SIGTERM the daemon named by its pid file, then SIGKILL it if it has not gone."""
    pid = _read_pid(pid_file)
    if pid is None or not _alive(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _start(argv: Sequence[str], env: dict[str, str], what: str, log: Path) -> None:
    """Start a daemon that forks into the background; its own process must exit 0."""
    proc = subprocess.run(list(argv), env=env, capture_output=True, text=True, timeout=30,
                          stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        text = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise RuntimeError(f"{what} failed to start (exit {proc.returncode}): "
                           f"{proc.stderr.strip()}\n{text}")


@contextlib.contextmanager
def cluster_lock(timeout: float = LOCK_WAIT_S) -> Iterator[None]:
    """One cluster per machine at a time (see the module's docstring)."""
    with open(CLUSTER_LOCK, "a+") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"another SLURM test cluster held {CLUSTER_LOCK} for "
                                       f"{timeout:.0f} s") from None
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def start_cluster(root: Path) -> Iterator[SlurmCluster]:
    """munged, slurmctld and slurmd under `root`; all three stopped on leaving."""
    if os.geteuid() != 0:
        pytest.skip("the test SLURM cluster runs its daemons as root (SlurmUser=root)")
    node, cpus, memory_mb = _hostname(), os.cpu_count() or 1, _memory_mb()
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    munge = root / "munge"
    munge.mkdir(mode=0o711)
    key = munge / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o600)
    munge_socket = munge / "munge.socket"
    shared = root / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    conf = write_conf(root, node, cpus, memory_mb, munge_socket)
    env = {**os.environ, "SLURM_CONF": str(conf),
           "PATH": os.pathsep.join([os.environ.get("PATH", ""), *SBIN])}
    pid_files = {"munged": munge / "munged.pid", "slurmctld": root / "slurmctld.pid",
                 "slurmd": root / "slurmd.pid"}
    logs = {"munged": munge / "munged.log", "slurmctld": root / "slurmctld.log",
            "slurmd": root / "slurmd.log"}
    cluster = SlurmCluster(root=root, conf=conf, partition=PARTITION, shared=shared, node=node,
                           cpus=cpus, memory_mb=memory_mb, env=env, pid_files=pid_files,
                           logs=logs)
    try:
        _start(["munged", "--force", f"--socket={munge_socket}", f"--key-file={key}",
                f"--log-file={logs['munged']}", f"--pid-file={pid_files['munged']}",
                f"--seed-file={munge / 'munged.seed'}"], env, "munged", logs["munged"])
        # -i: ignore (there is none) saved state; slurmd -b: report boot time now.
        _start(["slurmctld", "-i"], env, "slurmctld", logs["slurmctld"])
        _start(["slurmd", "-b"], env, "slurmd", logs["slurmd"])
        cluster.wait_idle(START_TIMEOUT_S)
        yield cluster
    finally:
        with contextlib.suppress(Exception):
            cluster.run("scancel", "--full", "--user", str(os.getuid()), timeout=10)
        # slurmd first: it kills its job steps (slurmstepd) on SIGTERM.
        for name in ("slurmd", "slurmctld", "munged"):
            stop_daemon(pid_files[name])
        _kill_leftover_steps(root)


def _kill_leftover_steps(root: Path) -> None:
    """Processes of this cluster that outlived slurmd: slurmstepd (its working folder is the
    cluster's root) and the job scripts (SLURM_CONF in their environment)."""
    import psutil
    ours = {os.getpid(), *(p.pid for p in psutil.Process().parents())}
    for proc in psutil.process_iter(["cmdline", "environ"]):  # "environ" fails for some: None
        with contextlib.suppress(psutil.Error):
            if proc.pid in ours:
                continue
            env = proc.info.get("environ") or {}
            cwd = ""
            with contextlib.suppress(psutil.Error):
                cwd = proc.cwd()
            if env.get("SLURM_CONF") == str(root / "slurm.conf") or \
                    cwd == str(root) or cwd.startswith(f"{root}/") or \
                    cwd.startswith(f"{root} ") or \
                    str(root) in " ".join(proc.info.get("cmdline") or []):
                proc.kill()


ROOT_PREFIX = "cb-slurm-"
OWNER_FILE = "owner.pid"


def stop_stale_clusters() -> list[Path]:
    """Stop the clusters left by a test process that was killed (its finalizers never ran):
    those whose owner.pid names a process that is gone. Called with the lock held."""
    stale = []
    for root in Path(tempfile.gettempdir()).glob(f"{ROOT_PREFIX}*"):
        owner = _read_pid(root / OWNER_FILE)
        if owner is None or _alive(owner):
            continue
        for pid_file in (root / "slurmd.pid", root / "slurmctld.pid", root / "munge/munged.pid"):
            stop_daemon(pid_file)
        _kill_leftover_steps(root)
        shutil.rmtree(root, ignore_errors=True)
        stale.append(root)
    return stale


@pytest.fixture(scope="module")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """A single-node SLURM cluster for this module's tests (skips when SLURM is unavailable)."""
    reason = ensure_slurm_commands()
    if reason:
        pytest.skip(reason)
    with cluster_lock():
        stop_stale_clusters()
        root = Path(tempfile.mkdtemp(prefix=ROOT_PREFIX))
        (root / OWNER_FILE).write_text(str(os.getpid()))
        try:
            with start_cluster(root) as cluster:
                yield cluster
        finally:
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def slurm(slurm_cluster: SlurmCluster) -> Iterator[SlurmCluster]:
    """The module's cluster, idle at the start of the test and emptied after it."""
    with slurm_cluster.fresh():
        yield slurm_cluster

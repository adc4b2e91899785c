"""Where a study's files go: the results folder's layout, and a runner's share of it.

The results store (study.store) owns the folder and its lock; a runner never sees the
store. It gets a :class:`RunnerPaths`: the folders it may write to, and for each run a
:class:`RunPaths` (its work folder, its log, its executed notebook). Both are derived here
from the results folder, so the store and the runners agree on every name without a runner
being able to reach the records.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

RECORDS = "records"
ATTEMPTS = "attempts"
NOTEBOOKS = "notebooks"
LOGS = "logs"
WORK = ".work"  # emptied of run folders when a study starts (ResultsStore.prepare)
ARTIFACTS = "artifacts"  # what each run's notebook wrote in its working folder
#: Inside a run's work folder: the notebook's working folder (its files, what it writes),
#: apart from the toolkit's own scratch files beside it.
HOME = "home"


def default_results_dir(study_name: str) -> Path:
    """Where a study's results go when the command does not say (relative to the cwd)."""
    return Path("data") / "results" / study_name


def log_file(logs: Path, run_id: str) -> Path:
    return logs / f"{run_id}.log"


def notebook_file(notebooks: Path, run_id: str) -> Path:
    return notebooks / f"{run_id}.ipynb"


@dataclass(frozen=True)
class RunPaths:
    """One try of one run: a fresh work folder (removed after the try), and where its log,
    its executed notebook and what the notebook wrote go (kept, one per run)."""

    work: Path
    log: Path
    notebook: Path
    artifacts: Path | None = None

    @property
    def home(self) -> Path:
        """The notebook's working folder: its files beside it, relative paths as in Jupyter."""
        return self.work / HOME


@dataclass(frozen=True)
class RunnerPaths:
    """What one environment's runner may write: the scratch folder (staged zips, pipeline
    folders, per-run work folders), the logs folder and its own log, the executed
    notebooks, and a private folder for state that outlives a study's process (a client's
    sessions file)."""

    work: Path
    logs: Path
    notebooks: Path
    state: Path
    runner_log: Path
    artifacts: Path | None = None

    @classmethod
    def under(cls, root: Path, environment: str, runner: str) -> RunnerPaths:
        """The paths of an environment's runner in the results folder `root`; the state
        folder is the runner kind's (root/colab for every Colab environment)."""
        root = Path(root).absolute()
        logs = root / LOGS
        return cls(work=root / WORK, logs=logs, notebooks=root / NOTEBOOKS,
                   state=root / runner, runner_log=logs / f"{environment}.{runner}.log",
                   artifacts=root / ARTIFACTS)

    def run(self, run_id: str, attempt: int) -> RunPaths:
        return RunPaths(work=self.work / f"{run_id}.{attempt}",
                        log=log_file(self.logs, run_id),
                        notebook=notebook_file(self.notebooks, run_id),
                        artifacts=self.artifacts / run_id if self.artifacts else None)

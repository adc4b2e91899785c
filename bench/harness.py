"""What the benchmarks share: the toolkit on the path, a one-environment study's runner."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from runners.local import LocalRunner  # noqa: E402
from study.plan import RunJob, block_jobs  # noqa: E402
from study.spec import load_study  # noqa: E402
from study.store import ResultsStore  # noqa: E402

PROTOCOL = ROOT / "protocols" / "cnn_train.ipynb"


def local_runner(study_toml: str, prefix: str) -> tuple[LocalRunner, RunJob, Path]:
    """The local runner of a one-environment study, its first run, and a scratch folder."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    (tmp / "study.toml").write_text(study_toml, encoding="utf-8")
    study = load_study(tmp / "study.toml")
    store = ResultsStore(tmp / "results")
    store.prepare()
    return LocalRunner(study, study.environments[0], store), block_jobs(study, 1)[0], tmp

"""runners/kaggle.py against the Kaggle stand-in (tests/standin/kaggle, docs/kaggle-client.md).

A pushed version really runs: the stand-in's worker executes the driver notebook with
papermill (no PYTHONPATH: the toolkit comes from the staged dataset), the driver runs each
try in a child Python with the local runner and packs one archive, and the runner imports it
through `study import`'s checks. Scripted faults: a version queued then failed (retried in a
version of its own), rate limits (429 with Retry-After), missing credentials; and the
credentials never reach a file.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from remote_support import attempts, files_containing, records, run, write_study

from cloudbench.runners.base import Try, make_runner
from cloudbench.runners.kaggle import KaggleRunner, quota_hours_left, retry_after_s
from cloudbench.study.plan import plan
from cloudbench.study.spec import SpecError, load_study
from cloudbench.study.store import ResultsStore

STANDIN = Path(__file__).resolve().parent / "standin"
KEY = "0123456789abcdef-kaggle-test-key"


def _drop_kaggle_modules() -> None:
    for name in [n for n in sys.modules if n == "kaggle" or n.startswith("kaggle.")]:
        del sys.modules[name]


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The stand-in's server folder; a clean HOME, no KAGGLE_* variables but the state's;
    every version's worker ended on teardown (none may still be running)."""
    for key in [k for k in os.environ if k.startswith("KAGGLE_")]:
        monkeypatch.delenv(key)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    folder = tmp_path / "state"
    folder.mkdir()
    monkeypatch.setenv("KAGGLE_STANDIN_STATE", str(folder))
    monkeypatch.syspath_prepend(str(STANDIN))
    _drop_kaggle_modules()
    yield folder
    left = importlib.import_module("kaggle._standin").stop_all(folder)
    _drop_kaggle_modules()
    assert left == [], f"kernel versions still running at the end: {left}"


@pytest.fixture
def credentials(state: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KAGGLE_USERNAME", "standin")
    monkeypatch.setenv("KAGGLE_KEY", KEY)
    return state


def control(state: Path, **values: object) -> None:
    importlib.import_module("kaggle._standin").set_control(state, **values)


def calls(state: Path) -> list[str]:
    return [c["call"] for c in importlib.import_module("kaggle._standin").calls(state)]


def kaggle_study(path: Path, notebook: Path, repetitions: int = 1, retries: int = 1,
                 **env: object) -> Path:
    return write_study(path, [{"name": "kg", "runner": "kaggle", **env}], name="kgl",
                       repetitions=repetitions, retries=retries, notebook=notebook)


def fast(runner: KaggleRunner) -> KaggleRunner:
    runner.poll_first_s, runner.poll_max_s = 0.3, 1.0
    return runner


def runner_of(spec: Path, out: Path) -> tuple[KaggleRunner, list[Try]]:
    study = load_study(spec)
    store = ResultsStore(out)
    store.prepare()
    env = study.environment("kg")
    runner = make_runner(study, env, store.runner_paths(env))
    assert isinstance(runner, KaggleRunner)
    runner.check()
    return fast(runner), [Try(j, 1) for j in plan(study) if j.environment == "kg"]


# -- no server -------------------------------------------------------------------------------


def test_quota_and_retry_after_forms() -> None:
    assert quota_hours_left(12.5) == 12.5
    assert quota_hours_left({"used_hours": 3, "total_hours": 30}) == 27
    assert quota_hours_left({"remaining_seconds": 7200}) == 2
    assert quota_hours_left(None) is None and quota_hours_left({"x": "y"}) is None

    class Response:
        headers = {"Retry-After": "3"}

    class Error(Exception):
        response = Response()

    assert retry_after_s(Error()) == 3.0
    Response.headers = {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}
    assert retry_after_s(Error()) == 0.0


@pytest.mark.parametrize(("extra", "key", "words"), [
    ({"accelerator": "NvidiaK80"}, "accelerator", "NvidiaTeslaT4"),
    ({"accelerator": "NvidiaTeslaT4"}, "accelerator", "set gpu"),
    ({"gpu": "k80"}, "gpu", "no Kaggle accelerator"),
    ({"kernel": "Bad Slug"}, "kernel", "slug"),
])
def test_study_file_refuses_bad_keys_naming_them(tmp_path: Path, quick_protocol: Path,
                                                 extra: dict[str, object], key: str,
                                                 words: str) -> None:
    spec = kaggle_study(tmp_path / "study.toml", quick_protocol, **extra)
    with pytest.raises(SpecError, match=words) as info:
        load_study(spec)
    assert f"environments[0].{key}" in str(info.value)


def test_accelerator_defaults_from_the_gpu_key(tmp_path: Path, quick_protocol: Path) -> None:
    study = load_study(kaggle_study(tmp_path / "s.toml", quick_protocol, gpu="t4"))
    assert KaggleRunner.accelerator_of(study.environment("kg")) == "NvidiaTeslaT4"


def test_a_missing_client_is_refused_with_the_install_command(
        tmp_path: Path, quick_protocol: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _drop_kaggle_modules()
    monkeypatch.setitem(sys.modules, "kaggle", None)  # as if not installed
    spec = kaggle_study(tmp_path / "study.toml", quick_protocol)
    with pytest.raises(SpecError, match=r"environments\[0\]\.runner: .*needs the Kaggle client"
                       r".*\.\[kaggle\]"):
        runner_of(spec, tmp_path / "out")


# -- against the stand-in --------------------------------------------------------------------


def test_missing_credentials_are_refused_naming_the_fix(state: Path, tmp_path: Path,
                                                        quick_protocol: Path) -> None:
    spec = kaggle_study(tmp_path / "study.toml", quick_protocol)
    with pytest.raises(SpecError, match=r"environments\[0\]\.runner: no Kaggle credentials"
                       ) as info:
        runner_of(spec, tmp_path / "out")
    for fix in ("KAGGLE_API_TOKEN", "~/.kaggle/access_token", "KAGGLE_CONFIG_DIR",
                "KAGGLE_USERNAME and KAGGLE_KEY"):
        assert fix in str(info.value)
    assert calls(state) == []  # nothing was sent


@pytest.mark.parametrize("way", ["KAGGLE_API_TOKEN", "access_token", "kaggle.json",
                                 "KAGGLE_USERNAME"])
def test_each_way_of_giving_credentials_is_accepted(state: Path, tmp_path: Path,
                                                    quick_protocol: Path, way: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    if way == "KAGGLE_API_TOKEN":
        monkeypatch.setenv("KAGGLE_API_TOKEN", KEY)
    elif way == "access_token":
        (Path(os.environ["HOME"]) / ".kaggle").mkdir()
        (Path(os.environ["HOME"]) / ".kaggle" / "access_token").write_text(KEY)
    elif way == "kaggle.json":
        config = tmp_path / "config"
        config.mkdir()
        (config / "kaggle.json").write_text(json.dumps({"username": "standin", "key": KEY}))
        monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(config))
    else:
        monkeypatch.setenv("KAGGLE_USERNAME", "standin")
        monkeypatch.setenv("KAGGLE_KEY", KEY)
    spec = kaggle_study(tmp_path / "study.toml", quick_protocol)
    runner, _ = runner_of(spec, tmp_path / "out")  # check() passes
    assert runner.owner == "standin" and runner.kernel_ref == "standin/cb-kgl-kg"
    assert KEY in runner.secrets and runner._clean(f"token {KEY}!") == "token ***!"


def test_a_full_block_as_one_kernel_version(credentials: Path, tmp_path: Path,
                                            quick_protocol: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    state = credentials
    control(state, quota={"gpu_quota": {"used_hours": 4.5, "total_hours": 30},
                          "quota_refresh_time": "2026-12-12T00:00:00Z"})
    spec = kaggle_study(tmp_path / "study.toml", quick_protocol, repetitions=2)
    study = load_study(spec)
    out = tmp_path / "results"
    runner, tries = runner_of(spec, out)
    results = list(runner.run_batch(tries))  # both repetitions in one version

    assert [r.record["status"] for r in results] == ["ok", "ok"], \
        [r.record["error"] for r in results]
    for result, one in zip(results, tries, strict=True):
        record = result.record
        assert record["run_id"] == one.job.run_id and record["runner"] == "kaggle"
        assert record["kaggle_kernel"] == "standin/cb-kgl-kg/1"
        assert (record["kaggle_gpu_quota_left_h"], record["kaggle_tpu_quota_left_h"]) == \
            (25.5, None)
        # run on the "VM" from the staged dataset, not from this checkout
        assert "/cloudbench-" in str(record["helpers"]) and \
            not str(record["helpers"]).startswith(str(Path(__file__).parent.parent))
        assert Path(runner.paths.run(one.job.run_id, 1).notebook).is_file()
    assert calls(state).count("kernels_push") == 1
    made = calls(state)
    push = made.index("kernels_push")
    assert made[0] == "quota_view" and made.index("dataset_create_new") < push
    assert made[push - 1] == "dataset_status"  # ready before the push
    version = state / "kernels" / "standin" / "cb-kgl-kg" / "1"
    meta = json.loads((version / "meta.json").read_text())
    assert {k: meta[k] for k in ("id", "code_file", "language", "kernel_type", "is_private",
                                 "enable_gpu", "enable_tpu", "enable_internet",
                                 "docker_image_pinning_type", "dataset_sources")} == {
        "id": "standin/cb-kgl-kg", "code_file": "driver.ipynb", "language": "python",
        "kernel_type": "notebook", "is_private": True, "enable_gpu": False,
        "enable_tpu": False, "enable_internet": False, "docker_image_pinning_type": "original",
        "dataset_sources": ["standin/cb-kgl-kg-stage"]}
    assert len(meta["title"]) >= 5 and int(meta["session_timeout_seconds"]) > 0
    log = runner.paths.runner_log.read_text()
    assert "weekly quota left: GPU 25.5 h" in log and "COMPLETE" in log

    # the same through the scheduler: a block per repetition, each a version; the dataset
    # is uploaded once per study run
    result = run(spec, tmp_path / "scheduled")
    assert not result.failed and len(result.executed) == 2
    assert sorted(r["status"] for r in records(tmp_path / "scheduled").values()) == ["ok"] * 2
    assert calls(state).count("kernels_push") == 3
    assert calls(state).count("dataset_create_version") == 1  # the slug existed already
    assert study.name == "kgl"
    for folder in (out, tmp_path / "scheduled", state):
        assert files_containing(folder, KEY) == [], folder
    monkeypatch.delenv("KAGGLE_KEY")


def test_a_version_queued_then_failed_is_retried_in_a_new_version(
        credentials: Path, tmp_path: Path, quick_protocol: Path) -> None:
    state = credentials
    control(state, queued_then_error="Kernel failed: out of GPU quota", queue_s=1.0)
    spec = kaggle_study(tmp_path / "study.toml", quick_protocol, retries=1)
    out = tmp_path / "results"
    result = run(spec, out)
    assert not result.failed
    [record] = records(out).values()
    assert record["status"] == "ok" and record["attempt"] == 2
    [failed] = attempts(out)
    assert failed["status"] == "failed" and failed["attempt"] == 1
    assert "ended ERROR: Kernel failed: out of GPU quota" in failed["error"]
    assert calls(state).count("kernels_push") == 2
    assert calls(state).count("kernels_status") >= 3  # queued, then polled to its end


def test_no_quota_left_refuses_the_block_before_any_push(credentials: Path, tmp_path: Path,
                                                         quick_protocol: Path) -> None:
    state = credentials
    control(state, quota={"gpu_quota": {"used_hours": 30, "total_hours": 30}})
    spec = kaggle_study(tmp_path / "study.toml", quick_protocol, gpu="t4")
    runner, tries = runner_of(spec, tmp_path / "out")
    [result] = list(runner.run_batch(tries))
    assert result.record["status"] == "failed" and result.infrastructure
    assert "no Kaggle GPU quota left this week (0 h)" in result.record["error"]
    assert calls(state) == ["quota_view"]


def test_rate_limits_are_waited_out(state: Path, tmp_path: Path, quick_protocol: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAGGLE_API_TOKEN", KEY)  # an access token, this time
    spec = kaggle_study(tmp_path / "study.toml", quick_protocol)
    runner, tries = runner_of(spec, tmp_path / "out")
    waits: list[float] = []
    runner.sleep = lambda s: (waits.append(s), time.sleep(min(s, 0.3)))  # type: ignore
    control(state, rate_limit=4, retry_after="2")
    [result] = list(runner.run_batch(tries))
    assert result.record["status"] == "ok", result.record["error"]
    # the four 429s in a row: each waits Retry-After at least, the back-off growing
    assert waits[:3] == [2.0, 2.0, 2.0] and 2.0 < waits[3] < 3.0, waits
    log = runner.paths.runner_log.read_text()
    assert log.count(": 429; again in") == 4 and "(try 4 of 10)" in log
    for folder in (tmp_path / "out", state):
        assert files_containing(folder, KEY) == [], folder

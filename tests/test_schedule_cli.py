"""`study schedule install | remove | show`: a real crontab line, systemd unit files, the
timetable with each block's state."""

from __future__ import annotations

import csv
import fcntl
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloudbench.cli import schedule as C
from cloudbench.cli.main import main
from cloudbench.errors import EXIT_FAILED, EXIT_INPUT
from cloudbench.study.plan import block_jobs
from cloudbench.study.spec import load_study

SCHEDULE = ('\n[schedule]\nspread = "72h"\nwindows = 6\ntimezone = "Europe/Madrid"\n'
            'start = "2026-12-07T09:00"\n')


@pytest.fixture
def spec(quick_study, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = quick_study(name="days", repetitions=6)
    path.write_text(path.read_text() + SCHEDULE)
    monkeypatch.chdir(tmp_path)  # the default results folder is relative to the cwd
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    (tmp_path / "home").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return path


#: One test at a time may change the user's crontab, across pytest-xdist workers and test
#: runs on the same machine: a lock file, as tests/slurm_support.py's clusters.
CRONTAB_LOCK = Path(tempfile.gettempdir()) / "cloudbench-tests-crontab.lock"


@pytest.fixture
def user_crontab() -> Iterator[str]:
    """The user's crontab, saved and put back after the test (crontab is per user, whatever
    HOME says; `crontab -u` only picks another user): never a line left behind."""
    if shutil.which("crontab") is None:
        pytest.skip("no crontab command (apt-get install cron: study.sysdeps's cron group)")
    with CRONTAB_LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        saved = subprocess.run(["crontab", "-l"], capture_output=True, text=True, check=False)
        had = saved.returncode == 0
        try:
            yield saved.stdout if had else ""
        finally:
            if had:
                subprocess.run(["crontab", "-"], input=saved.stdout, text=True, check=True)
            else:
                subprocess.run(["crontab", "-r"], capture_output=True, check=False)


def crontab() -> str:
    done = subprocess.run(["crontab", "-l"], capture_output=True, text=True, check=False)
    return done.stdout if done.returncode == 0 else ""


@pytest.mark.xdist_group("crontab")
def test_install_writes_a_tagged_crontab_line_and_remove_deletes_exactly_it(
        spec: Path, user_crontab: str, capsys: pytest.CaptureFixture[str]) -> None:
    subprocess.run(["crontab", "-"], input=user_crontab + "# the user's own line\n",
                   text=True, check=True)
    assert main(["schedule", "install", str(spec), "--using", "cron"]) == 0
    lines = [x for x in crontab().splitlines() if C.CRON_TAG in x]
    assert len(lines) == 1
    line = lines[0]
    assert line.startswith("*/5 * * * * cd ")  # a spread: slots fall on any minute
    assert f"{Path(sys.executable).absolute()} -m cloudbench.cli.main run {spec} --due" in line
    assert "study 'days'" in line and str(spec) in line
    assert "# the user's own line" in crontab()
    # installing again replaces the line rather than adding one
    assert main(["schedule", "install", str(spec), "--using", "cron", "--every", "15"]) == 0
    lines = [x for x in crontab().splitlines() if C.CRON_TAG in x]
    assert len(lines) == 1 and lines[0].startswith("*/15 ")
    assert main(["schedule", "show", str(spec)]) == 0
    assert "crontab: */15" in capsys.readouterr().out.replace("\n", "")
    spec.write_text(spec.read_text().replace("[schedule]", "[schedule_gone]\n[x]"))
    assert main(["schedule", "remove", str(spec)]) == EXIT_INPUT  # the file must be valid
    spec.write_text(spec.read_text().split("[schedule_gone]")[0])
    assert main(["schedule", "remove", str(spec)]) == 0  # the table removed since: still
    assert C.CRON_TAG not in crontab()
    assert crontab() == user_crontab + "# the user's own line\n"
    assert main(["schedule", "remove", str(spec)]) == 0
    assert "nothing installed" in capsys.readouterr().out


@pytest.mark.xdist_group("crontab")
def test_auto_falls_back_to_cron_where_systemd_user_does_not_work(
        spec: Path, user_crontab: str, capsys: pytest.CaptureFixture[str]) -> None:
    if C.systemd_user() is None:
        pytest.skip("systemctl --user works here: auto would enable a real timer")
    assert main(["schedule", "install", str(spec)]) == 0
    out = capsys.readouterr().out
    assert "crontab line" in out and "systemctl" in out  # and says why not systemd
    assert C.CRON_TAG in crontab()
    assert main(["schedule", "remove", str(spec)]) == 0
    assert C.CRON_TAG not in crontab()


def test_systemd_units_are_written_and_removed(spec: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    reason = C.systemd_user()
    if reason is None:
        pytest.skip("systemctl --user works here: the test would enable a real timer")
    assert main(["schedule", "install", str(spec), "--using", "systemd"]) == 0
    out = capsys.readouterr().out
    assert "not enabled" in out  # with the reason, and how to enable it
    units = sorted((tmp_path / "config" / "systemd" / "user").iterdir())
    assert [u.suffix for u in units] == [".service", ".timer"]
    assert units[0].stem.startswith("cloudbench-days-")
    service, timer = (u.read_text() for u in units)
    assert "Type=oneshot" in service and f"WorkingDirectory={tmp_path}" in service
    assert (f"ExecStart={Path(sys.executable).absolute()} -m cloudbench.cli.main run {spec} "
            "--due") in service
    assert "OnCalendar=*:0/5" in timer and "Persistent=true" in timer
    assert f"Unit={units[0].name}" in timer and "WantedBy=timers.target" in timer
    assert main(["schedule", "show", str(spec)]) == 0
    assert units[1].name in capsys.readouterr().out.replace("\n", "")
    assert main(["schedule", "remove", str(spec)]) == 0
    assert list((tmp_path / "config" / "systemd" / "user").iterdir()) == []


def test_an_output_folder_makes_another_unit(spec: Path, tmp_path: Path) -> None:
    study = load_study(spec, check_data=False)
    one = C.Target(study.name, spec, tmp_path, None, sys.executable)
    two = C.Target(study.name, spec, tmp_path, tmp_path / "elsewhere", sys.executable)
    assert one.unit != two.unit and one.tag != two.tag
    assert two.command()[-2:] == ["--output", str(tmp_path / "elsewhere")]
    odd = C.Target("50% off\nnow", spec, tmp_path, None, sys.executable)
    assert "%" not in odd.tag and "\n" not in odd.tag


def test_show_prints_the_timetable_and_each_blocks_state(
        spec: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    study = load_study(spec, check_data=False)
    results = tmp_path / "data" / "results" / "days"
    results.mkdir(parents=True)
    with (results / "runs.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["run_id", "block", "status"])
        for job in block_jobs(study, 1):
            writer.writerow([job.run_id, 1, "ok"])
        for job in block_jobs(study, 2)[:1]:  # a block half done is not done
            writer.writerow([job.run_id, 2, "ok"])
    slots, fixed = C.slots_of(study, results, C.dt.datetime.now(C.dt.UTC))
    assert fixed and len(slots) == 6
    now = slots[2].at.isoformat()  # block 3's slot has come, not block 4's
    assert main(["schedule", "show", str(spec), "--now", now]) == 0
    out = capsys.readouterr().out
    states = C.block_states(study, results, slots, slots[2].at)
    assert states == {1: "done", 2: "due", 3: "due", 4: "pending", 5: "pending",
                      6: "pending"}
    assert "1 done, 2 due, 3 pending" in out
    assert slots[0].at.strftime("%Y-%m-%d %H:%M") in out
    assert slots[0].local(study.schedule).strftime("%H:%M") in out  # Madrid's clock
    assert "installed: nothing" in out


def test_show_without_an_anchor_shows_the_times_from_now(
        spec: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec.write_text(spec.read_text().replace('start = "2026-12-07T09:00"\n', ""))
    assert main(["schedule", "show", str(spec)]) == 0
    assert "not anchored yet" in capsys.readouterr().out.replace("\n", " ")
    results = spec.parent / "data" / "results" / "days"
    results.mkdir(parents=True)
    (results / C.ANCHOR_FILE).write_text('{"anchor": "2026-12-07T08:00:00Z"}')
    study = load_study(spec, check_data=False)
    assert C.anchor(study.schedule, results) == C.dt.datetime(2026, 12, 7, 8, tzinfo=C.dt.UTC)


def test_errors_name_the_key_or_the_command(spec: Path, quick_study,
                                            monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    plain = quick_study(name="plain")
    assert main(["schedule", "install", str(plain)]) == EXIT_INPUT
    assert "schedule: no [schedule] table" in capsys.readouterr().err.replace("\n", " ")
    monkeypatch.setattr(C, "systemd_user", lambda: "no systemd in this test")
    monkeypatch.setenv("PATH", str(spec.parent / "empty"))
    assert main(["schedule", "install", str(spec), "--using", "cron"]) == EXIT_FAILED
    err = capsys.readouterr().err.replace("\n", " ")
    assert "crontab is not on PATH" in err and "apt-get install cron" in err


def test_the_timer_period_follows_the_timetable() -> None:
    at = C.dt.datetime(2026, 12, 7, 9, 0, tzinfo=C.dt.UTC)
    slot = type("Slot", (), {})

    def slots(*minutes: int) -> list[object]:
        out = []
        for m in minutes:
            s = slot()
            s.at = at + C.dt.timedelta(minutes=m)
            out.append(s)
        return out

    assert C.period_minutes(slots(0, 120, 240)) == 15  # every 2 h on the quarter hour
    assert C.period_minutes(slots(0, 30, 60)) == 5  # half an hour apart
    assert C.period_minutes(slots(7, 127)) == 5  # on any minute

"""The analysis across time: hour, window, weekday, drift, devices, sessions, and its JSON."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from cloudbench.analysis import results as R
from cloudbench.analysis import temporal as T
from cloudbench.analysis.compare import analyze
from cloudbench.analysis.results import TimeAnalysis


def study(seed: int = 1, **kwargs: object) -> pd.DataFrame:
    return T.simulated_study(np.random.default_rng(seed), **kwargs)  # type: ignore[arg-type]


def one(frame: pd.DataFrame, **kwargs: object) -> TimeAnalysis:
    found = T.analyze_time(frame, ["train_s"], ["local", "cloud"], **kwargs)  # type: ignore
    assert len(found) == 1
    return found[0]


def test_a_large_afternoon_slowdown_is_found_in_the_cloud_only() -> None:
    result = one(study(blocks=72, hours=144, slowdown=0.10))
    cloud, local = result.environments["cloud"], result.environments["local"]
    assert cloud.hour is not None and cloud.hour.significant
    assert 12 <= cloud.hour.peak_hour <= 18  # slowest in the afternoon
    assert 0.02 < cloud.hour.amplitude < 0.10
    assert cloud.windows is not None and cloud.windows.significant
    assert len(cloud.windows.groups) == 6 and sum(cloud.windows.sizes) == 72
    assert local.hour is not None and not local.hour.significant
    pair = result.pairs[0]
    assert (pair.a, pair.b) == ("local", "cloud")
    assert pair.interaction is not None and pair.interaction.significant
    assert not pair.interaction.holds_at_every_window
    # local (100 s) is slower than the cloud (90 s) except in the afternoon (99 s)
    assert "12-16" not in pair.interaction.differing_windows
    assert set(pair.interaction.b_faster_windows) >= {"00-04", "20-24"}
    assert any("hour of the day" in w and w.startswith("cloud") for w in result.warnings)
    assert any("depends on the window" in w for w in result.warnings)


def test_without_an_effect_the_verdict_holds_at_every_window() -> None:
    result = one(study(seed=3, slowdown=0.0))
    pair = result.pairs[0]
    assert pair.interaction is not None
    assert pair.interaction.holds_at_every_window
    assert pair.interaction.ratio == pytest.approx(100 / 90, rel=0.03)
    assert pair.interaction.differing_windows == pair.interaction.windows_used  # all differ
    assert result.environments["cloud"].devices == {"T4": 36}
    assert result.environments["cloud"].span_hours > 48
    assert result.clock == "recorded offset"


@pytest.mark.parametrize("slowdown", [0.03, 0.0])
def test_power_and_type_i_error_on_simulated_studies(slowdown: float) -> None:
    # a few studies of a larger size: docs/statistics.md has 200 of the realistic one
    rates = T.simulate(12, seed=7, slowdown=slowdown, blocks=144, hours=288, cv=0.03)["rates"]
    if slowdown:
        assert rates["cloud_hour"] >= 0.6
    else:
        assert rates["cloud_hour"] <= 0.25 and rates["local_hour"] <= 0.25
    assert rates["local_hour"] <= 0.25  # never slowed: at most about alpha


def test_drift_is_estimated_per_block() -> None:
    frame = study(seed=2, slowdown=0.0, cv=0.01)
    cloud = frame["environment"] == "cloud"
    frame.loc[cloud, "train_s"] *= np.exp(0.002 * frame.loc[cloud, "block"])  # +0.2 %/block
    drift = one(frame).environments["cloud"].drift
    assert drift is not None and drift.x == "block" and drift.significant
    assert drift.per_block == pytest.approx(0.002, abs=0.001)
    assert drift.ci_low < 0.002 < drift.ci_high
    assert drift.spearman_rho > 0.5
    assert drift.over_study == pytest.approx(np.expm1(0.002 * 35), abs=0.03)


def test_an_environment_with_two_devices_is_compared_per_device() -> None:
    frame = study(seed=4, slowdown=0.0)
    later = (frame["environment"] == "cloud") & (frame["block"] > 18)
    frame.loc[later, "device_name"] = "L4"
    frame.loc[later, "train_s"] *= 0.7
    result = one(frame)
    cloud = result.environments["cloud"]
    assert cloud.devices == {"T4": 18, "L4": 18}
    assert cloud.device_test is not None and cloud.device_test.significant
    devices = {d.difference.label: d for d in result.pairs[0].devices}
    assert set(devices) == {"T4", "L4"}
    assert devices["L4"].environment == "cloud" and devices["L4"].other == "local"
    assert devices["L4"].difference.ratio == pytest.approx(0.9 * 0.7, rel=0.05)
    assert any("2 devices" in w for w in result.warnings)


def test_sessions_as_the_unit_beside_runs_and_a_warning_when_they_disagree() -> None:
    seen = []
    for seed in range(8):
        frame = study(seed=seed, blocks=4, slowdown=0.0, runs_per_block=8, session_sd=0.05,
                      cv=0.01)
        frame.loc[frame["environment"] == "cloud", "train_s"] *= 100 / 90  # equal on average
        check = one(frame).pairs[0].sessions
        assert check is not None and check.n_sessions_a == check.n_sessions_b == 4
        assert check.max_runs_per_session == 8 and check.method == "mixedlm"
        assert check.icc is not None and check.icc > 0.5
        seen.append(check)
        if not check.agree:
            assert check.runs_pvalue < 0.05 <= check.pvalue
            assert any("disagree" in w for w in one(frame).warnings)
    # runs of one session are not independent: the run-level test rejects too often
    assert sum(c.runs_pvalue < 0.05 for c in seen) > sum(c.pvalue < 0.05 for c in seen)
    assert any(not c.agree for c in seen)


def test_the_clock_is_the_study_zone_or_the_recorded_offset() -> None:
    frame = study(seed=5)
    utc = T.prepare(frame, "train_s")
    madrid = T.prepare(frame, "train_s", timezone="Europe/Madrid")  # UTC+1 in December
    assert ((madrid["hour"] - utc["hour"]) % 24).round(6).eq(1).all()
    shifted = T.prepare(frame.assign(local_offset_min=-300), "train_s")
    assert ((utc["hour"] - shifted["hour"]) % 24).round(6).eq(5).all()
    assert one(frame, timezone="Europe/Madrid").clock == "Europe/Madrid"


def test_the_time_section_is_in_the_json_and_read_back() -> None:
    frame = study(seed=6)
    frame.loc[frame.index[:3], "status"] = "failed"  # not counted
    result = analyze(frame, ["train_s"], environments=["local", "cloud"])
    assert result.time is not None and len(result.time) == 1
    assert result.time[0].environments["local"].n == 36 - sum(
        frame.loc[frame.index[:3], "environment"] == "local")
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert data["format_version"] == R.FORMAT_VERSION == 5
    assert list(data)[-1] == "time"
    section = data["time"][0]
    assert {"metric", "dataset", "clock", "windows", "environments", "pairs",
            "warnings"} <= set(section)
    hour = section["environments"]["cloud"]["hour"]
    assert {"statistic", "pvalue", "amplitude", "peak_hour"} <= set(hour)
    assert "holds_at_every_window" in section["pairs"][0]["interaction"]
    assert R.Analysis.from_dict(data) == result
    # without start times there is no section, and the JSON stays version 3
    plain = analyze(frame.drop(columns=["started_at"]), ["train_s"])
    assert plain.time is None and plain.to_dict()["format_version"] == 4


def test_too_few_runs_give_empty_parts_not_errors() -> None:
    frame = study(seed=8, blocks=3)
    result = one(frame)
    cloud = result.environments["cloud"]
    assert cloud.n == 3 and cloud.hour is None
    assert result.pairs[0].interaction is None and result.pairs[0].sessions is None
    assert T.analyze_time(frame.drop(columns=["started_at"]), ["train_s"]) == ()
    assert T.window_label(3, 6) == "12-16" and T.window_label(0, 5) == "00-4.8"


def test_the_summary_says_whether_the_difference_holds_at_every_window() -> None:
    from cloudbench.analysis.summary import summary_text, time_lines

    result = analyze(study(seed=3, slowdown=0.0), ["train_s"], environments=["local", "cloud"])
    lines = time_lines(result)
    assert lines[0].startswith("train_s, d: local vs cloud: ratio 1.1")
    assert "same side of 1 in every window" in lines[0]
    assert "across time" in summary_text(result)
    slowed = analyze(study(blocks=72, hours=144, slowdown=0.10), ["train_s"],
                     environments=["local", "cloud"])
    assert "not the same in every window" in time_lines(slowed)[0]
    assert any("hour of the day" in line for line in time_lines(slowed))


def test_runs_of_one_session_count_once_in_the_time_tests() -> None:
    frame = study(seed=9, blocks=12, runs_per_block=3, session_sd=0.03, ratio=1.0)
    result = one(frame)
    cloud = result.environments["cloud"]
    assert cloud.unit == "session" and cloud.n == 36 and cloud.sessions == 12
    assert cloud.max_runs_per_session == 3
    assert cloud.hour is not None and cloud.hour.n == 12  # one per session
    assert sum(cloud.windows.sizes) <= 12  # windows of one session are left out
    assert result.pairs[0].sessions is not None
    units = T.by_session(T.prepare(frame, "train_s"), 6)
    assert len(units) == 24 and units.attrs["unit"] == "session"
    # a session's hour is its runs' mean start, on the local clock
    first = frame[frame["session"] == "cloud-1"]
    mean = pd.to_datetime(first["started_at"], utc=True).mean()
    row = units[(units["environment"] == "cloud") & (units["session"] == "cloud-1")]
    assert row["hour"].iloc[0] == pytest.approx(mean.hour + mean.minute / 60
                                                + mean.second / 3600, abs=1e-6)
    single = one(study(seed=9, blocks=12))
    assert single.environments["cloud"].unit == "run"

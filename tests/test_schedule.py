"""Blocks spread over the hours and days: the timetable, its strata and its limits."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloudbench.study.schedule import ScheduleError, due, parse_schedule, timetable
from cloudbench.study.spec import SpecError, load_study

from conftest import examples

ANCHOR = dt.datetime(2026, 12, 7, 9, 30, tzinfo=dt.UTC)  # a Monday


def test_a_spread_is_stratified_over_the_windows_of_the_day() -> None:
    schedule = parse_schedule({"spread": "72h", "windows": 6, "timezone": "Europe/Madrid"})
    slots = timetable(schedule, 12, seed=5, anchor=ANCHOR)
    assert [s.block for s in slots] == list(range(1, 13))
    assert [s.at for s in slots] == sorted(s.at for s in slots)
    assert all(ANCHOR <= s.at < ANCHOR + dt.timedelta(hours=72) for s in slots)
    assert Counter(s.window for s in slots) == {w: 2 for w in range(6)}
    for slot in slots:  # each slot lies in its window, in the study's time zone
        assert slot.local(schedule).hour // 4 == slot.window
    assert timetable(schedule, 12, seed=5, anchor=ANCHOR) == slots  # fixed by the seed
    assert timetable(schedule, 12, seed=6, anchor=ANCHOR) != slots


def test_limits_close_hours_and_days() -> None:
    schedule = parse_schedule({"spread": "7d", "windows": 4, "not_before": "08:00",
                               "not_after": "20:00", "days": ["mon", "tue", "wed"]})
    slots = timetable(schedule, 10, seed=1, anchor=ANCHOR)
    for slot in slots:
        assert dt.time(8) <= slot.at.time() < dt.time(20)
        assert slot.at.weekday() in (0, 1, 2)
    assert {s.window for s in slots} <= {1, 2, 3}  # 00-06 is closed


def test_every_steps_over_closed_hours() -> None:
    schedule = parse_schedule({"every": "6h", "not_before": "08:00", "not_after": "22:00"})
    slots = timetable(schedule, 4, seed=1, anchor=ANCHOR)
    assert [s.at.hour for s in slots] == [9, 15, 21, 8]
    assert [s.block for s in due(slots, ANCHOR + dt.timedelta(hours=7))] == [1, 2]


@pytest.mark.parametrize(("raw", "key", "message"), [
    ({}, "spread", "give spread"),
    ({"spread": "72h", "every": "2h"}, "spread", "not both"),
    ({"spread": "soon"}, "spread", "a duration"),
    ({"spread": "10s"}, "spread", "a duration"),
    ({"spread": "1h", "windows": 0}, "windows", "from 1 to 24"),
    ({"every": "1h", "timezone": "Mars/Olympus"}, "timezone", "IANA"),
    ({"every": "1h", "not_before": "25:00"}, "not_before", "HH:MM"),
    ({"every": "1h", "not_before": "10:00", "not_after": "09:00"}, "not_after", "later"),
    ({"every": "1h", "days": ["monday"]}, "days", "a list of days"),
    ({"every": "1h", "start": "tomorrow"}, "start", "not a date"),
    ({"every": "1h", "often": True}, "often", "unknown key"),
])
def test_bad_schedules_name_the_key(raw: dict, key: str, message: str) -> None:
    with pytest.raises(ScheduleError, match=message) as err:
        parse_schedule(raw)
    assert err.value.key == key


def test_a_spread_with_no_allowed_time_is_refused() -> None:
    schedule = parse_schedule({"spread": "2d", "days": ["sat"]})
    with pytest.raises(ScheduleError, match="no time in the spread"):
        timetable(schedule, 3, seed=1, anchor=ANCHOR)


@settings(max_examples=examples(60), deadline=None)
@given(blocks=st.integers(1, 40), windows=st.integers(1, 24), hours=st.integers(1, 400),
       seed=st.integers(0, 2**32 - 1), start_minute=st.integers(0, 7 * 24 * 60))
def test_every_block_gets_one_slot_inside_the_spread(blocks: int, windows: int, hours: int,
                                                     seed: int, start_minute: int) -> None:
    anchor = ANCHOR + dt.timedelta(minutes=start_minute)
    schedule = parse_schedule({"spread": f"{hours}h", "windows": windows})
    slots = timetable(schedule, blocks, seed, anchor)
    assert [s.block for s in slots] == list(range(1, blocks + 1))
    assert all(anchor - dt.timedelta(minutes=1) <= s.at < anchor + dt.timedelta(hours=hours)
               for s in slots)
    counts = Counter(s.window for s in slots)
    assert max(counts.values()) - min(counts.values()) <= 1 or len(counts) < windows


def test_the_study_file_takes_a_schedule(tmp_path: Path, quick_study) -> None:
    spec = quick_study(name="days", extra="")
    spec.write_text(spec.read_text() + '\n[schedule]\nspread = "72h"\nwindows = 6\n'
                    'timezone = "Europe/Madrid"\n')
    study = load_study(spec)
    assert study.schedule is not None and study.schedule.spread_s == 72 * 3600
    spec.write_text(spec.read_text().replace('windows = 6', 'windows = 60'))
    with pytest.raises(SpecError, match=r"schedule\.windows: a number of windows"):
        load_study(spec)

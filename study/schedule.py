"""When a study's blocks run: spread over hours and days, so the verdict holds beyond one
afternoon.

A cloud notebook is not a fixed machine: its speed varies with the hour and the day
(Henning et al. 2025 saw daily and weekly patterns of up to 2.5 % over three months), so
randomised interleaved blocks (Abedi and Brecht 2017) are spread over time as well:

* ``spread = "72h"`` with ``windows = 6``: the day is cut into 6 windows of 4 hours; the
  blocks' start slots are stratified over them (every window gets its share of blocks,
  the shares differing by at most one) and drawn at random from the study's seed within
  their window, on a day of the spread;
* ``every = "2h"``: one block every 2 hours;
* ``not_before`` / ``not_after`` (hours of the day) and ``days`` limit when slots fall, in
  the study's ``timezone``.

Slots are fixed by the seed and the anchor (``start``, else the time of the study's first
scheduled call, kept in the results folder), so every call of ``study run --due`` sees the
same timetable.
"""

from __future__ import annotations

import datetime as dt
import math
import random
import re
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cloudbench.errors import InputError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(m|min|h|d|w)\s*\Z")
_UNIT_S = {"m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)\Z")
#: Tries to place one slot at random in its window before the window is deemed closed.
_TRIES = 200


class ScheduleError(InputError, ValueError):
    """A [schedule] key is wrong: `key` is the key within the table."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(message)


@dataclass(frozen=True)
class Schedule:
    timezone: str = "UTC"
    spread_s: float | None = None  # the span the blocks are spread over
    windows: int = 6
    every_s: float | None = None  # or: one block every so often
    not_before: dt.time | None = None
    not_after: dt.time | None = None
    days: tuple[str, ...] = DAYS
    start: dt.datetime | None = None  # the anchor; None: the first scheduled call

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def allowed(self, when: dt.datetime) -> bool:
        """Whether a slot may fall at `when` (aware): its day and hour, in the study's zone."""
        local = when.astimezone(self.zone)
        if DAYS[local.weekday()] not in self.days:
            return False
        clock = local.time()
        if self.not_before is not None and clock < self.not_before:
            return False
        return self.not_after is None or clock < self.not_after


@dataclass(frozen=True)
class Slot:
    block: int
    at: dt.datetime  # aware, UTC
    window: int | None  # the window of the day (0 = from midnight) for a spread schedule

    def local(self, schedule: Schedule) -> dt.datetime:
        return self.at.astimezone(schedule.zone)


def parse_duration(key: str, value: Any) -> float:
    found = _DURATION.match(value) if isinstance(value, str) else None
    if found is None:
        raise ScheduleError(key, f"expected a duration such as \"72h\", \"3d\" or \"90m\", "
                                 f"got {value!r}")
    seconds = float(found.group(1)) * _UNIT_S[found.group(2)]
    if not 60 <= seconds <= 366 * 86400:
        raise ScheduleError(key, f"must be from 1 minute to a year, got {value!r}")
    return seconds


def _clock(key: str, value: Any) -> dt.time:
    found = _CLOCK.match(value) if isinstance(value, str) else None
    if found is None:
        raise ScheduleError(key, f"expected an hour of the day as \"HH:MM\", got {value!r}")
    return dt.time(int(found.group(1)), int(found.group(2)))


def parse_schedule(raw: dict[str, Any]) -> Schedule:
    """The [schedule] table, checked; ScheduleError names the key."""
    known = {"spread", "windows", "every", "not_before", "not_after", "days", "timezone",
             "start"}
    for key in raw:
        if key not in known:
            raise ScheduleError(key, f"unknown key; [schedule] takes {', '.join(sorted(known))}")
    if ("spread" in raw) == ("every" in raw):
        raise ScheduleError("spread", "give either spread (with windows) or every, not both"
                            if "spread" in raw else "give spread = \"72h\" or every = \"2h\"")
    timezone = raw.get("timezone", "UTC")
    try:
        if not isinstance(timezone, str) or not timezone or "\0" in timezone:
            raise ValueError(timezone)
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ScheduleError("timezone", f"not a time zone of the IANA database, such as "
                                        f"\"Europe/Madrid\": {timezone!r}") from exc
    windows = raw.get("windows", 6)
    if isinstance(windows, bool) or not isinstance(windows, int) or not 1 <= windows <= 24:
        raise ScheduleError("windows", f"a number of windows of the day from 1 to 24, got "
                                       f"{windows!r}")
    days = raw.get("days", list(DAYS))
    if not isinstance(days, list) or not days or any(d not in DAYS for d in days):
        raise ScheduleError("days", f"a list of days among {', '.join(DAYS)}, got {days!r}")
    start = raw.get("start")
    if start is not None:
        if isinstance(start, str):
            try:
                start = dt.datetime.fromisoformat(start)
            except ValueError as exc:
                raise ScheduleError("start", f"not a date and time: {start!r}") from exc
        if not isinstance(start, dt.datetime):
            raise ScheduleError("start", f"expected a date and time such as "
                                         f"2026-12-07T09:00, got {start!r}")
        if start.tzinfo is None:
            start = start.replace(tzinfo=ZoneInfo(timezone))
    schedule = Schedule(
        timezone=timezone, windows=windows, days=tuple(d for d in DAYS if d in days),
        spread_s=parse_duration("spread", raw["spread"]) if "spread" in raw else None,
        every_s=parse_duration("every", raw["every"]) if "every" in raw else None,
        not_before=_clock("not_before", raw["not_before"]) if "not_before" in raw else None,
        not_after=_clock("not_after", raw["not_after"]) if "not_after" in raw else None,
        start=start.astimezone(dt.UTC) if start else None)
    if schedule.not_before and schedule.not_after and schedule.not_before >= schedule.not_after:
        raise ScheduleError("not_after", "must be later than not_before")
    return schedule


def _window_bounds(schedule: Schedule, day: dt.date, window: int) -> tuple[dt.datetime,
                                                                            dt.datetime]:
    hours = 24 / schedule.windows
    midnight = dt.datetime.combine(day, dt.time(0), tzinfo=schedule.zone)
    return (midnight + dt.timedelta(hours=window * hours),
            midnight + dt.timedelta(hours=(window + 1) * hours))


def timetable(schedule: Schedule, blocks: int, seed: int, anchor: dt.datetime) -> list[Slot]:
    """The start slot of each block (1..blocks), in block order, all in UTC.

    A spread schedule draws each slot in a window of the day, windows taken in equal
    shares (a random permutation of ``i % windows``), on a random day of the spread, at a
    random time in the window that the limits allow; the slots are then sorted, so block k
    runs before block k + 1. Windows the limits close entirely (night, with not_before)
    take no blocks. ScheduleError when the limits leave no time at all.
    """
    start = (schedule.start or anchor).astimezone(dt.UTC)
    rng = random.Random(f"schedule:{seed}")
    if schedule.every_s is not None:
        slots, at = [], start
        for block in range(1, blocks + 1):
            at = _next_allowed(schedule, at)
            slots.append(Slot(block, at, None))
            at += dt.timedelta(seconds=schedule.every_s)
        return slots
    assert schedule.spread_s is not None
    end = start + dt.timedelta(seconds=schedule.spread_s)
    first_day = start.astimezone(schedule.zone).date()
    n_days = math.ceil(schedule.spread_s / 86400) + 1
    days = [first_day + dt.timedelta(days=d) for d in range(n_days)]
    open_windows = [w for w in range(schedule.windows)
                    if _window_is_open(schedule, days, w, start, end)]
    if not open_windows:
        raise ScheduleError("spread", "no time in the spread is allowed by not_before, "
                                      "not_after and days")
    shares = [open_windows[i % len(open_windows)] for i in range(blocks)]
    rng.shuffle(shares)
    times = []
    for window in shares:
        times.append((_draw(schedule, rng, days, window, start, end), window))
    times.sort()
    return [Slot(block, at, window) for block, (at, window) in enumerate(times, start=1)]


def _window_is_open(schedule: Schedule, days: list[dt.date], window: int,
                    start: dt.datetime, end: dt.datetime) -> bool:
    for day in days:
        low, high = _window_bounds(schedule, day, window)
        at = max(low, start)
        while at < min(high, end):
            if schedule.allowed(at):
                return True
            at += dt.timedelta(minutes=15)
    return False


def _draw(schedule: Schedule, rng: random.Random, days: list[dt.date], window: int,
          start: dt.datetime, end: dt.datetime) -> dt.datetime:
    for _ in range(_TRIES):
        low, high = _window_bounds(schedule, rng.choice(days), window)
        low, high = max(low, start), min(high, end)
        if low >= high:
            continue
        at = low + (high - low) * rng.random()
        at = at.replace(second=0, microsecond=0)
        if low <= at < high and schedule.allowed(at):
            return at.astimezone(dt.UTC)
    # Rare: the window is open only a little; take its first allowed minute.
    for day in days:
        low, high = _window_bounds(schedule, day, window)
        at = max(low, start).replace(second=0, microsecond=0)
        while at < min(high, end):
            if schedule.allowed(at):
                return at.astimezone(dt.UTC)
            at += dt.timedelta(minutes=1)
    raise ScheduleError("spread", f"window {window} has no allowed time")


def _next_allowed(schedule: Schedule, at: dt.datetime) -> dt.datetime:
    """The first minute from `at` that the limits allow (within a year)."""
    probe = at
    for _ in range(366 * 24 * 4):
        if schedule.allowed(probe):
            return probe
        probe += dt.timedelta(minutes=15)
    raise ScheduleError("every", "not_before, not_after and days allow no time")


def due(slots: list[Slot], now: dt.datetime) -> list[Slot]:
    """The slots whose time has come."""
    return [s for s in slots if s.at <= now]

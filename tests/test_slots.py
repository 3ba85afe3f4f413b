"""The pure slot functions of the scheduler: no clock, no store, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from clawmcp.scheduler import MAX_CATCH_UP, due_slots, first_slot, next_slot
from clawmcp.store import Schedule

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC).timestamp()  # a Tuesday


def schedule(**spec: Any) -> Schedule:
    return Schedule(1, "c", "s", spec, {"prompt": "p"}, "latest", "manifest", None, T0)


def utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_every_counts_its_slots_from_when_it_was_added() -> None:
    every = schedule(every=60.0)
    assert next_slot(every, T0) == T0 + 60  # strictly after
    assert next_slot(every, T0 + 59.9) == T0 + 60
    assert next_slot(every, T0 + 60) == T0 + 120
    assert first_slot(every, T0 + 1) == T0 + 60


def test_every_catch_up_is_oldest_first_bounded_and_counts_them_all() -> None:
    every = schedule(every=60.0)
    assert due_slots(every, T0 + 60, T0 + 59) == ([], 0)  # nothing due yet
    assert due_slots(every, T0 + 60, T0 + 60) == ([T0 + 60], 1)  # due at its very instant
    slots, count = due_slots(every, T0 + 60, T0 + 60 * 250 + 30)
    assert count == 250 and len(slots) == MAX_CATCH_UP
    assert slots == sorted(slots) and slots[-1] == T0 + 60 * 250 and slots[0] == T0 + 60 * 151


def test_cron_slots_and_catch_up_are_oldest_first_and_bounded() -> None:
    hourly = schedule(cron="0 * * * *")
    assert next_slot(hourly, T0) == T0 + 3600
    assert next_slot(hourly, T0 - 1) == T0
    slots, count = due_slots(hourly, T0, T0 + 3600 * 3 + 5)
    assert (slots, count) == ([T0, T0 + 3600, T0 + 7200, T0 + 10800], 4)
    many, more = due_slots(schedule(cron="* * * * *"), T0, T0 + 60 * 300)
    assert len(many) == MAX_CATCH_UP and more > MAX_CATCH_UP  # a lower bound past the cap
    assert many == sorted(many) and many[-1] == T0 + 60 * 300


def test_cron_follows_its_timezone_across_a_daylight_saving_change() -> None:
    nine = schedule(cron="0 9 * * *", timezone="Europe/Lisbon")
    # Lisbon is UTC+1 in summer, UTC in winter: 09:00 local moves from 08:00 to 09:00 UTC.
    assert next_slot(nine, utc("2026-10-24T12:00:00")) == utc("2026-10-25T09:00:00")
    assert next_slot(nine, utc("2026-10-23T12:00:00")) == utc("2026-10-24T08:00:00")


def test_at_is_one_slot_which_a_new_schedule_waits_for_even_past() -> None:
    at = schedule(at="2026-11-24T11:00:00+00:00")
    assert next_slot(at, T0) == T0 + 3600
    assert next_slot(at, T0 + 3600) is None  # none left
    assert first_slot(at, T0 + 7200) == T0 + 3600  # past: still the one to catch up
    assert due_slots(at, T0 + 3600, T0 + 7200) == ([T0 + 3600], 1)


def test_cron_catch_up_never_counts_a_slot_that_is_still_to_come() -> None:
    minutely = schedule(cron="* * * * *")
    assert due_slots(minutely, T0, T0 + 59.5) == ([T0], 1)  # 10:01 is half a second away
    assert due_slots(minutely, T0, T0 + 60) == ([T0, T0 + 60], 2)  # and due at its very instant


def test_at_takes_its_own_offset_or_else_the_schedules_timezone() -> None:
    assert first_slot(schedule(at="2026-11-24T11:00:00+01:00"), T0) == T0  # 10:00 UTC
    lisbon = schedule(at="2026-07-01T09:00:00", timezone="Europe/Lisbon")  # summer: UTC+1
    assert first_slot(lisbon, T0) == utc("2026-07-01T08:00:00")
    assert first_slot(schedule(at="2026-11-24T10:00:00"), T0) == T0  # no zone at all: UTC

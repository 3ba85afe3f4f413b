"""Schedules on a fake clock, in a whole host in memory: every, cron across daylight saving time,
at, the misfire policies after a downtime, what a fire does, and a fire the disk cannot take (on
a real SQLite file)."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import anyio
import pytest

from clawmcp.errors import UserError
from clawmcp.host import Host
from clawmcp.scheduler import SystemClock
from clawmcp.store import Schedule, Store
from clawmcp.store.memory import MemoryStore
from clawmcp.store.sqlite import SqliteStore
from tests.fakes import LOCAL, FakeClock, disk_full, hosting, logged, tool_server, until

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC).timestamp()

MODELS = r"""
models:
  echo:
    provider: scripted
    rules:
      - when: "^remind me at (?P<at>\\S+)"
        steps: [{tool: claw__schedule, arguments: {name: reminder, at: "{{ match.at }}", prompt: "ding"}}]
        reply: "{{ results[0] }}"
      - when: "^drop schedule one"
        steps: [{tool: claw__unschedule, arguments: {id: 1}}]
        reply: "{{ results[0] }}"
      - when: "^schedule oddly"
        steps: [{tool: claw__schedule, arguments: {name: odd, every: 1m, prompt: p, colour: red}}]
        reply: "{{ results[0] }}"
      - when: "^(?!fail)"
        reply: "echo: {{ input }}"
servers:
  loud: LOCAL
""".replace("LOCAL", LOCAL)


def shout(word: str) -> str:
    return f"loud {word}"


def manifest(schedule: str, *, extra: str = "") -> str:
    return (
        MODELS
        + f"""
claws:
  a:
    model: echo
    talks_to: [b]
    tools: ["loud.*"]
    schedules:
      - {schedule}
  b: {{model: echo}}
{extra}"""
    )


@asynccontextmanager
async def host_at(
    tmp_path: Path, body: str, clock: FakeClock, store: Store | None = None
) -> AsyncIterator[tuple[Host, Schedule]]:
    """A host with one schedule; `store` (a new `MemoryStore` unless given) outlives it."""
    servers = {"loud": tool_server("loud", shout)}
    async with hosting(tmp_path, body, clock=clock, store=store, servers=servers) as host:
        [schedule] = await host.store.schedules("a")
        yield host, schedule


async def move(host: Host, clock: FakeClock, to: float) -> None:
    """Set the clock to a moment something is due and wait until the scheduler has handled it."""
    handled = host.scheduler.fired
    clock.set(to)
    with anyio.fail_after(10):
        await handled.wait()


async def fires_done(host: Host, schedule_id: int) -> bool:
    fires = await host.store.fires(schedule_id)
    return bool(fires) and all(f.outcome != "running" for f in fires)


async def slots(host: Host, schedule: Schedule) -> list[float]:
    return sorted(f.slot for f in await host.store.fires(schedule.id, limit=1000))


async def next_fire(host: Host) -> float:
    [schedule] = await host.store.schedules("a")
    assert schedule.next_fire is not None
    return schedule.next_fire


async def test_every_fires_each_slot_once_counted_from_when_it_was_added(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    async with host_at(
        tmp_path, manifest("{name: tick, every: 1m, send: {to: b, content: tick}}"), clock
    ) as (
        host,
        schedule,
    ):
        assert schedule.next_fire == T0 + 60
        for minute in (1, 2, 3):
            await move(host, clock, T0 + 60 * minute)
            clock.set(T0 + 60 * minute + 30)  # later in the same slot: nothing more
        assert await slots(host, schedule) == [T0 + 60, T0 + 120, T0 + 180]
        assert [f.outcome for f in await host.store.fires(schedule.id)] == ["ok", "ok", "ok"]
        assert await next_fire(host) == T0 + 240

        async def three_handled() -> bool:
            return len(await host.store.history("b", "a", 100)) == 6

        await until(host, three_handled)
        assert [e.content for e in await host.store.history("b", "a", 100)][:2] == ["tick", "echo: tick"]


@pytest.mark.parametrize(
    ("start", "local_times"),
    [
        # Lisbon falls back on 2026-10-25 (02:00 WEST -> 01:00 WET): 01:30 happens twice, fires once.
        (
            datetime(2026, 10, 23, 12, tzinfo=UTC),
            ["10-24 01:30 WEST", "10-25 01:30 WEST", "10-26 01:30 WET", "10-27 01:30 WET"],
        ),
        # Lisbon springs forward on 2026-03-29 (01:00 WET -> 02:00 WEST): 01:30 never happens, it
        # fires right after the change.
        (
            datetime(2026, 3, 27, 12, tzinfo=UTC),
            ["03-28 01:30 WET", "03-29 02:00 WEST", "03-30 01:30 WEST", "03-31 01:30 WEST"],
        ),
    ],
)
async def test_cron_in_a_timezone_fires_once_a_day_across_a_dst_change(
    tmp_path: Path, start: datetime, local_times: list[str]
) -> None:
    clock = FakeClock(start.timestamp())
    body = manifest("{name: daily, cron: '30 1 * * *', timezone: Europe/Lisbon, send: {to: b, content: hi}}")
    async with host_at(tmp_path, body, clock) as (host, schedule):
        for _ in local_times:
            await move(host, clock, await next_fire(host))
        lisbon = ZoneInfo("Europe/Lisbon")
        fired = [
            datetime.fromtimestamp(s, lisbon).strftime("%m-%d %H:%M %Z") for s in await slots(host, schedule)
        ]
        assert fired == local_times


async def test_at_fires_once_and_never_again_after_a_restart(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    at = datetime.fromtimestamp(T0 + 90, UTC).isoformat()
    body = manifest(f"{{name: once, at: '{at}', send: {{to: b, content: hi}}}}")
    store = MemoryStore(clock.now)
    async with host_at(tmp_path, body, clock, store) as (host, schedule):
        await move(host, clock, T0 + 90)
        assert await slots(host, schedule) == [T0 + 90]
        [stored] = await host.store.schedules("a")
        assert stored.next_fire is None
    clock.set(T0 + 3600)
    async with host_at(tmp_path, body, clock, store) as (host, schedule):
        assert await slots(host, schedule) == [T0 + 90]


@pytest.mark.parametrize(
    ("misfire", "fired_after_downtime"),
    [("latest", [10]), ("all", list(range(1, 11))), ("skip", [])],
)
async def test_misfire_policy_decides_what_a_downtime_of_ten_slots_fires(
    tmp_path: Path, misfire: str, fired_after_downtime: list[int], caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock(T0)
    body = manifest(f"{{name: tick, every: 1m, misfire: {misfire}, send: {{to: b, content: tick}}}}")
    store = MemoryStore(clock.now)
    async with host_at(tmp_path, body, clock, store) as (host, schedule):
        await move(host, clock, T0 + 60)
    clock.set(T0 + 60 + 10 * 60 + 30)  # down for slots 1..10, back half-way to slot 11
    slept = len(clock.deadlines)
    async with host_at(tmp_path, body, clock, store) as (host, schedule):
        expected = [T0 + 60 + 60 * k for k in [0, *fired_after_downtime]]
        assert await slots(host, schedule) == expected
        assert await next_fire(host) == T0 + 60 + 11 * 60
        assert await clock.deadline(slept) == T0 + 60 + 11 * 60  # asleep until then
    missed = 10 - len(fired_after_downtime)
    assert (f"{missed} missed slots not fired (misfire: {misfire})" in caplog.text) == (missed > 0)


async def test_a_changed_manifest_schedule_is_updated_and_a_removed_one_deleted(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    store = MemoryStore(clock.now)
    tick = "{name: tick, every: 1m, send: {to: b, content: tick}}"
    async with host_at(tmp_path, manifest(tick), clock, store) as (host, first):
        pass
    clock.set(T0 + 10)
    async with host_at(tmp_path, manifest(tick.replace("1m", "1h")), clock, store) as (host, changed):
        assert (changed.id, changed.spec, changed.next_fire) == (first.id, {"every": 3600.0}, T0 + 3600)
    body = manifest("{name: other, every: 1h, prompt: hello}")
    async with host_at(tmp_path, body, clock, store) as (host, _):
        assert [s.name for s in await host.store.schedules()] == ["other"]


async def test_a_prompt_fire_runs_the_claw_and_records_the_run(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    async with host_at(tmp_path, manifest("{name: hello, every: 1m, prompt: good morning}"), clock) as (
        host,
        schedule,
    ):
        await move(host, clock, T0 + 60)
        await until(host, lambda: fires_done(host, schedule.id))
        [fire] = await host.store.fires(schedule.id)
        run = await host.store.get_run(fire.run_id or 0)
        assert run is not None
        assert (fire.outcome, run.trigger, run.thread, run.reply) == (
            "ok",
            "schedule",
            "schedule:hello",
            "echo: good morning",
        )


async def test_a_call_fire_calls_the_tool_without_a_model(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    body = manifest("{name: yell, every: 1m, call: {tool: loud.shout, arguments: {word: hey}}}")
    async with host_at(tmp_path, body, clock) as (host, schedule):
        await move(host, clock, T0 + 60)
        await until(host, lambda: fires_done(host, schedule.id))
        [fire] = await host.store.fires(schedule.id)
        assert (fire.outcome, fire.run_id) == ("ok", None)
    async with host.store:  # the audit is written off the call path: all of it by the host's stop
        [call] = await host.store.tool_calls("a")
        assert (call.tool, call.outcome) == ("loud.shout", "ok")


async def test_a_failed_scheduled_run_shows_in_status_and_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock(T0)
    async with host_at(tmp_path, manifest("{name: doomed, every: 1m, prompt: fail now}"), clock) as (
        host,
        schedule,
    ):
        await move(host, clock, T0 + 60)
        await until(host, lambda: fires_done(host, schedule.id))
        [shown] = (await host.claws.status("a"))["schedules"]
        assert shown["last_fire"]["outcome"] == "failed"
        assert "no rule" in shown["last_fire"]["error"]
        assert "Claw 'a': schedule 'doomed' failed" in caplog.text


async def test_a_claw_schedules_its_own_work_which_survives_a_restart(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    at = datetime.fromtimestamp(T0 + 300, UTC).isoformat()
    body = manifest("{name: tick, every: 1d, send: {to: b, content: tick}}")
    store = MemoryStore(clock.now)
    async with hosting(tmp_path, body, clock=clock, store=store) as host:
        run = await host.runtime.run("a", f"remind me at {at}")
        assert run.reply and "schedule 'reminder' saved" in run.reply
    clock.set(T0 + 300)
    async with hosting(tmp_path, body, clock=clock, store=store) as host:
        [reminder] = [s for s in await host.store.schedules("a") if s.name == "reminder"]
        await until(host, lambda: fires_done(host, reminder.id))
        [fire] = await host.store.fires(reminder.id)
        fired = await host.store.get_run(fire.run_id or 0)
        assert fired is not None
        assert (reminder.source, fire.slot, fire.outcome, fired.reply) == (
            "runtime",
            T0 + 300,
            "ok",
            "echo: ding",
        )


async def test_a_fire_the_store_cannot_take_is_fired_once_it_can(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    long = "x" * 300_000  # the fire's message needs new pages in the database
    disk = SqliteStore(tmp_path / "state.db", clock=clock.now)
    async with host_at(tmp_path, manifest(f"{{name: tick, every: 1h, prompt: '{long}'}}"), clock, disk) as (
        host,
        tick,
    ):
        await disk_full(host, True)
        assert tick.next_fire is not None
        slept = len(clock.deadlines)
        with logged("cannot fire now") as stuck:
            await move(host, clock, tick.next_fire)
            with anyio.fail_after(10):
                await stuck.wait()
        assert await slots(host, tick) == []  # not fired, not lost, and the host goes on
        await disk_full(host, False)
        assert await clock.deadline(slept) == tick.next_fire + 1  # tried again each second
        await move(host, clock, tick.next_fire + 1)
        assert await slots(host, tick) == [tick.next_fire]


async def test_a_skip_schedule_fires_a_slot_it_is_late_for_by_less_than_a_second_and_no_more(
    tmp_path: Path,
) -> None:
    clock = FakeClock(T0)
    body = manifest("{name: tick, every: 1m, misfire: skip, send: {to: b, content: tick}}")
    async with host_at(tmp_path, body, clock) as (host, schedule):
        await move(host, clock, T0 + 61)  # a loaded machine wakes a little late: within a second
        assert await slots(host, schedule) == [T0 + 60]
        await move(host, clock, T0 + 121.5)  # too late for this slot: skipped
        assert await slots(host, schedule) == [T0 + 60]
        assert await next_fire(host) == T0 + 180


NO_SCHEDULES = (
    MODELS
    + "claws:\n  a: {model: echo, talks_to: [b]}\n  b: {model: echo}\n  c: {model: echo}\n"
    + "  d: {model: echo, talks_to: ['*']}\n"
)


async def test_a_schedule_made_at_run_time_on_a_host_without_schedules_fires_when_due(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    async with hosting(tmp_path, NO_SCHEDULES, clock=clock) as host:
        at = datetime.fromtimestamp(T0 + 3600, UTC).isoformat()
        schedule = await host.service.schedule(
            "a", {"name": "later", "at": at, "send": {"to": "b", "content": "hi"}}
        )
        await move(host, clock, T0 + 3600)  # the scheduler, asleep with nothing to do, noticed it
        assert await slots(host, schedule) == [T0 + 3600]


async def test_an_unscheduled_schedule_never_fires(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    async with hosting(tmp_path, NO_SCHEDULES, clock=clock) as host:
        gone = await host.service.schedule(
            "a", {"name": "gone", "every": "1m", "send": {"to": "b", "content": "x"}}
        )
        kept = await host.service.schedule(
            "a", {"name": "kept", "every": "2m", "send": {"to": "b", "content": "y"}}
        )
        await host.service.unschedule("a", gone.id)
        await move(host, clock, T0 + 120)
        assert await slots(host, gone) == [] and await slots(host, kept) == [T0 + 120]
        assert [s.name for s in await host.store.schedules("a")] == ["kept"]


async def test_a_schedule_made_at_run_time_is_checked_as_a_manifest_one_is(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    async with hosting(tmp_path, NO_SCHEDULES, clock=clock) as host:
        send = {"name": "s", "every": "1m", "send": {"to": "c", "content": "x"}}
        with pytest.raises(UserError, match=r"Claw 'a' may not send to 'c' \(talks_to: \['b'\]\)"):
            await host.service.schedule("a", send)
        call = {"name": "s", "every": "1m", "call": {"tool": "loud.shout"}}
        with pytest.raises(UserError, match=r"Claw 'a' may not call 'loud.shout'"):
            await host.service.schedule("a", call)
        with pytest.raises(UserError, match="bad schedule: "):
            await host.service.schedule("a", {"name": "s", "every": "often", "prompt": "x"})
        assert await host.store.schedules() == []


async def test_the_system_clock_sleeps_until_a_deadline_and_not_for_one_past() -> None:
    clock = SystemClock()
    assert abs(clock.now() - time.time()) < 1
    with anyio.fail_after(0.5):  # a deadline in the past: no sleep at all
        await clock.sleep_until(clock.now() - 60)
    deadline = clock.now() + 0.05
    await clock.sleep_until(deadline)
    assert time.time() >= deadline - 0.001  # asyncio may wake a timer a clock tick early


async def test_claw_schedule_refuses_an_argument_it_does_not_know(tmp_path: Path) -> None:
    async with hosting(tmp_path, NO_SCHEDULES, clock=FakeClock(T0)) as host:
        run = await host.runtime.run("a", "schedule oddly")
        assert await host.store.schedules() == []
    assert run.reply is not None and run.reply.startswith("claw__schedule: invalid arguments: ")
    assert run.reply.endswith("Additional properties are not allowed ('colour' was unexpected)")


async def test_start_up_says_what_it_added_and_what_it_keeps_but_cannot_fire(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="clawmcp")
    clock = FakeClock(T0)
    store = MemoryStore(clock.now)
    async with host_at(
        tmp_path, manifest("{name: tick, every: 1m, send: {to: b, content: tick}}"), clock, store
    ):
        pass
    assert "1 schedules added" in caplog.text
    caplog.clear()
    async with hosting(tmp_path, NO_SCHEDULES, clock=clock, store=store) as host:  # tick removed, c added
        await host.service.schedule("c", {"name": "mine", "every": "1h", "prompt": "p"})
    assert "schedule 'tick' of Claw 'a' removed (no longer in the manifest)" in caplog.text
    caplog.clear()
    async with hosting(tmp_path, MODELS + "claws: {a: {model: echo}}\n", clock=clock, store=store):
        pass
    assert "schedule 'mine' of Claw 'c' is kept but not fired: no such Claw" in caplog.text
    assert "schedules added" not in caplog.text and "removed" not in caplog.text


async def test_a_schedule_replaced_at_run_time_fires_on_its_new_timing_only(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    async with hosting(tmp_path, NO_SCHEDULES, clock=clock) as host:
        send = {"send": {"to": "b", "content": "x"}}
        minutely = await host.service.schedule("a", {"name": "m", "every": "1m", **send})
        await host.service.schedule("a", {"name": "r", "every": "90s", **send})
        replaced = await host.service.schedule("a", {"name": "r", "every": "2h", **send})
        await move(host, clock, T0 + 60)
        await move(host, clock, T0 + 120)  # past the old timing's slot (T0 + 90)
        await move(host, clock, T0 + 7200)
        assert await slots(host, replaced) == [T0 + 7200]
        assert (await slots(host, minutely))[:2] == [T0 + 60, T0 + 120]


async def test_a_skip_schedule_every_second_fires_only_the_slot_it_is_on_time_for(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    body = manifest("{name: tick, every: 1s, misfire: skip, send: {to: b, content: tick}}")
    async with host_at(tmp_path, body, clock) as (host, schedule):
        await move(host, clock, T0 + 2)  # slot 1 is a second late, slot 2 on time
        assert await slots(host, schedule) == [T0 + 2]


async def test_misfire_all_gives_each_slot_its_own_run(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    body = manifest("{name: hello, every: 1m, misfire: all, prompt: hi}")
    store = MemoryStore(clock.now)
    async with host_at(tmp_path, body, clock, store):
        pass
    clock.set(T0 + 3 * 60 + 30)  # down for three slots
    async with host_at(tmp_path, body, clock, store) as (host, schedule):
        await until(host, lambda: fires_done(host, schedule.id))
        fires = await host.store.fires(schedule.id)
        assert sorted((f.slot, f.outcome) for f in fires) == [(T0 + 60 * k, "ok") for k in (1, 2, 3)]
        assert len(await host.store.runs("a")) == 3


async def test_a_fire_is_an_event_saying_what_it_does_and_how_late_it_is(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    async with host_at(tmp_path, manifest("{name: tick, every: 1m, send: {to: b, content: x}}"), clock) as (
        host,
        _,
    ):
        with host.events.subscribe() as live:
            await move(host, clock, T0 + 60.5)
            await host.events.flush()
            fire = next(
                e
                for e in [live.receive_nowait() for _ in range(live.statistics().current_buffer_used)]
                if e.kind == "fire"
            )
    assert (fire.claw, fire.data["schedule"], fire.data["action"]) == ("a", "tick", "send")
    assert fire.data["slot"] == T0 + 60 and fire.data["lateness"] == pytest.approx(0.5)


async def test_a_run_time_schedule_needs_a_claw_and_a_recipient_that_exist(tmp_path: Path) -> None:
    async with hosting(tmp_path, NO_SCHEDULES, clock=FakeClock(T0)) as host:
        with pytest.raises(UserError, match="no Claw 'nobody'"):
            await host.service.schedule("nobody", {"name": "s", "every": "1m", "prompt": "x"})
        with pytest.raises(UserError, match="no Claw 'nobody'"):
            await host.service.schedule(
                "d", {"name": "s", "every": "1m", "send": {"to": "nobody", "content": "x"}}
            )
        assert await host.store.schedules() == []


async def test_a_run_time_schedule_with_a_new_action_only_keeps_its_place(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    async with hosting(tmp_path, NO_SCHEDULES, clock=clock) as host:
        await host.service.schedule("a", {"name": "other", "every": "1m", "prompt": "x"})
        clock.set(T0 + 30)
        first = await host.service.schedule("a", {"name": "r", "every": "1h", "prompt": "x"})
        clock.set(T0 + 100)
        again = await host.service.schedule("a", {"name": "r", "every": "1h", "prompt": "y"})
    assert (again.id, again.created_at, again.next_fire) == (first.id, T0 + 30, T0 + 30 + 3600)


async def test_the_scheduler_sleeps_until_the_next_slot(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    async with host_at(tmp_path, manifest("{name: tick, every: 1h, send: {to: b, content: x}}"), clock) as (
        host,
        _,
    ):
        assert await clock.deadline(0) == T0 + 3600
        await move(host, clock, T0 + 3600)
        assert await clock.deadline(1) == T0 + 7200


async def test_a_call_fire_of_a_tool_the_servers_do_not_offer_fails_saying_so(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    body = manifest("{name: yell, every: 1m, call: {tool: loud.whisper}}")
    async with host_at(tmp_path, body, clock) as (host, schedule):
        await move(host, clock, T0 + 60)
        await until(host, lambda: fires_done(host, schedule.id))
        [fire] = await host.store.fires(schedule.id)
    assert (fire.outcome, fire.error) == ("failed", "tool 'loud.whisper' is not available to Claw 'a' now")


async def test_a_fire_whose_run_removes_its_own_schedule_ends_quietly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock(T0)
    async with hosting(tmp_path, NO_SCHEDULES, clock=clock) as host:
        doomed = await host.service.schedule(
            "a", {"name": "doomed", "every": "1m", "prompt": "drop schedule one"}
        )
        await host.service.schedule("a", {"name": "other", "every": "1h", "prompt": "x"})
        assert doomed.id == 1
        await move(host, clock, T0 + 60)

        async def handled() -> bool:
            return await host.store.depth("a") == 0 and bool(await host.store.runs("a"))

        await until(host, handled)
        [run] = await host.store.runs("a")
        assert [s.name for s in await host.store.schedules("a")] == ["other"]
    assert run.reply == "schedule 1 removed"
    assert "was not recorded" not in caplog.text


async def test_unschedule_refuses_what_is_not_that_claws_schedule(tmp_path: Path) -> None:
    async with hosting(tmp_path, NO_SCHEDULES, clock=FakeClock(T0)) as host:
        mine = await host.service.schedule("b", {"name": "mine", "every": "1h", "prompt": "x"})
        with pytest.raises(UserError, match=f"Claw 'a' has no schedule {mine.id}"):
            await host.service.unschedule("a", mine.id)
        with pytest.raises(UserError, match="no Claw 'nobody'"):
            await host.service.unschedule("nobody", mine.id)
        assert [s.id for s in await host.store.schedules()] == [mine.id]


async def test_schedules_shows_each_with_its_next_fire_and_its_last(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    async with hosting(tmp_path, NO_SCHEDULES, clock=clock) as host:
        at = datetime.fromtimestamp(T0 + 60, UTC).isoformat()
        await host.service.schedule("d", {"name": "once", "at": at, "send": {"to": "c", "content": "x"}})
        await host.service.schedule("d", {"name": "far", "every": "1h", "prompt": "x"})
        await move(host, clock, T0 + 60)
        shown = {s["name"]: s for s in await host.service.schedules("d")}
        with pytest.raises(UserError, match="no Claw 'nobody'"):
            await host.service.schedules("nobody")
    assert shown["once"]["next_fire"] is None
    assert shown["once"]["last_fire"] == {
        "slot": datetime.fromtimestamp(T0 + 60, UTC).isoformat(),
        "outcome": "ok",
        "error": None,
        "run_id": None,
    }
    assert shown["far"]["next_fire"] == datetime.fromtimestamp(T0 + 3600, UTC).isoformat()
    assert shown["far"]["last_fire"] is None


async def test_a_next_fire_out_of_range_is_shown_as_such(tmp_path: Path) -> None:
    store = MemoryStore()
    async with store:  # as an older clawmcp could have stored it
        await store.put_schedule(
            "c",
            "odd",
            spec={"every": 60.0},
            action={"prompt": "x"},
            misfire="latest",
            source="runtime",
            next_fire=1e20,
        )
    async with hosting(tmp_path, NO_SCHEDULES, clock=FakeClock(T0), store=store) as host:
        [shown] = await host.service.schedules("c")
    assert shown["next_fire"] == "out of range (1e+20)"

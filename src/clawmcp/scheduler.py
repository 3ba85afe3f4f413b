"""Durable schedules: when each one fires, and each slot fired exactly once.

The slots of a schedule: `every` counts whole intervals from when the schedule was first stored;
`cron` follows the expression in its timezone (UTC by default), with cronsim's handling of daylight
saving time (a time skipped by the change runs right after it, a repeated time runs once); `at` is a
single slot.

The store keeps each schedule's next unfired slot. When the clock passes it the scheduler fires,
in one transaction: the (schedule, slot) fire is recorded once, the action's message is queued,
and the next slot is stored. A crash therefore never fires a slot twice or loses one. Slots that
passed while the host was down follow the schedule's misfire policy: `latest` fires only the last
one, `all` fires each (the last `MAX_CATCH_UP`) in order, `skip` fires none. A slot is on time, not
missed, within `GRACE` seconds.

A `prompt` or `call` fire is a message in the Claw's own mailbox (kind `fire`), so it is handled
like any message: in order, retried after a crash. A `send` fire is the message to the other Claw.
"""

from __future__ import annotations

import dataclasses
import heapq
import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo

import anyio
from anyio.abc import TaskStatus
from cronsim import CronSim
from pydantic import ValidationError

from clawmcp.errors import LeaseLost, StoreError, StoreUnavailable, UserError
from clawmcp.mailbox import Mailboxes
from clawmcp.manifest import Manifest, model
from clawmcp.manifest.check import tool_allowed
from clawmcp.store import FireOutcome, Outgoing, Schedule, ScheduleStore

__all__ = [
    "GRACE",
    "MAX_CATCH_UP",
    "RETRY",
    "SCHEDULE_SCHEMA",
    "Clock",
    "FireBody",
    "Scheduler",
    "SystemClock",
    "describe",
    "due_slots",
    "first_slot",
    "next_slot",
]

log = logging.getLogger("clawmcp")

RETRY = 1.0
"""Seconds before a fire the store could not take (a full disk) is tried again."""
GRACE = 1.0
MAX_CATCH_UP = 100


class Clock(Protocol):
    """Wall-clock time in seconds since the epoch, and a way to wait for it."""

    def now(self) -> float: ...

    async def sleep_until(self, deadline: float) -> None: ...


class SystemClock:
    def now(self) -> float:
        return time.time()

    async def sleep_until(self, deadline: float) -> None:
        await anyio.sleep(max(0.0, deadline - time.time()))


# -- slots: pure functions of a schedule ------------------------------------------------------


def _cron(schedule: Schedule, start: float, *, reverse: bool = False) -> CronSim:
    zone = ZoneInfo(schedule.spec.get("timezone") or "UTC")
    return CronSim(schedule.spec["cron"], datetime.fromtimestamp(start, zone), reverse=reverse)


def _at(schedule: Schedule) -> float:
    at = datetime.fromisoformat(schedule.spec["at"])
    if at.tzinfo is None:
        at = at.replace(tzinfo=ZoneInfo(schedule.spec.get("timezone") or "UTC"))
    return at.timestamp()


def next_slot(schedule: Schedule, after: float) -> float | None:
    """The schedule's first slot strictly after `after`; None when there is none left."""
    spec = schedule.spec
    if "every" in spec:
        interval = float(spec["every"])
        return schedule.created_at + (int((after - schedule.created_at) // interval) + 1) * interval
    if "cron" in spec:
        return next(_cron(schedule, after)).timestamp()
    at = _at(schedule)
    return at if at > after else None


def first_slot(schedule: Schedule, now: float) -> float | None:
    """The slot a new (or changed) schedule waits for: the next one, or an `at` even if past."""
    return _at(schedule) if "at" in schedule.spec else next_slot(schedule, now)


def due_slots(schedule: Schedule, start: float, now: float) -> tuple[list[float], int]:
    """The slots from `start` through `now`, oldest first: the last `MAX_CATCH_UP` of them and how
    many there were (a lower bound for cron when there were more)."""
    if start > now:
        return [], 0
    spec = schedule.spec
    if "every" in spec:  # slots are always computed as created_at + k * interval, never summed
        interval = float(spec["every"])
        first = round((start - schedule.created_at) / interval)
        last = int((now - schedule.created_at) // interval)
        kept = range(max(first, last - MAX_CATCH_UP + 1), last + 1)
        return [schedule.created_at + k * interval for k in kept], last - first + 1
    if "cron" in spec:
        found: list[float] = []
        for moment in _cron(schedule, now + 1e-6, reverse=True):  # newest first
            slot = moment.timestamp()
            if slot < start or len(found) > MAX_CATCH_UP:
                break
            found.append(slot)
        return found[:MAX_CATCH_UP][::-1], len(found)
    return [start], 1


# -- the scheduler ----------------------------------------------------------------------------


def _object(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


SCHEDULE_SCHEMA = _object(
    {
        "name": {"type": "string", "description": "unique among this Claw's schedules"},
        "every": {"type": "string", "description": "a duration such as 30s, 15m, 1h"},
        "cron": {"type": "string", "description": "five fields, e.g. '0 9 * * mon-fri'"},
        "timezone": {"type": "string", "description": "IANA zone for cron and at"},
        "at": {"type": "string", "description": "one shot, e.g. 2026-12-01T09:00:00Z"},
        "prompt": {"type": "string", "description": "what the Claw is asked when it fires"},
        "send": _object({"to": {"type": "string"}, "content": {"type": "string"}}, ["to", "content"]),
        "call": _object({"tool": {"type": "string"}, "arguments": {"type": "object"}}, ["tool"]),
        "misfire": {"enum": ["latest", "all", "skip"], "default": "latest"},
    },
    ["name"],
)
"""The arguments of the `schedule` tool and of `claw__schedule`."""


@dataclasses.dataclass(frozen=True)
class FireBody:
    """What the message of a `prompt` or `call` fire carries to the Claw's consumer: a
    schedule's (its id and slot: the fire to record), or a trigger's (`trigger`: webhook or
    resource; `schedule` is then the trigger's name, and there is no fire to record)."""

    schedule: str
    id: int | None = None
    slot: float | None = None
    prompt: str | None = None
    call: dict[str, Any] | None = None
    trigger: Literal["webhook", "resource"] | None = None

    def dumps(self) -> str:
        return json.dumps({k: v for k, v in dataclasses.asdict(self).items() if v is not None})

    @classmethod
    def loads(cls, text: str) -> FireBody:
        return cls(**json.loads(text))


def _parts(schedule: model.Schedule) -> tuple[dict[str, Any], dict[str, Any]]:
    data = schedule.model_dump(mode="json", exclude_none=True)
    spec: dict[str, Any] = {k: data[k] for k in ("every", "cron", "at", "timezone") if k in data}
    action: dict[str, Any] = {k: data[k] for k in ("prompt", "call", "send") if k in data}
    return spec, action


class Scheduler:
    """Fires the schedules of a manifest's Claws. Start with `tg.start(scheduler.run)`."""

    def __init__(
        self,
        manifest: Manifest,
        store: ScheduleStore,
        mailboxes: Mailboxes,
        *,
        clock: Clock | None = None,
        owns: Callable[[str], bool] = lambda claw: True,
    ) -> None:
        """`owns`: whether this host runs a Claw (and so fires its schedules); see `track`."""
        self.manifest, self.store, self.mailboxes, self.owns = manifest, store, mailboxes, owns
        self.clock = clock or SystemClock()
        self.fired = anyio.Event()
        """Set (and replaced) each time a due schedule has been handled: fired or skipped."""
        self._current: dict[int, Schedule] = {}
        self._heap: list[tuple[float, int]] = []
        self._grace: dict[int, float] = {}  # schedule id -> a wider grace for its next fire
        self._sleep: anyio.CancelScope | None = None

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        await self.load()
        deadline = await self.tick()  # what was missed while the host was down, before it is ready
        task_status.started()
        while True:
            with anyio.CancelScope() as self._sleep:
                if deadline is None:
                    await anyio.sleep_forever()
                else:
                    await self.clock.sleep_until(deadline)
            deadline = await self.tick()

    async def load(self) -> None:
        """Match the manifest's schedules by name with the stored ones (added, changed, removed),
        then take every schedule of a known Claw in hand."""
        stored = {(s.claw, s.name): s for s in await self.store.schedules()}
        now = self.clock.now()
        puts: list[Schedule] = []
        added = 0
        for claw, config in self.manifest.claws.items():
            for declared in config.schedules:
                spec, action = _parts(declared)
                old = stored.pop((claw, declared.name), None)
                if old and (old.source, old.spec, old.action, old.misfire) == (
                    "manifest",
                    spec,
                    action,
                    declared.misfire,
                ):
                    continue
                puts.append(
                    self._draft(claw, declared.name, spec, action, declared.misfire, "manifest", old, now)
                )
                if old:
                    log.info("schedule '%s' of Claw '%s' changed", declared.name, claw)
                added += old is None
        await self.store.put_schedules(puts)
        for (claw, name), old in stored.items():
            if old.source == "manifest":
                await self.store.delete_schedule(old.id)
                log.info("schedule '%s' of Claw '%s' removed (no longer in the manifest)", name, claw)
            elif claw not in self.manifest.claws:
                log.warning("schedule '%s' of Claw '%s' is kept but not fired: no such Claw", name, claw)
        if added:
            log.info("%d schedules added", added)
        for schedule in await self.store.schedules():
            if schedule.claw in self.manifest.claws and self.owns(schedule.claw):
                self._track(schedule)

    async def reload(self, *, leaving: list[str]) -> None:
        """The manifest was reloaded: match its schedules again (`load`), take in hand what the
        store has now for the Claws this host runs, except those `leaving` (removed, finishing
        their runs), and fire what is due."""
        self._current.clear()  # a schedule removed or replaced must not fire from memory
        await self.load()
        self.untrack(leaving)
        await self.tick()
        self._poke()

    async def track(self, claws: list[str], *, grace: float = 0.0) -> None:
        """This host now runs these Claws: take their schedules in hand as the store has them.
        Their next fire may count a slot up to `grace` seconds late as on time (the time their
        previous host may have been gone), so that `misfire: skip` does not drop it."""
        wanted = set(claws)
        self.untrack(claws)
        for schedule in await self.store.schedules():
            if schedule.claw in wanted:
                self._track(schedule)
                self._grace[schedule.id] = grace
        await self.tick()  # what is due fires now (at start: before the host is ready)
        self._poke()

    def untrack(self, claws: list[str]) -> None:
        """This host no longer runs these Claws: it fires none of their schedules."""
        gone = set(claws)
        for schedule_id in [i for i, s in self._current.items() if s.claw in gone]:
            del self._current[schedule_id]

    @staticmethod
    def _draft(
        claw: str,
        name: str,
        spec: dict[str, Any],
        action: dict[str, Any],
        misfire: str,
        source: Any,
        old: Schedule | None,
        now: float,
    ) -> Schedule:
        """The schedule as it is to be stored: a new timing starts from now, a new action alone
        keeps the schedule's place."""
        draft = Schedule(0, claw, name, spec, action, misfire, source, None, old.created_at if old else now)
        next_fire = old.next_fire if old and old.spec == spec else first_slot(draft, now)
        return dataclasses.replace(draft, next_fire=next_fire)

    def _track(self, schedule: Schedule) -> None:
        self._current[schedule.id] = schedule
        if schedule.next_fire is not None:
            heapq.heappush(self._heap, (schedule.next_fire, schedule.id))

    def _poke(self) -> None:
        if self._sleep is not None:
            self._sleep.cancel()

    async def tick(self) -> float | None:
        """Fire what is due now; return when the next slot is due."""
        now = self.clock.now()
        due: dict[int, Schedule] = {}  # by id: a schedule tracked again is in the heap twice
        while self._heap and self._heap[0][0] <= now:
            slot, schedule_id = heapq.heappop(self._heap)
            if self._valid(slot, schedule_id):
                due[schedule_id] = self._current[schedule_id]
        if due:
            async with anyio.create_task_group() as tg:  # concurrent fires share the store's commits
                for schedule in due.values():
                    tg.start_soon(self._fire_due, schedule, now)
        while self._heap and not self._valid(*self._heap[0]):
            heapq.heappop(self._heap)
        if not self._heap:
            return None
        due_next = self._heap[0][0]
        return due_next if due_next > now else now + RETRY  # still due: the store could not take it

    def _valid(self, slot: float, schedule_id: int) -> bool:
        schedule = self._current.get(schedule_id)
        return schedule is not None and schedule.next_fire == slot

    async def _fire_due(self, schedule: Schedule, now: float) -> None:
        assert schedule.next_fire is not None
        slots, count = due_slots(schedule, schedule.next_fire, now)
        on_time = [s for s in slots[-1:] if now - s <= max(GRACE, self._grace.pop(schedule.id, 0.0))]
        chosen = {"latest": slots[-1:], "all": slots, "skip": on_time}[schedule.misfire]
        if count > len(chosen):
            log.warning(
                "schedule '%s' of Claw '%s': %d missed slots not fired (misfire: %s)",
                schedule.name,
                schedule.claw,
                count - len(chosen),
                schedule.misfire,
            )
        after: float | None = next_slot(schedule, now)
        for i, slot in enumerate(chosen):
            next_fire = chosen[i + 1] if i + 1 < len(chosen) else after
            message, outcome = self._message(schedule, slot)
            try:
                claimed = await self.store.claim_fire(
                    schedule.id,
                    slot,
                    next_fire=next_fire,
                    message=message,
                    outcome=outcome,
                    merge=schedule.misfire != "all",  # `all` asked for a run per slot
                )
            except StoreUnavailable as e:  # the disk is full: this slot is fired once it is not
                log.warning(
                    "schedule '%s' of Claw '%s': cannot fire now (%s); trying again in %gs",
                    schedule.name,
                    schedule.claw,
                    e,
                    RETRY,
                )
                chosen, after = [], slot  # this slot stays next; nothing is stored meanwhile
                break
            except LeaseLost:
                return  # another host runs the Claw now, and fires this slot
            except StoreError:
                if schedule.id in self._current:
                    raise
                return  # unscheduled meanwhile
            if not claimed:
                continue
            action = next(a for a in ("prompt", "call", "send") if a in schedule.action)
            lateness = self.clock.now() - slot
            self.mailboxes.events.emit(
                "fire", schedule.claw, schedule=schedule.name, slot=slot, action=action, lateness=lateness
            )
            self.mailboxes.notify(message.mailbox)
        if not chosen and after != schedule.next_fire:
            await self.store.set_next_fire(schedule.id, after)
        if self._current.get(schedule.id) is schedule:  # not changed meanwhile
            self._track(dataclasses.replace(schedule, next_fire=after))
        fired, self.fired = self.fired, anyio.Event()
        fired.set()

    @staticmethod
    def _message(schedule: Schedule, slot: float) -> tuple[Outgoing, FireOutcome]:
        key = f"schedule:{schedule.id}:{slot}"
        if send := schedule.action.get("send"):
            # The message is the whole action: the fire is done once it is queued.
            to, content = send["to"], send["content"]
            return Outgoing(to, content, sender=schedule.claw, thread=schedule.claw, key=key), "ok"
        body = FireBody(schedule.name, schedule.id, slot, **schedule.action).dumps()
        thread = f"schedule:{schedule.name}"
        return Outgoing(schedule.claw, body, thread=thread, kind="fire", key=key), "running"

    # -- schedules made at run time ----------------------------------------------------------

    async def schedule(self, claw: str, fields: dict[str, Any]) -> Schedule:
        """Add or replace (by name) a schedule made at run time; checked as a manifest schedule is."""
        self.manifest.check_claw(claw)
        try:
            declared = model.Schedule.model_validate({k: v for k, v in fields.items() if v is not None})
        except ValidationError as e:
            problems = "; ".join(
                f"{'.'.join(map(str, p['loc']))}: {p['msg']}" if p["loc"] else p["msg"] for p in e.errors()
            )
            raise UserError(f"bad schedule: {problems}") from None
        config = self.manifest.claws[claw]
        if declared.call and not tool_allowed(config.tools, declared.call.tool):
            raise UserError(f"Claw '{claw}' may not call '{declared.call.tool}' (its tools: {config.tools})")
        if declared.send and not any(fnmatchcase(declared.send.to, p) for p in config.talks_to):
            raise UserError(
                f"Claw '{claw}' may not send to '{declared.send.to}' (talks_to: {config.talks_to})"
            )
        if declared.send:
            self.manifest.check_claw(declared.send.to)
        spec, action = _parts(declared)
        old = next((s for s in await self.store.schedules(claw) if s.name == declared.name), None)
        draft = self._draft(
            claw, declared.name, spec, action, declared.misfire, "runtime", old, self.clock.now()
        )
        schedule = await self.store.put_schedule(
            claw,
            declared.name,
            spec=spec,
            action=action,
            misfire=declared.misfire,
            source="runtime",
            next_fire=draft.next_fire,
            created_at=draft.created_at,
        )
        if self.owns(claw):  # else the store tells the host that runs the Claw
            self._track(schedule)
            self._poke()
        return schedule

    async def unschedule(self, claw: str, schedule_id: int) -> None:
        self.manifest.check_claw(claw)
        if not any(s.id == schedule_id for s in await self.store.schedules(claw)):
            raise UserError(f"Claw '{claw}' has no schedule {schedule_id}")
        await self.store.delete_schedule(schedule_id)
        self._current.pop(schedule_id, None)

    async def schedules_of(self, claw: str) -> list[dict[str, Any]]:
        self.manifest.check_claw(claw)
        return await describe(self.store, claw)


async def describe(store: ScheduleStore, claw: str) -> list[dict[str, Any]]:
    """A Claw's schedules as `schedules` and `status` show them: with the next fire and the
    outcome of the last one."""
    shown = []
    for s in await store.schedules(claw):
        fires = await store.fires(s.id, limit=1)
        last = fires[0] if fires else None
        shown.append(
            {
                **{k: getattr(s, k) for k in ("id", "name", "spec", "action", "misfire", "source")},
                "next_fire": _iso(s.next_fire),
                "last_fire": None
                if last is None
                else {
                    "slot": _iso(last.slot),
                    "outcome": last.outcome,
                    "error": last.error,
                    "run_id": last.run_id,
                },
            }
        )
    return shown


def _iso(moment: float | None) -> str | None:
    try:
        return None if moment is None else datetime.fromtimestamp(moment, UTC).isoformat()
    except (OverflowError, OSError, ValueError):  # stored by an older clawmcp, which let it through
        return f"out of range ({moment:g})"

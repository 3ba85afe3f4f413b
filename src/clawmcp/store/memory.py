"""`MemoryStore`: the state store in plain Python objects, for fast tests.

It behaves like `SqliteStore` in everything a caller can observe: the same ordering, the same
errors for unknown records, JSON values copied in and out. Nothing survives the process, but the
data survives `close()` and a second `open()`, so a test can stand in for a restart.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
import time
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from anyio.lowlevel import checkpoint

from clawmcp.errors import StoreError
from clawmcp.store import (
    CANCELLED,
    EVENTS_KEPT,
    SUMMARY,
    Approval,
    ApprovalKind,
    ApprovalState,
    Clock,
    Event,
    EventKind,
    Fire,
    FireOutcome,
    HistoryEntry,
    Message,
    MessageKind,
    Note,
    Outgoing,
    Pin,
    Run,
    RunState,
    RunTrigger,
    Schedule,
    Step,
    StepKind,
    Store,
    ToolCall,
    ToolOutcome,
)

__all__ = ["MemoryStore"]

# What SQLite's unicode61 tokenizer calls a word: letters and digits; `_` separates words.
_WORD = re.compile(r"[^\W_]+")


def _words(text: str) -> list[str]:
    return _WORD.findall(text.casefold())


def _check(records: Mapping[int, object], record_id: int | None, what: str) -> None:
    """Refuse a reference to a missing record, as the database's foreign keys do."""
    if record_id is not None and record_id not in records:
        raise StoreError(f"no {what} {record_id}")


def _json(value: Any) -> Any:
    """A copy of `value` as it would come back from the database."""
    return json.loads(json.dumps(value))


class MemoryStore(Store):
    """A `Store` in dicts and lists."""

    def __init__(self, clock: Clock = time.time) -> None:
        self._clock = clock
        self._open = False
        self._ids: defaultdict[str, itertools.count[int]] = defaultdict(lambda: itertools.count(1))
        self._messages: dict[int, Message] = {}
        self._runs: dict[int, Run] = {}
        self._steps: dict[int, list[Step]] = {}
        self._history: list[HistoryEntry] = []
        self._notes: dict[int, Note] = {}
        self._schedules: dict[int, Schedule] = {}
        self._fires: dict[tuple[int, float], Fire] = {}
        self._tool_calls: list[ToolCall] = []
        self._events: list[Event] = []
        self._approvals: dict[int, Approval] = {}
        self._pins: dict[tuple[str, str], Pin] = {}
        self._secrets: dict[str, bytes] = {}

    async def open(self) -> None:
        if self._open:
            raise StoreError("the memory store is already open")
        self._open = True

    async def close(self) -> None:
        self._open = False

    async def _enter(self) -> None:
        """Yield to the event loop like real I/O would, then check that the store is open."""
        await checkpoint()
        if not self._open:
            raise StoreError("the memory store is closed")

    # -- mailboxes and messages -------------------------------------------------------------

    async def enqueue(
        self,
        mailbox: str,
        content: str,
        *,
        sender: str | None = None,
        thread: str = "default",
        kind: MessageKind = "message",
        reply_to: int | None = None,
        key: str | None = None,
        chain: Sequence[str] = (),
    ) -> tuple[Message, bool]:
        await self._enter()
        if key is not None:
            for m in self._messages.values():
                if m.mailbox == mailbox and m.key == key:
                    return m, False
        _check(self._messages, reply_to, "message")
        now = self._clock()
        message = Message(
            id=next(self._ids["messages"]),
            mailbox=mailbox,
            content=content,
            sender=sender,
            thread=thread,
            kind=kind,
            reply_to=reply_to,
            key=key,
            state="queued",
            attempts=0,
            available_at=now,
            last_error=None,
            chain=tuple(chain),
            created_at=now,
        )
        self._messages[message.id] = message
        return message, True

    async def enqueue_claimed(self, mailbox: str, content: str, *, thread: str = "default") -> Message:
        message, _ = await self.enqueue(mailbox, content, thread=thread, kind="ask")
        self._messages[message.id] = message = dataclasses.replace(message, state="running", attempts=1)
        return message

    async def cancel(self, message_id: int) -> tuple[Message, Run | None]:
        await self._enter()
        m = self._messages.get(message_id)
        if m is None or m.state not in ("queued", "running"):
            raise StoreError(
                f"message {message_id} is {m.state} already" if m else f"no message {message_id}"
            )
        m = self._messages[m.id] = dataclasses.replace(m, state="cancelled")
        run = next((r for r in reversed(self._runs.values()) if r.message_id == message_id), None)
        if run is not None and run.state == "waiting":
            now = self._clock()
            run = self._runs[run.id] = dataclasses.replace(
                run, state="cancelled", error=CANCELLED, ended_at=now
            )
            for a in self._approvals.values():
                if a.run_id == run.id and a.state == "pending":
                    self._approvals[a.id] = dataclasses.replace(
                        a, state="withdrawn", note="the message was cancelled", decided_at=now
                    )
        return m, run

    async def claim(self, mailbox: str) -> Message | None:
        await self._enter()
        now = self._clock()
        busy = {m.thread for m in self._messages.values() if m.mailbox == mailbox and m.state == "running"}
        for m in self._messages.values():  # dicts keep insertion order, which is id order
            if (m.mailbox, m.state) == (mailbox, "queued") and m.available_at <= now and m.thread not in busy:
                claimed = dataclasses.replace(m, state="running", attempts=m.attempts + 1)
                self._messages[m.id] = claimed
                return claimed
        return None

    async def ack(self, message_id: int) -> None:
        await self._enter()
        _check(self._messages, message_id, "message")
        m = self._messages[message_id]
        if m.state != "cancelled":
            self._messages[m.id] = dataclasses.replace(m, state="done")

    async def nack(self, message_id: int, error: str, *, retry_at: float | None) -> None:
        await self._enter()
        _check(self._messages, message_id, "message")
        m = self._messages[message_id]
        if m.state == "cancelled":
            return
        if retry_at is None:
            self._messages[m.id] = dataclasses.replace(m, state="dead", last_error=error)
        else:
            self._messages[m.id] = dataclasses.replace(
                m, state="queued", available_at=retry_at, last_error=error
            )

    async def get_message(self, message_id: int) -> Message | None:
        await self._enter()
        return self._messages.get(message_id)

    async def depth(self, mailbox: str) -> int:
        await self._enter()
        return sum(m.mailbox == mailbox and m.state in ("queued", "running") for m in self._messages.values())

    async def dead_letters(self, mailbox: str | None = None) -> list[Message]:
        await self._enter()
        return [m for m in self._messages.values() if mailbox in (None, m.mailbox) and m.state == "dead"]

    async def settle_dead(self, message_id: int, action: Literal["retry", "discard"]) -> Message:
        await self._enter()
        m = self._messages.get(message_id)
        if m is None or m.state != "dead":
            raise StoreError(f"message {message_id} is not a dead letter")
        if action == "retry":
            m = dataclasses.replace(m, state="queued", attempts=0, available_at=self._clock())
        else:
            m = dataclasses.replace(m, state="discarded")
        self._messages[message_id] = m
        return m

    async def mailboxes(self) -> dict[str, tuple[int, int]]:
        await self._enter()
        found: dict[str, tuple[int, int]] = {}
        for m in self._messages.values():
            if m.state != "done":
                depth, dead = found.get(m.mailbox, (0, 0))
                found[m.mailbox] = (depth + (m.state in ("queued", "running")), dead + (m.state == "dead"))
        return found

    async def requeue_running(self, mailbox: str | None = None) -> int:
        await self._enter()
        running = [
            m for m in self._messages.values() if m.state == "running" and mailbox in (None, m.mailbox)
        ]
        for m in running:
            self._messages[m.id] = dataclasses.replace(m, state="queued")
        return len(running)

    # -- runs and their steps ---------------------------------------------------------------

    async def start_run(
        self,
        claw: str,
        thread: str,
        trigger: RunTrigger,
        input: str,
        *,
        message_id: int | None = None,
        parent_run_id: int | None = None,
        history: int = 0,
    ) -> tuple[Run, list[HistoryEntry]]:
        await self._enter()
        context = await self.history(claw, thread, history)
        _check(self._messages, message_id, "message")
        _check(self._runs, parent_run_id, "run")
        run = Run(
            id=next(self._ids["runs"]),
            claw=claw,
            thread=thread,
            trigger=trigger,
            input=input,
            message_id=message_id,
            parent_run_id=parent_run_id,
            state="running",
            reply=None,
            error=None,
            input_tokens=None,
            output_tokens=None,
            started_at=self._clock(),
            ended_at=None,
        )
        self._runs[run.id] = run
        self._steps[run.id] = []
        return run, context

    async def add_step(self, run_id: int, kind: StepKind, data: Any) -> Step:
        await self._enter()
        _check(self._runs, run_id, "run")
        steps = self._steps[run_id]
        steps.append(Step(run_id, len(steps), kind, _json(data), self._clock()))
        return dataclasses.replace(steps[-1], data=_json(data))

    async def finish_run(
        self,
        run_id: int,
        state: RunState,
        *,
        reply: str | None = None,
        error: str | None = None,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        step: tuple[StepKind, Any] | None = None,
        history: Sequence[tuple[str, Any]] = (),
        ack: bool = False,
    ) -> Run:
        await self._enter()
        _check(self._runs, run_id, "run")
        now = self._clock()
        run = self._runs[run_id] = dataclasses.replace(
            self._runs[run_id],
            state=state,
            reply=reply,
            error=error,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            ended_at=now,
        )
        if step is not None:
            steps = self._steps[run_id]
            steps.append(Step(run_id, len(steps), step[0], _json(step[1]), now))
        for role, content in history:
            entry = HistoryEntry(
                next(self._ids["history"]), run.claw, run.thread, role, _json(content), run_id, now
            )
            self._history.append(entry)
        if ack and run.message_id is not None and self._messages[run.message_id].state == "running":
            self._messages[run.message_id] = dataclasses.replace(self._messages[run.message_id], state="done")
        return run

    async def get_run(self, run_id: int) -> Run | None:
        await self._enter()
        return self._runs.get(run_id)

    async def message_run(self, message_id: int) -> Run | None:
        await self._enter()
        return next((r for r in reversed(self._runs.values()) if r.message_id == message_id), None)

    async def steps(self, run_id: int) -> list[Step]:
        await self._enter()
        return [dataclasses.replace(s, data=_json(s.data)) for s in self._steps.get(run_id, [])]

    async def runs(self, claw: str | None = None, limit: int = 20) -> list[Run]:
        await self._enter()
        found = [r for r in reversed(self._runs.values()) if claw is None or r.claw == claw]
        return found[:limit]

    async def interrupt_running(self, claw: str | None = None) -> int:
        await self._enter()
        now = self._clock()
        running = [
            r
            for r in self._runs.values()
            if claw in (None, r.claw)
            and (r.state == "running" or (r.state == "waiting" and r.message_id is None))
        ]
        for r in running:
            self._runs[r.id] = dataclasses.replace(r, state="interrupted", ended_at=now)
            for a in self._approvals.values():
                if a.run_id == r.id and a.state == "pending":
                    note = "the run was interrupted"
                    self._approvals[a.id] = dataclasses.replace(a, state="expired", note=note, decided_at=now)
        return len(running)

    async def tokens_used(self, claw: str, since: float) -> int:
        await self._enter()
        return sum(
            (r.input_tokens or 0) + (r.output_tokens or 0)
            for r in self._runs.values()
            if r.claw == claw and r.ended_at is not None and r.ended_at >= since
        )

    # -- pinned tools ---------------------------------------------------------------------------

    async def secret(self, name: str) -> bytes | None:
        await self._enter()
        return self._secrets.get(name)

    async def put_secret(self, name: str, value: bytes | None) -> None:
        await self._enter()
        if value is None:
            self._secrets.pop(name, None)
        else:
            self._secrets[name] = bytes(value)

    async def pins(self, server: str) -> dict[str, Pin]:
        await self._enter()
        return {
            p.tool: dataclasses.replace(p, definition=_json(p.definition))
            for p in self._pins.values()
            if p.server == server
        }

    async def pin(self, server: str, definitions: dict[str, tuple[dict[str, Any], str]]) -> None:
        await self._enter()
        now = self._clock()
        for tool, (definition, digest) in definitions.items():
            self._pins[(server, tool)] = Pin(server, tool, _json(definition), digest, now)

    # -- approvals ------------------------------------------------------------------------------

    async def request_approval(
        self,
        run_id: int,
        *,
        kind: ApprovalKind,
        tool: str,
        call_id: str,
        arguments: Any,
        expires_at: float,
        tokens: tuple[int | None, int | None] = (None, None),
    ) -> Approval:
        await self._enter()
        run = self._runs.get(run_id)
        if run is None or run.state not in ("running", "waiting"):
            raise StoreError(f"run {run_id} is not running")
        if kind == "approval":
            self._runs[run_id] = dataclasses.replace(
                run, state="waiting", input_tokens=tokens[0], output_tokens=tokens[1]
            )
        approval = Approval(
            id=next(self._ids["approvals"]),
            claw=run.claw,
            run_id=run_id,
            message_id=run.message_id,
            kind=kind,
            tool=tool,
            call_id=call_id,
            arguments=_json(arguments),
            state="pending",
            note=None,
            content=None,
            created_at=self._clock(),
            expires_at=expires_at,
            decided_at=None,
        )
        self._approvals[approval.id] = approval
        return approval

    async def decide(
        self, approval_id: int, state: ApprovalState, *, note: str | None = None, content: Any = None
    ) -> Approval:
        await self._enter()
        a = self._approvals.get(approval_id)
        if a is None:
            raise StoreError(f"approval {approval_id} does not exist")
        if a.state != "pending":
            raise StoreError(f"approval {approval_id} is {a.state} already")
        now = self._clock()
        a = self._approvals[a.id] = dataclasses.replace(
            a, state=state, note=note, content=_json(content), decided_at=now
        )
        others = any(
            x.run_id == a.run_id and x.state == "pending" and x.kind == "approval"
            for x in self._approvals.values()
        )
        m = self._messages.get(a.message_id) if a.message_id is not None else None
        if a.kind == "approval" and not others and m is not None and m.state == "running":
            self._messages[m.id] = dataclasses.replace(
                m, state="queued", attempts=max(m.attempts - 1, 1), available_at=now
            )
        return a

    async def approvals(
        self, claw: str | None = None, *, run_id: int | None = None, pending: bool = False, limit: int = 100
    ) -> list[Approval]:
        await self._enter()
        found = [
            a
            for a in self._approvals.values()
            if claw in (None, a.claw) and run_id in (None, a.run_id) and (not pending or a.state == "pending")
        ]
        return found[-limit:]

    async def get_approval(self, approval_id: int) -> Approval | None:
        await self._enter()
        return self._approvals.get(approval_id)

    async def resume_run(self, run_id: int, *, history: int = 0) -> tuple[Run, list[HistoryEntry]]:
        await self._enter()
        run = self._runs.get(run_id)
        if run is None or run.state != "waiting":
            raise StoreError(f"run {run_id} is not waiting")
        run = self._runs[run_id] = dataclasses.replace(run, state="running")
        return run, await self.history(run.claw, run.thread, history)

    # -- thread history -----------------------------------------------------------------------

    async def history(self, claw: str, thread: str, limit: int) -> list[HistoryEntry]:
        await self._enter()
        entries = [h for h in self._history if h.claw == claw and h.thread == thread]
        last = entries[-limit:] if limit > 0 else []
        return [dataclasses.replace(h, content=_json(h.content)) for h in last]

    async def context(self, claw: str, thread: str, limit: int) -> list[HistoryEntry]:
        await self._enter()
        entries = [h for h in self._history if h.claw == claw and h.thread == thread]
        summary = next((h for h in reversed(entries) if h.role == SUMMARY), None)
        through = summary.content["through"] if summary else 0
        after = [h for h in entries if h.id > through and h.role != SUMMARY]
        last = ([summary] if summary else []) + (after[-limit:] if limit > 0 else [])
        return [dataclasses.replace(h, content=_json(h.content)) for h in last]

    async def add_summary(
        self, claw: str, thread: str, text: str, *, through: int, run_id: int | None = None
    ) -> HistoryEntry:
        await self._enter()
        _check(self._runs, run_id, "run")
        content = {"text": text, "through": through}
        entry_id = next(self._ids["history"])
        entry = HistoryEntry(entry_id, claw, thread, SUMMARY, content, run_id, self._clock())
        self._history.append(entry)
        return dataclasses.replace(entry, content=_json(content))

    async def threads(self, claw: str) -> list[str]:
        await self._enter()
        return sorted({h.thread for h in self._history if h.claw == claw})

    # -- memory notes -----------------------------------------------------------------------

    async def remember(self, claw: str, text: str, key: str | None = None) -> Note:
        await self._enter()
        old = next(
            (n for n in self._notes.values() if key is not None and (n.claw, n.key) == (claw, key)), None
        )
        note = Note(old.id if old else next(self._ids["notes"]), claw, key, text, self._clock())
        self._notes[note.id] = note
        return note

    async def recall(self, claw: str, query: str, limit: int = 5) -> list[Note]:
        await self._enter()
        wanted = set(_words(query))
        scored: list[tuple[float, int, Note]] = []
        for note in self._notes.values():
            counts = Counter(_words(note.text))
            if note.claw == claw and wanted and wanted <= counts.keys():
                # Like bm25, in miniature: more of the query words in a shorter note ranks higher.
                score = sum(counts[w] for w in wanted) / counts.total()
                scored.append((-score, -note.id, note))
        return [note for *_, note in sorted(scored)[:limit]]

    async def notes(self, claw: str, limit: int = 100) -> list[Note]:
        await self._enter()
        mine = [n for n in self._notes.values() if n.claw == claw]
        return sorted(mine, key=lambda n: (n.at, n.id), reverse=True)[:limit]

    # -- schedules and fires ----------------------------------------------------------------

    async def put_schedule(
        self,
        claw: str,
        name: str,
        *,
        spec: dict[str, Any],
        action: dict[str, Any],
        misfire: str,
        source: Literal["manifest", "runtime"],
        next_fire: float | None,
        created_at: float | None = None,
    ) -> Schedule:
        await self._enter()
        old = next((s for s in self._schedules.values() if (s.claw, s.name) == (claw, name)), None)
        schedule = Schedule(
            id=old.id if old else next(self._ids["schedules"]),
            claw=claw,
            name=name,
            spec=_json(spec),
            action=_json(action),
            misfire=misfire,
            source=source,
            next_fire=next_fire,
            created_at=old.created_at if old else self._clock() if created_at is None else created_at,
        )
        self._schedules[schedule.id] = schedule
        return dataclasses.replace(schedule, spec=_json(spec), action=_json(action))

    async def delete_schedule(self, schedule_id: int) -> bool:
        await self._enter()
        for key in [k for k in self._fires if k[0] == schedule_id]:
            del self._fires[key]
        return self._schedules.pop(schedule_id, None) is not None

    async def schedules(self, claw: str | None = None) -> list[Schedule]:
        await self._enter()
        found = [s for s in self._schedules.values() if claw is None or s.claw == claw]
        found.sort(key=lambda s: (s.claw, s.name))
        return [dataclasses.replace(s, spec=_json(s.spec), action=_json(s.action)) for s in found]

    async def set_next_fire(self, schedule_id: int, next_fire: float | None) -> None:
        await self._enter()
        _check(self._schedules, schedule_id, "schedule")
        self._schedules[schedule_id] = dataclasses.replace(self._schedules[schedule_id], next_fire=next_fire)

    async def claim_fire(
        self,
        schedule_id: int,
        slot: float,
        *,
        next_fire: float | None,
        message: Outgoing | None = None,
        outcome: FireOutcome = "running",
        merge: bool = False,
    ) -> bool:
        await self._enter()
        _check(self._schedules, schedule_id, "schedule")
        self._schedules[schedule_id] = dataclasses.replace(self._schedules[schedule_id], next_fire=next_fire)
        if (schedule_id, slot) in self._fires:
            return False
        prefix = f"schedule:{schedule_id}:"
        if (
            merge
            and message
            and any(
                m.state == "queued" and m.kind == "fire" and (m.key or "").startswith(prefix)
                for m in self._messages.values()
                if m.mailbox == message.mailbox
            )
        ):
            message, outcome = None, "merged"
        self._fires[schedule_id, slot] = Fire(schedule_id, slot, outcome, None, None, self._clock())
        if message:
            await self.enqueue(
                message.mailbox,
                message.content,
                sender=message.sender,
                thread=message.thread,
                kind=message.kind,
                key=message.key,
            )
        return True

    async def finish_fire(
        self,
        schedule_id: int,
        slot: float,
        outcome: FireOutcome,
        *,
        run_id: int | None = None,
        error: str | None = None,
        ack: int | None = None,
    ) -> None:
        await self._enter()
        fire = self._fires.get((schedule_id, slot))
        if fire is None:
            raise StoreError(f"no fire of schedule {schedule_id} at slot {slot}")
        _check(self._runs, run_id, "run")
        _check(self._messages, ack, "message")
        self._fires[schedule_id, slot] = dataclasses.replace(
            fire, outcome=outcome, run_id=run_id, error=error
        )
        if ack is not None:
            self._messages[ack] = dataclasses.replace(self._messages[ack], state="done")

    async def fires(self, schedule_id: int, limit: int = 20) -> list[Fire]:
        await self._enter()
        found = [f for f in self._fires.values() if f.schedule_id == schedule_id]
        return sorted(found, key=lambda f: f.slot, reverse=True)[:limit]

    # -- tool-call audit ----------------------------------------------------------------------

    async def record_tool_call(
        self,
        claw: str,
        tool: str,
        *,
        args_bytes: int,
        duration: float,
        outcome: ToolOutcome,
        error: str | None = None,
        run_id: int | None = None,
    ) -> None:
        await self._enter()
        _check(self._runs, run_id, "run")
        call = ToolCall(
            id=next(self._ids["tool_calls"]),
            claw=claw,
            tool=tool,
            run_id=run_id,
            args_bytes=args_bytes,
            duration=duration,
            outcome=outcome,
            error=error,
            at=self._clock(),
        )
        self._tool_calls.append(call)

    async def tool_calls(self, claw: str | None = None, limit: int = 50) -> list[ToolCall]:
        await self._enter()
        found = [c for c in reversed(self._tool_calls) if claw is None or c.claw == claw]
        return found[:limit]

    async def add_events(
        self, events: Sequence[tuple[float, EventKind, str | None, dict[str, Any]]]
    ) -> list[Event]:
        await self._enter()
        added = [
            Event(next(self._ids["events"]), at, kind, claw, _json(data)) for at, kind, claw, data in events
        ]
        self._events = [*self._events, *added][-EVENTS_KEPT:]
        return added

    async def events(self, claw: str | None = None, *, after: int = 0, limit: int = 100) -> list[Event]:
        await self._enter()
        found = [e for e in self._events if e.id > after and claw in (None, e.claw)]
        return found[-limit:] if limit else []

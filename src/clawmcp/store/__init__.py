"""The state store: everything a host must not lose.

One interface, `Store`, made of one part per concept (mailboxes, runs, history and memory,
schedules and fires, logs), so that each user names the part it needs; two implementations:
`SqliteStore` (the real one, `data_dir/state.db`) and `MemoryStore` (the same behaviour in plain
Python, for fast tests). One contract suite (tests/store/test_contract.py) holds them to the same
behaviour. Every write method returns only once its change is committed, so a caller may
acknowledge it to the outside world.

Times are seconds since the epoch (floats) from the store's injected clock.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Self

__all__ = [
    "CANCELLED",
    "EVENTS_KEPT",
    "SUMMARY",
    "Approval",
    "ApprovalKind",
    "ApprovalState",
    "ApprovalStore",
    "Clock",
    "Event",
    "EventKind",
    "Fire",
    "FireOutcome",
    "HistoryEntry",
    "HistoryStore",
    "LogStore",
    "MailboxStore",
    "Message",
    "MessageKind",
    "MessageState",
    "Note",
    "Outgoing",
    "Pin",
    "PinStore",
    "Run",
    "RunState",
    "RunStore",
    "RunTrigger",
    "Schedule",
    "ScheduleStore",
    "SecretStore",
    "Step",
    "StepKind",
    "Store",
    "ToolCall",
    "ToolOutcome",
]

Clock = Callable[[], float]
MessageKind = Literal["message", "ask", "reply", "topic", "fire"]
MessageState = Literal["queued", "running", "done", "dead", "discarded", "cancelled"]
RunTrigger = Literal["message", "ask", "schedule", "spawn", "webhook", "resource"]
RunState = Literal["running", "waiting", "done", "failed", "limit", "interrupted", "cancelled"]
StepKind = Literal["model", "tool_call", "tool_result", "approval"]
FireOutcome = Literal["running", "ok", "failed", "skipped", "merged"]
ToolOutcome = Literal["ok", "error", "refused"]
EventKind = Literal["run", "model", "tool", "message", "delivery", "fire", "server", "approval", "reload"]
ApprovalKind = Literal["approval", "question"]
ApprovalState = Literal["pending", "approved", "denied", "expired", "withdrawn"]

SUMMARY = "summary"
"""The role of a history entry that stands for the entries of its thread up to one (`add_summary`)."""

CANCELLED = "cancelled by a person"
"""The error of a run whose message a person cancelled."""

EVENTS_KEPT = 100_000
"""The activity log keeps this many of the newest events; older ones are dropped as new ones come."""


@dataclass(frozen=True)
class Message:
    id: int
    mailbox: str
    content: str
    sender: str | None
    thread: str
    kind: MessageKind
    reply_to: int | None
    key: str | None
    state: MessageState
    attempts: int
    available_at: float
    last_error: str | None
    created_at: float
    chain: tuple[str, ...] = ()
    """The Claws waiting on it through `claw__ask`, the asker last."""


@dataclass(frozen=True)
class Run:
    id: int
    claw: str
    thread: str
    trigger: RunTrigger
    input: str
    message_id: int | None
    parent_run_id: int | None
    state: RunState
    reply: str | None
    error: str | None
    input_tokens: int | None
    output_tokens: int | None
    started_at: float
    ended_at: float | None


@dataclass(frozen=True)
class Step:
    run_id: int
    index: int
    kind: StepKind
    data: Any
    at: float


@dataclass(frozen=True)
class HistoryEntry:
    """One entry of a thread's history: a run's input (`user`) or reply (`assistant`), or a
    `summary` (content `{"text": ..., "through": ID}`) of the entries up to id `through`."""

    id: int
    claw: str
    thread: str
    role: str
    content: Any
    run_id: int | None
    at: float


@dataclass(frozen=True)
class Note:
    id: int
    claw: str
    key: str | None
    text: str
    at: float


@dataclass(frozen=True)
class Schedule:
    id: int
    claw: str
    name: str
    spec: dict[str, Any]
    action: dict[str, Any]
    misfire: str
    source: Literal["manifest", "runtime"]
    next_fire: float | None
    created_at: float


@dataclass(frozen=True)
class Outgoing:
    """A message to enqueue together with another write (see `Store.claim_fire`)."""

    mailbox: str
    content: str
    sender: str | None = None
    thread: str = "default"
    kind: MessageKind = "message"
    key: str | None = None


@dataclass(frozen=True)
class Fire:
    schedule_id: int
    slot: float
    outcome: FireOutcome
    run_id: int | None
    error: str | None
    fired_at: float


@dataclass(frozen=True)
class ToolCall:
    id: int
    claw: str
    tool: str
    run_id: int | None
    args_bytes: int
    duration: float
    outcome: ToolOutcome
    error: str | None
    at: float


@dataclass(frozen=True)
class Approval:
    """A tool call waiting for a person (`approval`), or a tool server's question to one
    (`question`: `arguments` holds its message and requested schema, `content` the answer)."""

    id: int
    claw: str
    run_id: int
    message_id: int | None
    kind: ApprovalKind
    tool: str
    """SERVER.TOOL"""
    call_id: str
    """The model's id of the tool call."""
    arguments: Any
    state: ApprovalState
    note: str | None
    content: Any
    created_at: float
    expires_at: float
    decided_at: float | None


@dataclass(frozen=True)
class Pin:
    """A tool server's tool as it was when a person trusted it (the first listing, or an accept)."""

    server: str
    tool: str
    definition: dict[str, Any]
    """name, title, description, inputSchema, outputSchema, annotations"""
    hash: str
    pinned_at: float


@dataclass(frozen=True)
class Event:
    """One line of the activity log (`clawmcp logs`, the dashboard); `data` depends on `kind`."""

    id: int
    at: float
    kind: EventKind
    claw: str | None
    data: dict[str, Any]


class MailboxStore(abc.ABC):
    """Mailboxes and their messages."""

    @abc.abstractmethod
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
        """Commit a message to `mailbox`. Returns it and whether it is new: a second enqueue with
        the same `key` to the same mailbox returns the first message and False. `chain`: the
        Claws waiting on it through `claw__ask`."""

    @abc.abstractmethod
    async def enqueue_claimed(self, mailbox: str, content: str, *, thread: str = "default") -> Message:
        """Commit a message of kind `ask` already claimed: running, with one attempt, for the
        caller to run now (a direct ask, which keeps its reply with it like any message)."""

    @abc.abstractmethod
    async def cancel(self, message_id: int) -> tuple[Message, Run | None]:
        """A person's cancel: a queued or running message becomes `cancelled`; when its run
        waits for a person, in the same transaction the run ends `cancelled` and its pending
        approvals are `withdrawn`. Returns the message and its latest run (a run still running
        is left to its host to stop). `StoreError` when the message is not queued or running."""

    @abc.abstractmethod
    async def claim(self, mailbox: str) -> Message | None:
        """The oldest queued message of `mailbox` that is available now, marked running with one
        more attempt; None when there is none. A thread with a message running (one whose run
        waits for a person) gives none: nothing overtakes that message in its thread."""

    @abc.abstractmethod
    async def ack(self, message_id: int) -> None:
        """Mark a running message done (a cancelled one stays cancelled)."""

    @abc.abstractmethod
    async def nack(self, message_id: int, error: str, *, retry_at: float | None) -> None:
        """A run for the running message failed: queue it again from `retry_at`, or, when None,
        move it to the dead letters. The error is kept either way. A cancelled one stays so."""

    @abc.abstractmethod
    async def get_message(self, message_id: int) -> Message | None: ...

    @abc.abstractmethod
    async def depth(self, mailbox: str) -> int:
        """Messages of the mailbox not yet done or dead."""

    @abc.abstractmethod
    async def dead_letters(self, mailbox: str | None = None) -> list[Message]:
        """The dead letters of a mailbox (or of all), oldest first."""

    @abc.abstractmethod
    async def settle_dead(self, message_id: int, action: Literal["retry", "discard"]) -> Message:
        """A person's decision on a dead letter: `retry` queues it again now with its attempts
        counted from zero (its last error kept), `discard` marks it discarded. `StoreError` when
        it is not a dead letter."""

    @abc.abstractmethod
    async def mailboxes(self) -> dict[str, tuple[int, int]]:
        """For every mailbox with messages: its depth and its number of dead letters."""

    @abc.abstractmethod
    async def requeue_running(self, mailbox: str | None = None) -> int:
        """After a crash (of the host, or of one mailbox's consumer): messages left running are
        queued again (same id). Returns how many."""


class RunStore(abc.ABC):
    """Runs and their steps."""

    @abc.abstractmethod
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
        """Start a run; returns it and, read as it starts, the last `history` entries of its
        thread (oldest first): the context it begins with."""

    @abc.abstractmethod
    async def add_step(self, run_id: int, kind: StepKind, data: Any) -> Step:
        """Append a step (any JSON value as `data`) to a run; steps are numbered from 0."""

    @abc.abstractmethod
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
        """In one transaction: add the run's last `step` (kind, data), append `history` (role,
        content) to the run's thread, record the run's outcome and, with `ack`, mark the run's
        message done (unless it was cancelled). Returns the finished run."""

    @abc.abstractmethod
    async def get_run(self, run_id: int) -> Run | None: ...

    @abc.abstractmethod
    async def message_run(self, message_id: int) -> Run | None:
        """The latest run started for a message, if any."""

    @abc.abstractmethod
    async def steps(self, run_id: int) -> list[Step]: ...

    @abc.abstractmethod
    async def runs(self, claw: str | None = None, limit: int = 20) -> list[Run]:
        """The most recent runs, newest first."""

    @abc.abstractmethod
    async def interrupt_running(self, claw: str | None = None) -> int:
        """After a crash (of the host, or of one Claw's worker): runs left running become
        interrupted, and so do runs left waiting that no message holds (a direct ask's, whose
        asker is gone), their pending approvals expired. Returns how many."""

    @abc.abstractmethod
    async def tokens_used(self, claw: str, since: float) -> int:
        """Input and output tokens of the Claw's runs that ended at or after `since`."""


class ApprovalStore(abc.ABC):
    """Tool calls and questions waiting for a person, and the runs that wait on them."""

    @abc.abstractmethod
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
        """In one transaction: commit a pending approval for a running (or already waiting) run
        and make the run `waiting`, with the tokens it has used so far (a `question` leaves the
        run as it is: its tool call is in flight). `StoreError` for a run that has ended."""

    @abc.abstractmethod
    async def decide(
        self, approval_id: int, state: ApprovalState, *, note: str | None = None, content: Any = None
    ) -> Approval:
        """Decide a pending approval (approved, denied or expired). In the same transaction,
        once its run waits on no other pending approval (of kind `approval`), the run's message,
        parked `running`, is queued again (its attempts not counted again), so its Claw goes on
        with the run.
        `StoreError` when there is no such approval or it is decided already."""

    @abc.abstractmethod
    async def approvals(
        self, claw: str | None = None, *, run_id: int | None = None, pending: bool = False, limit: int = 100
    ) -> list[Approval]:
        """Approvals (of a Claw, of a run, only pending ones), oldest first: the newest `limit`."""

    @abc.abstractmethod
    async def get_approval(self, approval_id: int) -> Approval | None: ...

    @abc.abstractmethod
    async def resume_run(self, run_id: int, *, history: int = 0) -> tuple[Run, list[HistoryEntry]]:
        """A waiting run goes on: running again; returns it and the last `history` entries of its
        thread, the context it began with (nothing else runs in the thread meanwhile).
        `StoreError` unless the run is waiting."""


class HistoryStore(abc.ABC):
    """A Claw's thread history and its memory notes."""

    @abc.abstractmethod
    async def history(self, claw: str, thread: str, limit: int) -> list[HistoryEntry]:
        """The last `limit` entries of the thread, oldest first."""

    @abc.abstractmethod
    async def context(self, claw: str, thread: str, limit: int) -> list[HistoryEntry]:
        """What a Claw that compacts its history begins a run with: the thread's latest summary
        entry (if it has one), then the last `limit` entries after those it stands for (other
        summaries left out), oldest first. Without a summary: the last `limit` entries."""

    @abc.abstractmethod
    async def add_summary(
        self, claw: str, thread: str, text: str, *, through: int, run_id: int | None = None
    ) -> HistoryEntry:
        """Append an entry of role `SUMMARY` to the thread, content `{"text": text, "through":
        through}`: it stands for the thread's entries up to id `through` (an earlier summary
        among them). Nothing is deleted: `history` still shows every entry."""

    @abc.abstractmethod
    async def threads(self, claw: str) -> list[str]:
        """The names of the Claw's threads that have history, sorted."""

    @abc.abstractmethod
    async def remember(self, claw: str, text: str, key: str | None = None) -> Note:
        """Store a note; a note with the same `key` for the same Claw is replaced."""

    @abc.abstractmethod
    async def recall(self, claw: str, query: str, limit: int = 5) -> list[Note]:
        """Notes of the Claw that contain every word of `query` (full text), best first."""

    @abc.abstractmethod
    async def notes(self, claw: str, limit: int = 100) -> list[Note]:
        """The Claw's most recent notes, newest first."""


class ScheduleStore(abc.ABC):
    """Schedules and their fires."""

    @abc.abstractmethod
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
        """Create the schedule, or replace the one with the same Claw and name (keeping its id and
        its created_at). `created_at` defaults to now."""

    async def put_schedules(self, schedules: Sequence[Schedule]) -> None:
        """`put_schedule` for each (by its Claw and name; its id is ignored), in one transaction
        where the store can."""
        for x in schedules:
            await self.put_schedule(
                x.claw,
                x.name,
                spec=x.spec,
                action=x.action,
                misfire=x.misfire,
                source=x.source,
                next_fire=x.next_fire,
                created_at=x.created_at,
            )

    @abc.abstractmethod
    async def delete_schedule(self, schedule_id: int) -> bool: ...

    @abc.abstractmethod
    async def schedules(self, claw: str | None = None) -> list[Schedule]: ...

    @abc.abstractmethod
    async def set_next_fire(self, schedule_id: int, next_fire: float | None) -> None: ...

    @abc.abstractmethod
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
        """In one transaction: record that the slot fires, queue its `message` and move the
        schedule's next fire on. False if the slot had already fired (each slot fires once): then
        only next_fire moves. With `merge`, while an earlier fire's message of the schedule is
        still queued, the slot is recorded as `merged` and queues nothing (a Claw that cannot keep
        up gets one run for them, not a pile)."""

    @abc.abstractmethod
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
        """Record a fire's outcome and, in the same transaction, mark the message `ack` done."""

    @abc.abstractmethod
    async def fires(self, schedule_id: int, limit: int = 20) -> list[Fire]:
        """The most recent fires of a schedule, newest first."""


class LogStore(abc.ABC):
    """The tool-call audit and the activity log."""

    @abc.abstractmethod
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
    ) -> None: ...

    @abc.abstractmethod
    async def tool_calls(self, claw: str | None = None, limit: int = 50) -> list[ToolCall]:
        """The most recent tool calls, newest first."""

    @abc.abstractmethod
    async def add_events(
        self, events: Sequence[tuple[float, EventKind, str | None, dict[str, Any]]]
    ) -> list[Event]:
        """Append events (time, kind, Claw, data) in one transaction and return them with their
        ids; only the newest `EVENTS_KEPT` are kept."""

    @abc.abstractmethod
    async def events(self, claw: str | None = None, *, after: int = 0, limit: int = 100) -> list[Event]:
        """The newest `limit` events with an id above `after` (of one Claw, or all), oldest first."""


class PinStore(abc.ABC):
    """The pinned definitions of the tool servers' tools."""

    @abc.abstractmethod
    async def pins(self, server: str) -> dict[str, Pin]:
        """The server's pinned tools, by name."""

    @abc.abstractmethod
    async def pin(self, server: str, definitions: dict[str, tuple[dict[str, Any], str]]) -> None:
        """Pin these tools of the server (name: definition and its hash), replacing their pins."""


class SecretStore(abc.ABC):
    """Secrets of the host's tool servers (OAuth tokens), stored as the host encrypted them."""

    @abc.abstractmethod
    async def secret(self, name: str) -> bytes | None: ...

    @abc.abstractmethod
    async def put_secret(self, name: str, value: bytes | None) -> None:
        """Keep `value` under `name` (None: forget it)."""


class Store(
    MailboxStore, RunStore, ApprovalStore, HistoryStore, ScheduleStore, LogStore, PinStore, SecretStore
):
    """What the host keeps, by concept. Use as an async context manager: `async with store: ...`."""

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @abc.abstractmethod
    async def open(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

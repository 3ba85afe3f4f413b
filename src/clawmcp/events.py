"""The activity log: runs, model turns, tool calls, messages, deliveries, schedule fires and tool
server changes, as they happen (`clawmcp logs`, the dashboard, the metrics).

The parts of a host `emit` events and go on: nobody waits for them. One task, `Events.run`,
writes what was emitted to the store, many events per commit, and then hands each stored event
(now with its id) to the listeners (the metrics) and the subscribers (dashboards and `logs -f`). A
subscriber more than `BUFFER` events behind is dropped, its stream closed, so a stalled reader
never holds up the host.

With several hosts on one store (`shared`), the log is everyone's: subscribers get every host's
events, read from the store in id order each time the store announces new ones (`heard`); the
listeners still get only this host's, so each host's metrics count what it did.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import anyio
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from clawmcp.errors import StoreError
from clawmcp.store import Event, EventKind, LogStore

__all__ = ["BUFFER", "WINDOW", "Events", "excerpt", "fired", "line"]

log = logging.getLogger("clawmcp")

BUFFER = 1000
"""Events a subscriber may fall behind before it is dropped."""
WINDOW = 0.05
"""Seconds the events of a busy moment wait to share a commit (so they cost the runs none)."""


def excerpt(text: str | None, size: int = 200) -> str | None:
    """The start of a text, for an event (the whole text stays in the run's steps)."""
    if text is None or len(text) <= size:
        return text
    return text[: size - 1] + "…"


class Events:
    """The host's activity log. Start it with `tg.start(events.run)`."""

    def __init__(
        self,
        store: LogStore,
        clock: Callable[[], float] = time.time,
        redact: Callable[[str], str] = lambda text: text,
    ) -> None:
        self.store, self.clock, self.redact = store, clock, redact
        """`redact` (`Manifest.redact`) hides in every text what came from a variable."""
        self._pending: list[tuple[float, EventKind, str | None, dict[str, Any]]] = []
        self._wake = anyio.Event()
        self._listeners: list[Callable[[Event], None]] = []
        self._subscribers: set[MemoryObjectSendStream[Event]] = set()
        self.shared = False
        """Whether other hosts append to the same log (see the module's docstring)."""
        self._cursor = 0  # shared: the last id handed to the subscribers (or announced)
        self._reading = anyio.Lock()

    def emit(self, kind: EventKind, claw: str | None, **data: Any) -> None:
        """Record that something happened now; it is stored and published soon after."""
        self._pending.append((self.clock(), kind, claw, _redacted(data, self.redact)))
        self._wake.set()

    def listen(self, listener: Callable[[Event], None]) -> None:
        """Call `listener` with every published event (it must not block)."""
        self._listeners.append(listener)

    @contextlib.contextmanager
    def subscribe(self) -> Iterator[MemoryObjectReceiveStream[Event]]:
        """The events published while the block runs; the stream ends if the reader falls behind."""
        send, receive = anyio.create_memory_object_stream[Event](BUFFER)
        self._subscribers.add(send)
        try:
            with receive:
                yield receive
        finally:
            self._subscribers.discard(send)
            send.close()

    def end_streams(self) -> None:
        """End every subscription now (the host is stopping): their readers see the stream end."""
        for send in self._subscribers:
            send.close()
        self._subscribers.clear()

    def publish(self, event: Event) -> None:
        """Hand a stored event to the listeners and subscribers (`run` does this for what is
        emitted here; a worker's events arrive already stored)."""
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:  # a fault of ours in a listener: the log goes on
                log.exception("event %d (%s) could not be handled", event.id, event.kind)
        if not self.shared:
            self._hand(event)

    async def heard(self, last: int | None = None) -> None:
        """Shared: the store has events up to id `last` (None: perhaps more than were announced).
        The subscribers get them, in id order."""
        if not self._subscribers:
            if last is None:
                newest = await self.store.events(limit=1)
                last = newest[-1].id if newest else 0
            self._cursor = max(self._cursor, last)
            return
        async with self._reading:  # one reader: each event handed on once
            while self._subscribers and (batch := await self.store.events(after=self._cursor, limit=BUFFER)):
                for event in batch:
                    self._hand(event)
                self._cursor = max(self._cursor, batch[-1].id)

    def _hand(self, event: Event) -> None:
        for send in list(self._subscribers):
            try:
                send.send_nowait(event)
            except (anyio.WouldBlock, anyio.BrokenResourceError):
                self._subscribers.discard(send)
                send.close()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            while True:
                await self._wake.wait()
                await anyio.sleep(WINDOW)
                await self.flush()
        finally:
            with anyio.CancelScope(shield=True):  # stopping: what happened is still logged
                await self.flush()

    async def flush(self) -> None:
        """Store and publish what was emitted so far."""
        self._wake = anyio.Event()
        batch, self._pending = self._pending, []
        if not batch:
            return
        try:
            stored = await self.store.add_events(batch)
        except StoreError as e:  # the log is not worth stopping the host for
            log.warning("%d events were not logged: %s", len(batch), e)
            return
        for event in stored:
            self.publish(event)


def _redacted(value: Any, redact: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list | tuple):
        return [_redacted(v, redact) for v in value]
    if isinstance(value, dict):
        return {k: _redacted(v, redact) for k, v in value.items()}
    return value


def line(event: Event) -> str:
    """One line of `clawmcp logs`: local time, Claw, what happened."""
    d = event.data
    when = datetime.fromtimestamp(event.at).isoformat(sep=" ", timespec="milliseconds")
    if event.kind == "run" and d["state"] == "running":
        text = f"run {d['run']} started ({d['trigger']}, thread {d['thread']}): {d['input']}"
    elif event.kind == "run" and d["state"] == "waiting":
        text = f"run {d['run']} waits for a person"
    elif event.kind == "run":
        outcome = d["reply"] if d["state"] == "done" else d["error"]
        text = f"run {d['run']} {d['state']} in {d['duration']:.3f} s: {outcome}"
    elif event.kind == "model":
        calls = f"calls {', '.join(d['calls'])}" if d["calls"] else "replies"
        by = f" (fallback model {d['model']})" if d.get("fallback") else ""
        text = f"run {d['run']} model turn {d['turn']}{by}: {calls}" + (f": {d['text']}" if d["text"] else "")
    elif event.kind == "tool":
        run = f", run {d['run']}" if d["run"] is not None else ""
        error = f": {d['error']}" if d["error"] else ""
        text = f"tool {d['tool']} {d['outcome']} ({d['duration'] * 1000:.1f} ms{run}){error}"
    elif event.kind == "message":
        sender = d["sender"] or "outside"
        text = f"{d['type']} {d['id']} from {sender} (thread {d['thread']}): {d['text']}"
    elif event.kind == "delivery":
        error = f": {d['error']}" if d["error"] else ""
        text = f"message {d['id']} {d['outcome']} after {d['attempts']} attempt(s){error}"
    elif event.kind == "approval" and d["state"] == "pending":
        text = f"approval {d['id']} requested (run {d['run']}): {d['tool']} {d['arguments']}"
    elif event.kind == "approval":
        note = f": {d['note']}" if d["note"] else ""
        text = f"approval {d['id']} {d['state']} (run {d['run']}, {d['tool']}){note}"
    elif event.kind == "fire" and d.get("outcome") == "failed":
        text = f"{fired(d)} failed: {d['error']}"
    elif event.kind == "fire" and d.get("trigger"):
        text = f"{fired(d)} fired ({d['action']}, message {d['message']})"
    elif event.kind == "fire":
        text = f"{fired(d)} fired ({d['action']}, {d['lateness'] * 1000:.1f} ms late)"
    elif event.kind == "reload":
        text = _reloaded(d)
    else:
        error = f": {d['error']}" if d.get("error") else ""
        text = f"tool server '{d['server']}' {d['state']}{error}"
    return f"{when}  {event.claw or '-'}  {' '.join(text.split())}"  # one line, whatever the texts hold


def _reloaded(d: dict[str, Any]) -> str:
    """A reload, as this host took it (`by`: the host that reloaded, when this one followed it)."""
    by = f" (as host '{d['by']}' did)" if d.get("by") else ""
    if d["outcome"] == "applied":
        return f"reload{by}: {d['summary']}"
    if d["outcome"] == "kept":
        return f"reload{by} not applied: this host's Claws differ from the store's"
    return f"reload{by} refused, nothing changed: {'; '.join(d['errors'])}"


def fired(d: dict[str, Any]) -> str:
    """What a `fire` event's data names: `schedule 'NAME'`, or its trigger: `webhook 'NAME'`."""
    return f"{d.get('trigger') or 'schedule'} '{d['schedule']}'"

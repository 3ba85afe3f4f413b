"""What the edges may do with a host: the one facade the MCP servers of the Claws and of the host,
the HTTP API and the dashboard use (`Host.service`). They see Claws, messages, runs, schedules and
tool servers through it, never the parts of the host behind it.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Literal

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream
from mcp.shared.dispatcher import ProgressFnT
from mcp_types import CallToolResult

from clawmcp.approvals import Approvals
from clawmcp.claw import Claws
from clawmcp.cluster import Alone, Cluster
from clawmcp.errors import StoreError, StoreUnavailable, UserError
from clawmcp.events import Events
from clawmcp.mailbox import Answer
from clawmcp.manifest import Manifest
from clawmcp.metrics import Metrics
from clawmcp.reload import Changes, Reloader
from clawmcp.runtime import OnStep, Runtime
from clawmcp.scheduler import Scheduler
from clawmcp.store import (
    CANCELLED,
    Approval,
    ApprovalState,
    Event,
    HistoryEntry,
    Message,
    Note,
    Outgoing,
    Run,
    Schedule,
    Step,
    Store,
)
from clawmcp.toolhub import HubTool, ServerState, ToolHub
from clawmcp.triggers import Triggers

__all__ = ["ENDED", "Service"]

ENDED = ("done", "failed", "dead", "cancelled", "discarded")
"""The states of a message (as `result` shows them) that do not change again by themselves."""


class Service:
    """Ask, tell, status, schedules, dead letters, tools, and what a host shows of itself."""

    def __init__(
        self,
        manifest: Manifest,
        store: Store,
        events: Events,
        metrics: Metrics,
        hub: ToolHub,
        runtime: Runtime,
        scheduler: Scheduler,
        claws: Claws,
        cluster: Alone | Cluster,
        approvals: Approvals,
        triggers: Triggers,
        readiness: Callable[[], dict[str, Any]],
        *,
        reloader: Reloader | None = None,
    ) -> None:
        self.manifest, self.readiness, self.triggers = manifest, readiness, triggers
        self._store, self._events, self._metrics, self._hub = store, events, metrics, hub
        self._runtime, self._scheduler, self._claws, self._cluster = runtime, scheduler, claws, cluster
        self._approvals, self._reloader = approvals, reloader

    # -- the manifests ---------------------------------------------------------------------------

    async def reload(self) -> Changes:
        """Read the manifests again and apply them (`clawmcp.reload`): what changed. Raises
        `ManifestError` (every problem) or `UserError`, and then nothing changed."""
        if self._reloader is None:
            raise UserError("this host cannot reload its manifests")
        return await self._reloader.reload()

    def on_reload(self, listener: Callable[[list[str], list[str]], None]) -> None:
        """Call `listener(changed, gone)` after each reload: the Claws whose definitions changed,
        and those removed (once they have stopped)."""
        if self._reloader is not None:
            self._reloader.listeners.append(listener)

    # -- a Claw's work ---------------------------------------------------------------------------

    async def ask(
        self,
        claw: str,
        message: str,
        *,
        thread: str = "default",
        on_step: OnStep | None = None,
        on_message: Callable[[int], Awaitable[None]] | None = None,
    ) -> Run:
        """Run the Claw on a message now; the finished run. `on_message` hears the id of the
        message that holds the ask (its run goes on if the asker goes away: `result` tells what
        became of it), `on_step` each step.

        A Claw another host runs is asked through the store: the message waits in its mailbox
        like any other, and `on_step` hears nothing until the run is done."""
        self.manifest.check_claw(claw)
        if self._cluster.owns(claw):
            return await self._claws.ask(claw, message, thread=thread, on_step=on_step, on_message=on_message)
        return await self._claws.ask_elsewhere(claw, message, thread=thread, on_message=on_message)

    async def ask_later(self, claw: str, message: str, *, thread: str = "default") -> int:
        """Ask the Claw without waiting (an MCP task): the id of the message that holds the ask."""
        self.manifest.check_claw(claw)
        if self._cluster.owns(claw):
            return (await self._claws.ask_later(claw, message, thread=thread)).id
        asked = Outgoing(claw, message, thread=thread, kind="ask")  # its owner runs it from the mailbox
        return (await self._claws.mailboxes.enqueue(asked)).id

    async def result(
        self, message_id: int, *, wait: float = 0.0, reaches: Callable[[str], bool] = lambda claw: True
    ) -> dict[str, Any]:
        """What became of a message (of a Claw `reaches` admits): its state (queued, running,
        waiting, done, failed, dead, cancelled, discarded), its run, reply and error. With
        `wait`, up to that many seconds for it to end."""
        with self.follow() as live:  # from before the first look: no change goes unseen
            outcome = await self._outcome(message_id, reaches)
            with anyio.move_on_after(wait):
                while outcome["state"] not in ENDED:
                    event = await live.receive()
                    if event.claw == outcome["claw"]:
                        outcome = await self._outcome(message_id, reaches)
        return outcome

    async def _outcome(self, message_id: int, reaches: Callable[[str], bool]) -> dict[str, Any]:
        message = await self._store.get_message(message_id)
        if message is None or not reaches(message.mailbox):
            raise UserError(f"no message {message_id}")
        return _described(message, await self._store.message_run(message_id))

    async def cancel(
        self, message_id: int, *, reaches: Callable[[str], bool] = lambda claw: True
    ) -> dict[str, Any]:
        """A person cancels a message: queued, it is dropped; its run running here or on
        another host is stopped, one waiting for a person ended (its approvals withdrawn). What
        became of it (`result`). `UserError` when it has ended."""
        found = await self._store.get_message(message_id)
        if found is None or not reaches(found.mailbox):
            raise UserError(f"no message {message_id}")
        try:
            message, run = await self._store.cancel(message_id)
        except StoreUnavailable:
            raise
        except StoreError as e:
            raise UserError(str(e)) from None
        if not self._runtime.cancel(message_id):  # else its run, as it ends, answers an asker
            self._claws.mailboxes.replied(message_id, Answer(error=CANCELLED))
        if run is not None and run.state == "cancelled":  # it waited for a person: ended now
            self._runtime.ended(run)
        self._events.emit(
            "delivery",
            message.mailbox,
            id=message_id,
            outcome="cancelled",
            attempts=message.attempts,
            error=None,
        )
        return _described(message, run)

    async def tell(
        self, claw: str, message: str, *, thread: str = "default", key: str | None = None
    ) -> Message:
        """Queue a message for the Claw (committed when this returns)."""
        return await self._claws.tell(claw, message, thread=thread, key=key)

    async def status(self, claw: str) -> dict[str, Any]:
        """The Claw's status, with `host`: the name of the host that runs it (none while no live
        host has it)."""
        [status] = await self.statuses([claw])
        return status

    async def statuses(self, claws: list[str]) -> list[dict[str, Any]]:
        owners = await self._cluster.owners()
        return [{**await self._claws.status(claw), "host": owners.get(claw)} for claw in claws]

    async def hosts(self) -> list[dict[str, Any]]:
        """The hosts of the store: name, listen address, times, whether alive, Claws owned."""
        return await self._cluster.hosts()

    async def schedule(self, claw: str, fields: dict[str, Any]) -> Schedule:
        return await self._scheduler.schedule(claw, fields)

    async def unschedule(self, claw: str, schedule_id: int) -> None:
        await self._scheduler.unschedule(claw, schedule_id)

    async def schedules(self, claw: str) -> list[dict[str, Any]]:
        return await self._scheduler.schedules_of(claw)

    # -- what a Claw keeps -------------------------------------------------------------------------

    async def threads(self, claw: str) -> list[str]:
        return await self._store.threads(claw)

    async def history(self, claw: str, thread: str, limit: int) -> list[HistoryEntry]:
        return await self._store.history(claw, thread, limit)

    async def notes(self, claw: str) -> list[Note]:
        return await self._store.notes(claw)

    # -- dead letters ------------------------------------------------------------------------------

    async def dead_letters(self, claw: str | None = None) -> list[Message]:
        return await self._store.dead_letters(claw)

    async def message(self, message_id: int) -> Message | None:
        return await self._store.get_message(message_id)

    async def settle_dead(self, message_id: int, action: Literal["retry", "discard"]) -> Message:
        return await self._claws.settle_dead(message_id, action)

    # -- approvals ---------------------------------------------------------------------------------

    async def approvals(self, claw: str | None = None, *, pending: bool = True) -> list[Approval]:
        """The inbox, oldest first: pending approvals (or the latest 100 of any state)."""
        return await self._store.approvals(claw, pending=pending)

    async def approval(self, approval_id: int) -> Approval | None:
        return await self._store.get_approval(approval_id)

    async def decide(
        self, approval_id: int, approve: bool, *, note: str | None = None, content: Any = None
    ) -> Approval:
        """A person's decision; `UserError` when the approval is not pending."""
        state: ApprovalState = "approved" if approve else "denied"
        return await self._approvals.decide(approval_id, state, note=note, content=content)

    # -- tools -------------------------------------------------------------------------------------

    def tools_for(self, claw: str) -> list[HubTool]:
        """The tool servers' tools the Claw may use."""
        return self._hub.tools_for(claw)

    def catalog(self) -> list[tuple[HubTool, list[str]]]:
        """Every tool of the tool servers, with the Claws that may use it."""
        tools = sorted(self._hub.catalog.values(), key=lambda t: t.qualified)
        return [(t, [c for c in sorted(self.manifest.claws) if self._hub.allowed(c, t)]) for t in tools]

    @property
    def catalog_changed(self) -> anyio.Event:
        """Set (and replaced) when the tool servers' catalog changes."""
        return self._hub.catalog_changed

    async def call_tool(
        self, claw: str, wire: str, arguments: dict[str, Any], progress: ProgressFnT | None = None
    ) -> CallToolResult:
        """Call a tool for the Claw, checked and audited as a run's calls are."""
        return await self._hub.call(claw, wire, arguments, progress=progress)

    async def accept_tools(self, server: str, tools: list[str]) -> list[str]:
        """Pin the server's tools (all, or those named) as listed now; the names accepted."""
        return await self._hub.accept(server, tools)

    def reconnect(self, server: str) -> None:
        """Try the tool server again now (after `clawmcp login`)."""
        self._hub.reconnect(server)

    def servers(self) -> dict[str, ServerState]:
        return self._hub.status()

    # -- what the host shows -----------------------------------------------------------------------

    async def runs(self, limit: int) -> list[Run]:
        return await self._store.runs(limit=limit)

    async def steps(self, run_id: int) -> list[Step]:
        return await self._store.steps(run_id)

    async def events(self, claw: str | None = None, *, after: int = 0, limit: int = 100) -> list[Event]:
        return await self._store.events(claw, after=after, limit=limit)

    @contextlib.contextmanager
    def follow(self) -> Iterator[MemoryObjectReceiveStream[Event]]:
        """Each event from now on, as it is committed."""
        with self._events.subscribe() as live:
            yield live

    async def metrics(self, shown: Callable[[str], bool]) -> bytes:
        """`/metrics` for the Claws `shown` accepts."""
        children = self._claws.supervisor.children
        return self._metrics.text(  # gauges of the Claws this host runs: each Claw counted by one host
            mailboxes=await self._store.mailboxes(),
            restarts={claw: child.restarts for claw, child in children.items()},
            servers={name: (s.state == "up", s.reconnects) for name, s in self._hub.status().items()},
            approvals=Counter(a.claw for a in await self._store.approvals(pending=True, limit=10_000)),
            shown=shown,
        )


def _described(message: Message, run: Run | None) -> dict[str, Any]:
    """A message and its latest run as `result` shows them."""
    state: str = message.state
    if state == "running" and run is not None and run.state == "waiting":
        state = "waiting"
    elif state == "done" and run is not None and run.state != "done":
        state = "failed"
    error = None if state == "done" else message.last_error
    if state == "cancelled":
        error = CANCELLED
    elif state == "failed" and run is not None:
        error = run.error
    return {
        "message_id": message.id,
        "claw": message.mailbox,
        "state": state,
        "run_id": run.id if run else None,
        "reply": run.reply if run and state == "done" else None,
        "error": error,
        "attempts": message.attempts,
        "created_at": message.created_at,
        "updated_at": (run.ended_at or run.started_at) if run else message.created_at,
    }

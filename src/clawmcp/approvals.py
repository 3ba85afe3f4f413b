"""The inbox: tool calls that wait for a person, and the decisions on them (DESIGN §9).

A call that a Claw's `approve:` matches is not run: an approval is committed and the run waits
(state `waiting`). A run of a message parks: its message stays `running`, the Claw's consumer goes
on with other threads, and a decision queues the message again, so the run goes on from its
stored steps (`Runtime`). A run of a direct ask waits in its request (`wait`). No decision by
`limits.approval_timeout` counts as denied: a timer here expires it.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from fnmatch import fnmatchcase
from typing import Any, Literal, Protocol

import anyio
from anyio.abc import TaskGroup, TaskStatus

from clawmcp.arguments import invalid_arguments
from clawmcp.errors import StoreError, StoreUnavailable, UserError
from clawmcp.events import Events, excerpt
from clawmcp.manifest import Manifest
from clawmcp.manifest.check import DESTRUCTIVE
from clawmcp.scheduler import Clock, SystemClock
from clawmcp.store import Approval, ApprovalKind, ApprovalState, Store

__all__ = ["ASKER", "Approvals", "Asker", "Reply", "describe", "outcome_text"]

log = logging.getLogger("clawmcp")

Reply = tuple[Literal["accept", "decline", "cancel"], dict[str, Any] | None]
"""A person's answer to a form: the action and, when accepted, the content."""


class Asker(Protocol):
    """The MCP client whose `ask` started a run, when it supports form elicitation."""

    async def elicit(self, message: str, schema: dict[str, Any]) -> Reply: ...


ASKER: ContextVar[Asker | None] = ContextVar("clawmcp_asker", default=None)
"""Set by the edge that serves an `ask` (`clawmcp.expose`) for the run's task and its children."""

_APPROVE_FORM = {
    "type": "object",
    "properties": {
        "approve": {"type": "boolean", "title": "Approve this call"},
        "note": {"type": "string", "title": "Note (the model sees it)"},
    },
    "required": ["approve"],
}


def describe(approval: Approval) -> dict[str, Any]:
    """An approval as the CLI, the API and the MCP tools show it."""
    return {
        "id": approval.id,
        "claw": approval.claw,
        "kind": approval.kind,
        "tool": approval.tool,
        "arguments": approval.arguments,
        "state": approval.state,
        "note": approval.note,
        "content": approval.content,
        "run": approval.run_id,
        "message": approval.message_id,
        "created_at": approval.created_at,
        "expires_at": approval.expires_at,
        "decided_at": approval.decided_at,
    }


def outcome_text(approval: Approval) -> str:
    """What the model is told of a call a person did not approve."""
    note = f": {approval.note}" if approval.note else ""
    if approval.state == "denied":
        return f"a person denied this call of {approval.tool} (approval {approval.id}){note}"
    return f"no decision on approval {approval.id} in time: {approval.tool} was not run{note}"


class Approvals:
    """Request, wait for, decide and expire approvals. Start with `tg.start(approvals.run)` for
    the expiry timers of parked runs (`watch`)."""

    def __init__(
        self,
        manifest: Manifest,
        store: Store,
        events: Events,
        *,
        clock: Clock | None = None,
        notify: Callable[[str], None] | None = None,
    ) -> None:
        """`notify(claw)`: the Claw's mailbox has a message again (a parked run's, once decided)."""
        self.manifest, self.store, self.events = manifest, store, events
        self.clock = clock or SystemClock()
        self.notify = notify
        self.changed = anyio.Event()
        """Set (and replaced) whenever an approval is requested or decided here, or may have been
        decided on another host."""
        self._watched: set[int] = set()
        self._tg: TaskGroup | None = None

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as self._tg:
            task_status.started()
            await anyio.sleep_forever()

    def needs(self, claw: str, qualified: str, destructive: bool) -> bool:
        """Whether a call of the tool (SERVER.TOOL) by the Claw waits for a person."""
        patterns = self.manifest.claws[claw].approve
        return any(fnmatchcase(qualified, p) for p in patterns if p != DESTRUCTIVE) or (
            destructive and DESTRUCTIVE in patterns
        )

    async def request(
        self,
        run_id: int,
        claw: str,
        tool: str,
        call_id: str,
        arguments: Any,
        tokens: tuple[int | None, int | None] = (None, None),
        kind: ApprovalKind = "approval",
    ) -> Approval:
        """Commit an approval of a call (its run waits from now on), or a question of one."""
        expires_at = self.clock.now() + self.manifest.claws[claw].limits.approval_timeout
        approval = await self.store.request_approval(
            run_id,
            kind=kind,
            tool=tool,
            call_id=call_id,
            arguments=arguments,
            expires_at=expires_at,
            tokens=tokens,
        )
        shown = arguments["message"] if kind == "question" else str(arguments)
        data = {"id": approval.id, "tool": tool, "run": run_id, "arguments": excerpt(shown)}
        self.events.emit("approval", claw, state="pending", **data)
        log.info("Claw '%s': %s %d waits: %s", claw, kind, approval.id, tool, extra={"claw": claw})
        self._changed()
        return approval

    async def wait(self, approval: Approval, asker: Asker | None = None) -> Approval:
        """Until the approval is decided (in this process or, heard by `heard`, on another host);
        at its deadline it expires. An `asker` is asked too, and may decide it first."""
        timer = await self._tg.start(self._expire_at, approval) if self._tg else None
        try:
            async with anyio.create_task_group() as tg:
                if asker is not None:
                    tg.start_soon(self.ask, asker, approval)
                while approval.state == "pending":
                    changed = self.changed
                    found = await self.store.get_approval(approval.id)
                    assert found is not None
                    approval = found
                    if approval.state == "pending":
                        await changed.wait()
                tg.cancel_scope.cancel()
        finally:
            if timer is not None:
                timer.cancel()
        return approval

    async def ask(self, asker: Asker, approval: Approval) -> None:
        """Ask the client of the run's `ask` to decide; it may not answer (the inbox decides)."""
        arguments = json.dumps(approval.arguments)
        message = f"Claw '{approval.claw}' wants to call {approval.tool} with {arguments}. Approve?"
        try:
            action, content = await asker.elicit(message, _APPROVE_FORM)
        except Exception as e:  # the client cannot be asked: the inbox decides
            log.info("approval %d: the asking client was not asked (%s)", approval.id, e)
            return
        if action == "cancel":
            return
        approve = action == "accept" and bool(content and content.get("approve") is True)
        note = (content or {}).get("note") or "decided by the client that asked"
        with contextlib.suppress(UserError):  # decided meanwhile
            await self.decide(approval.id, "approved" if approve else "denied", note=str(note))

    async def question(
        self, claw: str, run_id: int, tool: str, message: str, schema: dict[str, Any], asker: Asker | None
    ) -> Reply:
        """A tool server asks for input during a call of the run: its asking client answers,
        when there is one that can, else a person through the inbox (until approval_timeout)."""
        if asker is not None:
            try:
                return await asker.elicit(message, schema)
            except Exception as e:  # the client cannot be asked: the inbox is
                log.info("Claw '%s': the asking client was not asked (%s)", claw, e, extra={"claw": claw})
        asked = await self.request(
            run_id, claw, tool, "", {"message": message, "schema": schema}, kind="question"
        )
        answered = await self.wait(asked)
        if answered.state == "approved":
            return "accept", answered.content
        return ("decline", None) if answered.state == "denied" else ("cancel", None)

    def watch(self, approvals: Iterable[Approval]) -> None:
        """Expire these approvals (of a parked run) at their deadlines, unless decided before."""
        if self._tg is None:
            return
        for approval in approvals:
            if approval.id not in self._watched:
                self._watched.add(approval.id)
                self._tg.start_soon(self._expire_at, approval)

    async def _expire_at(
        self, approval: Approval, *, task_status: TaskStatus[anyio.CancelScope] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """At the approval's deadline, expire it (unless decided, or this is cancelled, before)."""
        with anyio.CancelScope() as scope:
            task_status.started(scope)
            try:
                await self.clock.sleep_until(approval.expires_at)
                config = self.manifest.claws.get(approval.claw)  # None: a reload removed the Claw
                timeout = (
                    config.limits.approval_timeout if config else approval.expires_at - approval.created_at
                )
                await self.decide(approval.id, "expired", note=f"no decision within {timeout:g}s")
            except UserError:  # decided meanwhile
                pass
            except StoreError as e:  # it stays pending; the next start (or a person) settles it
                log.warning("approval %d could not be expired now: %s", approval.id, e)
            finally:
                self._watched.discard(approval.id)

    async def decide(
        self, approval_id: int, state: ApprovalState, *, note: str | None = None, content: Any = None
    ) -> Approval:
        """A decision (a person's, or the timer's `expired`): committed, then the run goes on.
        An approved question needs `content` that its schema accepts."""
        if state == "approved" and (asked := await self.store.get_approval(approval_id)) is not None:
            if asked.kind == "question":
                if not isinstance(content, dict):
                    raise UserError(f"question {approval_id} needs an answer: a JSON object")
                if problem := invalid_arguments(asked.arguments["schema"], content):
                    raise UserError(f"question {approval_id}: {problem}")
            else:
                content = None
        try:
            approval = await self.store.decide(approval_id, state, note=note, content=content)
        except StoreUnavailable:
            raise
        except StoreError as e:
            raise UserError(str(e)) from None
        data = {"id": approval.id, "tool": approval.tool, "run": approval.run_id, "note": note}
        self.events.emit("approval", approval.claw, state=state, **data)
        self._changed()
        if self.notify is not None:
            self.notify(approval.claw)
        return approval

    def heard(self) -> None:
        """An approval may have been decided on another host: waiters here look again."""
        self._changed()

    def _changed(self) -> None:
        changed, self.changed = self.changed, anyio.Event()
        changed.set()

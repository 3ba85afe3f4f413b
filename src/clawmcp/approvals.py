"""The inbox: tool calls that wait for a person, and the decisions on them (DESIGN §9).

A call that a Claw's `approve:` matches is not run: an approval is committed and the run waits
(state `waiting`). A run of a message parks: its message stays `running`, the Claw's consumer goes
on with other threads, and a decision queues the message again, so the run goes on from its
stored steps (`Runtime`). A run of a direct ask waits in its request (`wait`). No decision by
`limits.approval_timeout` counts as denied: a timer here expires it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from fnmatch import fnmatchcase
from typing import Any

import anyio
from anyio.abc import TaskGroup, TaskStatus

from clawmcp.errors import StoreError, StoreUnavailable, UserError
from clawmcp.events import Events, excerpt
from clawmcp.manifest import Manifest
from clawmcp.manifest.check import DESTRUCTIVE
from clawmcp.scheduler import Clock, SystemClock
from clawmcp.store import Approval, ApprovalState, Store

__all__ = ["Approvals", "describe", "outcome_text"]

log = logging.getLogger("clawmcp")


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
        tokens: tuple[int | None, int | None],
    ) -> Approval:
        """Commit an approval of a call; its run waits from now on."""
        expires_at = self.clock.now() + self.manifest.claws[claw].limits.approval_timeout
        approval = await self.store.request_approval(
            run_id,
            kind="approval",
            tool=tool,
            call_id=call_id,
            arguments=arguments,
            expires_at=expires_at,
            tokens=tokens,
        )
        data = {"id": approval.id, "tool": tool, "run": run_id, "arguments": excerpt(str(arguments))}
        self.events.emit("approval", claw, state="pending", **data)
        log.info("Claw '%s': approval %d waits: %s", claw, approval.id, tool, extra={"claw": claw})
        self._changed()
        return approval

    async def wait(self, approval: Approval) -> Approval:
        """Until the approval is decided (in this process or, heard by `heard`, on another host);
        at its deadline it expires."""
        timer = await self._tg.start(self._expire_at, approval) if self._tg else None
        try:
            while approval.state == "pending":
                changed = self.changed
                found = await self.store.get_approval(approval.id)
                assert found is not None
                approval = found
                if approval.state == "pending":
                    await changed.wait()
        finally:
            if timer is not None:
                timer.cancel()
        return approval

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
                timeout = self.manifest.claws[approval.claw].limits.approval_timeout
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
        """A decision (a person's, or the timer's `expired`): committed, then the run goes on."""
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

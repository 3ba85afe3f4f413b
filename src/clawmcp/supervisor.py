"""Supervision with the semantics of Erlang/OTP supervisors.

A child is a coroutine function: returning is a normal exit, raising is a crash. Its restart type
decides what follows: `permanent` children are always restarted, `transient` ones only after a
crash, `temporary` ones never. The strategy decides who restarts with it: `one_for_one` only the
child, `one_for_all` every child, `rest_for_one` the child and those added after it.

Restarts wait a backoff that doubles with each restart of the child within `period` seconds
(`backoff` to `max_backoff`). A child restarted more than `intensity` times within `period` is
marked `failed` and left stopped. Unlike OTP, where the supervisor itself would give up, the
other children go on: one Claw that keeps crashing must not take the rest of the host down.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

import anyio
from anyio.abc import TaskGroup, TaskStatus

from clawmcp.errors import unwrap

__all__ = ["Child", "ChildState", "RestartType", "Strategy", "Supervisor"]

log = logging.getLogger("clawmcp")

RestartType = Literal["permanent", "transient", "temporary"]
Strategy = Literal["one_for_one", "one_for_all", "rest_for_one"]
ChildState = Literal["running", "restarting", "stopped", "failed"]


@dataclass
class Child:
    """One supervised task and what became of it (for `status`)."""

    name: str
    target: Callable[[], Awaitable[None]]
    restart: RestartType
    state: ChildState = "running"
    restarts: int = 0
    last_error: str | None = None
    _recent: deque[float] = field(default_factory=deque)
    _scope: anyio.CancelScope | None = None
    _done: anyio.Event = field(default_factory=anyio.Event)


class Supervisor:
    """Children started in the order they were added. Start with `tg.start(supervisor.run)`."""

    def __init__(
        self,
        name: str,
        *,
        strategy: Strategy = "one_for_one",
        intensity: int = 5,
        period: float = 60.0,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        """`clock` (seconds) and `sleep` are for tests: the restart window slides on the clock,
        and a restart's backoff is one `sleep`."""
        self.name, self.strategy, self.intensity, self.period = name, strategy, intensity, period
        self.clock, self.sleep = clock, sleep
        self.backoff, self.max_backoff = backoff, max_backoff
        self.children: dict[str, Child] = {}
        self.changed = anyio.Event()
        """Set (and replaced) each time a child crashes, exits, restarts or is marked failed."""
        self._tg: TaskGroup | None = None

    def add(
        self, name: str, target: Callable[[], Awaitable[None]], restart: RestartType = "permanent"
    ) -> None:
        """Add a child; while the supervisor runs, it starts at once (before `run`, with it)."""
        child = self.children[name] = Child(name, target, restart)
        if self._tg is not None:
            self._tg.start_soon(self._run_child, child)

    async def remove(self, name: str, *, within: float = 0.0) -> None:
        """Stop a child and forget it: it is not restarted. A running child has `within` seconds
        to end by itself, then it is cancelled; this returns once it has ended."""
        child = self.children.pop(name)
        if child.state == "running":
            with anyio.move_on_after(within):
                await child._done.wait()
        if child._scope is not None:
            child._scope.cancel()
        if child.state == "running":
            await child._done.wait()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        try:
            async with anyio.create_task_group() as self._tg:
                for child in self.children.values():
                    self._tg.start_soon(self._run_child, child)
                task_status.started()
                await anyio.sleep_forever()  # children may be added later
        finally:
            self._tg = None  # stopped: a child added now is not started

    async def _run_child(self, child: Child) -> None:
        child._done = anyio.Event()
        self._set(child, "running")
        error: BaseException | None = None
        scope = child._scope = anyio.CancelScope()
        try:
            with scope:
                await child.target()
        except Exception as e:
            error = unwrap(e)
        finally:
            child._done.set()
        if scope.cancel_called:  # stopped by this supervisor, which restarts it if it should
            return
        await self._exited(child, error)

    async def _exited(self, child: Child, error: BaseException | None) -> None:
        if error is not None:
            child.last_error = str(error) or type(error).__name__
            fields = {"supervisor": self.name, "child": child.name}
            log.error("%s '%s' crashed: %s", self.name, child.name, child.last_error, extra=fields)
        if child.restart == "temporary" or (child.restart == "transient" and error is None):
            self._set(child, "stopped")
            return
        now = self.clock()
        child._recent.append(now)
        while child._recent and child._recent[0] < now - self.period:
            child._recent.popleft()
        if len(child._recent) > self.intensity:
            self._set(child, "failed")
            log.error(
                "%s '%s' failed: restarted %d times within %gs; it stays stopped",
                self.name,
                child.name,
                self.intensity,
                self.period,
                extra={"supervisor": self.name, "child": child.name},
            )
            return
        group = self._group(child)
        for other in group:
            if other is not child and other.state == "running" and other._scope is not None:
                other._scope.cancel()
                await other._done.wait()
        delay = min(self.max_backoff, self.backoff * 2 ** (len(child._recent) - 1))
        for member in group:
            self._set(member, "restarting")
        await self.sleep(delay)
        child.restarts += 1
        assert self._tg is not None
        for member in group:
            if self.children.get(member.name) is not member:  # removed meanwhile
                continue
            if member is child or member.restart != "temporary":
                self._tg.start_soon(self._run_child, member)
            else:
                self._set(member, "stopped")

    def _group(self, child: Child) -> list[Child]:
        """The children that restart together with `child`, in start order."""
        children = list(self.children.values())
        if self.strategy == "one_for_all":  # the crashed child is still marked running
            return [c for c in children if c.state == "running"]
        if self.strategy == "rest_for_one":
            return [c for c in children[children.index(child) :] if c.state == "running"]
        return [child]

    def _set(self, child: Child, state: ChildState) -> None:
        child.state = state
        changed, self.changed = self.changed, anyio.Event()
        changed.set()

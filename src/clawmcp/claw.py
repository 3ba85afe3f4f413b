"""The Claws of a host: each one's mailbox consumer, `tell`, and what `status` shows.

A message told to a Claw is committed to its mailbox before its id is returned. Each Claw has one
consumer task that takes its messages in order and runs the Claw on each; a message is done once
its run has finished. A run that fails is tried again later with backoff; after `MAX_ATTEMPTS`
the message is a dead letter, shown in `status` with its last error.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Literal, Protocol

import anyio
from anyio.abc import TaskGroup, TaskStatus

from clawmcp.approvals import ASKER, Approvals
from clawmcp.errors import (
    BudgetSpent,
    MessageRefused,
    RuntimeFault,
    Stopping,
    StoreError,
    StoreUnavailable,
    ToolRefused,
    UserError,
    WorkerLost,
)
from clawmcp.mailbox import Answer, Mailboxes
from clawmcp.manifest import Manifest
from clawmcp.manifest.model import Trigger
from clawmcp.runtime import SPENT, OnStep, Remote, Runtime
from clawmcp.scheduler import FireBody, describe
from clawmcp.store import CANCELLED, Approval, FireOutcome, Message, Outgoing, Run, RunState, Step, Store
from clawmcp.supervisor import Child, Supervisor

__all__ = ["MAX_ATTEMPTS", "Claws", "Isolate"]

log = logging.getLogger("clawmcp")


class _Follower:
    """The client of a direct ask while it waits: it hears each step of the message's run (until
    it goes away) and is asked to decide what the run waits for."""

    def __init__(self, on_step: OnStep | None, asking: TaskGroup, approvals: Approvals) -> None:
        self.on_step, self.asking, self.approvals = on_step, asking, approvals
        self.asker = ASKER.get()

    async def step(self, step: Step) -> None:
        if self.on_step is not None:
            try:
                await self.on_step(step)
            except Exception:  # the client went away: the run goes on without it
                self.on_step = None

    def ask(self, pending: list[Approval]) -> None:
        if self.asker is not None:
            for approval in pending:
                self.asking.start_soon(self.approvals.ask, self.asker, approval)


class _Worker(Remote, Protocol):
    async def watch(self) -> None: ...


Isolate = Callable[[str], AbstractAsyncContextManager[_Worker]]
"""Starts the worker process of a Claw with `isolation: process` (see `clawmcp.worker`)."""

MAX_ATTEMPTS = 5
_RETRY_CAP = 60.0


class Claws:
    """Every Claw of a manifest. Start with `tg.start(claws.run)`."""

    def __init__(
        self,
        manifest: Manifest,
        store: Store,
        runtime: Runtime,
        mailboxes: Mailboxes,
        *,
        retry_base: float = 1.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        isolate: Isolate | None = None,
        workers: dict[str, Remote] | None = None,
    ) -> None:
        """`isolate` starts the worker of a Claw with `isolation: process`, which is kept in
        `workers` (the runtime's `remotes`) while it is up. A mailbox waits out a retry's backoff
        or a store's outage with `sleep` (tests record it)."""
        self.retry_base, self.clock, self.isolate, self.workers = retry_base, clock, isolate, workers
        self.sleep = sleep
        self.settled = anyio.Event()
        """Set (and replaced) each time a message is acknowledged, retried or dead-lettered, or
        left to be tried again because the store could not commit."""
        self.manifest, self.store, self.runtime, self.mailboxes = manifest, store, runtime, mailboxes
        s = manifest.host.supervision
        self.supervisor = Supervisor(
            "Claw",
            strategy=s.strategy,
            intensity=s.intensity,
            period=s.period,
            backoff=s.backoff,
            max_backoff=s.max_backoff,
        )
        self._starting, self._started = set[str](), anyio.Event()
        self._draining = set[str]()
        self._followers: dict[int, _Follower] = {}
        """The clients of direct asks waiting here, by message."""
        self._tg: TaskGroup | None = None

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run the Claws this host `start`s, and the runs of direct asks, until it stops."""
        async with anyio.create_task_group() as self._tg:
            await self._tg.start(self.supervisor.run)
            task_status.started()

    async def start(self, claws: list[str]) -> None:
        """Start the Claws' consumers. Returns once each has looked at its mailbox (a
        process-isolated one: in its worker process, or failed to start that), so that the work
        of starting is done before the host says it is ready."""
        if not claws:
            return
        if not self._starting:
            self._started = anyio.Event()
        self._starting |= set(claws)
        for name in claws:
            # transient: a Claw's task ends normally only when it is stopped
            self.supervisor.add(name, functools.partial(self._task, name), "transient")
        await self._started.wait()

    async def stop(self, claws: list[str], *, drain: bool) -> None:
        """Stop the Claws' consumers; with `drain`, each first finishes the message it is handling
        (up to its run timeout)."""
        for claw in claws:
            if drain:
                self._draining.add(claw)
                self.mailboxes.notify(claw)  # a consumer waiting for a message sees it should end
            timeout = self.manifest.claws[claw].limits.run_timeout if drain else 0.0
            try:
                await self.supervisor.remove(claw, within=timeout)
            finally:
                self._draining.discard(claw)
                self._has_started(claw)

    def _has_started(self, claw: str) -> None:
        self._starting.discard(claw)
        if not self._starting:
            self._started.set()

    async def _task(self, claw: str) -> None:
        """One Claw's supervised task: its mailbox consumer, with its worker process when the Claw
        has `isolation: process`. A message it left running (it crashed) is queued again first."""
        if self.supervisor.children[claw].restarts:  # the host requeues everything at its start
            await self.store.requeue_running(claw)
        remotes = self.workers
        if self.manifest.claws[claw].isolation == "task" or self.isolate is None or remotes is None:
            await self._consume(claw)
            return
        try:
            async with self.isolate(claw) as worker, anyio.create_task_group() as tg:
                remotes[claw] = worker
                tg.start_soon(worker.watch)
                await self._consume(claw)
                tg.cancel_scope.cancel()
        finally:
            self._has_started(claw)  # its worker is up, or failed to start: either way, not starting
            remotes.pop(claw, None)
            with anyio.CancelScope(shield=True):  # whatever the worker was running ended with it
                await self.store.interrupt_running(claw)

    async def tell(
        self, claw: str, content: str, *, thread: str = "default", key: str | None = None
    ) -> Message:
        """Commit a message to the Claw's mailbox and wake it; the Claw handles it in the background.
        A `key` makes a retried tell safe: the same key gives the first message back."""
        self.manifest.check_claw(claw)
        return await self.mailboxes.enqueue(Outgoing(claw, content, thread=thread, key=key))

    async def ask(
        self,
        claw: str,
        content: str,
        *,
        thread: str = "default",
        on_step: OnStep | None = None,
        on_message: Callable[[int], Awaitable[None]] | None = None,
    ) -> Run:
        """A direct ask of a Claw this host runs: its message is committed running (`on_message`
        hears its id) and its run starts now, ahead of the mailbox, tried once. The run lives on
        if the asker goes away; the message keeps its reply (`result`). A run that waits for a
        person parks like any message's, and the asker (`ASKER`) is asked to decide; once a
        decision lets it go on, it goes on in the mailbox, still followed by the asker. The
        run, once it has ended."""
        message = await self._claimed(claw, content, thread)
        if on_message is not None:
            await on_message(message.id)
        async with anyio.create_task_group() as asking:  # asks the asker; ends with this ask
            self._followers[message.id] = _Follower(on_step, asking, self.runtime.approvals)
            try:
                with self.mailboxes.expect(message.id) as answer:
                    self.begin(claw, message)
                    said = await answer()
            finally:
                self._followers.pop(message.id).on_step = None
            asking.cancel_scope.cancel()
        run = await self.store.message_run(message.id)
        if run is None or run.ended_at is None:
            raise RuntimeFault(f"Claw '{claw}', message {message.id}: {said.error}")
        return run

    async def _claimed(self, claw: str, content: str, thread: str) -> Message:
        """The message of a direct ask, committed running (unless the Claw's budget is spent)."""
        await self.runtime.check_budget(claw)
        return await self.store.enqueue_claimed(claw, content, thread=thread)

    async def ask_later(self, claw: str, content: str, *, thread: str = "default") -> Message:
        """A direct ask whose asker does not wait (an MCP task): its run starts now; `result`
        tells what became of it."""
        message = await self._claimed(claw, content, thread)
        self.begin(claw, message)
        return message

    def begin(self, claw: str, message: Message) -> None:
        """Run a direct ask's message, in the background: it outlives its asker."""
        assert self._tg is not None, "Claws.run is not running"
        self._tg.start_soon(self._ask_here, claw, message)

    async def _ask_here(self, claw: str, message: Message) -> None:
        """Run a direct ask's message once; its asker hears once the run has ended (or parked,
        then the consumer answers), or why it could not run."""
        answer: Answer | None = Answer()
        try:
            state, _, _, _ = await self._handle(claw, message, once=True)
            if state == "waiting":  # a decision queues it again, for the consumer
                answer = None
            elif state == "failed":  # tried once: a failed ask is not tried again
                await self.store.ack(message.id)
        except Exception as e:  # stopping, an outage, a lost worker: it stays to be run again
            log.warning("Claw '%s': message %d: %s", claw, message.id, e, extra={"claw": claw})
            answer = Answer(error=str(e))
        finally:
            if answer is not None:
                self.mailboxes.replied(message.id, answer)

    async def ask_elsewhere(
        self,
        claw: str,
        content: str,
        *,
        thread: str = "default",
        on_message: Callable[[int], Awaitable[None]] | None = None,
    ) -> Run:
        """Ask a Claw another host runs, through its mailbox; its run, once done."""
        within = self.manifest.claws[claw].limits.run_timeout * MAX_ATTEMPTS
        message, answer = await self.mailboxes.ask(
            Outgoing(claw, content, thread=thread, kind="ask"), chain=(), within=within, told=on_message
        )
        run = await self.store.message_run(message.id)
        if answer is None or run is None or run.ended_at is None:
            said = "no answer" if answer is None else answer.error
            raise MessageRefused(f"Claw '{claw}': {said} (message {message.id})")
        return run

    async def _consume(self, claw: str) -> None:
        """Handle the mailbox's messages in order. A fault while handling one fails that message
        (tried again, then a dead letter), never the Claw; while the store cannot commit, the
        consumer waits and tries again, and queues again what it had claimed."""
        outage = 0.0
        while True:
            if self.runtime.stopping or claw in self._draining:
                return
            try:
                if outage:  # what was claimed before the outage is queued again
                    await self.store.requeue_running(claw)
                try:
                    await self.runtime.check_budget(claw)
                except BudgetSpent as e:  # its messages wait, queued, for the next UTC day
                    self._has_started(claw)
                    log.info("%s", e, extra={"claw": claw})
                    await self.runtime.clock.sleep_until(e.until)
                    continue
                message = await self.mailboxes.claim(claw)
                if outage:
                    log.info("Claw '%s': the state store commits again", claw, extra={"claw": claw})
                    outage = 0.0
                self._has_started(claw)
                if message is None:
                    await self.mailboxes.wait(claw)
                    continue
                state, reply, error, acked = await self._handle(claw, message)
                if state == "interrupted":  # the host is stopping: the message stays for the next start
                    return
                delay = None  # parked, waiting for a person: a decision queues it again
                if state == "cancelled":
                    self.mailboxes.replied(message.id, Answer(error=CANCELLED))
                elif state != "waiting":
                    delay = await self._settle(message, state, reply, error, acked=acked)
            except Stopping:  # the message stays for the next start
                return
            except StoreUnavailable as e:
                outage = min(_RETRY_CAP, outage * 2 or self.retry_base)
                log.warning(
                    "Claw '%s': the state store cannot commit (%s); trying again in %gs",
                    claw,
                    e,
                    outage,
                    extra={"claw": claw},
                )
                delay = outage
            fired, self.settled = self.settled, anyio.Event()
            fired.set()
            if delay is not None:
                await self.sleep(delay)  # the mailbox waits: its messages are handled in order

    async def _handle(
        self, claw: str, message: Message, *, once: bool = False
    ) -> tuple[RunState, str | None, str | None, bool]:
        """Handle one message: a run, or for a schedule's fire its prompt or its tool call.
        Returns the state, the reply, the error and whether the message is done already: a run
        marks its message done as it ends (one commit), a fire as its outcome is recorded. With
        `once` (a direct ask) a failed run is not to be tried again."""
        fire, run_id, acked = None, None, False
        state: RunState
        follower = self._followers.get(message.id)
        asker = ASKER.set(follower.asker) if follower is not None else None
        try:
            fire = FireBody.loads(message.content) if message.kind == "fire" else None
            earlier = await self.store.message_run(message.id) if message.attempts > 1 else None
            if earlier is not None and earlier.state in ("done", "limit"):
                # Delivered again after a crash that came after its run ended: not run twice.
                state, reply, error, run_id = earlier.state, earlier.reply, earlier.error, earlier.id
            elif (
                earlier is not None
                and earlier.state == "waiting"
                and (pending := await self._parked(earlier.id))
            ):
                if follower is not None:  # still waiting for a person: the asker is asked again
                    follower.ask(pending)
                return "waiting", None, None, False
            elif fire and fire.call is not None:
                state, reply, error = await self._call(claw, fire.call)
            else:
                run = await self.runtime.run(
                    claw,
                    fire.prompt or "" if fire else message.content,
                    thread=message.thread,
                    trigger=fire.trigger or "schedule" if fire else "ask" if once else "message",
                    message_id=message.id,
                    will_retry=not once and message.attempts < MAX_ATTEMPTS,
                    acknowledge=fire is None,  # a fire's message is done with the fire's outcome
                    on_step=follower.step if follower is not None else None,
                    chain=message.chain,
                    resume=earlier.id if earlier is not None and earlier.state == "waiting" else None,
                )
                state, reply, error, run_id = run.state, run.reply, run.error, run.id
                if state == "waiting":
                    pending = await self._parked(run.id)
                    if follower is not None:
                        follower.ask(pending)
                    return state, None, None, False
                acked = fire is None and state != "failed"
        except BudgetSpent as e:  # spent since the consumer looked: queued again for the next day
            await self.store.nack(message.id, str(e), retry_at=e.until)
            return "waiting", None, None, False
        except (Stopping, StoreUnavailable, WorkerLost):  # stopping, an outage, a worker to restart
            raise
        except Exception as e:  # a fault of ours with this message: it fails, the Claw goes on
            log.exception("Claw '%s': message %d failed", claw, message.id, extra={"claw": claw})
            state, reply, error = "failed", None, f"internal error: {type(e).__name__}: {e}"
        finally:
            if asker is not None:
                ASKER.reset(asker)
        if fire and state not in ("interrupted", "cancelled"):
            acked = await self._fired(claw, message, fire, state, run_id, error)
        return state, reply, error, acked

    async def _parked(self, run_id: int) -> list[Approval]:
        """What the run still waits for; its pending approvals expire on time."""
        pending = await self.store.approvals(run_id=run_id, pending=True)
        self.runtime.approvals.watch(pending)
        return pending

    async def _fired(
        self,
        claw: str,
        message: Message,
        fire: FireBody,
        state: RunState,
        run_id: int | None,
        error: str | None,
    ) -> bool:
        """Record a fire's outcome and, unless it failed (it is tried again), its message done
        with it: one commit, so a crash never makes it fire twice. Whether the message is done."""
        outcome: FireOutcome = "ok" if state == "done" else "failed"
        if outcome == "failed":
            fields = {"claw": claw, "schedule": fire.schedule, "run": run_id}
            what = f"{fire.trigger or 'schedule'} '{fire.schedule}'"
            log.warning("Claw '%s': %s failed: %s", claw, what, error, extra=fields)
            about = {"trigger": fire.trigger} if fire.trigger else {}
            self.mailboxes.events.emit(
                "fire", claw, schedule=fire.schedule, outcome=outcome, error=error, **about
            )
        ack = message.id if state != "failed" else None  # a failure is tried again
        try:
            if fire.id is None or fire.slot is None:  # a trigger's: no fire to record
                if ack is not None:
                    await self.store.ack(ack)
            else:
                await self.store.finish_fire(fire.id, fire.slot, outcome, run_id=run_id, error=error, ack=ack)
        except StoreUnavailable:
            raise
        except StoreError:  # the schedule was removed since, taking its fires with it; or a fault
            if any(s.id == fire.id for s in await self.store.schedules(claw)):
                log.exception("Claw '%s': a fire of '%s' was not recorded", claw, fire.schedule)
            return False
        return ack is not None

    async def _call(self, claw: str, call: dict[str, Any]) -> tuple[RunState, str | None, str | None]:
        """A schedule's `call`: the tool is called directly, no model involved."""
        hub = self.runtime.hub
        wire = next((t.wire for t in hub.tools_for(claw) if t.qualified == call["tool"]), None)
        if wire is None:
            return "failed", None, f"tool '{call['tool']}' is not available to Claw '{claw}' now"
        try:
            text, is_error = await hub.call_text(claw, wire, call.get("arguments", {}))
        except ToolRefused as e:
            text, is_error = str(e), True
        return ("failed", None, text) if is_error else ("done", text, None)

    async def _settle(
        self, message: Message, state: RunState, reply: str | None, error: str | None, *, acked: bool
    ) -> float | None:
        """Done (`acked`: already marked so), dead, or queued again after a backoff, which is
        returned."""

        def emit(outcome: str) -> None:
            self.mailboxes.events.emit(
                "delivery",
                message.mailbox,
                id=message.id,
                outcome=outcome,
                attempts=message.attempts,
                error=None if state == "done" else error,
            )

        if state != "failed":
            if not acked:
                await self.store.ack(message.id)
            emit("done")
            self.mailboxes.replied(message.id, Answer(reply, None if state == "done" else error))
            return None
        if message.attempts >= MAX_ATTEMPTS:
            await self.store.nack(message.id, error or "failed", retry_at=None)
            emit("dead")
            self.mailboxes.replied(
                message.id, Answer(error=f"dead letter after {message.attempts} tries: {error}")
            )
            return None
        delay = min(_RETRY_CAP, self.retry_base * 2.0 ** (message.attempts - 1))
        await self.store.nack(message.id, error or "failed", retry_at=self.clock() + delay)
        emit("retry")
        return delay

    async def settle_dead(self, message_id: int, action: Literal["retry", "discard"]) -> Message:
        """A person's decision on a dead letter: queued again (its Claw woken) or discarded."""
        try:
            message = await self.store.settle_dead(message_id, action)
        except StoreUnavailable:
            raise
        except StoreError as e:
            raise UserError(str(e)) from None
        if action == "retry":
            self.mailboxes.notify(message.mailbox)
        return message

    def _state(self, claw: str, child: Child) -> str:
        """failed (past its restart intensity), restarting, running (a run in flight) or idle."""
        if child.state in ("failed", "restarting"):
            return child.state
        return "running" if self.runtime.active[claw] else "idle"

    async def status(self, claw: str) -> dict[str, Any]:
        """What `status` and `claw://NAME/status` show."""
        self.manifest.check_claw(claw)
        config = self.manifest.claws[claw]
        model = self.manifest.models[config.model[0]]
        runs = await self.store.runs(claw, limit=5)
        dead = await self.store.dead_letters(claw)
        used, _ = await self.runtime.tokens_today(claw)
        budget = config.limits.tokens_per_day
        schedules = await describe(self.store, claw)
        depth = await self.store.depth(claw)
        approvals = await self.store.approvals(claw, pending=True)
        child = self.supervisor.children.get(claw)  # after the reads: it may have moved meanwhile
        if child is None:  # run by another host: what the store shows of it
            state = "running" if any(r.state == "running" for r in runs) else "idle"
        else:
            state = self._state(claw, child)
        return {
            "claw": claw,
            "description": config.description,
            "state": state,
            "restarts": child.restarts if child else 0,
            "crash": child.last_error if child else None,
            "model": {
                "name": config.model[0],
                "provider": model.provider,
                "model": model.model,
                "fallback": config.model[1:],  # tried in turn when the first is rate-limited or down
            },
            "tools": [t.name for t in self.runtime.tools_for(claw)],
            "schedules": schedules,
            "triggers": [_trigger(claw, t) for t in config.triggers],
            "mailbox": depth,
            "tokens_today": used,
            "budget": SPENT if budget is not None and used >= budget else None,
            "approvals": len(approvals),
            "dead_letters": [{"id": m.id, "content": m.content, "error": m.last_error} for m in dead],
            "last_runs": [
                {
                    "id": r.id,
                    "trigger": r.trigger,
                    "thread": r.thread,
                    "state": r.state,
                    "error": r.error,
                    "started_at": r.started_at,
                    "ended_at": r.ended_at,
                }
                for r in runs
            ],
        }


def _trigger(claw: str, trigger: Trigger) -> dict[str, Any]:
    """A trigger as `status` shows it: where its webhook is, or what it watches."""
    if trigger.webhook is not None:
        return {
            "name": trigger.name,
            "webhook": f"/hooks/{claw}/{trigger.name}",
            "signature": trigger.webhook.signature,
        }
    assert trigger.resource is not None
    return {"name": trigger.name, "resource": trigger.resource.model_dump()}

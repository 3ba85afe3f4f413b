"""The agent loop: one run of a Claw, from its input to a reply or a limit.

A run builds the context (the Claw's instructions, what `memory` keeps of the thread's history:
see `clawmcp.context`, the input), asks the model for a turn (the Claw's first model, or the next
while one is rate-limited or down: `clawmcp.models.fallback`), runs the tool calls of that turn
concurrently, feeds the results back and asks again, until the model replies without tool calls
or a limit is reached. Every step is committed before the next begins, so a run can be watched
while it runs and read after a crash. A Claw runs one run at a time per thread, in arrival order.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import math
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

import anyio

from clawmcp.approvals import ASKER, Approvals, outcome_text
from clawmcp.builtins import Builtins, Messaging, RunContext, Schedules
from clawmcp.context import SUMMARY_HEADING, compacted
from clawmcp.errors import (
    BudgetSpent,
    ModelError,
    RuntimeFault,
    Stopping,
    StoreError,
    StoreUnavailable,
    ToolRefused,
)
from clawmcp.events import Events, excerpt
from clawmcp.manifest import Manifest
from clawmcp.models.base import Msg, Provider, ToolRequest, ToolResult, ToolSpec, Turn
from clawmcp.models.fallback import Fallback
from clawmcp.store import (
    CANCELLED,
    Approval,
    HistoryEntry,
    Run,
    RunState,
    RunTrigger,
    Step,
    StepKind,
    Store,
    ToolOutcome,
)

__all__ = ["MAX_DEPTH", "SPENT", "OnStep", "Remote", "RunContext", "Runtime", "Tool", "Tools"]

MAX_DEPTH = 4
"""How many runs an ask or spawn chain may hold (A asks B asks C asks D)."""
SPENT = "budget spent until 00:00 UTC"
"""What `status` says of a Claw that spent its tokens_per_day."""

OnStep = Callable[[Step], Awaitable[None]]
T = TypeVar("T")


class Remote(Protocol):
    """Where the runs of a Claw with `isolation: process` happen (its worker process)."""

    async def run(
        self,
        input: str,
        *,
        thread: str,
        trigger: RunTrigger,
        message_id: int | None,
        will_retry: bool,
        acknowledge: bool,
        on_step: OnStep | None,
        resume: int | None,
    ) -> Run: ...


class Tool(Protocol):
    """A tool server's tool as a Claw's model is offered it (`clawmcp.toolhub.HubTool`)."""

    @property
    def wire(self) -> str: ...

    @property
    def description(self) -> str: ...

    @property
    def input_schema(self) -> dict[str, Any]: ...

    @property
    def qualified(self) -> str: ...

    @property
    def destructive(self) -> bool: ...


class Tools(Protocol):
    """The tools of the tool servers, checked per Claw (`clawmcp.toolhub.ToolHub`)."""

    def tools_for(self, claw: str) -> Sequence[Tool]: ...

    async def call_text(
        self, claw: str, wire: str, arguments: dict[str, Any], *, run_id: int | None = None
    ) -> tuple[str, bool]:
        """The result as text and whether it is an error; `ToolRefused` when not allowed."""

    def audit(
        self,
        claw: str,
        tool: str,
        arguments: Any,
        duration: float,
        outcome: ToolOutcome,
        error: str | None,
        run_id: int | None,
    ) -> None: ...


log = logging.getLogger("clawmcp")


class Runtime:
    """Runs the Claws of a manifest with its tool hub, model providers and store."""

    def __init__(
        self,
        manifest: Manifest,
        store: Store,
        events: Events,
        hub: Tools,
        providers: Mapping[str, Provider],
        router: Messaging,
        scheduler: Schedules | None = None,
        *,
        remotes: Mapping[str, Remote] | None = None,
        approvals: Approvals | None = None,
    ) -> None:
        """`remotes`, in a host: the workers of the Claws with `isolation: process`, by Claw
        (absent while one restarts; the Claws keep it). None in a worker, which runs its Claw
        itself. `approvals`: the host's inbox (a worker's own by default)."""
        self.manifest, self.store, self.events, self.hub, self.providers = (
            manifest,
            store,
            events,
            hub,
            providers,
        )
        self.remotes = remotes
        self.approvals = approvals or Approvals(manifest, store, events)
        self.clock = self.approvals.clock
        """The host's clock: it says when a UTC day begins (tokens_per_day)."""
        self.builtins = Builtins(manifest, store, router, scheduler, self.spawn, hub.audit)
        self._threads: dict[tuple[str, str], tuple[anyio.Lock, int]] = {}
        self.active: Counter[str] = Counter()
        """Runs going on, per Claw."""
        self.stopping = False
        self._runs: set[anyio.CancelScope] = set()
        self._of_message: dict[int, tuple[str, anyio.CancelScope]] = {}
        self._cancelled: set[int] = set()
        """Messages whose runs going on here a person cancelled."""
        self._spawns = itertools.count(1)
        self.run_finished = anyio.Event()
        """Set (and replaced) each time a run finishes: watchers wait on it instead of polling."""

    def stop(self) -> None:
        """Take no new runs and interrupt those going on (each is recorded as interrupted)."""
        self.stopping = True
        for scope in self._runs:
            scope.cancel()

    def cancel(self, message_id: int) -> bool:
        """Stop the run of a message a person cancelled, if it goes on here: it ends `cancelled`."""
        found = self._of_message.get(message_id)
        if found is not None:
            self._cancelled.add(message_id)
            found[1].cancel()
        return found is not None

    def running(self, claw: str) -> list[int]:
        """The messages of the Claw whose runs go on here."""
        return [m for m, (c, _) in self._of_message.items() if c == claw]

    def tools_for(self, claw: str, subset: frozenset[str] | None = None) -> list[ToolSpec]:
        """What the Claw's model is offered: its allowed hub tools (a sub-agent: those of `subset`)
        and the built-in tools."""
        hub = [
            ToolSpec(t.wire, t.description, t.input_schema)
            for t in self.hub.tools_for(claw)
            if subset is None or t.wire in subset
        ]
        return hub + self.builtins.specs_for(claw)

    async def run(
        self,
        claw: str,
        input: str,
        *,
        thread: str = "default",
        trigger: RunTrigger = "ask",
        message_id: int | None = None,
        will_retry: bool = False,
        acknowledge: bool = True,
        parent_run_id: int | None = None,
        on_step: OnStep | None = None,
        chain: tuple[str, ...] = (),
        tools: frozenset[str] | None = None,
        instructions: str | None = None,
        resume: int | None = None,
    ) -> Run:
        """Run the Claw on `input` once it is this thread's turn; return the finished run.

        The outcome is the run's state: `done` with a reply, `limit` (max_steps or run_timeout)
        or `failed` (the model provider failed), each with its error. A cancelled run is recorded
        as `interrupted`. With `will_retry` (a message before its last try), a failed run adds
        nothing to the thread's history: a message is in it once, at its final outcome. `on_step`
        hears of each step once it is committed (MCP progress). A run of a message marks it done
        as it ends (unless it failed), in the same commit, unless `acknowledge` is false.
        `chain` names the Claws waiting on this run through `claw__ask`; `tools` and `instructions`
        are a sub-agent's (`claw__spawn`).

        A call that needs a person's approval makes the run wait: a run of a message parks (it
        returns `waiting`, its message left running) and a decision queues the message again, to
        be run with `resume` (the waiting run's id), which goes on from the run's stored steps. A
        run without a message waits here. `BudgetSpent` when the Claw's tokens_per_day are spent.
        """
        self.manifest.check_claw(claw)
        if self.stopping:
            raise Stopping("the host is stopping; try again once it is back")
        if self.remotes is not None and self.manifest.claws[claw].isolation == "process":
            remote = self.remotes.get(claw)
            if remote is None:
                raise RuntimeFault(
                    f"Claw '{claw}' is not running now: its worker process is restarting or failed"
                )
            self.active[claw] += 1
            try:
                return await remote.run(
                    input,
                    thread=thread,
                    trigger=trigger,
                    message_id=message_id,
                    will_retry=will_retry,
                    acknowledge=acknowledge,
                    on_step=on_step,
                    resume=resume,
                )
            finally:
                self.active[claw] -= 1
        async with self._turn(claw, thread):
            memory = self.manifest.claws[claw].memory
            summarised = memory.compact == "summary"  # its context begins at the latest summary
            last = 0 if summarised else memory.history
            if resume is not None:
                run, history = await self.store.resume_run(resume, history=last)
            else:
                await self.check_budget(claw)
                run, history = await self.store.start_run(
                    claw,
                    thread,
                    trigger,
                    input,
                    message_id=message_id,
                    parent_run_id=parent_run_id,
                    history=last,
                )
            if summarised and memory.history > 0:
                history = await self.store.context(claw, thread, memory.history)
            self.events.emit(
                "run",
                claw,
                run=run.id,
                message=message_id,
                state="running",
                trigger=trigger,
                thread=thread,
                input=excerpt(input),
            )
            self.active[claw] += 1  # until its end is stored
            try:
                with anyio.CancelScope() as scope:  # `stop` or `cancel` ends it: no more steps
                    self._runs.add(scope)
                    if message_id is not None:
                        self._of_message[message_id] = (claw, scope)
                    ctx = RunContext(claw, run.id, thread, (*chain, claw), tools, instructions)
                    steps = _Steps(
                        self.store,
                        self.events,
                        ctx,
                        on_step,
                        message_id=message_id,
                        resumed=resume is not None,
                    )
                    try:
                        state, reply, error = await self._loop(ctx, run, history, steps)
                    except _Parked:
                        return await self._parked(run)
                    except anyio.get_cancelled_exc_class():
                        ended: tuple[RunState, str] = (
                            ("cancelled", CANCELLED)
                            if message_id in self._cancelled
                            else ("interrupted", "the run was stopped")
                        )
                        with anyio.CancelScope(shield=True):
                            run = await self.store.finish_run(
                                run.id, ended[0], error=ended[1], step=steps.last
                            )
                            await steps.ended(run)
                            self.ended(run)
                        raise
                    finally:
                        self._runs.discard(scope)
                        if message_id is not None:
                            self._of_message.pop(message_id, None)
                            self._cancelled.discard(message_id)
                if scope.cancelled_caught:
                    return run
                run = await self._end(run, state, reply, error, steps, will_retry, acknowledge)
                return self.ended(run)
            finally:
                self.active[claw] -= 1

    async def tokens_today(self, claw: str) -> tuple[int, float]:
        """The Claw's tokens since the start of this UTC day, and when the next day starts."""
        now = self.clock.now()
        day = now - now % 86400
        return await self.store.tokens_used(claw, day), day + 86400

    async def check_budget(self, claw: str) -> None:
        """`BudgetSpent` when the Claw has used its `tokens_per_day` today (UTC)."""
        budget = self.manifest.claws[claw].limits.tokens_per_day
        if budget is None:
            return
        used, tomorrow = await self.tokens_today(claw)
        if used >= budget:
            raise BudgetSpent(f"Claw '{claw}': tokens_per_day {budget} spent; {SPENT}", tomorrow)

    async def _parked(self, run: Run) -> Run:
        """The run waits for a person; its message stays running until a decision queues it again."""
        parked = await self.store.get_run(run.id)
        assert parked is not None
        self.events.emit(
            "run",
            run.claw,
            run=run.id,
            message=run.message_id,
            state="waiting",
            trigger=run.trigger,
            thread=run.thread,
        )
        return parked

    async def _end(
        self,
        run: Run,
        state: RunState,
        reply: str | None,
        error: str | None,
        steps: _Steps,
        will_retry: bool,
        acknowledge: bool,
    ) -> Run:
        """One write ends the run: its last step, its history (unless it failed and will be tried
        again), its outcome and, unless it failed, its message done."""
        error = self.manifest.redact(error) if error is not None else None
        note = reply if reply is not None else f"[no reply: {error}]"
        history = [] if state == "failed" and will_retry else [("user", run.input), ("assistant", note)]
        end = functools.partial(
            self.store.finish_run,
            run.id,
            state,
            reply=reply,
            error=error,
            input_tokens=steps.used[0],
            output_tokens=steps.used[1],
            step=steps.last,
            history=history,
            ack=acknowledge and state != "failed",
        )
        try:
            run = await _stored(end, run.claw)
        except StoreError as e:  # what the run produced cannot be stored: the run fails
            log.exception(
                "Claw '%s': run %d could not be recorded", run.claw, run.id, extra={"claw": run.claw}
            )
            error = f"internal error: the run's outcome could not be stored: {e}"
            run = await _stored(
                functools.partial(self.store.finish_run, run.id, "failed", error=error), run.claw
            )
        await steps.ended(run)
        return run

    def ended(self, run: Run) -> Run:
        """The run has ended: an event, and `run_finished`."""
        assert run.ended_at is not None
        self.events.emit(
            "run",
            run.claw,
            run=run.id,
            message=run.message_id,
            state=run.state,
            trigger=run.trigger,
            thread=run.thread,
            duration=run.ended_at - run.started_at,
            reply=excerpt(run.reply),
            error=run.error,
            input_tokens=run.input_tokens,
            output_tokens=run.output_tokens,
        )
        fired, self.run_finished = self.run_finished, anyio.Event()
        fired.set()
        return run

    @contextlib.asynccontextmanager
    async def _turn(self, claw: str, thread: str) -> AsyncIterator[None]:
        """One run at a time per thread; anyio locks serve waiters in arrival order."""
        key = (claw, thread)
        lock, users = self._threads.get(key, (anyio.Lock(), 0))
        self._threads[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._threads[key]
            if users == 1:
                del self._threads[key]
            else:
                self._threads[key] = (lock, users - 1)

    async def spawn(
        self, parent: RunContext, task: str, instructions: str | None, tools: list[str] | None
    ) -> Run:
        """Run a sub-agent of the parent's Claw on a task: its own fresh thread, at most the tools
        its parent has, its steps in a run whose parent is the caller's run."""
        if len(parent.chain) >= MAX_DEPTH:
            raise ToolRefused(f"claw__spawn: too deep ({' → '.join(parent.chain)}); the limit is {MAX_DEPTH}")
        offered = {
            t.name for t in self.tools_for(parent.claw, parent.tools) if not t.name.startswith("claw__")
        }
        if tools is not None and (extra := sorted(set(tools) - offered)):
            raise ToolRefused(f"claw__spawn: not among this Claw's tools: {', '.join(extra)}")
        return await self.run(
            parent.claw,
            task,
            thread=f"spawn-{parent.run_id}-{next(self._spawns)}",
            trigger="spawn",
            parent_run_id=parent.run_id,
            chain=parent.chain,
            tools=frozenset(offered if tools is None else tools),
            instructions=instructions,
        )

    async def _loop(
        self, ctx: RunContext, run: Run, history: list[HistoryEntry], steps: _Steps
    ) -> tuple[RunState, str | None, str | None]:
        claw = ctx.claw
        config = self.manifest.claws[claw]
        models = Fallback(self.providers, config.model)
        steps.primary = models.name
        system = (
            ctx.instructions or config.instructions or f"You are {claw}, an assistant. {config.description}"
        )
        system = system.strip()
        tools = self.tools_for(claw, ctx.tools)
        steps.used = [run.input_tokens, run.output_tokens]  # a resumed run goes on from what it used
        limits = config.limits
        state: RunState = "limit"
        reply = error = None

        async def summarise(prompt: str, messages: Sequence[Msg]) -> str:
            turn = await models.complete(prompt, messages, [])
            steps.spent(turn)
            if turn.calls:  # offered none: no summary either
                raise ModelError(f"model '{models.name}' asked for tools instead of summarising")
            return turn.text

        with anyio.move_on_after(limits.run_timeout) as steps.timer:
            try:
                summary, history = await compacted(
                    self.store, run, history, config.memory, None if steps.resumed else summarise
                )
                if summary is not None:
                    system = f"{system}\n\n{SUMMARY_HEADING}\n{summary}".strip()
                messages = [
                    Msg("assistant" if h.role == "assistant" else "user", str(h.content)) for h in history
                ]
                messages.append(Msg("user", run.input))
                if steps.resumed and (replay := await self._replay(ctx, messages, steps)):
                    messages.append(Msg("tool", results=tuple(await self._call_tools(ctx, replay, steps))))
                for turn_number in range(steps.turns, limits.max_steps):
                    turn = await models.complete(system, messages, tools)
                    steps.spent(turn)
                    model = {
                        "text": turn.text,
                        "calls": [_call_data(c) for c in turn.calls],
                        "model": models.name,  # the one that answered
                    }
                    if not turn.calls:
                        steps.end("model", model)
                        state, reply = "done", turn.text
                        break
                    budget = limits.tokens_per_run
                    if budget is not None and sum(filter(None, steps.used)) > budget:
                        steps.end("model", model)
                        error = f"tokens_per_run {budget} used"
                        break
                    if turn_number == limits.max_steps - 1:
                        steps.end("model", model)
                        error = f"stopped at max_steps ({limits.max_steps}); the model still asked for tools"
                        break
                    await steps.add("model", model)
                    messages.append(Msg("assistant", turn.text, turn.calls))
                    results = await self._call_tools(ctx, turn.calls, steps)
                    messages.append(Msg("tool", results=tuple(results)))
            except ModelError as e:
                state, error = "failed", str(e)
            except _Parked:
                raise
            except Exception as e:  # a fault of ours or of the store: the run fails, the Claw goes on
                log.exception("claw '%s': run %d failed", claw, run.id, extra={"claw": claw, "run": run.id})
                state, error = "failed", f"internal error: {type(e).__name__}: {e}"
        if steps.timer.cancelled_caught:
            state, error = "limit", f"stopped at run_timeout ({limits.run_timeout:g}s)"
        elif state == "done" and steps.calls and len(steps.refused) == steps.calls:
            # A reply made of refusals is no answer: say what was refused.
            state, reply, error = "failed", None, f"every tool call was refused: {steps.refused[0]}"
        return state, reply, error

    async def _replay(self, ctx: RunContext, messages: list[Msg], steps: _Steps) -> list[ToolRequest]:
        """A resumed run's context, rebuilt from its stored steps: each model turn and the results
        of its calls, appended to `messages`. Returns the calls of the last turn, whose results
        (those it has, and the rest once run or decided) come next."""
        stored = await self.store.steps(ctx.run_id)
        if not stored:
            return []
        results = {s.data["id"]: s.data for s in stored if s.kind == "tool_result"}
        steps.logged = {s.data["id"] for s in stored if s.kind == "tool_call"}
        steps.count = stored[-1].index + 1
        decided = await self.store.approvals(run_id=ctx.run_id)
        steps.decided = {a.call_id: a for a in decided if a.kind == "approval" and a.state != "pending"}
        calls: list[ToolRequest] = []
        for step in (s for s in stored if s.kind == "model"):
            if calls:
                messages.append(Msg("tool", results=tuple(steps.known[c.id] for c in calls)))
            calls = [ToolRequest(c["id"], c["name"], c["arguments"]) for c in step.data["calls"]]
            messages.append(Msg("assistant", step.data["text"], tuple(calls)))
            for c in calls:
                if (r := results.get(c.id)) is not None:
                    steps.known[c.id] = ToolResult(c.id, c.name, r["text"], r["is_error"])
            steps.turns += 1
        return calls

    async def _call_tools(
        self, ctx: RunContext, calls: Sequence[ToolRequest], steps: _Steps
    ) -> list[ToolResult]:
        """Run one turn's tool calls at once; each call and each result is a step of the run. A
        call that needs a person's approval is run once it is approved; a run of a message parks
        meanwhile (`_Parked`, once the turn's other calls are done)."""
        for call in calls:
            if call.id not in steps.logged:
                await steps.add("tool_call", _call_data(call))
        steps.calls += len(calls)
        results: dict[str, ToolResult] = {c.id: r for c in calls if (r := steps.known.get(c.id))}
        waiting: list[tuple[ToolRequest, Approval]] = []

        async def one(call: ToolRequest, waits: list[tuple[ToolRequest, Approval]]) -> None:
            started = time.perf_counter()
            text, is_error = await self._call_one(ctx, call, steps, waits)
            if not any(c is call for c, _ in waits):
                await self._result(ctx, call, text, is_error, started, steps, results)

        async with anyio.create_task_group() as tg:
            for call in calls:
                if call.id not in results:
                    tg.start_soon(one, call, waiting)
        if waiting and steps.park:
            raise _Parked
        if waiting:  # no message holds this run: it waits here, its run_timeout paused
            remaining = steps.timer.deadline - anyio.current_time()
            steps.timer.deadline = math.inf
            decided = [await self.approvals.wait(approval, ASKER.get()) for _, approval in waiting]
            steps.timer.deadline = anyio.current_time() + remaining
            await self.store.resume_run(ctx.run_id)
            steps.decided |= {a.call_id: a for a in decided}
            async with anyio.create_task_group() as tg:
                for call, _ in waiting:
                    tg.start_soon(one, call, [])
        return [results[c.id] for c in calls if c.id in results]

    async def _call_one(
        self, ctx: RunContext, call: ToolRequest, steps: _Steps, waiting: list[tuple[ToolRequest, Approval]]
    ) -> tuple[str, bool]:
        """The result of one call, unless it now waits for a person (then added to `waiting`)."""
        if not isinstance(call.arguments, dict):
            return f"{call.name}: arguments must be a JSON object, got {call.arguments!r}", True
        if call.name.startswith("claw__"):
            return await self.builtins.call(ctx, call.name, call.arguments)
        if ctx.tools is not None and call.name not in ctx.tools:
            steps.refused.append(text := f"tool '{call.name}' was not given to this sub-agent")
            return text, True
        arguments = call.arguments
        if (approval := steps.decided.get(call.id)) is not None:
            if approval.state != "approved":
                return outcome_text(approval), True
            arguments = approval.arguments  # exactly what the person saw
        elif (tool := self._needs_approval(ctx.claw, call.name)) is not None:
            used = (steps.used[0], steps.used[1])
            approval = await self.approvals.request(
                ctx.run_id, ctx.claw, tool.qualified, call.id, arguments, used
            )
            waiting.append((call, approval))
            await steps.add("approval", {"id": approval.id, "call": call.id, "name": approval.tool})
            return "", False
        try:
            return await self.hub.call_text(ctx.claw, call.name, arguments, run_id=ctx.run_id)
        except ToolRefused as e:  # the model is told, and may try something else
            steps.refused.append(str(e))
            return str(e), True

    def _needs_approval(self, claw: str, wire: str) -> Tool | None:
        """The hub tool, when the Claw's call of it waits for a person's approval."""
        if not self.manifest.claws[claw].approve:
            return None
        tool = next((t for t in self.hub.tools_for(claw) if t.wire == wire), None)
        return tool if tool and self.approvals.needs(claw, tool.qualified, tool.destructive) else None

    async def _result(
        self,
        ctx: RunContext,
        call: ToolRequest,
        text: str,
        is_error: bool,
        started: float,
        steps: _Steps,
        results: dict[str, ToolResult],
    ) -> None:
        if is_error:  # an error may name a server's URL, whose key came from a variable
            text = self.manifest.redact(text)
        results[call.id] = ToolResult(call.id, call.name, text, is_error)
        data = {"id": call.id, "name": call.name, "text": text, "is_error": is_error}
        await steps.add("tool_result", data | {"duration": time.perf_counter() - started})


class _Parked(Exception):
    """The run waits for a person; its message stays running (see `Runtime.run`)."""


class _Steps:
    """Adds the steps of one run, and tells `on_step` of each once it is committed; a model turn
    is also an event. The last step (`end`) is committed with the run's end. It keeps what the
    run has used and what a resumed run already did."""

    def __init__(
        self,
        store: Store,
        events: Events,
        ctx: RunContext,
        on_step: OnStep | None,
        *,
        message_id: int | None,
        resumed: bool,
    ) -> None:
        """A run of a message (`message_id`) parks while it waits for a person (see
        `Runtime.run`); `resumed`: the run goes on from its stored steps."""
        self.store, self.events, self.ctx, self.on_step = store, events, ctx, on_step
        self.message_id, self.park, self.resumed = message_id, message_id is not None, resumed
        self.turns = self.count = 0
        self.last: tuple[StepKind, Any] | None = None
        self.calls = 0
        self.refused: list[str] = []
        """What refused the run's tool calls (not allowed, not there)."""
        self.used: list[int | None] = [None, None]
        """Input and output tokens so far."""
        self.primary = ""
        """The Claw's first model: a turn of another one is a fallback."""
        self.timer = anyio.CancelScope()
        """The run's run_timeout."""
        self.logged: set[str] = set()
        self.known: dict[str, ToolResult] = {}
        self.decided: dict[str, Approval] = {}
        """A resumed run's calls logged, their results, and the decisions on them, by call id."""

    def spent(self, turn: Turn) -> None:
        """Count the tokens of a model's answer."""
        for i, n in enumerate((turn.input_tokens, turn.output_tokens)):
            if n is not None:
                self.used[i] = (self.used[i] or 0) + n

    async def add(self, kind: StepKind, data: Any) -> None:
        step = await self.store.add_step(self.ctx.run_id, kind, data)
        self.count = step.index + 1
        await self._committed(step)

    def end(self, kind: StepKind, data: Any) -> None:
        self.last = (kind, data)

    async def ended(self, run: Run) -> None:
        """The run's end, with its last step, is committed."""
        if self.last is not None:
            assert run.ended_at is not None
            await self._committed(Step(run.id, self.count, *self.last, run.ended_at))

    async def _committed(self, step: Step) -> None:
        if step.kind == "model":
            self.turns += 1
            calls = [c["name"] for c in step.data["calls"]]
            text = excerpt(step.data["text"])
            model = step.data.get("model")  # not in the steps of an older version
            self.events.emit(
                "model",
                self.ctx.claw,
                run=self.ctx.run_id,
                message=self.message_id,
                turn=self.turns,
                calls=calls,
                text=text,
                model=model,
                fallback=model is not None and model != self.primary,
            )
        if self.on_step is not None:
            await self.on_step(step)


async def _stored(write: Callable[[], Awaitable[T]], claw: str) -> T:
    """A write a run cannot do without (its end: the model's reply cost time and tokens). While
    the store cannot commit (a full disk), wait and try again, the run held where it is."""
    wait = 0.5
    while True:
        try:
            return await write()
        except StoreUnavailable as e:
            log.warning(
                "Claw '%s': the state store cannot commit (%s); trying again in %gs",
                claw,
                e,
                wait,
                extra={"claw": claw},
            )
            await anyio.sleep(wait)
            wait = min(30.0, wait * 2)


def _call_data(call: ToolRequest) -> dict[str, Any]:
    return {"id": call.id, "name": call.name, "arguments": call.arguments}

"""The built-in `claw__*` tools every Claw has (DESIGN §3), run inside the host.

They live apart from the tool hub because they act on the Claw itself (its memory, its messages,
its sub-agents), not on a tool server. Each call is checked against its schema, audited like any
tool call, and a refusal comes back to the model as an error result.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from clawmcp.arguments import invalid_arguments
from clawmcp.errors import ClawError, RuntimeFault, ToolRefused, UserError
from clawmcp.manifest import Manifest
from clawmcp.models.base import ToolSpec
from clawmcp.scheduler import SCHEDULE_SCHEMA
from clawmcp.store import HistoryStore, Message, Run, Schedule, ToolOutcome

__all__ = ["ASK_TIMEOUT", "Audit", "Builtins", "Messaging", "RunContext", "Schedules", "Spawn"]

ASK_TIMEOUT = 120.0
"""Seconds `claw__ask` waits for a reply unless the model gives `timeout`."""


def _spec(name: str, description: str, properties: dict[str, Any], required: list[str]) -> ToolSpec:
    schema = {"type": "object", "properties": properties, "required": required, "additionalProperties": False}
    return ToolSpec(f"claw__{name}", description, schema)


_TEXT = {"type": "string", "minLength": 1}
_MEMORY = [
    _spec(
        "remember",
        "Store a note in your persistent memory. A note with the same key replaces the old one.",
        {"text": _TEXT, "key": {"type": "string", "description": "optional; reusing it replaces that note"}},
        ["text"],
    ),
    _spec(
        "recall",
        "Search your persistent memory: notes that contain every word of the query, best first.",
        {"query": _TEXT, "limit": {"type": "integer", "minimum": 1, "maximum": 50, "default": 5}},
        ["query"],
    ),
]
_OTHERS = [
    _spec(
        "publish",
        "Publish a message on a topic: every Claw subscribed to it gets its own copy.",
        {"topic": _TEXT, "content": _TEXT},
        ["topic", "content"],
    ),
    _spec(
        "spawn",
        "Run a temporary sub-agent on a task and return its answer. It gets your tools, or the ones"
        " you name (wire names), never more.",
        {
            "task": _TEXT,
            "instructions": {"type": "string"},
            "tools": {"type": "array", "items": {"type": "string"}},
        },
        ["task"],
    ),
]
_SCHEDULES = [
    ToolSpec(
        "claw__schedule",
        "Schedule your own future work: every, cron (+ timezone) or at; then a prompt for yourself,"
        " a send to a Claw you talk to, or a tool call. Replaces your schedule of the same name.",
        SCHEDULE_SCHEMA,
    ),
    _spec("unschedule", "Remove one of your schedules by its id.", {"id": {"type": "integer"}}, ["id"]),
]
_MESSAGING = [
    _spec(
        "send",
        "Send a durable message to another Claw; returns its id. The other Claw handles it later.",
        {"to": _TEXT, "content": _TEXT},
        ["to", "content"],
    ),
    _spec(
        "ask",
        "Ask another Claw and wait for its reply to exactly this message.",
        {
            "to": _TEXT,
            "content": _TEXT,
            "timeout": {"type": "number", "exclusiveMinimum": 0, "description": "seconds"},
        },
        ["to", "content"],
    ),
]


@dataclass(frozen=True)
class RunContext:
    """A run as its tools see it: the Claw, the run, and what the run may do."""

    claw: str
    run_id: int
    thread: str
    chain: tuple[str, ...]
    """The Claws waiting on this run through `claw__ask`, then this Claw."""
    tools: frozenset[str] | None = None
    """A sub-agent's hub tools (wire names); None: all the Claw may use."""
    instructions: str | None = None


# -- the ports the built-in tools act through -------------------------------------------------


class Messaging(Protocol):
    """Messages between Claws (the router)."""

    async def send(self, sender: str, to: str, content: str) -> Message: ...

    async def ask(
        self, sender: str, to: str, content: str, *, chain: tuple[str, ...], within: float
    ) -> str: ...

    async def publish(self, sender: str, topic: str, content: str) -> list[Message]: ...


class Schedules(Protocol):
    """A Claw's own schedules (the scheduler)."""

    async def schedule(self, claw: str, fields: dict[str, Any]) -> Schedule: ...

    async def unschedule(self, claw: str, schedule_id: int) -> None: ...


Spawn = Callable[[RunContext, str, str | None, list[str] | None], Awaitable[Run]]
"""Runs a sub-agent: the parent run, the task, its instructions, its tools."""

Audit = Callable[[str, str, Any, float, ToolOutcome, str | None, int | None], None]
"""Records a tool call: Claw, tool, arguments, duration, outcome, error, run."""


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")


class Builtins:
    """The built-in tools of the Claws of one runtime."""

    def __init__(
        self,
        manifest: Manifest,
        notes: HistoryStore,
        messaging: Messaging,
        schedules: Schedules | None,
        spawn: Spawn,
        audit: Audit,
    ) -> None:
        self.manifest, self.notes, self.messaging, self.schedules = manifest, notes, messaging, schedules
        self.spawn, self.audit = spawn, audit
        self.specs = {spec.name: spec for spec in [*_MEMORY, *_MESSAGING, *_OTHERS, *_SCHEDULES]}

    def specs_for(self, claw: str) -> list[ToolSpec]:
        """Memory, publish, spawn and schedules for every Claw (schedules when the host has a
        scheduler); send and ask for those with `talks_to`."""
        talks = bool(self.manifest.claws[claw].talks_to)
        schedules = _SCHEDULES if self.schedules else []
        return [*_MEMORY, *(_MESSAGING if talks else []), *_OTHERS, *schedules]

    async def call(self, ctx: RunContext, name: str, arguments: dict[str, Any]) -> tuple[str, bool]:
        """Run a built-in tool for a run: the result text and whether it is an error."""
        started = time.perf_counter()
        error: str | None = None
        try:
            text = await self._call(ctx, name, arguments)
        except ClawError as e:
            text = error = str(e)
        duration = time.perf_counter() - started
        outcome: Literal["ok", "refused"] = "ok" if error is None else "refused"
        self.audit(ctx.claw, name.replace("__", ".", 1), arguments, duration, outcome, error, ctx.run_id)
        return text, error is not None

    async def _call(self, ctx: RunContext, name: str, arguments: dict[str, Any]) -> str:
        spec = self.specs.get(name)
        if spec is None or spec not in self.specs_for(ctx.claw):
            raise ToolRefused(f"no built-in tool '{name}' for Claw '{ctx.claw}'")
        if problem := invalid_arguments(spec.parameters, arguments):
            raise UserError(f"{name}: {problem}")
        notes, router, args = self.notes, self.messaging, arguments
        if name == "claw__remember":
            note = await notes.remember(ctx.claw, args["text"], args.get("key"))
            return f"remembered (note {note.id})"
        if name == "claw__recall":
            found = await notes.recall(ctx.claw, args["query"], args.get("limit", 5))
            if not found:
                return f"no note matches {args['query']!r}"
            return json.dumps([{"key": n.key, "text": n.text, "at": _iso(n.at)} for n in found])
        if name == "claw__send":
            message = await router.send(ctx.claw, args["to"], args["content"])
            return f"sent to {args['to']} as message {message.id}"
        if name == "claw__ask":
            timeout = args.get("timeout", ASK_TIMEOUT)
            return await router.ask(ctx.claw, args["to"], args["content"], chain=ctx.chain, within=timeout)
        if name == "claw__publish":
            copies = await router.publish(ctx.claw, args["topic"], args["content"])
            return f"published to {len(copies)} subscribers of '{args['topic']}'"
        if scheduler := self.schedules:
            if name == "claw__schedule":
                schedule = await scheduler.schedule(ctx.claw, args)
                return f"schedule '{schedule.name}' saved as id {schedule.id}, next fire {schedule.next_fire}"
            if name == "claw__unschedule":
                await scheduler.unschedule(ctx.claw, args["id"])
                return f"schedule {args['id']} removed"
        run = await self.spawn(ctx, args["task"], args.get("instructions"), args.get("tools"))
        if run.state != "done":
            raise RuntimeFault(f"the sub-agent (run {run.id}) ended {run.state}: {run.error}")
        return run.reply or ""

"""Checks across entries, once every file is read: every name a manifest refers to exists."""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from clawmcp.address import loopback, split_listen
from clawmcp.errors import Problem
from clawmcp.manifest.load import Loc, Source
from clawmcp.manifest.model import Claw, Host, Model, Schedule, Trigger

__all__ = ["BUILTIN_TOOLS", "DESTRUCTIVE", "RESERVED_SERVERS", "Entry", "check", "tool_allowed"]

BUILTIN_TOOLS = ("send", "ask", "publish", "remember", "recall", "spawn", "schedule", "unschedule")
RESERVED_SERVERS = ("claw", "tools")
DESTRUCTIVE = "@destructive"
"""In `approve:`, every upstream tool annotated destructive (and not read-only)."""


@dataclass
class Entry:
    """One named entry of a table, valid (`value`) or not (None), and where it was written."""

    value: Any
    source: Source
    loc: Loc = ()


Tables = dict[str, dict[str, Entry]]


def tool_allowed(patterns: list[str], tool: str) -> bool:
    """Whether `SERVER.TOOL` is admitted by a Claw's `tools:` patterns."""
    return any(fnmatchcase(tool, p) for p in patterns)


def check(tables: Tables, host: Entry | None) -> list[Problem]:
    problems: list[Problem] = []
    names = {table: sorted(entries) for table, entries in tables.items()}

    def refer(source: Source, loc: Loc, what: str, name: str, known: list[str]) -> None:
        problems.append(
            source.problem(loc, f"unknown {what} '{name}' (defined: {', '.join(known) or 'none'})", "value")
        )

    for name, entry in tables["claws"].items():
        claw: Claw | None = entry.value
        if claw is None:
            continue
        loc: Loc = ("claws", name)
        for i, model_name in enumerate(claw.model):  # `model: NAME` is checked as its item 0
            if model_name not in tables["models"]:
                refer(entry.source, (*loc, "model", i), "model", model_name, names["models"])
        for i, target in enumerate(claw.talks_to):
            if not any(fnmatchcase(c, target) for c in tables["claws"]):
                refer(entry.source, (*loc, "talks_to", i), "Claw", target, names["claws"])
        for i, pattern in enumerate(claw.tools):
            if message := _pattern_problem(pattern, tables):
                problems.append(entry.source.problem((*loc, "tools", i), message, "value"))
        for i, pattern in enumerate(claw.approve):
            if pattern != DESTRUCTIVE and (message := _pattern_problem(pattern, tables)):
                problems.append(entry.source.problem((*loc, "approve", i), message, "value"))
        problems += _schedules(claw, loc, entry.source, tables)
        for model_name in claw.model:
            model_entry = tables["models"].get(model_name)
            rules = model_entry.value.rules if model_entry and model_entry.value else None
            longest = max((len(rule.steps) for rule in rules or []), default=0)
            if longest >= (max_steps := claw.limits.max_steps):
                message = (
                    f"model '{model_name}' has a rule of {longest} steps, which needs max_steps of at "
                    f"least {longest + 1} (one model turn per step, one for the reply); this Claw has "
                    f"{max_steps}"
                )
                problems.append(entry.source.problem((*loc, "limits", "max_steps"), message, "value"))

    for name, entry in tables["models"].items():
        model: Model | None = entry.value
        for i, rule in enumerate(model.rules or [] if model else []):
            for j, step in enumerate(rule.steps):
                if message := _wire_problem(step.tool, tables):
                    where = ("models", name, "rules", i, "steps", j, "tool")
                    problems.append(entry.source.problem(where, message, "value"))

    for name, entry in tables["servers"].items():
        if name in RESERVED_SERVERS:
            problems.append(
                entry.source.problem(entry.loc, f"'{name}' is reserved; name the server otherwise")
            )

    if host and isinstance(host.value, Host):
        seen: set[str] = set()
        for i, token in enumerate(host.value.auth.tokens):
            loc = ("host", "auth", "tokens", i)
            if token.name in seen:
                problems.append(
                    host.source.problem((*loc, "name"), f"token name '{token.name}' is used twice", "value")
                )
            seen.add(token.name)
            for j, pattern in enumerate(token.claws):
                if not any(fnmatchcase(c, pattern) for c in tables["claws"]):
                    refer(host.source, (*loc, "claws", j), "Claw", pattern, names["claws"])
        if not loopback(split_listen(host.value.listen)[0]):
            for name, entry in tables["claws"].items():
                for i, trigger in enumerate(entry.value.triggers if entry.value else []):
                    if trigger.webhook and trigger.webhook.signature == "none":
                        at = ("claws", name, "triggers", i, "webhook", "signature")
                        problem = f"signature 'none' needs a loopback host.listen, not {host.value.listen}"
                        problems.append(entry.source.problem(at, problem, "value"))
        alerts = host.value.alerts
        if alerts is not None and alerts.to is not None and alerts.to not in tables["claws"]:
            refer(host.source, ("host", "alerts", "to"), "Claw", alerts.to, names["claws"])
    return problems


def _servers(tables: Tables) -> list[str]:
    return sorted(tables["servers"]) + (["tools"] if tables["tools"] else [])


def _pattern_problem(pattern: str, tables: Tables) -> str | None:
    server, dot, tool = pattern.partition(".")
    if not any(fnmatchcase(s, server) for s in _servers(tables)):
        wire, _, name = pattern.partition("__")  # a wire name, as a model sees it
        example = f"{wire}.{name}" if name else f"{server}.*"
        hint = f"; patterns are SERVER.TOOL, e.g. '{example}'" if not dot else ""
        return f"'{pattern}' matches no server (servers: {', '.join(_servers(tables)) or 'none'}){hint}"
    if server == "tools" and not any(fnmatchcase(t, tool) for t in tables["tools"]):
        return f"'{pattern}' matches no manifest tool (tools: {', '.join(sorted(tables['tools']))})"
    if not dot and server != "*":
        return f"'{pattern}' names a server, not tools: write '{server}.*' for all of its tools"
    return None


def _schedules(claw: Claw, loc: Loc, source: Source, tables: Tables) -> list[Problem]:
    """Schedules and triggers: names unique among both (fires name them alike), actions allowed."""
    problems: list[Problem] = []
    seen: set[str] = set()
    actions: list[tuple[str, int, Schedule | Trigger]] = [
        ("schedules", i, s) for i, s in enumerate(claw.schedules)
    ]
    actions += [("triggers", i, t) for i, t in enumerate(claw.triggers)]
    for table, i, schedule in actions:
        here = (*loc, table, i)
        if schedule.name in seen:
            twice = f"name '{schedule.name}' is used twice among this Claw's schedules and triggers"
            problems.append(source.problem((*here, "name"), twice, "value"))
        seen.add(schedule.name)
        watched = getattr(schedule, "resource", None)
        if watched is not None and watched.server not in tables["servers"]:
            known = ", ".join(sorted(tables["servers"])) or "none"
            unknown = f"unknown server '{watched.server}' (defined: {known})"
            problems.append(source.problem((*here, "resource", "server"), unknown, "value"))
        if schedule.call:
            tool = schedule.call.tool
            message = _pattern_problem(tool, tables) if "." in tool else f"'{tool}' is not SERVER.TOOL"
            if not message and any(c in tool for c in "*?["):
                message = f"'{tool}' is a pattern; name one tool"
            if not message and not tool_allowed(claw.tools, tool):
                message = f"'{tool}' is not allowed by this Claw's tools: {claw.tools}"
            if message:
                problems.append(source.problem((*here, "call", "tool"), message, "value"))
        if schedule.send:
            to = schedule.send.to
            if to not in tables["claws"]:
                message = f"unknown Claw '{to}' (defined: {', '.join(sorted(tables['claws']))})"
            elif not any(fnmatchcase(to, t) for t in claw.talks_to):
                message = f"'{to}' is not in this Claw's talks_to"
            else:
                continue
            problems.append(source.problem((*here, "send", "to"), message, "value"))
    return problems


def _wire_problem(wire: str, tables: Tables) -> str | None:
    """A scripted step names a tool as a model would: SERVER__TOOL."""
    for prefix in [*tables["servers"], "claw", "tools"]:
        if wire.startswith(prefix + "__"):
            rest = wire[len(prefix) + 2 :]
            if prefix == "claw" and rest not in BUILTIN_TOOLS:
                builtins = ", ".join(f"claw__{b}" for b in BUILTIN_TOOLS)
                return f"unknown built-in tool '{wire}' (built-in: {builtins})"
            if prefix == "tools" and rest not in tables["tools"]:
                return (
                    f"unknown manifest tool '{wire}' (tools: {', '.join(sorted(tables['tools'])) or 'none'})"
                )
            return None
    return f"'{wire}' names no server: scripted steps use wire names such as SERVER__TOOL or claw__send"

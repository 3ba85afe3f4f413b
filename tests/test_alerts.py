"""Failures reach people (`host.alerts`), in a whole host in memory: a run that fails and a dead
letter become messages to the alert Claw, and a client subscribed to the failing Claw's status
hears of each; the alert Claw's own failures are not sent to it."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp.types import ResourceUpdatedNotification

from clawmcp.alerts import alert_text
from clawmcp.expose import ClawServer
from clawmcp.store import Event
from tests.fakes import API, FakeAPI, hosting, openai_error, until

pytestmark = pytest.mark.anyio

FAILING = f"""
host: {{data_dir: data, alerts: {{to: ops}}}}
models:
  broken: {{provider: openai, base_url: '{API}', model: m}}
  m: {{provider: scripted, rules: [{{reply: noted}}]}}
claws:
  w: {{model: broken}}
  ops: {{model: broken}}
  watcher: {{model: m}}
"""


async def test_a_failed_run_and_a_dead_letter_reach_the_alert_claw_and_subscribers(tmp_path: Path) -> None:
    api = FakeAPI(lambda n, body: openai_error(400, "no such model"))
    async with hosting(tmp_path, FAILING.replace("to: ops", "to: watcher"), api=api) as host:
        host.claws.retry_base = 0.001  # the tries of a message come quickly
        server = ClawServer(host.service, "w")
        heard = anyio.Event()

        async def on_message(message: Any) -> None:
            if (
                isinstance(message, ResourceUpdatedNotification)
                and str(message.params.uri) == "claw://w/status"
            ):
                heard.set()

        async with (
            anyio.create_task_group() as tg,
            Client(server.server, mode="legacy", message_handler=on_message) as client,
        ):
            tg.start_soon(server.watch)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", MCPDeprecationWarning)
                await client.subscribe_resource("claw://w/status")
            asked = await host.service.ask("w", "fail now")
            with anyio.fail_after(20):
                await heard.wait()
            told = await host.service.tell("w", "fail later")
            await host.service.ask("ops", "fail too")
            own = Event(1, 0.0, "delivery", "watcher", {"id": 9, "outcome": "dead", "attempts": 5})
            assert host.alerts.alert(own) is None  # the alert Claw's failures stay with it

            async def alerted() -> bool:
                said = [
                    str(e.content)
                    for e in await host.store.history("watcher", "alerts", 50)
                    if e.role == "user"
                ]
                return len(said) == 3 and sum("dead letter" in s for s in said) == 1

            await until(host, alerted)
            tg.cancel_scope.cancel()
        said = [str(e.content) for e in await host.store.history("watcher", "alerts", 50) if e.role == "user"]
    assert asked.state == "failed"
    assert said[0].startswith(f"alert: run {asked.id} of Claw 'w' failed: ")
    assert "no such model" in said[0]
    assert said[1].startswith("alert: run ") and "of Claw 'ops' failed" in said[1]
    assert said[2].startswith(f"alert: message {told.id} to Claw 'w' is a dead letter after 5 tries:")


def test_only_failures_make_alerts() -> None:
    def event(kind: str, **data: Any) -> Event:
        return Event(1, 0.0, kind, "c", data)  # type: ignore[arg-type]

    assert alert_text(event("run", state="failed", run=3, error="boom", trigger="message")) is None  # again
    assert alert_text(event("run", state="failed", run=3, error="boom", trigger="ask")) == (
        "run 3 of Claw 'c' failed: boom"
    )
    assert alert_text(event("run", state="done", run=3)) is None
    assert alert_text(event("delivery", outcome="retry", id=1, attempts=1, error="x")) is None
    assert (
        alert_text(event("fire", schedule="s", outcome="failed", error="x"))
        == "schedule 's' of Claw 'c' failed: x"
    )
    assert (
        alert_text(event("server", server="gh", state="down", error="gone"))
        == "tool server 'gh' is down: gone"
    )
    assert alert_text(event("server", server="gh", state="up", error=None)) is None
    assert alert_text(event("fire", schedule="s", action="prompt", lateness=0.0)) is None  # it fired


async def test_alerts_to_a_topic_reach_each_subscriber_but_not_about_itself(tmp_path: Path) -> None:
    api = FakeAPI(lambda n, body: openai_error(400, "no such model"))
    subscribed = "  watcher: {model: m, subscribe: [ops]}\n  pager: {model: m, subscribe: [ops]}"
    body = FAILING.replace("to: ops", "topic: ops").replace("  watcher: {model: m}", subscribed)
    async with hosting(tmp_path, body, api=api) as host:
        receivers = host.alerts.receivers()
        asked = await host.service.ask("w", "fail now")

        async def alerted() -> bool:
            return all([await host.store.history(c, "topic-ops", 10) for c in ("watcher", "pager")])

        await until(host, alerted)
        said = await host.store.history("pager", "topic-ops", 10)
    own = Event(1, 0.0, "run", "pager", {"state": "failed", "trigger": "ask", "run": 1, "error": "x"})
    assert receivers == ["watcher", "pager"]
    assert str(said[0].content).startswith(f"alert: run {asked.id} of Claw 'w' failed: ")
    assert host.alerts.alert(own) is None

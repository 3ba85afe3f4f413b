"""Claws messaging each other in a whole host, in memory: relays, asks, topics, sub-agents, and the
rules."""

from __future__ import annotations

import json
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import anyio
import pytest

from clawmcp.host import Host
from tests.fakes import LOCAL, hosting, time_server, tool_server, until

MANIFEST = r"""
models:
  relay:
    provider: scripted
    rules:
      - when: "^hop (?P<to>\\w+) (?P<rest>.+)"
        steps: [{tool: claw__send, arguments: {to: "{{ match.to }}", content: "{{ match.rest }}"}}]
        reply: "{{ results[0] }}"
      - when: "^ask (?P<to>\\w+) (?P<rest>.+)"
        steps: [{tool: claw__ask, arguments: {to: "{{ match.to }}", content: "{{ match.rest }}"}}]
        reply: "{{ results[0] }}"
      - when: "^hurry (?P<to>\\w+) (?P<rest>.+)"
        steps:
          - tool: claw__ask
            arguments: {to: "{{ match.to }}", content: "{{ match.rest }}", timeout: 0.2}
        reply: "{{ results[0] }}"
      - when: "^announce (?P<rest>.+)"
        steps: [{tool: claw__publish, arguments: {topic: alerts, content: "{{ match.rest }}"}}]
        reply: "{{ results[0] }}"
      - when: "^delegate (?P<rest>.+)"
        steps: [{tool: claw__spawn, arguments: {task: "{{ match.rest }}", tools: [time__get_current_time]}}]
        reply: "{{ results[0] }}"
      - when: "^overreach (?P<rest>.+)"
        steps: [{tool: claw__spawn, arguments: {task: "{{ match.rest }}", tools: [time__convert_time]}}]
        reply: "{{ results[0] }}"
      - when: "^slow"
        steps: [{tool: slow__pause}]
        reply: "finally"
      - when: "(?i)time"
        steps: [{tool: time__get_current_time, arguments: {timezone: UTC}}]
        reply: "{{ results[0] }}"
      - when: "^(?!fail)"
        reply: "echo: {{ input }}"
servers:
  time: LOCAL
  slow: LOCAL
claws:
  a: {model: relay, talks_to: [b, sleeper, limited], tools: ["time.get_current_time"]}
  limited: {model: relay, tools: ["slow.pause"], limits: {run_timeout: 50ms}}
  b: {model: relay, talks_to: [a, c]}
  c: {model: relay, subscribe: [alerts]}
  d: {model: relay, subscribe: [alerts]}
  sleeper: {model: relay, tools: ["slow.pause"]}
""".replace("LOCAL", LOCAL)


async def pause() -> str:
    """A tool that never answers."""
    await anyio.sleep_forever()
    return "never"


def hosted(tmp_path: Path) -> AbstractAsyncContextManager[Host]:
    return hosting(tmp_path, MANIFEST, servers={"time": time_server(), "slow": tool_server("slow", pause)})


async def contents(host: Host, claw: str, thread: str) -> list[str]:
    return [str(h.content) for h in await host.store.history(claw, thread, 20)]


@pytest.mark.anyio
async def test_a_relay_of_three_claws_ends_in_the_last_ones_history(tmp_path: Path) -> None:
    async with hosted(tmp_path) as host:
        told = await host.claws.tell("a", "hop b hop c hello there")
        await until(host, lambda: _has(host, "c", "b", 2))
        assert await contents(host, "c", "b") == ["hello there", "echo: hello there"]
        assert (await contents(host, "b", "a"))[0] == "hop c hello there"
        [run_a] = await host.store.runs("a")
        assert run_a.message_id == told.id and run_a.reply and run_a.reply.startswith("sent to b as message")


async def _has(host: Host, claw: str, thread: str, n: int) -> bool:
    return len(await host.store.history(claw, thread, 20)) >= n


@pytest.mark.anyio
async def test_each_ask_gets_the_reply_to_its_own_message(tmp_path: Path) -> None:
    async with hosted(tmp_path) as host:
        replies: dict[int, str | None] = {}

        async def ask(i: int) -> None:
            run = await host.runtime.run("a", f"ask b question {i}", thread=f"t{i}")
            replies[i] = run.reply

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for i in range(8):
                    tg.start_soon(ask, i)
    assert replies == {i: f"echo: question {i}" for i in range(8)}


@pytest.mark.anyio
async def test_talks_to_is_enforced_and_a_refused_send_is_audited(tmp_path: Path) -> None:
    async with hosted(tmp_path) as host:
        run = await host.runtime.run("a", "hop c sneaky")
        no_send = await host.runtime.run("c", "hop a hi")
    assert run.reply == "Claw 'a' may not message 'c' (talks_to: ['b', 'sleeper', 'limited'])"
    assert no_send.reply == "no built-in tool 'claw__send' for Claw 'c'"  # c has no talks_to
    async with host.store:
        calls = await host.store.tool_calls("a")
    assert [(c.tool, c.outcome, c.error) for c in calls] == [("claw.send", "refused", run.reply)]


@pytest.mark.anyio
async def test_an_ask_that_is_not_answered_in_time_fails_with_that_error(tmp_path: Path) -> None:
    async with hosted(tmp_path) as host:
        run = await host.runtime.run("a", "hurry sleeper slow")
    assert run.state == "done"
    assert run.reply is not None and run.reply.startswith("'sleeper' did not answer within 0.2s")


@pytest.mark.anyio
async def test_an_ask_loop_fails_fast_instead_of_deadlocking(tmp_path: Path) -> None:
    async with hosted(tmp_path) as host:
        with anyio.fail_after(10):  # the default ask timeout is 120 s
            run = await host.runtime.run("a", "ask b ask a anything")
    assert run.reply == "ask loop: a → b → a; 'a' is already waiting in this chain"


@pytest.mark.anyio
async def test_publish_gives_every_subscriber_its_own_copy(tmp_path: Path) -> None:
    async with hosted(tmp_path) as host:
        run = await host.runtime.run("a", "announce disk full")
        await until(host, lambda: _both(host))
    assert run.reply == "published to 2 subscribers of 'alerts'"


async def _both(host: Host) -> bool:
    return all([await contents(host, c, "topic-alerts") == ["disk full", "echo: disk full"] for c in "cd"])


@pytest.mark.anyio
async def test_a_sub_agent_runs_with_at_most_its_parents_tools(tmp_path: Path) -> None:
    async with hosted(tmp_path) as host:
        run = await host.runtime.run("a", "delegate what time is it")
        runs = await host.store.runs("a")
        refused = await host.runtime.run("a", "overreach what time is it")
    assert json.loads(run.reply or "")["timezone"] == "UTC"
    spawned = next(r for r in runs if r.trigger == "spawn")
    assert spawned.parent_run_id == run.id and spawned.input == "what time is it"
    assert [s.kind for s in await _steps(host, spawned.id)] == ["model", "tool_call", "tool_result", "model"]
    assert refused.reply == "claw__spawn: not among this Claw's tools: time__convert_time"


async def _steps(host: Host, run_id: int) -> list[Any]:
    async with host.store:
        return await host.store.steps(run_id)


@pytest.mark.anyio
async def test_a_message_whose_run_keeps_failing_becomes_a_dead_letter(tmp_path: Path) -> None:
    async with hosted(tmp_path) as host:
        host.claws.retry_base = 0.01
        told = await host.claws.tell("c", "fail always")
        await until(host, lambda: _dead(host))
        status = await host.claws.status("c")
        runs = await host.store.runs("c")
    assert [r.state for r in runs] == ["failed"] * 5
    [dead] = status["dead_letters"]
    assert dead["id"] == told.id and "no rule matches" in dead["error"]
    assert status["mailbox"] == 0


async def _dead(host: Host) -> bool:
    return bool(await host.store.dead_letters("c"))


@pytest.mark.anyio
async def test_an_ask_whose_recipient_hits_a_limit_or_a_dead_letter_says_so_at_once(tmp_path: Path) -> None:
    async with hosted(tmp_path) as host:
        host.claws.retry_base = 0.001
        with anyio.fail_after(20):  # not the ask's two minutes
            limited = await host.runtime.run("a", "ask limited slow")
            dead = await host.runtime.run("a", "ask b fail every time")
    assert limited.reply is not None and limited.reply.startswith("'limited' could not answer message ")
    assert limited.reply.endswith(": stopped at run_timeout (0.05s)")
    assert dead.reply is not None and "could not answer message" in dead.reply
    assert "dead letter after 5 tries: " in dead.reply

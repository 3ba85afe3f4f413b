"""The agent loop in a whole host, in memory: scripted rules driving an MCP server, memory,
history across restarts, limits, and one run at a time per thread."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import anyio
import pytest

from clawmcp.errors import Stopping
from clawmcp.store.memory import MemoryStore
from tests.fakes import API, LOCAL, FakeAPI, hosting, openai_text, time_server

SCRIPTED = f"""
models:
  canned:
    provider: scripted
    rules:
      - when: "time in (?P<zone>[A-Za-z_/]+)"
        steps:
          - tool: time__get_current_time
            arguments: {{timezone: "{{{{ match.zone }}}}"}}
        reply: "{{{{ results[0] }}}}"
      - when: "^remember (?P<what>.+)"
        steps:
          - tool: claw__remember
            arguments: {{text: "{{{{ match.what }}}}"}}
        reply: "noted"
      - when: "^recall (?P<what>.+)"
        steps:
          - tool: claw__recall
            arguments: {{query: "{{{{ match.what }}}}"}}
        reply: "{{{{ results[0] }}}}"
      - when: "^forbidden"
        steps:
          - tool: time__convert_time
            arguments: {{source_timezone: UTC, time: "12:00", target_timezone: UTC}}
        reply: "{{{{ results[0] }}}}"
      - reply: "echo: {{{{ input }}}}"
servers:
  time: {LOCAL}
claws:
  clock:
    model: canned
    tools: ["time.get_current_time"]
  other:
    model: canned
"""

BRAIN = f"models:\n  brain: {{provider: openai, base_url: '{API}', model: m}}\n"


@pytest.mark.anyio
async def test_scripted_rules_drive_a_tool_server_through_the_hub(tmp_path: Path) -> None:
    async with hosting(tmp_path, SCRIPTED, servers={"time": time_server()}) as host:
        run = await host.runtime.run("clock", "what is the time in Europe/Lisbon?")
        steps = await host.store.steps(run.id)
    async with host.store:  # the audit is written off the call path: all of it by the host's stop
        calls = await host.store.tool_calls("clock")
    assert run.state == "done" and run.trigger == "ask"
    assert json.loads(run.reply or "")["timezone"] == "Europe/Lisbon"
    assert [s.kind for s in steps] == ["model", "tool_call", "tool_result", "model"]
    assert steps[1].data["arguments"] == {"timezone": "Europe/Lisbon"}
    assert [(c.tool, c.outcome, c.run_id) for c in calls] == [("time.get_current_time", "ok", run.id)]


@pytest.mark.anyio
async def test_a_tool_error_or_refusal_goes_back_to_the_model_and_the_run_goes_on(tmp_path: Path) -> None:
    async with hosting(tmp_path, SCRIPTED, servers={"time": time_server()}) as host:
        bad = await host.runtime.run("clock", "the time in Nowhere/Atlantis")
        refused = await host.runtime.run("clock", "forbidden conversion")
        bad_steps = await host.store.steps(bad.id)
        refused_steps = await host.store.steps(refused.id)
    assert bad.state == "done" and "Nowhere/Atlantis" in (bad.reply or "")
    assert bad_steps[2].data["is_error"] is True
    # the model heard of the refusal and replied; a run whose every tool call was refused fails
    assert [s.kind for s in refused_steps] == ["model", "tool_call", "tool_result", "model"]
    assert (refused.state, refused.reply) == ("failed", None)
    assert refused.error == "every tool call was refused: Claw 'clock' may not use tool 'time__convert_time'"


@pytest.mark.anyio
async def test_memory_notes_are_recalled_by_full_text_and_belong_to_one_claw(tmp_path: Path) -> None:
    async with hosting(tmp_path, SCRIPTED) as host:
        for text in ["the deploy key rotates on Mondays", "lunch is at noon"]:
            assert (await host.runtime.run("clock", f"remember {text}")).reply == "noted"
        found = await host.runtime.run("clock", "recall deploy Mondays")
        none = await host.runtime.run("other", "recall deploy")
    assert [n["text"] for n in json.loads(found.reply or "")] == ["the deploy key rotates on Mondays"]
    assert none.reply == "no note matches 'deploy'"


@pytest.mark.anyio
async def test_a_thread_continues_after_the_host_restarts(tmp_path: Path) -> None:
    api = FakeAPI(lambda n, body: openai_text(["Hello Ada.", "Noted.", "Your name is Ada."][n]))
    body = (
        BRAIN
        + """
claws:
  friend: {model: brain, memory: {history: 10}}
"""
    )
    store = MemoryStore()  # its data outlives a close
    async with hosting(tmp_path, body, store=store, api=api) as host:
        await host.runtime.run("friend", "My name is Ada.", thread="chat")
        await host.runtime.run("friend", "Unrelated.", thread="elsewhere")
    async with hosting(tmp_path, body, store=store, api=api) as host:  # a new host on the same store
        run = await host.runtime.run("friend", "What is my name?", thread="chat")
    assert run.reply == "Your name is Ada."
    assert api.requests[-1].body["messages"] == [
        {"role": "system", "content": "You are friend, an assistant."},
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": "Hello Ada."},
        {"role": "user", "content": "What is my name?"},
    ]


@pytest.mark.anyio
async def test_one_run_at_a_time_per_thread_in_arrival_order_and_threads_run_side_by_side(
    tmp_path: Path,
) -> None:
    b_arrived = anyio.Event()
    busy = {"a": 0, "b": 0}
    most = {"a": 0, "b": 0}

    async def answer(n: int, body: Any) -> Any:
        text = body["messages"][-1]["content"]
        thread = text[0]
        busy[thread] += 1
        most[thread] = max(most[thread], busy[thread])
        if text == "a1":
            await b_arrived.wait()  # a1 finishes only once thread b has started: threads run side by side
        if text == "b1":
            b_arrived.set()
        busy[thread] -= 1
        return openai_text(f"done {text}")

    api = FakeAPI(answer)
    body = BRAIN + "claws:\n  c: {model: brain}\n"
    async with hosting(tmp_path, body, api=api) as host:
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                for text in ["a1", "a2", "a3", "b1"]:
                    tg.start_soon(functools.partial(host.runtime.run, "c", text, thread=text[0]))
                    await anyio.lowlevel.checkpoint()
        history = await host.store.history("c", "a", 10)
    assert most == {"a": 1, "b": 1}
    assert [h.content for h in history] == ["a1", "done a1", "a2", "done a2", "a3", "done a3"]


@pytest.mark.anyio
async def test_a_run_that_outlasts_run_timeout_stops_with_that_outcome(tmp_path: Path) -> None:
    release = anyio.Event()

    async def answer(n: int, body: Any) -> Any:
        await release.wait()
        return openai_text("too late")

    api = FakeAPI(answer)
    body = BRAIN + "claws:\n  c: {model: brain, limits: {run_timeout: 300ms}}\n"
    async with hosting(tmp_path, body, api=api) as host:
        run = await host.runtime.run("c", "hello")
        release.set()
    assert (run.state, run.error, run.reply) == ("limit", "stopped at run_timeout (0.3s)", None)


@pytest.mark.anyio
async def test_a_run_cancelled_by_a_stopping_host_is_recorded_as_interrupted(tmp_path: Path) -> None:
    started, release = anyio.Event(), anyio.Event()

    async def answer(n: int, body: Any) -> Any:
        started.set()
        await release.wait()
        return openai_text("never seen")

    api = FakeAPI(answer)
    body = BRAIN + "claws:\n  c: {model: brain}\n"
    async with hosting(tmp_path, body, api=api) as host:
        async with anyio.create_task_group() as tg:
            tg.start_soon(host.runtime.run, "c", "hello")
            with anyio.fail_after(10):
                await started.wait()
            tg.cancel_scope.cancel()
        [run] = await host.store.runs("c")
    release.set()
    assert (run.state, run.error) == ("interrupted", "the run was stopped")


@pytest.mark.anyio
async def test_a_stopping_host_starts_no_run_and_says_so_with_its_own_error(tmp_path: Path) -> None:
    async with hosting(tmp_path, SCRIPTED) as host:
        host.runtime.stop()
        with pytest.raises(Stopping, match="the host is stopping; try again once it is back"):
            await host.runtime.run("clock", "what time is it?")
        assert await host.store.runs() == []

"""What a run's context holds of its thread (`memory: context_tokens, compact`) and which model
answers it (`model: [primary, backup]`), in a whole host in memory against fake OpenAI APIs."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from clawmcp.context import SUMMARY_HEADING, estimate
from clawmcp.events import line
from clawmcp.expose import ClawServer
from clawmcp.host import Host
from clawmcp.models._http import ATTEMPTS
from clawmcp.models.providers import Providers
from tests.fakes import (
    API,
    Answer,
    FakeAPI,
    hosting,
    logged,
    openai_error,
    openai_text,
    openai_tool_call,
)

pytestmark = pytest.mark.anyio

BUDGET = 300
PAD = 200 * "x"
"""Each input and reply is about 55 estimated tokens: three runs fill the budget."""


def manifest(memory: str) -> str:
    return f"""
models:
  brain: {{provider: openai, base_url: "{API}", model: brain-model}}
claws:
  c:
    instructions: You keep track.
    model: brain
    memory: {memory}
"""


def summarising(body: Any) -> bool:
    return "tools" not in body and body["messages"][0]["content"].startswith("You compact a conversation")


def in_context(body: Any) -> int:
    """The estimated tokens of the thread's history in a request: its messages between the
    system text and the input, and the summary at the end of the system text."""
    system = body["messages"][0]["content"]
    summary = system.split(f"{SUMMARY_HEADING}\n")[1] if SUMMARY_HEADING in system else None
    history = body["messages"][1:-1]
    return sum(estimate(m["content"]) for m in history) + (estimate(summary) if summary else 0)


class Brain:
    """The Claw's model: replies to each input at length, summarises on request (or refuses to
    with `refuse`), and remembers or recalls a note when asked to."""

    def __init__(self, *, refuse: bool = False) -> None:
        self.refuse = refuse
        self.summaries: list[Any] = []
        self.turns: list[Any] = []

    def __call__(self, n: int, body: Any) -> Answer:
        if summarising(body):
            self.summaries.append(body)
            if self.refuse:
                return openai_error(400, "this request is not allowed")
            return openai_text(f"summary {len(self.summaries)}")
        self.turns.append(body)
        last = body["messages"][-1]
        if last["role"] == "tool":
            return openai_text(f"noted: {last['content']}")
        if last["content"].startswith("remember"):
            return openai_tool_call("r", "claw__remember", {"text": "the deploy key is blue", "key": "k"})
        if last["content"].startswith("what was the key"):
            return openai_tool_call("q", "claw__recall", {"query": "deploy key"})
        return openai_text(f"reply to {last['content'][:12]} {PAD}")


@asynccontextmanager
async def brain_host(tmp_path: Path, memory: str, brain: Brain) -> AsyncIterator[Host]:
    async with hosting(tmp_path, manifest(memory), api=FakeAPI(brain)) as host:
        yield host


async def test_a_long_thread_is_summarised_once_per_compaction_and_stays_under_its_budget(
    tmp_path: Path,
) -> None:
    brain = Brain()
    asked: list[int] = []  # summary requests per run
    async with brain_host(tmp_path, f"{{context_tokens: {BUDGET}, compact: summary}}", brain) as host:
        for n in range(10):
            before = len(brain.summaries)
            run = await host.runtime.run("c", f"message {n}: {PAD}", thread="t")
            assert run.state == "done" and (run.reply or "").startswith(f"reply to message {n}:")
            asked.append(len(brain.summaries) - before)
        history = await host.service.history("c", "t", 100)
        async with Client(ClawServer(host.service, "c").server) as client:
            resource = await client.read_resource("claw://c/history/t")
    shown = json.loads(resource.contents[0].text)  # type: ignore[union-attr]

    # Three runs fill the budget; the summary then stands for all but the newest run, and is used
    # as it is until the entries after it pass the budget again.
    assert asked == [0, 0, 0, 1, 0, 1, 0, 1, 0, 1]
    assert all(in_context(body) <= BUDGET for body in brain.turns)
    assert [in_context(body) > BUDGET * 2 / 3 for body in brain.turns].count(True) >= 4  # it was full
    last = brain.turns[-1]
    assert last["messages"][0]["content"] == f"You keep track.\n\n{SUMMARY_HEADING}\nsummary 4"
    assert [m["content"][:12] for m in last["messages"][1:]] == [
        "message 8: x",
        "reply to mes",
        "message 9: x",
    ]
    # each summary request holds the one before it and what it is to stand for, oldest first
    second = brain.summaries[1]["messages"][1]["content"]
    assert second.startswith("Earlier summary:\nsummary 1\n\nConversation:\nuser: message 2: x")
    assert "message 3: x" in second and "message 4" not in second

    # nothing is deleted: every input and reply is in the history, with a summary where it was made
    assert [e.role for e in history].count("summary") == 4
    assert [e.content for e in history if e.role == "user"] == [f"message {n}: {PAD}" for n in range(10)]
    summary = next(e for e in history if e.role == "summary")
    assert summary.content == {"text": "summary 1", "through": history[3].id}
    assert [(e["role"], e["content"]) for e in shown] == [(e.role, e.content) for e in history]


async def test_a_summary_that_fails_drops_the_oldest_entries_and_the_run_goes_on(tmp_path: Path) -> None:
    brain = Brain(refuse=True)
    async with brain_host(tmp_path, f"{{context_tokens: {BUDGET}, compact: summary}}", brain) as host:
        for n in range(3):
            await host.runtime.run("c", f"message {n}: {PAD}", thread="t")
        with logged("could not be summarised") as warned:
            run = await host.runtime.run("c", f"message 3: {PAD}", thread="t")
        assert warned.is_set()
        assert run.state == "done" and (run.reply or "").startswith("reply to message 3:")
        assert len(brain.summaries) == 1  # a refusal is not tried again in the run
        await host.runtime.run("c", f"message 4: {PAD}", thread="t")
        history = await host.store.history("c", "t", 100)
    assert len(brain.summaries) == 2  # the next run tries again
    assert all(in_context(body) <= BUDGET for body in brain.turns)
    fourth = brain.turns[3]["messages"]
    assert [m["content"][:12] for m in fourth[1:]] == [
        "message 1: x",
        "reply to mes",
        "message 2: x",
        "reply to mes",
        "message 3: x",
    ]
    assert "summary" not in [e.role for e in history] and len(history) == 10


async def test_drop_keeps_the_newest_entries_that_fit_and_asks_for_no_summary(tmp_path: Path) -> None:
    brain = Brain()
    async with brain_host(tmp_path, f"{{context_tokens: {BUDGET}}}", brain) as host:
        for n in range(6):
            await host.runtime.run("c", f"message {n}: {PAD}", thread="t")
        history = await host.store.history("c", "t", 100)
    assert brain.summaries == [] and "summary" not in [e.role for e in history]
    assert all(in_context(body) <= BUDGET for body in brain.turns)
    assert [m["content"][:12] for m in brain.turns[-1]["messages"][1:]] == [
        "message 3: x",
        "reply to mes",
        "message 4: x",
        "reply to mes",
        "message 5: x",
    ]


async def test_notes_are_recalled_after_their_runs_were_summarised(tmp_path: Path) -> None:
    brain = Brain()
    async with brain_host(tmp_path, f"{{context_tokens: {BUDGET}, compact: summary}}", brain) as host:
        await host.runtime.run("c", "remember the deploy key", thread="t")
        for n in range(6):
            await host.runtime.run("c", f"message {n}: {PAD}", thread="t")
        assert len(brain.summaries) == 2
        run = await host.runtime.run("c", "what was the key?", thread="t")
        steps = await host.store.steps(run.id)
        notes = await host.store.notes("c")
    assert "remember the deploy key" not in json.dumps(brain.turns[-1]["messages"])  # summarised away
    [result] = [s.data for s in steps if s.kind == "tool_result"]
    assert result["name"] == "claw__recall" and "the deploy key is blue" in result["text"]
    assert [n.text for n in notes] == ["the deploy key is blue"]


# -- model fallback ---------------------------------------------------------------------------------

FALLBACK = f"""
models:
  primary: {{provider: openai, base_url: "{API}", model: primary-model}}
  backup: {{provider: openai, base_url: "{API}", model: backup-model}}
claws:
  c:
    model: [primary, backup]
"""


@asynccontextmanager
async def fallback_host(tmp_path: Path, api: FakeAPI) -> AsyncIterator[Host]:
    """A host whose models retry after a millisecond or so, not half a second."""
    async with (
        hosting(tmp_path, FALLBACK, api=api) as host,
        Providers(host.manifest.models, retry_base=0.001, transport=api.transport()) as providers,
    ):
        host.runtime.providers = providers
        yield host


def by_model(api: FakeAPI) -> list[str]:
    return [r.body["model"] for r in api.requests]


async def test_a_rate_limited_model_falls_back_to_the_next_and_the_run_records_which_answered(
    tmp_path: Path,
) -> None:
    def answer(n: int, body: Any) -> Answer:
        if body["model"] == "primary-model":
            return openai_error(429, "Rate limit reached")
        if body["messages"][-1]["role"] == "tool":
            return openai_text("from backup")
        return openai_tool_call("r", "claw__remember", {"text": "a note"})

    api = FakeAPI(answer)
    async with fallback_host(tmp_path, api) as host:
        run = await host.runtime.run("c", "hello")
        steps = await host.store.steps(run.id)
        status = await host.claws.status("c")
        await host.events.flush()
        events = [e for e in await host.store.events("c") if e.kind == "model"]

    assert (run.state, run.reply) == ("done", "from backup")
    # the primary through all its tries, then the backup, which keeps the run's second turn
    assert by_model(api) == ["primary-model"] * ATTEMPTS + ["backup-model"] * 2
    assert [s.data["model"] for s in steps if s.kind == "model"] == ["backup", "backup"]
    assert [(e.data["model"], e.data["fallback"]) for e in events] == [("backup", True)] * 2
    assert "run 1 model turn 2 (fallback model backup): replies: from backup" in line(events[1])
    assert status["model"] == {
        "name": "primary",
        "provider": "openai",
        "model": "primary-model",
        "fallback": ["backup"],
    }


async def test_a_refused_request_does_not_fall_back(tmp_path: Path) -> None:
    api = FakeAPI(lambda n, body: openai_error(400, "bad request"))
    async with fallback_host(tmp_path, api) as host:
        run = await host.runtime.run("c", "hello")
    assert (run.state, run.error) == (
        "failed",
        "model 'primary' (openai, primary-model): 400 Bad Request: bad request",
    )
    assert by_model(api) == ["primary-model"]


async def test_a_run_fails_naming_every_model_when_all_are_down(tmp_path: Path) -> None:
    api = FakeAPI(lambda n, body: openai_error(503 if body["model"] == "primary-model" else 429, "busy"))
    async with fallback_host(tmp_path, api) as host:
        run = await host.runtime.run("c", "hello")
    assert run.state == "failed"
    assert run.error == (
        f"model 'primary' (openai, primary-model): no answer after {ATTEMPTS} tries; "
        "last: 503 Service Unavailable: busy; "
        f"then model 'backup' (openai, backup-model): no answer after {ATTEMPTS} tries; "
        "last: 429 Too Many Requests: busy"
    )
    assert by_model(api) == ["primary-model"] * ATTEMPTS + ["backup-model"] * ATTEMPTS


async def test_a_plain_model_name_answers_as_before_and_its_turns_name_it(tmp_path: Path) -> None:
    api = FakeAPI(lambda n, body: openai_text("hi"))
    async with hosting(tmp_path, manifest("{history: 4}"), api=api) as host:
        run = await host.runtime.run("c", "hello")
        steps = await host.store.steps(run.id)
        await host.events.flush()
        [event] = [e for e in await host.store.events("c") if e.kind == "model"]
    assert [s.data["model"] for s in steps] == ["brain"]
    assert (event.data["model"], event.data["fallback"]) == ("brain", False)
    assert "run 1 model turn 1: replies: hi" in line(event)

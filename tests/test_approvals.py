"""Approvals and budgets in a whole host, in memory: a call that waits for a person parks its run
(other threads go on), and goes on with exactly the stored arguments once approved; denied or
timed out, the model is told; a direct ask waits in its request. Token budgets end runs and hold
messages until the next UTC day."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any

import anyio
import pytest
from mcp import Client
from mcp.server.mcpserver import AcceptedElicitation, Elicit, ElicitationResult, Resolve
from mcp.types import ElicitRequestParams, ElicitResult, ToolAnnotations
from pydantic import BaseModel

from clawmcp.approvals import ASKER
from clawmcp.errors import BudgetSpent, UserError
from clawmcp.events import line
from clawmcp.expose import ClawServer
from clawmcp.host import Host
from clawmcp.store import Approval, Step
from tests.fakes import (
    API,
    LOCAL,
    FakeAPI,
    FakeClock,
    hosting,
    openai_text,
    openai_tool_call,
    tool_server,
    until,
)

pytestmark = pytest.mark.anyio

RECORDER = f"""
models:
  m:
    provider: scripted
    rules:
      - when: "record (?P<what>.+)"
        steps: [{{tool: rec__record, arguments: {{what: "{{{{ match.what }}}}"}}}}]
        reply: "recorded: {{{{ results[0] }}}}"
      - reply: "hello"
servers:
  rec: {LOCAL}
claws:
  c: {{model: m, tools: ["rec.*"], approve: ["rec.record"]}}
"""


def recorder() -> tuple[list[str], Any]:
    calls: list[str] = []

    def record(what: str) -> str:
        """Record something."""
        calls.append(what)
        return f"ok {what}"

    return calls, tool_server("rec", record)


async def pending(host: Host, count: int = 1) -> list[Approval]:
    """Once `count` approvals are pending: them."""
    with anyio.fail_after(20):
        while True:
            changed = host.approvals.changed
            if len(found := await host.store.approvals(pending=True)) >= count:
                return found
            await changed.wait()


async def state_of(host: Host, message_id: int, state: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        message = await host.store.get_message(message_id)
        return message is not None and message.state == state

    return check


async def test_an_approved_call_runs_once_with_the_stored_arguments_and_the_run_ends_done(
    tmp_path: Path,
) -> None:
    calls, server = recorder()
    async with hosting(tmp_path, RECORDER, servers={"rec": server}) as host:
        message = await host.claws.tell("c", "record the minutes")
        [approval] = await pending(host)
        parked = await host.store.get_message(message.id)
        run = await host.store.get_run(approval.run_id)
        assert parked is not None and parked.state == "running"
        assert run is not None and run.state == "waiting"
        assert (approval.tool, approval.arguments, calls) == ("rec.record", {"what": "the minutes"}, [])
        metrics = (await host.service.metrics(lambda c: True)).decode()
        assert 'clawmcp_approvals_pending{claw="c"} 1.0' in metrics
        assert (await host.service.status("c"))["approvals"] == 1
        await host.approvals.decide(approval.id, "approved", note="fine")
        await until(host, await state_of(host, message.id, "done"))
        run = await host.store.get_run(approval.run_id)
        kinds = [s.kind for s in await host.store.steps(approval.run_id)]
        await host.events.flush()
        said = [" ".join(line(e).split()[3:]) for e in await host.store.events("c")]
    assert calls == ["the minutes"]
    assert [t for t in said if "approval" in t or "waits" in t] == [
        f"approval {approval.id} requested (run {approval.run_id}): rec.record {{'what': 'the minutes'}}",
        f"run {approval.run_id} waits for a person",
        f"approval {approval.id} approved (run {approval.run_id}, rec.record): fine",
    ]
    assert run is not None and (run.state, run.reply) == ("done", "recorded: ok the minutes")
    assert kinds == ["model", "tool_call", "approval", "tool_result", "model"]


async def test_a_parked_message_claimed_again_parks_again_and_its_asker_is_asked_again(
    tmp_path: Path,
) -> None:
    calls, server = recorder()
    asked: list[int] = []

    class Asker:  # a client of the ask that never decides
        async def elicit(self, message: str, schema: dict[str, Any]) -> Any:
            asked.append(len(asked))
            return "cancel", None

    async with hosting(tmp_path, RECORDER, servers={"rec": server}) as host, anyio.create_task_group() as tg:
        token = ASKER.set(Asker())
        tg.start_soon(functools.partial(host.service.ask, "c", "record it"))
        ASKER.reset(token)
        [approval] = await pending(host)
        settled = host.claws.settled
        assert await host.store.requeue_running("c") == 1  # as after a crash of its consumer
        host.mailboxes.notify("c")
        await settled.wait()  # claimed again, and parked again: nothing ran
        again = await host.store.get_message(approval.message_id or 0)
        runs = await host.store.runs("c")
        await host.approvals.decide(approval.id, "approved")
    assert again is not None and (again.state, again.attempts) == ("running", 2)
    assert [r.state for r in runs] == ["waiting"]
    assert calls == ["it"] and len(asked) == 2  # asked as it parked, and as it parked again


async def test_a_denied_call_is_not_run_and_the_model_is_told_with_the_note(tmp_path: Path) -> None:
    calls, server = recorder()
    async with hosting(tmp_path, RECORDER, servers={"rec": server}) as host:
        message = await host.claws.tell("c", "record the minutes")
        [approval] = await pending(host)
        await host.approvals.decide(approval.id, "denied", note="not today")
        await until(host, await state_of(host, message.id, "done"))
        run = await host.store.get_run(approval.run_id)
        with pytest.raises(UserError, match=f"approval {approval.id} is denied already"):
            await host.approvals.decide(approval.id, "approved")
    assert calls == []
    assert run is not None and run.state == "done"
    denial = f"a person denied this call of rec.record (approval {approval.id}): not today"
    assert run.reply == f"recorded: {denial}"


async def test_no_decision_by_the_approval_timeout_counts_as_denied(tmp_path: Path) -> None:
    calls, server = recorder()
    clock = FakeClock(1_800_000_000.0)
    body = RECORDER.replace('approve: ["rec.record"]', 'approve: ["rec.*"], limits: {approval_timeout: 1h}')
    async with hosting(tmp_path, body, clock=clock, servers={"rec": server}) as host:
        message = await host.claws.tell("c", "record the minutes")
        [approval] = await pending(host)
        assert approval.expires_at == clock.now() + 3600
        assert await clock.deadline(0) == approval.expires_at
        clock.set(approval.expires_at)
        await until(host, await state_of(host, message.id, "done"))
        expired = await host.store.get_approval(approval.id)
        run = await host.store.get_run(approval.run_id)
    assert calls == []
    assert expired is not None and (expired.state, expired.note) == ("expired", "no decision within 3600s")
    assert run is not None and run.reply is not None
    assert f"no decision on approval {approval.id} in time: rec.record was not run" in run.reply


async def test_a_parked_run_holds_its_thread_while_other_threads_go_on(tmp_path: Path) -> None:
    calls, server = recorder()
    async with hosting(tmp_path, RECORDER, servers={"rec": server}) as host:
        parked = await host.claws.tell("c", "record the minutes", thread="a")
        [approval] = await pending(host)
        behind = await host.claws.tell("c", "hi", thread="a")
        other = await host.claws.tell("c", "hi", thread="b")
        await until(host, await state_of(host, other.id, "done"))
        assert (await host.store.get_message(behind.id)).state == "queued"  # type: ignore[union-attr]
        await host.approvals.decide(approval.id, "approved")
        await until(host, await state_of(host, behind.id, "done"))
        runs = await host.store.runs("c")
        done = await host.store.get_message(parked.id)
    assert done is not None and done.state == "done"
    assert [(r.thread, r.state) for r in reversed(runs)] == [("a", "done"), ("b", "done"), ("a", "done")]
    assert calls == ["the minutes"]


async def test_a_direct_ask_waits_in_its_request_and_reports_the_approval_it_waits_for(
    tmp_path: Path,
) -> None:
    calls, server = recorder()
    async with hosting(tmp_path, RECORDER, servers={"rec": server}) as host:
        seen: list[Step] = []

        async def on_step(step: Step) -> None:
            seen.append(step)

        async with anyio.create_task_group() as tg:
            tg.start_soon(functools.partial(host.service.ask, "c", "record it", on_step=on_step))
            [approval] = await pending(host)
            waiting = await host.store.get_run(approval.run_id)
            assert waiting is not None and waiting.state == "waiting"
            await host.approvals.decide(approval.id, "approved")
        run = await host.store.get_run(approval.run_id)
    assert calls == ["it"]
    assert run is not None and (run.state, run.reply) == ("done", "recorded: ok it")
    assert [(s.kind, s.data.get("name")) for s in seen] == [
        ("model", None),
        ("tool_call", "rec__record"),
        ("approval", "rec.record"),
        ("tool_result", "rec__record"),
        ("model", None),
    ]


BRAIN = f"""
models: {{brain: {{provider: openai, base_url: '{API}', model: m}}}}
servers: {{rec: {LOCAL}}}
claws:
  c: {{model: brain, tools: ["rec.*"], limits: {{LIMITS}}}}
"""


async def test_a_run_past_tokens_per_run_ends_with_limit(tmp_path: Path) -> None:
    calls, server = recorder()
    api = FakeAPI(lambda n, body: openai_tool_call(f"c{n}", "rec__record", {"what": str(n)}))
    body = BRAIN.replace("{LIMITS}", "{tokens_per_run: 20}")  # each turn reports 14 tokens
    async with hosting(tmp_path, body, api=api, servers={"rec": server}) as host:
        run = await host.service.ask("c", "go")
        await host.events.flush()
        metrics = (await host.service.metrics(lambda c: True)).decode()
    assert 'clawmcp_tokens_total{claw="c",kind="input"} 22.0' in metrics
    assert 'clawmcp_tokens_total{claw="c",kind="output"} 6.0' in metrics
    assert (run.state, run.error, run.input_tokens, run.output_tokens) == (
        "limit",
        "tokens_per_run 20 used",
        22,
        6,
    )
    assert (len(api.requests), calls) == (2, ["0"])


async def test_a_spent_day_keeps_messages_queued_until_the_next_utc_day(tmp_path: Path) -> None:
    api = FakeAPI(lambda n, body: openai_text(f"reply {n}"))
    clock = FakeClock(1_800_000_000.0)  # 2027-01-15 08:00 UTC
    midnight = 1_800_000_000.0 - 1_800_000_000.0 % 86400 + 86400
    body = BRAIN.replace("{LIMITS}", "{tokens_per_day: 20}").replace("servers: {rec: " + LOCAL + "}\n", "")
    body = body.replace(', tools: ["rec.*"]', "")
    async with hosting(tmp_path, body, api=api, clock=clock) as host:
        first = await host.claws.tell("c", "one")
        second = await host.claws.tell("c", "two")
        third = await host.claws.tell("c", "three")
        await until(host, await state_of(host, second.id, "done"))
        assert await clock.deadline(0) == midnight
        status = await host.service.status("c")
        with pytest.raises(BudgetSpent, match="tokens_per_day 20 spent; budget spent until 00:00 UTC"):
            await host.service.ask("c", "now?")
        assert (await host.store.get_message(third.id)).state == "queued"  # type: ignore[union-attr]
        clock.set(midnight)
        await until(host, await state_of(host, third.id, "done"))
        after = await host.service.status("c")
        runs = await host.store.runs("c")
    assert [r.input for r in reversed(runs)] == ["one", "two", "three"]
    assert (status["tokens_today"], status["budget"]) == (28, "budget spent until 00:00 UTC")
    assert (after["tokens_today"], after["budget"]) == (14, None)
    assert first.id < third.id


async def test_destructive_means_annotated_destructive_and_not_read_only(tmp_path: Path) -> None:
    server = tool_server("rec")
    server.add_tool(lambda: "gone", name="wipe", annotations=ToolAnnotations(destructive_hint=True))
    server.add_tool(
        lambda: "looked", name="peek", annotations=ToolAnnotations(destructive_hint=True, read_only_hint=True)
    )
    body = RECORDER.replace('approve: ["rec.record"]', 'approve: ["@destructive"]')
    async with hosting(tmp_path, body, servers={"rec": server}) as host:
        for wire, waits in (("rec__peek", False), ("rec__wipe", True)):
            tool = next(t for t in host.hub.tools_for("c") if t.wire == wire)
            assert host.approvals.needs("c", tool.qualified, tool.destructive) is waits
        assert not host.approvals.needs("c", "tools.anything", False)


class Name(BaseModel):
    name: str


def ask_name() -> Elicit[Name]:
    return Elicit("What is your name?", Name)


def greet(asked: Annotated[ElicitationResult[Name], Resolve(ask_name)]) -> str:
    """Greet whoever answers (asked in either era: mid-call, or as input required)."""
    return (
        f"hello {asked.data.name}" if isinstance(asked, AcceptedElicitation) else f"no name ({asked.action})"
    )


GREETER = f"""
models:
  m: {{provider: scripted, rules: [{{steps: [{{tool: up__greet}}], reply: "said: {{{{ results[0] }}}}"}}]}}
servers:
  up: {LOCAL}
claws:
  c: {{model: m, tools: ["up.*"], approve: ["up.greet"]}}
"""


async def test_a_tool_servers_question_is_answered_from_the_inbox(tmp_path: Path) -> None:
    body = GREETER.replace(', approve: ["up.greet"]', "")
    async with hosting(tmp_path, body, servers={"up": tool_server("up", greet)}) as host:
        message = await host.claws.tell("c", "hi")
        [question] = await pending(host)
        assert (question.kind, question.tool, question.arguments["message"]) == (
            "question",
            "up.greet",
            "What is your name?",
        )
        assert question.arguments["schema"]["required"] == ["name"]
        with pytest.raises(
            UserError, match=f"question {question.id}: invalid arguments: 'name' is a required"
        ):
            await host.service.decide(question.id, True, content={})
        await host.service.decide(question.id, True, content={"name": "Ada"})
        await until(host, await state_of(host, message.id, "done"))
        run = await host.store.message_run(message.id)
        await host.events.flush()
        said = [" ".join(line(e).split()[3:]) for e in await host.store.events("c") if e.kind == "approval"]
    assert run is not None and run.reply == "said: hello Ada"
    assert said == [
        f"approval {question.id} requested (run {run.id}): up.greet What is your name?",
        f"approval {question.id} approved (run {run.id}, up.greet)",
    ]


async def test_a_question_and_an_approval_go_to_the_handshake_era_client_of_the_ask_when_it_elicits(
    tmp_path: Path,
) -> None:
    asked: list[str] = []

    heard: list[str | None] = []

    async def progress(progress: float, total: float | None, message: str | None) -> None:
        heard.append(message)

    async def answer(context: Any, params: ElicitRequestParams) -> ElicitResult:
        asked.append(params.message)
        if "Approve?" in params.message:
            return ElicitResult(action="accept", content={"approve": True})
        return ElicitResult(action="accept", content={"name": "Grace"})

    async with hosting(tmp_path, GREETER, servers={"up": tool_server("up", greet)}) as host:
        server = ClawServer(host.service, "c")
        with anyio.fail_after(20):
            async with Client(server.server, mode="legacy", elicitation_callback=answer) as client:
                result = await client.call_tool("ask", {"message": "hi"}, progress_callback=progress)
        approvals = await host.store.approvals()
    assert result.content[0].text == "said: hello Grace"  # type: ignore[union-attr]
    assert asked == ["Claw 'c' wants to call up.greet with {}. Approve?", "What is your name?"]
    assert "waiting for approval 1: up.greet" in heard
    assert [(a.kind, a.state, a.note) for a in approvals] == [
        ("approval", "approved", "decided by the client that asked")
    ]


async def test_an_unanswered_question_is_cancelled_at_the_approval_timeout(tmp_path: Path) -> None:
    clock = FakeClock(1_800_000_000.0)
    body = GREETER.replace(', approve: ["up.greet"]', ", limits: {approval_timeout: 10m}")
    async with hosting(tmp_path, body, clock=clock, servers={"up": tool_server("up", greet)}) as host:
        message = await host.claws.tell("c", "hi")
        [question] = await pending(host)
        assert question.expires_at == clock.now() + 600
        clock.set(question.expires_at)
        await until(host, await state_of(host, message.id, "done"))
        run = await host.store.message_run(message.id)
        expired = await host.store.get_approval(question.id)
    assert run is not None and run.reply == "said: no name (cancel)"
    assert expired is not None and expired.state == "expired"


async def test_the_inbox_and_the_mcp_tools_decide_what_a_silent_or_refusing_client_does_not(
    tmp_path: Path,
) -> None:
    answer = anyio.Event()
    replies: list[ElicitResult] = [
        ElicitResult(action="accept", content={"approve": False, "note": "not that"})
    ]

    async def slow(context: Any, params: ElicitRequestParams) -> ElicitResult:
        if not replies:  # the second time: no answer until the test lets it
            await answer.wait()
            return ElicitResult(action="cancel")
        return replies.pop()

    calls, rec = recorder()
    async with hosting(tmp_path, RECORDER, servers={"rec": rec}) as host:
        server = ClawServer(host.service, "c")
        with anyio.fail_after(20):
            async with Client(server.server, mode="legacy", elicitation_callback=slow) as client:
                refused = await client.call_tool("ask", {"message": "record one"})
                async with anyio.create_task_group() as tg:
                    tg.start_soon(functools.partial(client.call_tool, "ask", {"message": "record two"}))
                    await pending(host)
                    listed = (await client.call_tool("approvals", {})).structured_content
                    assert listed is not None
                    [waiting] = listed["approvals"]
                    decided = await client.call_tool("decide", {"id": waiting["id"], "approve": True})
                answer.set()
        approvals = await host.store.approvals()
    assert refused.content[0].text.endswith("(approval 1): not that")  # type: ignore[union-attr]
    assert (waiting["tool"], waiting["arguments"], waiting["state"]) == (
        "rec.record",
        {"what": "two"},
        "pending",
    )
    assert decided.structured_content is not None and decided.structured_content["state"] == "approved"
    assert [(a.state, a.note) for a in approvals] == [("denied", "not that"), ("approved", None)]
    assert calls == ["two"]

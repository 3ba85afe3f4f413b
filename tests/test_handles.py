"""Durable run handles in a whole host, in memory: an ask outlives its asker and keeps its reply,
`result` follows a message to its end, `cancel` drops a queued message, stops a running run and
withdraws what a parked one waits for."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from clawmcp.errors import UserError
from clawmcp.expose import ClawServer, HostServer
from clawmcp.host import Host
from clawmcp.store import Message, Step
from tests.fakes import API, LOCAL, FakeAPI, hosting, openai_error, tool_server
from tests.test_approvals import pending

pytestmark = pytest.mark.anyio

GATED = f"""
models:
  m:
    provider: scripted
    rules:
      - when: "hold"
        steps: [{{tool: gate__hold, arguments: {{}}}}]
        reply: "held: {{{{ results[0] }}}}"
      - when: "record (?P<what>.+)"
        steps: [{{tool: gate__record, arguments: {{what: "{{{{ match.what }}}}"}}}}]
        reply: "recorded"
      - reply: "hello"
servers:
  gate: {LOCAL}
claws:
  c: {{model: m, tools: ["gate.*"], approve: ["gate.record"]}}
  d: {{model: m}}
"""


class Gate:
    """A tool server whose `hold` waits until released, and whose `record` needs an approval."""

    def __init__(self) -> None:
        self.held, self.release = anyio.Event(), anyio.Event()
        self.recorded: list[str] = []

        async def hold() -> str:
            """Hold until released."""
            self.held.set()
            await self.release.wait()
            return "released"

        def record(what: str) -> str:
            """Record something."""
            self.recorded.append(what)
            return "ok"

        self.server = tool_server("gate", hold, record)


async def told(host: Host, content: str, thread: str = "default") -> Message:
    return await host.service.tell("c", content, thread=thread)


async def test_an_ask_whose_asker_goes_away_runs_to_its_end_and_keeps_its_reply(tmp_path: Path) -> None:
    gate = Gate()
    async with hosting(tmp_path, GATED, servers={"gate": gate.server}) as host:
        ids: list[int] = []
        heard: list[str] = []

        async def on_message(message_id: int) -> None:
            ids.append(message_id)

        async def on_step(step: Step) -> None:
            heard.append(step.kind)

        async with anyio.create_task_group() as asker:
            asked = functools.partial(host.service.ask, on_message=on_message, on_step=on_step)
            asker.start_soon(asked, "c", "hold on")
            with anyio.fail_after(20):
                await gate.held.wait()
            asker.cancel_scope.cancel()  # the client went away mid-run
        [message_id] = ids
        running = await host.service.result(message_id)
        assert (running["state"], running["reply"]) == ("running", None)
        gate.release.set()
        done = await host.service.result(message_id, wait=20)
        run = await host.store.get_run(done["run_id"])
    assert (done["claw"], done["state"], done["reply"], done["error"]) == (
        "c",
        "done",
        "held: released",
        None,
    )
    assert run is not None and (run.state, run.trigger, run.message_id) == ("done", "ask", message_id)
    assert heard == ["model", "tool_call"]  # what came before the asker went away, and no more


async def test_result_follows_a_told_message_to_its_reply_and_names_only_what_it_reaches(
    tmp_path: Path,
) -> None:
    async with hosting(tmp_path, GATED, servers={"gate": Gate().server}) as host:
        message = await host.service.tell("d", "hi")
        done = await host.service.result(message.id, wait=20)
        with anyio.fail_after(10):  # an ended message is not waited for
            assert await host.service.result(message.id, wait=3600) == done
        with pytest.raises(UserError, match="no message 999"):
            await host.service.result(999)
        with pytest.raises(UserError, match=f"no message {message.id}"):
            await host.service.result(message.id, reaches=lambda claw: claw == "c")
        with pytest.raises(UserError, match=f"message {message.id} is done already"):
            await host.service.cancel(message.id)
    assert (done["state"], done["reply"], done["attempts"]) == ("done", "hello", 1)


async def test_cancel_drops_a_queued_message_and_stops_a_running_run(tmp_path: Path) -> None:
    gate = Gate()
    async with hosting(tmp_path, GATED, servers={"gate": gate.server}) as host:
        running = await told(host, "hold")
        queued = await told(host, "after it")  # same thread: behind the running one
        with anyio.fail_after(20):
            await gate.held.wait()
        dropped = await host.service.cancel(queued.id)
        stopped = await host.service.cancel(running.id)
        ended = await host.service.result(running.id, wait=20)
        later = await host.service.result((await told(host, "next")).id, wait=20)
        run = await host.store.message_run(running.id)
        never = await host.store.message_run(queued.id)
        stored = await host.store.get_message(running.id)
    assert dropped["state"] == "cancelled" and never is None
    assert stopped["state"] in ("running", "cancelled")  # its run stops as the host hears of it
    assert (ended["state"], ended["error"]) == ("cancelled", "cancelled by a person")
    assert run is not None and (run.state, run.error) == ("cancelled", "cancelled by a person")
    assert stored is not None and stored.state == "cancelled"
    assert (later["state"], later["reply"]) == ("done", "hello")  # the Claw goes on


async def test_a_cancelled_ask_returns_its_cancelled_run(tmp_path: Path) -> None:
    gate = Gate()
    async with hosting(tmp_path, GATED, servers={"gate": gate.server}) as host:
        ids: list[int] = []

        async def on_message(message_id: int) -> None:
            ids.append(message_id)

        async def cancel_once_held() -> None:
            await gate.held.wait()
            await host.service.cancel(ids[0])

        async with anyio.create_task_group() as tg:
            tg.start_soon(cancel_once_held)
            with anyio.fail_after(20):
                run = await host.service.ask("c", "hold", on_message=on_message)
    assert (run.state, run.error, run.message_id) == ("cancelled", "cancelled by a person", ids[0])


async def test_cancel_of_a_parked_message_withdraws_its_approval(tmp_path: Path) -> None:
    gate = Gate()
    async with hosting(tmp_path, GATED, servers={"gate": gate.server}) as host:
        message = await told(host, "record it")
        [approval] = await pending(host)
        waiting = await host.service.result(message.id)
        cancelled = await host.service.cancel(message.id)
        withdrawn = await host.store.get_approval(approval.id)
        with pytest.raises(UserError, match=f"approval {approval.id} is withdrawn already"):
            await host.service.decide(approval.id, True)
        after = await host.service.result((await told(host, "again")).id, wait=20)
    assert waiting["state"] == "waiting"
    assert (cancelled["state"], cancelled["error"]) == ("cancelled", "cancelled by a person")
    assert withdrawn is not None and withdrawn.state == "withdrawn"
    assert gate.recorded == []
    assert after["state"] == "done"  # the thread is free again


async def test_result_and_cancel_over_mcp_and_the_first_progress_names_the_message(tmp_path: Path) -> None:
    gate = Gate()
    async with hosting(tmp_path, GATED, servers={"gate": gate.server}) as host:
        heard: list[str | None] = []

        async def progress(progress: float, total: float | None, message: str | None) -> None:
            heard.append(message)

        async with Client(ClawServer(host.service, "d").server) as client:
            asked = await client.call_tool("ask", {"message": "hi"}, progress_callback=progress)
            told_ = await client.call_tool("tell", {"message": "hi"})
            message_id = (told_.structured_content or {})["message_id"]
            result = await client.call_tool("result", {"message_id": message_id, "wait": 20})
            other = await client.call_tool("result", {"message_id": 10_000})
        async with Client(HostServer(host.service, lambda request, claw: True).server) as client:
            queued = await host.service.tell("c", "hold")
            with anyio.fail_after(20):
                await gate.held.wait()
            cancelled = await client.call_tool("cancel", {"claw": "c", "message_id": queued.id})
            wrong = await client.call_tool("result", {"claw": "d", "message_id": queued.id})
    assert heard[0] == f"message {asked_id(heard)}" and asked.content[0].text == "hello"  # type: ignore[union-attr]
    found: dict[str, Any] = result.structured_content or {}
    assert (found["state"], found["reply"], found["claw"]) == ("done", "hello", "d")
    assert other.is_error and other.content[0].text == "no message 10000"  # type: ignore[union-attr]
    assert not cancelled.is_error and (cancelled.structured_content or {})["message_id"] == queued.id
    assert wrong.is_error and wrong.content[0].text == f"no message {queued.id}"  # type: ignore[union-attr]


def asked_id(heard: list[str | None]) -> int:
    return int((heard[0] or "").removeprefix("message "))


async def test_a_failed_ask_is_not_tried_again_and_an_ask_for_later_runs_all_the_same(tmp_path: Path) -> None:
    api = FakeAPI(lambda n, body: openai_error(400, "no such model"))
    body = GATED.replace(
        "models:\n", f"models:\n  api: {{provider: openai, base_url: '{API}', model: m}}\n"
    ).replace("  d: {model: m}\n", "  d: {model: m}\n  broken: {model: api}\n")
    async with hosting(tmp_path, body, api=api, servers={"gate": Gate().server}) as host:
        failed = await host.service.ask("broken", "hi")
        outcome = await host.service.result(failed.message_id or 0)
        later = await host.service.ask_later("d", "hi")
        done = await host.service.result(later, wait=20)
        runs = await host.store.runs("broken")
    assert failed.state == "failed" and "no such model" in (failed.error or "")
    assert (outcome["state"], outcome["attempts"], outcome["error"]) == ("failed", 1, failed.error)
    assert len(runs) == 1  # not tried again
    assert (done["state"], done["reply"]) == ("done", "hello")

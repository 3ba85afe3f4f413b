"""A Claw's mailbox consumer under faults: a full disk, and faults of ours while handling one message."""

from __future__ import annotations

import json
import logging
import sqlite3
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from clawmcp.errors import ToolRefused
from clawmcp.host import Host
from clawmcp.store import Outgoing
from clawmcp.store.sqlite import SqliteStore
from tests.fakes import Answer, FakeAPI, hosting, openai_error, openai_text
from tests.test_web import host_and_url

pytestmark = pytest.mark.anyio

BIG = "x" * 200_000  # a reply that needs new pages in the database


def manifest(url: str) -> str:
    return f"""
models:
  brain: {{provider: openai, base_url: "{url}", model: m}}
claws:
  c: {{model: brain}}
"""


async def disk_full(host: Host, full: bool) -> None:
    """Let the database grow no more (SQLite then fails writes with SQLITE_FULL), or again."""

    def limit(conn: sqlite3.Connection) -> None:
        [(pages,)] = conn.execute("PRAGMA page_count").fetchall()
        conn.execute(f"PRAGMA max_page_count = {pages if full else 2**30}")

    assert isinstance(host.store, SqliteStore)
    await host.store._write(limit)  # the SQLite store's own writer


@contextmanager
def logged(text: str) -> Iterator[anyio.Event]:
    """An event set when the host logs a line holding `text` (logging runs on the event loop)."""
    seen = anyio.Event()

    class Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if text in record.getMessage():
                seen.set()

    handler = Handler()
    logging.getLogger("clawmcp").addHandler(handler)
    try:
        yield seen
    finally:
        logging.getLogger("clawmcp").removeHandler(handler)


async def test_a_full_disk_holds_a_run_until_it_can_be_stored_and_tell_answers_503(tmp_path: Path) -> None:
    answering, asked = anyio.Event(), anyio.Event()

    async def answer(n: int, body: Any) -> Answer:
        asked.set()
        await answering.wait()
        return openai_text(BIG)

    api = FakeAPI(answer)
    async with api.serving() as url, host_and_url(tmp_path, manifest=manifest(url)) as (host, base):
        async with httpx2.AsyncClient() as http:
            told = await http.post(f"{base}/api/claws/c/tell", json={"message": "go"})
            message_id = told.json()["message_id"]
            await asked.wait()  # the run is waiting for the model
            await disk_full(host, True)
            refused = await http.post(f"{base}/api/claws/c/tell", json={"message": BIG})
            assert refused.status_code == 503
            assert "database or disk is full" in refused.json()["error"]
            assert refused.headers["retry-after"] == "5"
            with logged("the state store cannot commit (") as stuck, anyio.fail_after(20):
                answering.set()  # the run ends, and cannot store its end
                await stuck.wait()
            [status] = (await http.get(f"{base}/api/claws")).json()
            assert (status["state"], status["restarts"]) == ("running", 0)
            await disk_full(host, False)
            with anyio.fail_after(30):
                while (m := await host.store.get_message(message_id)) is None or m.state != "done":
                    await host.claws.settled.wait()
        [run] = await host.store.runs("c")
    assert (run.state, run.reply, len(api.requests)) == ("done", BIG, 1)  # the reply kept, not asked again


async def test_a_message_that_breaks_its_handling_is_dead_lettered_and_the_claw_goes_on(
    tmp_path: Path,
) -> None:
    body = "models: {m: {provider: scripted, rules: [{reply: hi}]}}\nclaws: {c: {model: m}}\n"
    async with hosting(tmp_path, body) as host:
        host.claws.retry_base = 0.001
        bad, _ = await host.store.enqueue("c", "{not json", kind="fire")  # a row no clawmcp writes
        good = await host.claws.tell("c", "hello")
        with anyio.fail_after(20):
            while (m := await host.store.get_message(good.id)) is None or m.state != "done":
                await host.claws.settled.wait()
        dead = await host.store.get_message(bad.id)
        status = await host.claws.status("c")
    assert dead is not None and (dead.state, dead.attempts) == ("dead", 5)
    assert dead.last_error is not None and dead.last_error.startswith("internal error: JSONDecodeError")
    assert (status["state"], status["restarts"]) == ("idle", 0)


async def test_a_message_tried_five_times_is_in_its_thread_once_at_its_final_outcome(
    tmp_path: Path,
) -> None:
    api = FakeAPI(lambda n, body: openai_error(401, "invalid key"))
    async with api.serving() as url, hosting(tmp_path, manifest(url)) as host:
        host.claws.retry_base = 0.001
        message = await host.claws.tell("c", "hello")
        with anyio.fail_after(20):
            while (m := await host.store.get_message(message.id)) is None or m.state != "dead":
                await host.claws.settled.wait()
        history = await host.store.history("c", "default", 50)
    assert len(api.requests) == 5
    assert [(h.role, h.content) for h in history] == [
        ("user", "hello"),
        ("assistant", "[no reply: model 'brain' (openai, m): 401 Unauthorized: invalid key]"),
    ]


async def clawmcp(*args: str) -> tuple[int, str, str]:
    done = await anyio.run_process([sys.executable, "-m", "clawmcp", *args], check=False)
    return done.returncode, done.stdout.decode(), done.stderr.decode()


async def test_dead_letters_are_listed_and_retried_or_discarded_from_the_cli(tmp_path: Path) -> None:
    broken = True
    api = FakeAPI(lambda n, body: openai_error(401, "invalid key") if broken else openai_text("fine"))
    async with api.serving() as url, host_and_url(tmp_path, manifest=manifest(url)) as (host, _):
        host.claws.retry_base = 0.001
        path = str(tmp_path / "m.yaml")
        told = [await host.claws.tell("c", text) for text in ("first", "second")]
        with anyio.fail_after(20):
            while len(await host.store.dead_letters("c")) < 2:
                await host.claws.settled.wait()
        code, out, _ = await clawmcp("dead", "-p", path)
        rows = [line.split()[:3] for line in out.splitlines()]
        assert code == 0 and rows == [
            ["ID", "CLAW", "TRIES"],
            [str(told[0].id), "c", "5"],
            [str(told[1].id), "c", "5"],
        ]
        broken = False
        assert (await clawmcp("retry", str(told[0].id), "-p", path))[
            1
        ] == f"message {told[0].id} (c): queued\n"
        with anyio.fail_after(20):
            while (m := await host.store.get_message(told[0].id)) is None or m.state != "done":
                await host.claws.settled.wait()
        assert (await clawmcp("discard", str(told[1].id), "-p", path))[
            1
        ] == f"message {told[1].id} (c): discarded\n"
        code, _, error = await clawmcp("retry", str(told[1].id), "-p", path)
        assert (code, error) == (1, f"message {told[1].id} is not a dead letter (HTTP 400)\n")
        assert json.loads((await clawmcp("dead", "--json", "-p", path))[1]) == []


async def test_a_fire_delivered_again_after_its_run_ended_is_not_run_twice(tmp_path: Path) -> None:
    # The state a crash leaves between a scheduled run's end and its fire's outcome: the run done,
    # its message queued again by the recovery.
    async with SqliteStore(tmp_path / "data" / "state.db") as store:
        tick = await store.put_schedule(
            "c",
            "tick",
            spec={"every": 3600.0},
            action={"prompt": "hello"},
            misfire="latest",
            source="runtime",
            next_fire=None,
        )
        body = json.dumps({"schedule": "tick", "id": tick.id, "slot": 1.0, "prompt": "hello"})
        fire = Outgoing("c", body, thread="schedule:tick", kind="fire", key=f"schedule:{tick.id}:1.0")
        assert await store.claim_fire(tick.id, 1.0, next_fire=None, message=fire)
        message = await store.claim("c")
        assert message is not None
        run, _ = await store.start_run("c", "schedule:tick", "schedule", "hello", message_id=message.id)
        await store.finish_run(run.id, "done", reply="echo: hello")
        assert await store.requeue_running() == 1
    body = (
        "models: {m: {provider: scripted, rules: [{reply: 'echo: {{ input }}'}]}}\nclaws: {c: {model: m}}\n"
    )
    async with hosting(tmp_path, body) as host:
        with anyio.fail_after(20):
            while (m := await host.store.get_message(message.id)) is None or m.state != "done":
                await host.claws.settled.wait()
        runs = await host.store.runs("c")
        [fired] = await host.store.fires(tick.id)
    assert [r.id for r in runs] == [run.id]  # no second run
    assert (fired.outcome, fired.run_id) == ("ok", run.id)


async def test_an_audit_the_store_cannot_take_is_dropped_and_the_host_goes_on(tmp_path: Path) -> None:
    body = (
        "models: {m: {provider: scripted, rules: [{reply: hi}]}}\n"
        "tools: {echo: {command: [echo, hi]}}\nclaws: {c: {model: m, tools: ['tools.echo']}}\n"
    )
    async with hosting(tmp_path, body) as host:
        await disk_full(host, True)
        with logged("tool calls were not audited") as dropped, anyio.fail_after(20):
            with pytest.raises(ToolRefused):  # its audit record holds the 300 kB name: new pages
                await host.hub.call("c", "x" * 300_000, {})
            await dropped.wait()
        await disk_full(host, False)
        with anyio.fail_after(20):
            assert not (await host.hub.call("c", "tools__echo", {})).is_error  # the hub is still there

"""A real host's edges under faults: `tell` over HTTP on a full disk, dead letters through the CLI."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from tests.e2e.test_web import host_and_url
from tests.fakes import Answer, FakeAPI, disk_full, logged, openai_error, openai_text

pytestmark = pytest.mark.anyio

BIG = "x" * 200_000  # a reply that needs new pages in the database


def manifest(url: str) -> str:
    return f"""
models:
  brain: {{provider: openai, base_url: "{url}", model: m}}
claws:
  c: {{model: brain}}
"""


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

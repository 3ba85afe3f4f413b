"""Messages survive a host killed with SIGKILL: every acknowledged message is handled, once.

A client tells 2,000 messages (each with its number as idempotency key) to eight Claws whose
handler records the number (tests/peers/recorder.py). The host is killed at random moments and
started again at least twenty times; the client retries what was not acknowledged. At the end
every acknowledged number is recorded, and no message has more than one run that ended `done`
(a run's end and its message's acknowledgement are one commit). The handler's tool may have been
called more than once for a message: a run cut short by the kill is run again.
"""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import anyio
import httpx2
import pytest

from clawmcp import web
from clawmcp.host import Host
from clawmcp.manifest import load
from tests.e2e.test_serve import base_of, serving
from tests.fakes import PEERS

MESSAGES = 2_000
SINKS = 8
KILLS = 20


def manifest(tmp_path: Path) -> Path:
    recorder = f"{{command: python, args: ['{PEERS / 'recorder.py'}', '{tmp_path / 'recorded.db'}']}}"
    sinks = "\n".join(f"  sink{i}: {{model: m, tools: ['rec.record']}}" for i in range(SINKS))
    path = tmp_path / "m.yaml"
    path.write_text(
        "host: {listen: '127.0.0.1:0', data_dir: state}\n"
        "models:\n  m: {provider: scripted, rules: [{steps: [{tool: rec__record,"
        " arguments: {n: '{{ input }}'}}], reply: ok}]}\n"
        f"servers:\n  rec: {recorder}\n"
        f"claws:\n{sinks}\n"
    )
    return path


@pytest.mark.anyio
async def test_every_acknowledged_message_is_handled_once_across_sigkills(tmp_path: Path) -> None:
    path = manifest(tmp_path)
    acked: set[int] = set()
    todo = list(range(MESSAGES))
    random.shuffle(todo)
    up, progress = anyio.Event(), anyio.Event()

    async def sender(http: httpx2.AsyncClient) -> None:
        nonlocal progress
        while todo:
            n = todo.pop()
            while True:
                await up.wait()
                try:
                    body = {"message": str(n), "key": str(n)}
                    response = await http.post(f"/api/claws/sink{n % SINKS}/tell", json=body)
                except httpx2.TransportError:
                    continue  # the host was killed under this request: try again once it is back
                assert response.status_code == 200, response.text
                acked.add(n)
                progress.set()
                progress = anyio.Event()
                break

    kills = 0
    http = httpx2.AsyncClient(timeout=10)
    async with http, anyio.create_task_group() as tg:
        for _ in range(16):
            tg.start_soon(sender, http)
        while kills < KILLS or len(acked) < MESSAGES:
            async with serving(path, mcp_config=False) as (process, started):
                http.base_url = base_of(started)  # port 0: a new port at each start
                up.set()
                if len(acked) < MESSAGES:
                    target = min(MESSAGES, len(acked) + random.randint(20, 150))
                    with anyio.fail_after(60):
                        while len(acked) < target:
                            await progress.wait()
                else:  # everything is acknowledged: kill it while it works through the mailboxes
                    await anyio.sleep(random.uniform(0, 0.5))
                up = anyio.Event()
                process.kill()
                await process.wait()
                kills += 1
    host = Host(load([path]))  # the last host runs in this process, so its progress can be awaited
    async with web.serving(host):
        with anyio.fail_after(120):
            while True:
                settled = host.claws.settled
                if all([await host.store.depth(f"sink{i}") == 0 for i in range(SINKS)]):
                    break
                await settled.wait()
    assert len(acked) == MESSAGES and kills >= KILLS
    recorded = sqlite3.connect(tmp_path / "recorded.db")
    seen = {int(n) for (n,) in recorded.execute("SELECT n FROM seen")}
    deliveries = recorded.execute("SELECT count(*) FROM deliveries").fetchone()[0]
    assert seen == acked  # none lost
    assert deliveries >= MESSAGES
    with sqlite3.connect(tmp_path / "state" / "state.db") as state:
        twice = state.execute(
            "SELECT message_id FROM runs WHERE state = 'done' GROUP BY message_id HAVING count(*) > 1"
        ).fetchall()
        [(runs,)] = state.execute("SELECT count(DISTINCT message_id) FROM runs WHERE state = 'done'")
    assert twice == [] and runs == MESSAGES

"""Hosts on one PostgreSQL store, as a user runs them: real `clawmcp serve` processes, a real
PostgreSQL server (tests/pg.py), real HTTP."""

from __future__ import annotations

import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import httpx2
import pytest
from anyio.abc import Process

from tests.e2e.test_serve import base_of, serving
from tests.pg import PostgresServer

pytestmark = pytest.mark.anyio

# Claw names that rendezvous hashing spreads two by two over hosts h1, h2 and h3.
CLAWS = ("ada", "bob", "jo", "kit", "cy", "gus")
LEASE = 3.0
BODY = (
    'models: {m: {provider: scripted, rules: [{when: "^ping", reply: "pong {{ input }}"}, {reply: ok}]}}\n'
    f"claws: {{{', '.join(f'{c}: {{model: m}}' for c in CLAWS)}}}\n"
)


def host_file(tmp_path: Path, name: str, body: str = BODY) -> Path:
    """A manifest of one host: its own data_dir and name, the shared Claws."""
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        f"host: {{listen: '127.0.0.1:0', data_dir: state-{name}, name: {name}, lease: {LEASE}s}}\n{body}"
    )
    return path


def serve(path: Path, url: str) -> list[str]:
    """`clawmcp serve` with the store in the environment, as a deployment would set it."""
    return ["env", f"CLAWMCP_STORE={url}", sys.executable, "-m", "clawmcp", "serve", str(path)]


@asynccontextmanager
async def hosts(tmp_path: Path, url: str, *names: str) -> AsyncIterator[dict[str, tuple[Process, str]]]:
    """Start the named hosts on the store; yields each one's process and base URL."""
    async with AsyncExitStack() as stack:
        started = {}
        for name in names:
            path = host_file(tmp_path, name)
            process, lines = await stack.enter_async_context(serving(path, command=serve(path, url)))
            started[name] = (process, base_of(lines))
        yield started


async def until(check: Callable[[], Awaitable[Any]], within: float = 30) -> Any:
    """Poll another process's state until `check` gives something true; that."""
    with anyio.fail_after(within):
        while True:
            if result := await check():
                return result
            await anyio.sleep(0.1)  # another process's state: nothing here to wait on


async def owners(http: httpx2.AsyncClient, base: str) -> dict[str, str | None]:
    return {c["claw"]: c["host"] for c in (await http.get(f"{base}/api/claws")).json()}


async def test_one_host_on_postgresql_tells_and_asks_and_keeps_what_it_was_told(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    url = await postgres.database()
    path = host_file(tmp_path, "h1")
    async with serving(path, command=serve(path, url)) as (_, lines), httpx2.AsyncClient() as http:
        base = base_of(lines)
        assert (await http.post(f"{base}/api/claws/ada/ask", json={"message": "ping 1"})).json()["reply"] == (
            "pong ping 1"
        )
        told = (await http.post(f"{base}/api/claws/bob/tell", json={"message": "hello"})).json()
    store = await asyncpg.connect(url)
    assert await store.fetchval("SELECT state FROM messages WHERE id = $1", told["message_id"]) in (
        "queued",
        "running",
        "done",
    )
    await store.close()
    async with serving(path, command=serve(path, url)) as (_, lines), httpx2.AsyncClient() as http:
        base = base_of(lines)

        async def told_is_done() -> bool:
            [bob] = [c for c in (await http.get(f"{base}/api/claws")).json() if c["claw"] == "bob"]
            return [r["state"] for r in bob["last_runs"]] == ["done"]

        await until(told_is_done)


async def test_three_hosts_share_the_claws_serve_every_claw_and_take_over_a_killed_host(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    url = await postgres.database()
    async with hosts(tmp_path, url, "h1", "h2", "h3") as started, httpx2.AsyncClient(timeout=30) as http:
        bases = {name: base for name, (_, base) in started.items()}

        async def spread() -> dict[str, str | None] | None:
            seen = await owners(http, bases["h1"])
            return seen if set(seen.values()) == {"h1", "h2", "h3"} else None

        placed = await until(spread)
        assert placed == {"ada": "h1", "bob": "h1", "jo": "h2", "kit": "h2", "cy": "h3", "gus": "h3"}
        for name, base in bases.items():  # every host serves every Claw
            assert await owners(http, base) == placed
            for claw in CLAWS:
                asked = await http.post(f"{base}/api/claws/{claw}/ask", json={"message": f"ping {name}"})
                assert asked.json()["reply"] == f"pong ping {name}", (name, claw)

        # h2 dies (SIGKILL) while 100 tells to its Claw "jo" arrive through the others
        told: list[int] = []

        async def tell(n: int) -> None:
            base = bases["h1" if n % 2 else "h3"]
            answer = await http.post(f"{base}/api/claws/jo/tell", json={"message": f"m{n}", "key": f"k{n}"})
            told.append(answer.json()["message_id"])

        async with anyio.create_task_group() as tg:
            for n in range(50):
                tg.start_soon(tell, n)
        started["h2"][0].kill()
        killed = time.monotonic()
        async with anyio.create_task_group() as tg:
            for n in range(50, 100):
                tg.start_soon(tell, n)

        async def taken() -> str | None:
            owner = (await owners(http, bases["h1"]))["jo"]
            return None if owner == "h2" else owner

        new_owner = await until(taken)
        took = time.monotonic() - killed
        assert new_owner in ("h1", "h3") and took <= LEASE + 5, took

        store = await asyncpg.connect(url)
        try:
            done = "SELECT count(*) = 100 FROM messages WHERE id = ANY($1::bigint[]) AND state = 'done'"
            await until(lambda: store.fetchval(done, told))
            runs = await store.fetch(
                "SELECT message_id, state FROM runs WHERE message_id = ANY($1::bigint[])", told
            )
            assert len({r["message_id"] for r in runs if r["state"] == "done"}) == 100
            twice = [r for r in runs if r["state"] != "done"]
            assert len(twice) <= 1, twice  # at most the one in flight when h2 died was run again
        finally:
            await store.close()

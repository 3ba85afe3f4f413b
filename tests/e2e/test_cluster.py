"""Hosts on one PostgreSQL store, as a user runs them: real `clawmcp serve` processes, a real
PostgreSQL server (tests/pg.py), real HTTP."""

from __future__ import annotations

import contextlib
import itertools
import json
import signal
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
from anyio.streams.text import TextReceiveStream
from mcp import Client

from tests.e2e.test_serve import base_of, serving
from tests.pg import PostgresServer, postgres_server

pytestmark = pytest.mark.anyio

# Claw names that rendezvous hashing spreads two by two over hosts h1, h2 and h3.
CLAWS = ("ada", "bob", "jo", "kit", "cy", "gus")
LEASE = 3.0
BODY = (
    'models: {m: {provider: scripted, rules: [{when: "^ping", reply: "pong {{ input }}"}, {reply: ok}]}}\n'
    f"claws: {{{', '.join(f'{c}: {{model: m}}' for c in CLAWS)}}}\n"
)


def host_file(tmp_path: Path, name: str, body: str = BODY, lease: float = LEASE) -> Path:
    """A manifest of one host: its own data_dir and name, the shared Claws."""
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        f"host: {{listen: '127.0.0.1:0', data_dir: state-{name}, name: {name}, lease: {lease}s}}\n{body}"
    )
    return path


def serve(path: Path, url: str) -> list[str]:
    """`clawmcp serve` with the store in the environment, as a deployment would set it."""
    return ["env", f"CLAWMCP_STORE={url}", sys.executable, "-m", "clawmcp", "serve", str(path)]


@asynccontextmanager
async def hosts(
    tmp_path: Path, url: str, *names: str, body: str = BODY, lease: float = LEASE
) -> AsyncIterator[dict[str, tuple[Process, str]]]:
    """Start the named hosts on the store; yields each one's process and base URL. Their logs are
    read as they come (a host whose log nobody reads blocks once the pipe is full) and printed
    when the test fails."""
    async with AsyncExitStack() as stack:
        readers = await stack.enter_async_context(anyio.create_task_group())  # left last: to EOF
        started, logs = {}, {}
        for name in names:
            path = host_file(tmp_path, name, body, lease)
            process, logs[name] = await stack.enter_async_context(serving(path, command=serve(path, url)))
            started[name] = (process, base_of(logs[name]))
            readers.start_soon(_read, process, logs[name])
        try:
            yield started
        except BaseException:
            for name, lines in logs.items():
                print(f"--- the log of {name}:", *lines[-200:], sep="\n")
            raise


async def _read(process: Process, lines: list[str]) -> None:
    assert process.stderr is not None
    with contextlib.suppress(anyio.ClosedResourceError):  # the host's pipe closed as it stopped
        async for chunk in TextReceiveStream(process.stderr):
            lines += chunk.splitlines()


async def until(check: Callable[[], Awaitable[Any]], within: float = 30) -> Any:
    """Poll another process's state until `check` gives something true; that."""
    with anyio.fail_after(within):
        while True:
            if result := await check():
                return result
            await anyio.sleep(0.1)  # another process's state: nothing here to wait on


async def owners(http: httpx2.AsyncClient, base: str) -> dict[str, str | None]:
    return {c["claw"]: c["host"] for c in (await http.get(f"{base}/api/claws")).json()}


async def test_one_host_on_postgresql_tells_and_asks_and_keeps_what_it_was_told_even_in_a_worker(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    url = await postgres.database()
    path = host_file(tmp_path, "h1", BODY.replace("bob: {model: m}", "bob: {model: m, isolation: process}"))
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
    body = BODY.replace(
        "jo: {model: m}", "jo: {model: m, schedules: [{name: tick, every: 1s, prompt: tick}]}"
    )
    async with (
        hosts(tmp_path, url, "h1", "h2", "h3", body=body) as started,
        httpx2.AsyncClient(timeout=30) as http,
    ):
        bases = {name: base for name, (_, base) in started.items()}

        async def spread() -> dict[str, str | None] | None:
            seen = await owners(http, bases["h1"])
            return seen if set(seen.values()) == {"h1", "h2", "h3"} else None

        placed = await until(spread)
        assert placed == {"ada": "h1", "bob": "h1", "jo": "h2", "kit": "h2", "cy": "h3", "gus": "h3"}
        store = await asyncpg.connect(url)
        told: list[int] = []
        for name, base in bases.items():  # every host serves every Claw
            assert await owners(http, base) == placed
            for claw in CLAWS:
                asked = await http.post(f"{base}/api/claws/{claw}/ask", json={"message": f"ping {name}"})
                assert asked.json()["reply"] == f"pong ping {name}", (name, claw)
                answer = await http.post(f"{base}/api/claws/{claw}/tell", json={"message": f"from {name}"})
                told.append(answer.json()["message_id"])
        async with Client(f"{bases['h1']}/claws/jo/mcp") as client:  # an MCP client, another host
            result = await client.call_tool("ask", {"message": "ping over MCP"})
            assert result.content[0].text == "pong ping over MCP"  # type: ignore[union-attr]
        done = "SELECT count(*) = $2 FROM messages WHERE id = ANY($1::bigint[]) AND state = 'done'"
        await until(lambda: store.fetchval(done, told, len(told)))

        # h2 dies (SIGKILL) while 100 tells to its Claw "jo" arrive through the others
        told = []

        async def tell(n: int) -> None:
            base = bases["h1" if n % 2 else "h3"]
            answer = await http.post(f"{base}/api/claws/jo/tell", json={"message": f"m{n}", "key": f"k{n}"})
            told.append(answer.json()["message_id"])

        async with anyio.create_task_group() as tg:
            for n in range(50):
                tg.start_soon(tell, n)
        started["h2"][0].kill()
        killed, killed_at = time.monotonic(), time.time()
        async with anyio.create_task_group() as tg:
            for n in range(50, 100):
                tg.start_soon(tell, n)

        async def taken() -> str | None:
            owner = (await owners(http, bases["h1"]))["jo"]
            return None if owner == "h2" else owner

        new_owner = await until(taken)
        took = time.monotonic() - killed
        assert new_owner in ("h1", "h3") and took <= LEASE + 5, took

        try:
            await until(lambda: store.fetchval(done, told, 100))
            runs = await store.fetch(
                "SELECT message_id, state FROM runs WHERE message_id = ANY($1::bigint[])", told
            )
            assert len({r["message_id"] for r in runs if r["state"] == "done"}) == 100
            twice = [r for r in runs if r["state"] != "done"]
            assert len(twice) <= 1, twice  # at most the one in flight when h2 died was run again
            # jo's every-second schedule: each slot fired once, by whichever host owned jo then;
            # of the slots while jo had no host, the latest fired (misfire: latest), the rest not
            after = "SELECT count(*) >= 2 FROM fires WHERE slot > $1"
            await until(lambda: store.fetchval(after, killed_at + took))  # firing again after the takeover
            slots = [r["slot"] for r in await store.fetch("SELECT slot FROM fires ORDER BY slot")]
            keys = "SELECT count(*) = count(DISTINCT key) FROM messages WHERE key LIKE 'schedule:%'"
            assert await store.fetchval(keys)
            gaps = [round(b - a) for a, b in itertools.pairwise(slots)]
            assert max(gaps) <= LEASE + 3, slots  # the failover gap, at most
        finally:
            await store.close()


RELAY = """
models:
  m:
    provider: scripted
    rules:
      - {when: "^ping", reply: "pong {{ input }}"}
      - when: "^relay (?P<to>[a-z]+) (?P<text>.*)"
        steps: [{tool: claw__ask, arguments: {to: "{{ match.to }}", content: "{{ match.text }}"}}]
        reply: "{{ results[0] }}"
claws: {ada: {model: m, talks_to: ["*"]}, jo: {model: m, talks_to: ["*"]}}
"""


async def test_claws_on_two_hosts_ask_each_other_and_a_loop_across_hosts_is_refused_at_once(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    url = await postgres.database()
    async with (
        hosts(tmp_path, url, "h1", "h2", body=RELAY) as started,
        httpx2.AsyncClient(timeout=60) as http,
    ):
        bases = {name: base for name, (_, base) in started.items()}

        async def placed() -> bool:
            return await owners(http, bases["h2"]) == {"ada": "h1", "jo": "h2"}

        await until(placed)
        for base in bases.values():
            asked = await http.post(f"{base}/api/claws/ada/ask", json={"message": "relay jo ping 1"})
            assert asked.json()["reply"] == "pong ping 1"  # ada on h1 asked jo on h2
        with anyio.fail_after(20):  # refused at once, not after a timeout
            looped = await http.post(
                f"{bases['h2']}/api/claws/ada/ask", json={"message": "relay jo relay ada ping"}
            )
        assert "ask loop: ada → jo → ada" in looped.json()["reply"], looped.json()


SLOW = """
models: {m: {provider: scripted, rules: [{when: "^slow", steps: [{tool: tools__slow}], reply: "done"}]}}
tools: {slow: {command: [sleep, "2"], timeout: 30s}}
claws: {ada: {model: m, tools: [tools.slow]}, jo: {model: m}}
"""


async def test_a_paused_owner_loses_its_claw_and_none_of_its_writes_for_it_commit_after(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    url = await postgres.database()
    store = await asyncpg.connect(url)
    async with hosts(tmp_path, url, "h1", "h2", body=SLOW) as started, httpx2.AsyncClient(timeout=30) as http:
        (h1, _), h2 = started["h1"], started["h2"][1]

        async def placed() -> bool:
            return (await owners(http, h2))["ada"] == "h1"

        await until(placed)
        told = (await http.post(f"{h2}/api/claws/ada/tell", json={"message": "slow"})).json()["message_id"]
        running = "SELECT id FROM runs WHERE message_id = $1 AND state = 'running'"
        first = await until(lambda: store.fetchval(running, told))  # h1 runs it: its tool sleeps 2 s
        h1.send_signal(signal.SIGSTOP)
        try:

            async def taken() -> bool:
                return (await owners(http, h2))["ada"] == "h2"

            await until(taken)
        finally:
            h1.send_signal(signal.SIGCONT)  # its tool call has ended: it goes on with the run it lost
        done = "SELECT count(*) FROM runs WHERE message_id = $1 AND state = 'done'"
        await until(lambda: store.fetchval(done, told))  # h2 ran the message again

        async def rejoined() -> bool:  # h1 saw it lost its Claws, and is back as a host
            hosts_ = (await http.get(f"{h2}/api/hosts")).json()
            return any(h["name"] == "h1" and h["alive"] for h in hosts_)

        await until(rejoined)
        runs = await store.fetch("SELECT id, state FROM runs WHERE message_id = $1 ORDER BY id", told)
        assert [(r["id"], r["state"]) for r in runs] == [(first, "interrupted"), (runs[1]["id"], "done")]
        assert await store.fetchval("SELECT state FROM messages WHERE id = $1", told) == "done"
    await store.close()


async def test_hosts_ride_out_a_restart_of_postgresql_and_lose_no_acknowledged_message(
    tmp_path: Path,
) -> None:
    with postgres_server() as server:  # its own server: this test stops it
        url = server.url()
        async with hosts(tmp_path, url, "h1", "h2") as started, httpx2.AsyncClient(timeout=30) as http:
            bases = [base for _, base in started.values()]
            acked: dict[int, int] = {}
            fifty = anyio.Event()

            async def tell(n: int) -> None:
                while True:  # a client retries with the same key until the host accepts it
                    try:
                        answer = await http.post(
                            f"{bases[n % 2]}/api/claws/{CLAWS[n % 6]}/tell",
                            json={"message": "hi", "key": f"k{n}"},
                        )
                    except httpx2.TransportError:
                        answer = None
                    if answer is not None and answer.status_code == 200:
                        acked[n] = answer.json()["message_id"]
                        return
                    await anyio.sleep(0.2)  # the store is down: try again soon

            async def load() -> None:
                for n in range(200):
                    await tell(n)
                    if n == 50:
                        fifty.set()

            async with anyio.create_task_group() as tg:
                tg.start_soon(load)
                await fifty.wait()
                await anyio.to_thread.run_sync(server.pg_ctl, "-m", "immediate", "stop")
                await anyio.to_thread.run_sync(server.pg_ctl, "start")
            store = await asyncpg.connect(url)
            try:
                done = "SELECT count(*) = 200 FROM messages WHERE id = ANY($1::bigint[]) AND state = 'done'"
                await until(lambda: store.fetchval(done, list(acked.values())), within=60)
            finally:
                await store.close()


async def test_a_host_whose_claws_differ_from_the_running_hosts_refuses_to_start_with_one_line(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    url = await postgres.database()
    async with hosts(tmp_path, url, "h1"):
        other = BODY.replace("ada: {model: m}", "ada: {model: m, talks_to: [jo]}").replace(
            ", gus: {model: m}", ""
        )
        path = host_file(tmp_path, "h2", other)
        refused = await anyio.run_process(serve(path, url), check=False)
    assert refused.returncode == 1
    assert refused.stderr.decode().splitlines() == [
        "this host's Claws differ from those of the running hosts (h1): Claw 'gus' is missing here; "
        "Claw 'ada' differs in talks_to; deploy the same Claw definitions (or stop every host to change them)"
    ]


async def test_a_schedule_fires_each_slot_once_across_hosts_and_the_slot_of_a_failover_too(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    url = await postgres.database()
    every = 5.0
    schedule = f"schedules: [{{name: tick, every: {every}s, prompt: tick, misfire: skip}}]"
    body = BODY.replace("jo: {model: m}", f"jo: {{model: m, {schedule}}}")
    store = await asyncpg.connect(url)
    slots = "SELECT slot, fired_at FROM fires ORDER BY slot"
    async with (
        hosts(tmp_path, url, "h1", "h2", "h3", body=body) as started,
        httpx2.AsyncClient(timeout=30) as http,
    ):

        async def placed() -> bool:
            return (await owners(http, started["h1"][1]))["jo"] == "h2"

        await until(placed)
        first = (await until(lambda: store.fetch(slots)))[0]["slot"]
        await anyio.sleep(max(0.0, first + every - 0.5 - time.time()))  # h2 dies just before a slot
        started["h2"][0].kill()
        fired = "SELECT fired_at - slot FROM fires WHERE slot = $1"
        late = await until(lambda: store.fetchval(fired, first + every))
    # The slot fell in the failover gap: the new owner fired it, later than misfire: skip allows
    # on a running host (GRACE, 1 s), since the time the Claw had no host is not the Claw's fault.
    assert 1.0 < late < LEASE + 3
    twice = "SELECT key FROM messages WHERE key LIKE 'schedule:%' GROUP BY key HAVING count(*) > 1"
    assert await store.fetch(twice) == []  # each slot fired once, by one host
    assert [round(r["slot"] - first) for r in await store.fetch(slots)][:2] == [0, every]
    await store.close()


async def test_a_joining_host_takes_its_claws_between_two_messages_and_a_stopped_one_gives_them_back_at_once(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    url = await postgres.database()
    body = BODY.replace("gus: {model: m}", "gus: {model: m, tools: [tools.slow]}").replace(
        "claws:", 'tools: {slow: {command: [sleep, "3"], timeout: 30s}}\nclaws:'
    )
    body = body.replace(
        "{reply: ok}", '{when: "^slow", steps: [{tool: tools__slow}], reply: slept}, {reply: ok}'
    )
    store = await asyncpg.connect(url)
    async with hosts(tmp_path, url, "h1", "h2", body=body) as started, httpx2.AsyncClient(timeout=30) as http:
        h1 = started["h1"][1]

        async def gus_on(host: str) -> bool:
            return (await owners(http, h1))["gus"] == host

        await until(lambda: gus_on("h1"))
        told = (await http.post(f"{h1}/api/claws/gus/tell", json={"message": "slow"})).json()["message_id"]
        await until(lambda: store.fetchval("SELECT id FROM runs WHERE message_id = $1", told))
        path = host_file(tmp_path, "h3", body)
        async with serving(path, command=serve(path, url)) as (h3, _):
            await until(lambda: gus_on("h3"))  # h3 prefers gus: h1 handed it over...
            states = "SELECT state FROM runs WHERE message_id = $1 ORDER BY id"
            assert [r["state"] for r in await store.fetch(states, told)] == ["done"]  # ...after its run
            h3.send_signal(signal.SIGTERM)
            with anyio.fail_after(10):
                await h3.wait()
            stopped = time.monotonic()
            await until(lambda: gus_on("h1"))
            assert time.monotonic() - stopped < LEASE / 2  # released at once, not left to expire
    await store.close()


async def test_the_activity_log_followed_on_one_host_shows_every_hosts_events_in_order(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    url = await postgres.database()
    async with hosts(tmp_path, url, "h1", "h2") as started, httpx2.AsyncClient(timeout=30) as http:
        h1, h2 = started["h1"][1], started["h2"][1]
        await until(
            lambda: _equal(owners(http, h1), {c: "h2" if c in ("jo", "kit", "cy") else "h1" for c in CLAWS})
        )
        seen: list[dict[str, Any]] = []
        with anyio.fail_after(30):
            async with http.stream("GET", f"{h1}/api/events?follow=1&limit=1") as stream:
                for claw in ("kit", "ada", "jo"):  # run on h2, h1, h2; told through the other host
                    await http.post(
                        f"{h2 if claw == 'ada' else h1}/api/claws/{claw}/tell", json={"message": "hi"}
                    )
                async for text in stream.aiter_lines():
                    if text.startswith("data:"):
                        seen.append(json.loads(text[5:]))
                        done = {
                            e["claw"] for e in seen if e["kind"] == "run" and e["data"]["state"] == "done"
                        }
                        if done >= {"kit", "ada", "jo"}:
                            break
        ids = [e["id"] for e in seen]
        assert ids == sorted(set(ids))  # in order, none twice
        logged = [
            e["id"] for e in (await http.get(f"{h2}/api/events?limit=1000")).json() if e["id"] >= ids[0]
        ]
        assert ids == logged[: len(ids)]  # none skipped


async def _equal(value: Awaitable[Any], expected: Any) -> bool:
    return bool(await value == expected)


async def test_the_claws_of_a_killed_host_move_long_before_its_lease_ends(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    url = await postgres.database()
    async with hosts(tmp_path, url, "h1", "h2", lease=60) as started, httpx2.AsyncClient(timeout=30) as http:
        h1 = started["h1"][1]

        async def jo_on(host: str) -> bool:
            return (await owners(http, h1))["jo"] == host

        await until(lambda: jo_on("h2"))
        started["h2"][0].kill()
        killed = time.monotonic()
        await until(lambda: jo_on("h1"))
        assert time.monotonic() - killed < 10  # its process is gone: no need to wait out 60 s

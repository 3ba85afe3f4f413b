"""Hosts sharing a PostgreSQL store, in this process: placement, wake-ups, asks and hand-overs
between hosts, a clean stop, a host taken for dead, a host replaced by its restart. (The same
with real processes, signals and a database restart: tests/e2e/test_cluster.py.)"""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp.types import ResourceUpdatedNotification

from clawmcp.cluster import Cluster, preferred
from clawmcp.errors import StoreError, unwrap
from clawmcp.expose import ClawServer
from clawmcp.host import Host
from clawmcp.store.postgres import PostgresStore
from tests.fakes import hosting, logged, tool_server
from tests.pg import PostgresServer

pytestmark = pytest.mark.anyio

CLAWS = ("ada", "bob", "jo", "kit", "cy", "gus")  # two by two over h1, h2, h3 (all: h1, h2)
BODY = (
    'models: {m: {provider: scripted, rules: [{when: "^ping", reply: "pong {{ input }}"}, {reply: ok}]}}\n'
    f"claws: {{{', '.join(c + ': {model: m}' for c in CLAWS)}}}\n"
)


@asynccontextmanager
async def host(tmp_path: Path, url: str, name: str) -> AsyncIterator[Host]:
    folder = tmp_path / name
    folder.mkdir(exist_ok=True)
    body = f"host: {{data_dir: data, name: {name}, lease: 3s}}\n{BODY}"
    async with hosting(folder, body, store=PostgresStore(url)) as started:
        yield started


def cluster(h: Host) -> Cluster:
    assert isinstance(h.cluster, Cluster)
    return h.cluster


async def until(check: Callable[[], bool | Awaitable[bool]], *hosts: Host) -> None:
    """Until `check` holds, looking again each time the hosts' Claws change or a message settles."""
    with anyio.fail_after(20):
        while True:
            result = check()
            if result if isinstance(result, bool) else await result:
                return
            async with anyio.create_task_group() as tg:

                async def wake(event: anyio.Event) -> None:
                    await event.wait()
                    tg.cancel_scope.cancel()

                for h in hosts:
                    tg.start_soon(wake, cluster(h).changed)
                    tg.start_soon(wake, h.claws.settled)


async def test_two_hosts_share_the_claws_and_each_serves_every_claw(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    url = await postgres.database()
    async with host(tmp_path, url, "h1") as h1, host(tmp_path, url, "h2") as h2:
        mine = {"h1": {c for c in CLAWS if preferred(c, ["h1", "h2"]) == "h1"}}
        await until(lambda: cluster(h2).owned == set(CLAWS) - mine["h1"], h1, h2)
        await until(lambda: cluster(h1).owned == mine["h1"], h1, h2)
        assert {s["claw"]: s["host"] for s in await h1.service.statuses(list(CLAWS))} == {
            c: "h1" if c in mine["h1"] else "h2" for c in CLAWS
        }
        for there in (h1, h2):
            for claw in CLAWS:  # asked on its host at once, on the other through its mailbox
                run = await there.service.ask(claw, "ping")
                assert (run.state, run.reply) == ("done", "pong ping")
        told = await h1.service.tell("jo", "hello")  # jo runs on h2: woken through the store
        await until(lambda: _done(h2, told.id), h2)
        hosts = await h1.service.hosts()
        assert [(h["name"], h["alive"], sorted(h["claws"])) for h in hosts] == [
            ("h1", True, sorted(mine["h1"])),
            ("h2", True, sorted(set(CLAWS) - mine["h1"])),
        ]


async def test_a_host_that_stops_gives_its_claws_to_the_others_at_once(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    url = await postgres.database()
    async with host(tmp_path, url, "h1") as h1:
        async with host(tmp_path, url, "h2") as h2:
            await until(lambda: bool(cluster(h2).owned), h1, h2)
            await until(lambda: cluster(h1).owned == set(CLAWS) - cluster(h2).owned, h1, h2)
        with anyio.fail_after(2):  # released, not left to expire (3 s)
            await until(lambda: cluster(h1).owned == set(CLAWS), h1)
        assert [h["name"] for h in await h1.service.hosts()] == ["h1"]


async def test_a_host_taken_for_dead_stops_its_claws_and_joins_again(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    url = await postgres.database()
    async with host(tmp_path, url, "h1") as h1:
        await until(lambda: cluster(h1).owned == set(CLAWS), h1)
        store = h1.store
        assert isinstance(store, PostgresStore)
        first = store.host
        with logged("was not renewed in time") as said:
            admin = await asyncpg.connect(url)  # as if h1 had been paused past its lease
            await admin.execute("UPDATE hosts SET expires_at = now() - interval '1s'")
            await admin.close()
            with anyio.fail_after(10):
                await said.wait()
        await until(lambda: cluster(h1).owned == set(CLAWS), h1)
        assert store.host != first  # a new life, new leases
        run = await h1.service.ask("ada", "ping")
        assert run.reply == "pong ping"


async def test_a_host_started_with_the_name_of_a_live_one_replaces_it(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    url = await postgres.database()
    with pytest.raises(ExceptionGroup) as ended:  # the old host ends with its error
        async with host(tmp_path, url, "h1") as old:
            await until(lambda: cluster(old).owned == set(CLAWS), old)
            (tmp_path / "again").mkdir()
            async with host(tmp_path / "again", url, "h1") as new:  # its restart, say
                await until(lambda: cluster(new).owned == set(CLAWS), new)
                with anyio.fail_after(10):
                    await anyio.sleep_forever()  # until the old host sees it was replaced
    error = unwrap(ended.value)
    assert isinstance(error, StoreError)
    assert str(error) == "another host joined the store with this host's name 'h1'"


async def _done(h: Host, message_id: int) -> bool:
    message = await h.store.get_message(message_id)
    return message is not None and message.state == "done"


async def test_a_host_that_cannot_renew_stops_its_claws_before_its_lease_ends(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    url = await postgres.database()
    async with host(tmp_path, url, "h1") as h1:
        await until(lambda: cluster(h1).owned == set(CLAWS), h1)
        admin = await asyncpg.connect(url)
        stalled = admin.transaction()
        await stalled.start()
        await admin.execute("SELECT * FROM hosts FOR UPDATE")  # its renewals wait on this lock
        with logged("could not renew for 3s: its Claws stop here") as said:
            await until(lambda: not cluster(h1).owned, h1)
            alive = "SELECT now() < expires_at FROM hosts WHERE name = 'h1'"
            assert await admin.fetchval(alive)  # stopped before the others could take them
            with anyio.fail_after(5):
                await said.wait()
        await stalled.rollback()
        await admin.close()
        await until(lambda: cluster(h1).owned == set(CLAWS), h1)  # it renews, or joins again


async def test_the_claws_of_a_host_whose_process_is_gone_are_taken_long_before_its_lease_ends(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    url = await postgres.database()
    async with host(tmp_path, url, "h1") as h1:
        await until(lambda: cluster(h1).owned == set(CLAWS), h1)
    admin = await asyncpg.connect(url)  # a host "h0" that died: its row has 60 s to go, its lock is free
    await admin.execute(
        "INSERT INTO hosts (id, name, listen, expires_at)"
        " VALUES (gen_random_uuid(), 'h0', '', now() + interval '60s');"
        "UPDATE claw_leases SET host = (SELECT id FROM hosts WHERE name = 'h0'),"
        " epoch = nextval('lease_epoch')"
    )
    await admin.close()
    with logged("host 'h0' is gone (its process ended)") as said:
        async with host(tmp_path, url, "h1") as h1:
            with anyio.fail_after(10):
                await said.wait()
            await until(lambda: cluster(h1).owned == set(CLAWS), h1)


async def test_a_decision_on_any_host_lets_the_waiting_run_go_on_on_its_own(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    url = await postgres.database()
    calls: list[str] = []

    def record(what: str) -> str:
        """Record something."""
        calls.append(what)
        return "ok"

    body = (
        "host: {data_dir: data, name: NAME, lease: 3s}\n"
        "models: {m: {provider: scripted, rules: [{steps: [{tool: rec__record,"
        " arguments: {what: '{{ input }}'}}], reply: done}]}}\n"
        "servers: {rec: {command: in-process}}\n"
        "claws: {c: {model: m, tools: [rec.*], approve: [rec.record]}, d: {model: m}}\n"
    )

    @asynccontextmanager
    async def on(name: str) -> AsyncIterator[Host]:
        folder = tmp_path / name
        folder.mkdir()
        async with hosting(
            folder,
            body.replace("NAME", name),
            store=PostgresStore(url),
            servers={"rec": tool_server("rec", record)},
        ) as started:
            yield started

    owner = preferred("c", ["h1", "h2"])
    async with on("h1") as h1, on("h2") as h2:
        hosts = {"h1": h1, "h2": h2}
        there, other = hosts[owner], hosts["h2" if owner == "h1" else "h1"]
        await until(lambda: "c" in cluster(there).owned, h1, h2)

        told = await other.service.tell("c", "told")  # parks on its owner
        await until(lambda: _pending(other, 1), h1, h2)
        [approval] = await other.service.approvals()
        await other.service.decide(approval.id, True)
        await until(lambda: _done(there, told.id), h1, h2)

        async with anyio.create_task_group() as tg:  # an ask on the owner waits in its request
            tg.start_soon(there.service.ask, "c", "asked")
            with anyio.fail_after(20):
                while not await _pending(other, 1):
                    changed = there.approvals.changed
                    if not await _pending(other, 1):
                        await changed.wait()
            [approval] = await other.service.approvals()
            await other.service.decide(approval.id, True)
    assert calls == ["told", "asked"]


async def _pending(h: Host, count: int) -> bool:
    return len(await h.service.approvals()) == count


async def test_a_cancel_on_any_host_stops_the_run_on_its_owner(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    url = await postgres.database()
    held, release = anyio.Event(), anyio.Event()

    async def hold() -> str:
        """Hold until released."""
        held.set()
        await release.wait()
        return "released"

    body = (
        "host: {data_dir: data, name: NAME, lease: 3s}\n"
        "models: {m: {provider: scripted, rules: [{steps: [{tool: gate__hold}], reply: done}]}}\n"
        "servers: {gate: {command: in-process}}\n"
        "claws: {c: {model: m, tools: [gate.*]}}\n"
    )
    owner = preferred("c", ["h1", "h2"])
    other = "h2" if owner == "h1" else "h1"
    async with AsyncExitStack() as stack:
        hosts = {}
        for name in ("h1", "h2"):
            (tmp_path / name).mkdir()
            hosts[name] = await stack.enter_async_context(
                hosting(
                    tmp_path / name,
                    body.replace("NAME", name),
                    store=PostgresStore(url),
                    servers={"gate": tool_server("gate", hold)},
                )
            )
        there, elsewhere = hosts[owner], hosts[other]
        await until(lambda: "c" in cluster(there).owned, there, elsewhere)
        heard: list[str] = []
        ended_here = anyio.Event()

        async def on_message(message: Any) -> None:  # a client of the other host follows the run
            if isinstance(message, ResourceUpdatedNotification):
                heard.append(str(message.params.uri))
                ended_here.set()

        server = ClawServer(elsewhere.service, "c")
        tg = await stack.enter_async_context(anyio.create_task_group())
        tg.start_soon(server.watch)
        client = await stack.enter_async_context(
            Client(server.server, mode="legacy", message_handler=on_message)
        )
        told = await elsewhere.service.tell("c", "hold on")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            await client.subscribe_resource(f"claw://c/runs/{told.id}")
        with anyio.fail_after(20):
            await held.wait()
        await elsewhere.service.cancel(told.id)
        ended = await elsewhere.service.result(told.id, wait=20)
        await until(lambda: _ended(there, told.id), there, elsewhere)
        run = await there.store.message_run(told.id)
        with anyio.fail_after(20):
            await ended_here.wait()
        tg.cancel_scope.cancel()
    assert ended["state"] == "cancelled"
    assert heard[0] == f"claw://c/runs/{told.id}"
    assert run is not None and (run.state, run.error) == ("cancelled", "cancelled by a person")
    assert not release.is_set()  # stopped, not finished


async def _ended(h: Host, message_id: int) -> bool:
    run = await h.store.message_run(message_id)
    return run is not None and run.ended_at is not None

"""Reloading the manifests of a running host, in this process: what a valid manifest changes (and
what it leaves alone: a run in flight), what an invalid one does not, a removed Claw that finishes
its run first, tokens over HTTP, and two hosts on one PostgreSQL store. (`clawmcp reload`, SIGHUP
and `POST /api/reload` against real processes: tests/e2e/test_reload.py.)"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp.server.mcpserver import MCPServer

from clawmcp.cluster import Cluster
from clawmcp.errors import ManifestError, UserError
from clawmcp.host import Host
from clawmcp.manifest import load
from clawmcp.reload import Delta
from clawmcp.store import Event, Run
from clawmcp.store.postgres import PostgresStore
from clawmcp.store.sqlite import SqliteStore
from clawmcp.web import Endpoints, create_app
from tests.fakes import LOCAL, hosting, logged, tool_server
from tests.pg import PostgresServer

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
def _info_logged(caplog: pytest.LogCaptureFixture) -> None:
    """What a reload changed is logged at INFO: the tests read it."""
    caplog.set_level(logging.INFO, logger="clawmcp")


MODEL = (
    "models:\n"
    "  m:\n"
    "    provider: scripted\n"
    "    rules:\n"
    "      - {when: '^hold', steps: [{tool: gate__hold}], reply: 'held: {{ results[0] }}'}\n"
    "      - {reply: 'hi from {{ input }}'}\n"
)


class Gate:
    """An in-process tool server whose `hold` waits until the test releases it."""

    def __init__(self) -> None:
        self.holding, self.released = anyio.Event(), anyio.Event()

        async def hold() -> str:
            """Wait until released."""
            self.holding.set()
            await self.released.wait()
            return "released"

        self.server = tool_server("gate", hold)


def extra() -> MCPServer[Any]:
    def ping() -> str:
        """Answer pong."""
        return "pong"

    return tool_server("extra", ping)


def reloaded(host: Host) -> Callable[[], Awaitable[tuple[list[str], list[str]]]]:
    """A wait for the next time the host's Claws change by a reload: (changed, gone)."""
    heard: list[tuple[list[str], list[str]]] = []
    event = anyio.Event()

    def listener(changed: list[str], gone: list[str]) -> None:
        heard.append((changed, gone))
        event.set()

    host.service.on_reload(listener)

    async def wait() -> tuple[list[str], list[str]]:
        nonlocal event
        with anyio.fail_after(20):
            await event.wait()
        event = anyio.Event()
        return heard.pop(0)

    return wait


def reload_events(*hosts: Host) -> Callable[[int], Awaitable[list[dict[str, Any]]]]:
    """A wait for the first n reload events the hosts log from now on (once they are stored)."""
    seen: list[dict[str, Any]] = []
    more = [anyio.Event()]

    def listener(event: Event) -> None:
        if event.kind == "reload":
            seen.append(event.data)
            more[0].set()
            more[0] = anyio.Event()

    for host in hosts:
        host.events.listen(listener)

    async def first(count: int) -> list[dict[str, Any]]:
        with anyio.fail_after(20):
            while len(seen) < count:
                await more[0].wait()
        return seen[:count]

    return first


async def asked(host: Host, claw: str, message: str, runs: list[Run]) -> None:
    runs.append(await host.service.ask(claw, message))


async def test_a_reload_applies_a_new_claw_schedule_and_server_set_while_a_run_goes_on(
    tmp_path: Path,
) -> None:
    gate = Gate()
    before = (
        f"{MODEL}servers: {{gate: {LOCAL}, extra: {LOCAL}}}\n"
        "claws:\n"
        "  a: {model: m, tools: ['gate.*']}\n"
        "  b: {model: m, tools: ['extra.*'], schedules: [{name: tick, every: 1h, prompt: tick}]}\n"
    )
    after = (
        f"{MODEL}servers: {{gate: {LOCAL}}}\n"
        "claws:\n"
        "  a: {model: m, tools: ['gate.*']}\n"
        "  b: {model: m, schedules: [{name: tick, every: 2h, prompt: tick}]}\n"
        "  c: {model: m}\n"
    )
    servers = {"gate": gate.server, "extra": extra()}
    async with hosting(tmp_path, before, servers=servers) as host:
        events = reload_events(host)
        runs: list[Run] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(asked, host, "a", "hold", runs)
            with anyio.fail_after(20):
                await gate.holding.wait()
            (tmp_path / "m.yaml").write_text("host: {data_dir: data}\n" + after)
            with logged("reload: Claws added c; changed b; servers removed extra") as said:
                changes = await host.reload()
            assert said.is_set(), changes.summary()
            assert changes.claws == Delta(added=("c",), changed=("b",))
            assert changes.servers == Delta(removed=("extra",))
            assert changes.schedules == Delta(changed=("b/tick",))
            assert not (changes.models or changes.tools or changes.host or changes.restart)
            assert "extra" not in host.hub.upstreams
            assert not [t for t in host.hub.catalog.values() if t.server == "extra"]
            [tick] = await host.store.schedules("b")
            assert tick.spec == {"every": 7200.0}
            new = await host.service.ask("c", "c")  # the new Claw runs at once
            assert (new.state, new.reply) == ("done", "hi from c")

            (tmp_path / "m.yaml").write_text("host: {data_dir: data}\n" + after + "  d: {model: nowhere}\n")
            with pytest.raises(ManifestError) as refused:
                await host.reload()
            with pytest.raises(ManifestError) as validated:
                load([tmp_path / "m.yaml"])
            assert refused.value.problems == validated.value.problems
            assert "d" not in host.manifest.claws and "c" in host.manifest.claws  # nothing changed
            assert not runs  # still held
            gate.released.set()
        [run] = runs
        assert (run.state, run.reply) == ("done", "held: released")
        applied, refused_ = await events(2)
    assert (applied["outcome"], refused_["outcome"]) == ("applied", "refused")
    assert applied["claws"] == {"added": ["c"], "removed": [], "changed": ["b"]}
    assert refused_["errors"] == [str(p) for p in validated.value.problems]


async def test_a_removed_claw_finishes_its_run_then_stops_and_keeps_its_mailbox(tmp_path: Path) -> None:
    gate = Gate()
    claws = "claws:\n  a: {model: m, tools: ['gate.*']}\n  b: {model: m}\n"
    body = f"{MODEL}servers: {{gate: {LOCAL}}}\n{claws}"
    store = SqliteStore(tmp_path / "state.db")
    async with hosting(tmp_path, body, servers={"gate": gate.server}, store=store) as host:
        heard, events = reloaded(host), reload_events(host)
        first = await host.service.tell("a", "hold")
        with anyio.fail_after(20):
            await gate.holding.wait()
        later = await host.service.tell("a", "later")
        (tmp_path / "m.yaml").write_text(
            f"host: {{data_dir: data}}\n{MODEL}servers: {{gate: {LOCAL}}}\nclaws:\n  b: {{model: m}}\n"
        )
        changes = await host.reload()
        assert changes.claws == Delta(removed=("a",))
        assert await heard() == ([], [])  # applied; a still runs its run
        assert "a" in host.manifest.claws
        gate.released.set()
        assert await heard() == ([], ["a"])  # stopped, and gone
        assert "a" not in host.manifest.claws and "a" not in host.claws.supervisor.children
        done = await host.store.get_message(first.id)
        kept = await host.store.get_message(later.id)
        assert done is not None and done.state == "done"
        assert kept is not None and kept.state == "queued"
        with pytest.raises(UserError, match="no Claw 'a'"):
            await host.service.tell("a", "more")
        run = await host.store.message_run(first.id)
        assert run is not None and (run.state, run.reply) == ("done", "held: released")

        (tmp_path / "m.yaml").write_text("host: {data_dir: data}\n" + body)  # back: its mailbox goes on
        await host.reload()
        with anyio.fail_after(20):
            while (m := await host.store.get_message(later.id)) is None or m.state != "done":
                await host.claws.settled.wait()
        reloads = [e["claws"] for e in await events(2)]
        stored = [e.data["claws"] for e in await host.store.events() if e.kind == "reload"]
    assert (
        reloads
        == stored
        == [
            {"added": [], "removed": ["a"], "changed": []},
            {"added": ["a"], "removed": [], "changed": []},
        ]
    )


TOKEN_OLD = "token-that-goes-away-0123"
TOKEN_NEW = "token-that-comes-later-0123"


def with_token(token: str) -> str:
    return (
        f"host: {{data_dir: data, auth: {{tokens: [{{name: t, token: {token}}}]}}}}\n"
        "models: {m: {provider: scripted, rules: [{reply: hi}]}}\nclaws: {c: {model: m}}\n"
    )


@asynccontextmanager
async def on_http(host: Host) -> AsyncIterator[httpx2.AsyncClient]:
    """The host's whole HTTP app, reached without a port."""
    app = create_app(host.service, Endpoints(host.service), host.listen)
    async with httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=app), base_url="http://127.0.0.1"
    ) as http:
        yield http


async def test_tokens_a_reload_adds_work_at_once_and_those_it_removes_are_refused(tmp_path: Path) -> None:
    async with hosting(tmp_path, with_token(TOKEN_OLD)) as host, on_http(host) as http:

        async def status(token: str) -> int:
            return (await http.get("/api/claws", headers={"authorization": f"Bearer {token}"})).status_code

        assert (await status(TOKEN_OLD), await status(TOKEN_NEW)) == (200, 401)
        (tmp_path / "m.yaml").write_text(with_token(TOKEN_NEW))
        reload = await http.post("/api/reload", headers={"authorization": f"Bearer {TOKEN_OLD}"})
        assert reload.status_code == 200, reload.text
        assert reload.json()["host"] == ["auth"]
        assert (await status(TOKEN_OLD), await status(TOKEN_NEW)) == (401, 200)


async def test_a_bad_manifest_is_a_422_with_every_problem_and_a_listen_change_waits_for_a_restart(
    tmp_path: Path,
) -> None:
    body = "models: {m: {provider: scripted, rules: [{reply: hi}]}}\nclaws: {c: {model: m}}\n"
    async with hosting(tmp_path, body) as host, on_http(host) as http:
        (tmp_path / "m.yaml").write_text("host: {data_dir: data, bogus: 1}\nclaws: {c: {model: nope}}\n")
        refused = await http.post("/api/reload")
        with pytest.raises(ManifestError) as validated:
            load([tmp_path / "m.yaml"])
        assert refused.status_code == 422
        assert refused.json()["problems"] == [str(p) for p in validated.value.problems]
        assert len(refused.json()["problems"]) == 2

        (tmp_path / "m.yaml").write_text("host: {data_dir: data, listen: '127.0.0.1:9'}\n" + body)
        with logged("reload: host.listen changed: it takes effect at the next start") as said:
            applied = await http.post("/api/reload")
        assert said.is_set()
        assert applied.json()["restart"] == ["listen"]
        assert host.manifest.host.listen == "127.0.0.1:8765"  # what it listens on, until a restart


@asynccontextmanager
async def two_hosts(tmp_path: Path, url: str, claws: str) -> AsyncIterator[tuple[Host, Host]]:
    """Hosts h1 and h2 on one PostgreSQL database, each with its own manifest file."""
    async with AsyncExitStack() as stack:
        found = []
        for name in ("h1", "h2"):
            (tmp_path / name).mkdir()
            body = on_pg(name, claws)
            found.append(
                await stack.enter_async_context(hosting(tmp_path / name, body, store=PostgresStore(url)))
            )
        yield found[0], found[1]


def on_pg(name: str, claws: str) -> str:
    return (
        f"host: {{data_dir: data, name: {name}, lease: 3s}}\n"
        "models: {m: {provider: scripted, rules: [{reply: 'pong {{ input }}'}]}}\n"
        f"claws: {{{claws}}}\n"
    )


def cluster(h: Host) -> Cluster:
    assert isinstance(h.cluster, Cluster)
    return h.cluster


async def owned(claw: str, *hosts: Host) -> None:
    """Until one of the hosts runs the Claw."""
    with anyio.fail_after(20):
        while True:
            changes = [cluster(h).changed for h in hosts]
            if any(claw in cluster(h).owned for h in hosts):
                return
            async with anyio.create_task_group() as tg:

                async def wake(event: anyio.Event) -> None:
                    await event.wait()
                    tg.cancel_scope.cancel()

                for event in changes:
                    tg.start_soon(wake, event)


async def test_a_reload_on_one_host_is_applied_by_the_other_and_a_new_claw_gets_an_owner(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    url = await postgres.database()
    async with two_hosts(tmp_path, url, "a: {model: m}, b: {model: m}") as (h1, h2):
        heard, events = reloaded(h2), reload_events(h1, h2)
        for name in ("h1", "h2"):
            (tmp_path / name / "m.yaml").write_text(on_pg(name, "a: {model: m}, c: {model: m}"))
        with logged("reload (as host 'h1' did): Claws added c; removed b") as said:
            await h1.reload()
            assert await heard() == ([], [])
            assert said.is_set()
        assert await heard() == ([], ["b"])  # stopped where it ran, then gone
        assert set(h2.manifest.claws) == set(h1.manifest.claws) == {"a", "c"}
        await owned("c", h1, h2)
        for there in (h1, h2):
            run = await there.service.ask("c", "ping")
            assert (run.state, run.reply) == ("done", "pong ping")
        assert "b" not in cluster(h1).owned | cluster(h2).owned

        (tmp_path / "h2" / "m.yaml").write_text(on_pg("h2", "a: {model: m}"))  # h2's files left behind
        (tmp_path / "h1" / "m.yaml").write_text(on_pg("h1", "a: {model: m}, c: {model: m}, d: {model: m}"))
        warning = "host 'h1' reloaded, but this host's Claws differ from the store's (missing here: c, d)"
        with logged(warning) as differ:
            await h1.reload()
            with anyio.fail_after(20):
                await differ.wait()
        assert set(h2.manifest.claws) == {"a", "c"}  # kept as it was
        seen = [(e["by"], e["outcome"]) for e in await events(4)]
    assert sorted(seen, key=str) == sorted(
        [(None, "applied"), ("h1", "applied"), (None, "applied"), ("h1", "kept")], key=str
    )


async def test_a_claws_mcp_server_takes_its_changed_definition_and_closes_once_it_is_removed(
    tmp_path: Path,
) -> None:
    def body(claws: str) -> str:
        return f"models: {{m: {{provider: scripted, rules: [{{reply: hi}}]}}}}\nclaws: {{{claws}}}\n"

    async with hosting(tmp_path, body("a: {model: m, description: Old news}, b: {model: m}")) as host:
        heard, endpoints = reloaded(host), Endpoints(host.service)
        async with anyio.create_task_group() as tg:
            await tg.start(endpoints.run)
            mounted = await endpoints.get("a")
            assert str(mounted.server.server.instructions).startswith("Old news")
            (tmp_path / "m.yaml").write_text(
                "host: {data_dir: data}\n" + body("a: {model: m, description: News}, b: {model: m}")
            )
            await host.reload()
            assert await heard() == (["a"], [])
            assert str(mounted.server.server.instructions).startswith("News")  # the same server, new sessions
            assert (await endpoints.get("a")) is mounted
            opened = await endpoints.get("b")
            (tmp_path / "m.yaml").write_text("host: {data_dir: data}\n" + body("a: {model: m}"))
            await host.reload()
            assert await heard() == (["a"], [])
            assert await heard() == ([], ["b"])
            assert opened.scope.cancel_called  # its server closed, with its sessions
            tg.cancel_scope.cancel()

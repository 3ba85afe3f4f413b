"""Triggers (DESIGN §12): signed webhooks and upstream resource updates wake a Claw.

The webhooks go through the host's whole HTTP app (guard included) in this process; the
resource triggers through a real MCP server in this process, in both eras.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any, Literal

import anyio
import httpx2
import pytest
from starlette.datastructures import Headers

from clawmcp.cluster import preferred
from clawmcp.events import line
from clawmcp.hooks import signed
from clawmcp.host import Host
from clawmcp.manifest import load
from clawmcp.store import Message, Run
from clawmcp.store.memory import MemoryStore
from clawmcp.store.postgres import PostgresStore
from clawmcp.web import Endpoints, create_app
from tests.fakes import LOCAL, hosting, logged, tool_server, until
from tests.peers import watched
from tests.pg import PostgresServer
from tests.test_cluster import cluster
from tests.test_cluster import until as until_cluster

SECRET = "it-is-a-webhook-secret"
TOKEN = "a-token-of-sixteen-chars"

HOOKS = f"""
host: {{data_dir: data, auth: {{tokens: [{{name: t, token: {TOKEN}}}]}}}}
models:
  m: {{provider: scripted, rules: [{{reply: "saw: {{{{ input }}}}"}}]}}
claws:
  triage:
    model: m
    talks_to: [editor]
    triggers:
      - name: github
        webhook: {{secret: {SECRET}, signature: github}}
        prompt: "A GitHub {{{{ headers.x-github-event }}}} event arrived: {{{{ body }}}}"
      - name: stripe
        webhook: {{secret: {SECRET}, signature: stripe}}
        prompt: "Stripe: {{{{ body }}}}"
      - name: generic
        webhook: {{secret: {SECRET}, signature: hmac-sha256}}
        send: {{to: editor, content: "alert {{{{ headers.x-alert }}}}"}}
      - name: open
        webhook: {{signature: none}}
        prompt: "open: {{{{ body }}}}"
      - name: inbox
        resource: {{server: notes, uri: "note://inbox"}}
        prompt: "changed"
      - name: note
        webhook: {{signature: none}}
        call: {{tool: notes.change, arguments: {{new: "{{{{ body }}}}"}}}}
    tools: ["notes.*"]
  editor: {{model: m}}
servers:
  notes: {LOCAL}
"""


def _mac(payload: bytes) -> str:
    return hmac.new(SECRET.encode(), payload, hashlib.sha256).hexdigest()


def github(body: bytes, delivery: str, event: str = "push") -> dict[str, str]:
    return {
        "X-Hub-Signature-256": f"sha256={_mac(body)}",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
        "Content-Type": "application/json",
    }


def stripe(body: bytes, at: float) -> dict[str, str]:
    stamp = str(int(at))
    return {"Stripe-Signature": f"t={stamp},v1={_mac(stamp.encode() + b'.' + body)}"}


@asynccontextmanager
async def hooked(tmp_path: Path) -> AsyncIterator[tuple[Host, httpx2.AsyncClient]]:
    """The host of `HOOKS` in this process, and an HTTP client of its whole app."""
    (tmp_path / "m.yaml").write_text(HOOKS)
    host = Host(load([tmp_path / "m.yaml"]), store=MemoryStore(), servers={"notes": watched.server()})
    app = create_app(host.service, Endpoints(host.service), host.listen)
    transport = httpx2.ASGITransport(app=app)
    async with anyio.create_task_group() as tg:
        await tg.start(host.run)
        async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            yield host, http
        tg.cancel_scope.cancel()


async def runs_of(host: Host, claw: str) -> list[Run]:
    """The Claw's ended runs, oldest first."""
    return sorted(
        (r for r in await host.store.runs(claw) if r.state not in ("running", "waiting")), key=lambda r: r.id
    )


async def messages(host: Host, mailbox: str) -> list[Message]:
    found = []
    for message_id in range(1, 100):
        message = await host.store.get_message(message_id)
        if message is not None and message.mailbox == mailbox:
            found.append(message)
    return found


@pytest.mark.anyio
async def test_a_github_delivery_runs_the_claw_once_per_delivery_id(tmp_path: Path) -> None:
    async with hooked(tmp_path) as (host, http):
        body = json.dumps({"action": "opened", "number": 7}).encode()
        first = await http.post("/hooks/triage/github", content=body, headers=github(body, "d-1"))
        assert first.status_code == 202, first.text
        message_id = first.json()["message_id"]
        assert first.json() == {"message_id": message_id, "duplicate": False}

        await until(host, lambda: _ran(host, "triage", 1))
        [run] = await runs_of(host, "triage")
        assert (run.trigger, run.thread, run.state, run.message_id) == (
            "webhook",
            "hook:github",
            "done",
            message_id,
        )
        assert run.reply == f"saw: A GitHub push event arrived: {body.decode()}"

        again = await http.post("/hooks/triage/github", content=body, headers=github(body, "d-1"))
        assert again.status_code == 202
        assert again.json() == {"message_id": message_id, "duplicate": True}
        other = await http.post("/hooks/triage/github", content=body, headers=github(body, "d-2"))
        assert other.json()["duplicate"] is False
        await until(host, lambda: _ran(host, "triage", 2))
        assert len(await messages(host, "triage")) == 2

        status = await host.service.status("triage")
        assert status["triggers"][0] == {
            "name": "github",
            "webhook": "/hooks/triage/github",
            "signature": "github",
        }
        ping = await http.post("/hooks/triage/github", content=b"{}", headers=github(b"{}", "d-3", "ping"))
        assert (ping.status_code, ping.json()) == (200, {"ping": "ok"})
        assert len(await messages(host, "triage")) == 2
        assert "webhook 'github' fired (prompt, message" in "\n".join(await _log(host))


@pytest.mark.anyio
async def test_a_call_trigger_calls_its_tool_whose_change_wakes_a_resource_trigger(tmp_path: Path) -> None:
    async with hooked(tmp_path) as (host, http):
        called = await http.post("/hooks/triage/note", content=b"buy milk")
        assert called.status_code == 202
        await until(host, lambda: _ran(host, "triage", 1))
        message = await host.store.get_message(called.json()["message_id"])
        assert message is not None and (message.state, message.thread) == ("done", "hook:note")
        [run] = await runs_of(host, "triage")  # the change woke the inbox trigger
        assert (run.trigger, run.thread, run.reply) == ("resource", "resource:inbox", "saw: changed")
        assert "webhook 'note' fired (call, message" in "\n".join(await _log(host))
    async with host.store:  # the audit is written off the call path: all of it by the host's stop
        [call] = await host.store.tool_calls("triage")
        assert (call.tool, call.outcome, call.run_id) == ("notes.change", "ok", None)


@pytest.mark.anyio
async def test_the_limits_are_exact(tmp_path: Path) -> None:
    async with hooked(tmp_path) as (_, http):
        biggest = b"x" * 1_048_576
        taken = await http.post("/hooks/triage/github", content=biggest, headers=github(biggest, "y" * 200))
        assert taken.status_code == 202
        streamed = await http.post("/hooks/triage/github", content=_chunks(), headers=github(b"", "z"))
        assert streamed.status_code == 413  # a body without a length is cut off at the cap too
    webhook = load([tmp_path / "m.yaml"]).claws["triage"].triggers[1].webhook
    assert webhook is not None
    body, now = b"{}", 1_000_000.0
    for late, problem in [
        (300, None),
        (-300, None),
        (301, "the Stripe-Signature is from 301 s ago (tolerance 300 s)"),
        (-301, "the Stripe-Signature is from -301 s ago (tolerance 300 s)"),
    ]:
        headers = Headers(stripe(body, now - late))
        assert signed(webhook, headers, body, now) == problem


async def _chunks() -> AsyncIterator[bytes]:
    for _ in range(2):
        yield b"x" * 1_000_000


async def _disconnected(host: Host) -> tuple[int, Any]:
    """POST to a webhook, as a client that goes away before its body is read."""
    app = create_app(host.service, Endpoints(host.service), host.listen)
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/hooks/triage/open",
        "raw_path": b"/hooks/triage/open",
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1")],
        "scheme": "http",
        "server": ("127.0.0.1", 80),
        "client": ("127.0.0.1", 1),
    }
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> MutableMapping[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent[0]["status"], json.loads(sent[1]["body"])


async def _ran(host: Host, claw: str, count: int) -> bool:
    return len(await runs_of(host, claw)) >= count


async def _log(host: Host) -> list[str]:
    await host.events.flush()
    return [line(e) for e in await host.store.events()]


@pytest.mark.anyio
async def test_a_bad_delivery_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    async with hooked(tmp_path) as (host, http):
        body = b'{"secret": "in the body"}'
        headers = github(body, "d-1") | {"X-Hub-Signature-256": "sha256=" + "0" * 64}
        with logged("refused a delivery") as refused:
            wrong = await http.post("/hooks/triage/github", content=body, headers=headers)
        assert refused.is_set()
        assert wrong.status_code == 401
        assert wrong.json() == {
            "error": "webhook 'github' of Claw 'triage': the x-hub-signature-256 does not match"
        }
        unsigned = await http.post("/hooks/triage/github", content=body)
        assert unsigned.status_code == 401
        assert "no x-hub-signature-256 of the form sha256=HEX" in unsigned.json()["error"]
        old = await http.post("/hooks/triage/stripe", content=body, headers=stripe(body, time.time() - 600))
        assert old.status_code == 401
        assert "tolerance 300 s" in old.json()["error"]
        other = await http.post("/hooks/triage/stripe", content=body, headers=stripe(b"other", time.time()))
        assert (other.status_code, other.json()["error"]) == (
            401,
            "webhook 'stripe' of Claw 'triage': the Stripe-Signature does not match",
        )
        big = b"x" * (1_048_576 + 1)
        too_big = await http.post("/hooks/triage/github", content=big, headers=github(big, "d-2"))
        assert too_big.status_code == 413
        unknown = await http.post("/hooks/triage/gitlab", content=body)
        assert (unknown.status_code, unknown.json()["error"]) == (
            404,
            "Claw 'triage' has no trigger 'gitlab' (triggers: github, stripe, generic, open, inbox, note)",
        )
        nobody = await http.post("/hooks/nobody/github", content=body)
        assert nobody.status_code == 404
        watcher = await http.post("/hooks/triage/inbox", content=body)
        assert (watcher.status_code, watcher.json()["error"]) == (
            404,
            "trigger 'inbox' of Claw 'triage' is not a webhook",
        )
        long_id = await http.post("/hooks/triage/github", content=body, headers=github(body, "x" * 201))
        assert (long_id.status_code, long_id.json()["error"]) == (
            400,
            "the delivery id is over 200 characters",
        )
        for form in ("sha1=" + _mac(body), "sha256=", _mac(body)):
            answer = await http.post(
                "/hooks/triage/github", content=body, headers={"X-Hub-Signature-256": form}
            )
            assert answer.json()["error"].endswith("no x-hub-signature-256 of the form sha256=HEX")
        for form in (f"v1={_mac(body)}", "t=123", "t=x,v1=00"):
            answer = await http.post("/hooks/triage/stripe", content=body, headers={"Stripe-Signature": form})
            assert answer.json()["error"].endswith("no Stripe-Signature with t= and v1=")
        assert await _disconnected(host) == (400, {"error": "the body could not be read"})
        assert await messages(host, "triage") == []
        assert not [line for line in await _log(host) if " message " in line]


@pytest.mark.anyio
async def test_stripe_hmac_and_unsigned_deliveries(tmp_path: Path) -> None:
    async with hooked(tmp_path) as (host, http):
        event = json.dumps({"id": "evt_1", "type": "invoice.paid"}).encode()
        for _ in range(2):  # Stripe sends an event again until it is answered: queued once
            paid = await http.post("/hooks/triage/stripe", content=event, headers=stripe(event, time.time()))
            assert paid.status_code == 202
        assert paid.json()["duplicate"] is True

        listed = json.dumps([event.decode()]).encode()  # no event id: each delivery is new
        for _ in range(2):
            again = await http.post(
                "/hooks/triage/stripe", content=listed, headers=stripe(listed, time.time())
            )
            assert again.json()["duplicate"] is False

        alert = b"disk full"
        generic = {"X-Signature": f"sha256={_mac(alert)}", "X-Alert": "disk", "X-Delivery-Id": "a-1"}
        for _ in range(2):
            sent = await http.post("/hooks/triage/generic", content=alert, headers=generic)
            assert sent.status_code == 202
        assert sent.json()["duplicate"] is True
        # The webhooks need no bearer token, but everything else still does.
        assert (await http.get("/api/claws")).status_code == 401

        opened = await http.post("/hooks/triage/open", content=b"hello")
        assert opened.status_code == 202

        await until(host, lambda: _ran(host, "triage", 4))
        await until(host, lambda: _ran(host, "editor", 1))
        replies = sorted(r.reply or "" for r in await runs_of(host, "triage"))
        assert replies == [
            f"saw: Stripe: {listed.decode()}",
            f"saw: Stripe: {listed.decode()}",
            f"saw: Stripe: {event.decode()}",
            "saw: open: hello",
        ]
        [told] = await runs_of(host, "editor")
        assert (told.input, told.trigger, told.reply) == ("alert disk", "message", "saw: alert disk")


# -- resource triggers ---------------------------------------------------------------------------

WATCH = f"""
host: {{data_dir: data}}
models:
  m:
    provider: scripted
    rules:
      - when: "^inbox"
        steps: [{{tool: gate__hold, arguments: {{}}}}]
        reply: "read {{{{ input }}}}"
      - reply: ok
servers:
  notes: {LOCAL}
  gate: {LOCAL}
claws:
  watcher:
    model: m
    tools: ["gate.*"]
    triggers:
      - name: inbox
        resource: {{server: notes, uri: "note://inbox"}}
        prompt: "inbox {{{{ uri }}}} changed"
      - name: hook
        webhook: {{signature: none}}
        prompt: "hooked"
  poker: {{model: m, tools: ["notes.*"]}}
"""


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_each_resource_change_wakes_the_claw_once_and_a_burst_is_merged(
    tmp_path: Path, mode: Literal["auto", "legacy"]
) -> None:
    entered, release = anyio.Event(), anyio.Event()

    async def hold() -> str:
        """Wait until the test lets the run go on."""
        entered.set()
        await release.wait()
        return "held"

    (tmp_path / "m.yaml").write_text(WATCH)
    servers = {"notes": watched.server(), "gate": tool_server("gate", hold)}
    host = Host(load([tmp_path / "m.yaml"]), store=MemoryStore(), servers=servers)
    host.hub.mode = mode  # the handshake era subscribes with resources/subscribe
    heard = [0]
    updates = anyio.Event()

    async with anyio.create_task_group() as tg:
        await tg.start(host.run)
        forward = host.hub.updated
        assert forward is not None

        async def counted(server: str, uri: str) -> None:
            await forward(server, uri)
            heard[0] += 1
            updates.set()

        host.hub.updated = counted

        async def heard_all(count: int) -> None:
            nonlocal updates
            with anyio.fail_after(10):
                while heard[0] < count:
                    await updates.wait()
                    updates = anyio.Event()

        poke: Callable[..., Awaitable[Any]] = host.hub.call
        await poke("poker", "notes__change", {"new": "first"})
        with anyio.fail_after(10):
            await entered.wait()  # the first change's run holds
        await poke("poker", "notes__burst", {"count": 20})
        await heard_all(21)
        release.set()
        await until(host, lambda: _ran(host, "watcher", 2))
        await poke("poker", "notes__change", {"new": "second"})
        await until(host, lambda: _ran(host, "watcher", 3))
        await heard_all(22)

        if mode == "legacy":  # an update of a URI under the followed one (2026-era servers filter them)
            await poke("poker", "notes__change", {"new": "x", "uri": "note://inbox/7"})
            await poke("poker", "notes__change", {"new": "x", "uri": "note://inboxes"})
            await heard_all(24)
            await until(host, lambda: _ran(host, "watcher", 4))
        runs = await runs_of(host, "watcher")
        assert [(r.trigger, r.thread, r.state) for r in runs][:3] == [
            ("resource", "resource:inbox", "done")
        ] * 3
        assert [r.reply for r in runs][:3] == ["read inbox note://inbox changed"] * 3
        assert [r.reply for r in runs][3:] == (
            ["read inbox note://inbox/7 changed"] if mode == "legacy" else []
        )
        assert len(await messages(host, "watcher")) == len(runs)  # the burst made one message, not twenty
        status = await host.service.status("watcher")
        assert status["triggers"][0] == {
            "name": "inbox",
            "resource": {"server": "notes", "uri": "note://inbox"},
        }
        tg.cancel_scope.cancel()


CLUSTERED = f"""
models:
  m: {{provider: scripted, rules: [{{reply: "got {{{{ input }}}}"}}]}}
servers:
  notes: {LOCAL}
claws:
  w:
    model: m
    triggers:
      - name: inbox
        resource: {{server: notes, uri: "note://inbox"}}
        prompt: "inbox changed"
      - name: hook
        webhook: {{signature: none}}
        prompt: "hook: {{{{ body }}}}"
  poker: {{model: m, tools: ["notes.*"]}}
"""


@pytest.mark.anyio
async def test_with_two_hosts_an_update_wakes_the_claw_once_and_a_webhook_reaches_its_owner(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    url = await postgres.database()
    notes = watched.server()  # one server, which both hosts follow
    heard = {"h1": 0, "h2": 0}
    changed = anyio.Event()
    async with AsyncExitStack() as stack:
        hosts: dict[str, Host] = {}
        for name in heard:
            folder = tmp_path / name
            folder.mkdir()
            manifest = f"host: {{data_dir: data, name: {name}, lease: 3s}}\n{CLUSTERED}"
            hosts[name] = await stack.enter_async_context(
                hosting(folder, manifest, store=PostgresStore(url), servers={"notes": notes})
            )
        owner = hosts[preferred("w", list(hosts))]
        other = next(h for h in hosts.values() if h is not owner)
        await until_cluster(
            lambda: "w" in cluster(owner).owned and "w" not in cluster(other).owned, owner, other
        )

        for name, h in hosts.items():
            forward = h.hub.updated
            assert forward is not None

            async def counted(server: str, uri: str, name: str = name, forward: Any = forward) -> None:
                nonlocal changed
                await forward(server, uri)
                heard[name] += 1
                changed.set()
                changed = anyio.Event()

            h.hub.updated = counted
            with anyio.fail_after(10):
                await h.hub.wait_up("notes")

        await other.hub.call("poker", "notes__change", {"new": "hello"})
        with anyio.fail_after(10):
            while heard != {"h1": 1, "h2": 1}:
                await changed.wait()
        await until_cluster(lambda: _ran(owner, "w", 1), owner)
        assert len(await messages(owner, "w")) == 1  # both hosts heard it; the owner queued it

        trigger = other.service.triggers.find("w", "hook")
        await other.service.triggers.deliver("w", trigger, {"body": "from afar"})
        await until_cluster(lambda: _ran(owner, "w", 2), owner)
        replies = sorted(r.reply or "" for r in await runs_of(owner, "w"))
        assert replies == ["got hook: from afar", "got inbox changed"]

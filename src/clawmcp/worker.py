"""Claws with `isolation: process`: each one runs in a child process, `clawmcp worker CLAW PATH...`,
that the host talks to over MCP stdio.

The worker loads the same manifest and opens the same state store (SQLite lets several processes
write; each waits its turn). It runs the Claw's agent loop with its own model providers and its
own connections to the tool servers the Claw may use, and offers one MCP tool, `run`: it reports
each committed step as progress and returns the id of the finished run, which the host reads from
the store. A crash of the worker (a bad tool, memory, a signal) ends only that process: the host's
call fails, the Claw's task crashes and its supervisor starts a new worker, and the message being
handled is queued again.

In a worker, `claw__ask` is refused (the reply would reach the host, not the worker; use
`claw__send`), and `claw__schedule` is not offered.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from fnmatch import fnmatchcase
from typing import Any, cast

import anyio
from mcp import Client, StdioServerParameters
from mcp.server.mcpserver import Context, MCPServer

from clawmcp.approvals import Approvals
from clawmcp.cluster import Leases
from clawmcp.errors import WorkerLost
from clawmcp.events import Events
from clawmcp.mailbox import Mailboxes
from clawmcp.manifest import Manifest
from clawmcp.models.providers import Providers
from clawmcp.router import Router
from clawmcp.runtime import MAX_DEPTH, OnStep, Runtime
from clawmcp.store import Event, Run, RunTrigger, Step, Store
from clawmcp.store.configured import configured_store
from clawmcp.toolhub import ToolHub

__all__ = ["HEALTH_INTERVAL", "Worker", "serve_worker"]

LEASE_VARIABLE = "CLAWMCP_WORKER_LEASE"
"""With several hosts on one store: `HOST EPOCH` of the host's lease on the worker's Claw, so that
the worker's writes are fenced as the host's are (see `clawmcp.cluster`)."""

HEALTH_INTERVAL = 5.0
"""Seconds between pings of an idle worker, so a dead one is noticed before the next message."""


class Worker:
    """The host's end of one worker process. `async with Worker.started(...)` starts it."""

    def __init__(self, claw: str, client: Client, store: Store, mailboxes: Mailboxes) -> None:
        self.claw, self.client, self.store, self.mailboxes = claw, client, store, mailboxes

    @classmethod
    @contextlib.asynccontextmanager
    async def started(
        cls, manifest: Manifest, claw: str, store: Store, mailboxes: Mailboxes
    ) -> AsyncIterator[Worker]:
        command = [sys.executable, "-m", "clawmcp", "worker", claw, *manifest.files]
        env = dict(os.environ)
        if isinstance(store, Leases) and store.host is not None:
            env[LEASE_VARIABLE] = f"{store.host} {store.epochs[claw]}"
        params = StdioServerParameters(command=command[0], args=command[1:], env=env)
        async with Client(params, mode="legacy") as client:
            yield cls(claw, client, store, mailboxes)

    async def watch(self) -> None:
        """Ping the worker now and then; raise `WorkerLost` when it does not answer."""
        while True:
            await anyio.sleep(HEALTH_INTERVAL)
            try:
                with anyio.fail_after(HEALTH_INTERVAL):
                    await self.client.send_ping()
            except Exception as e:
                raise WorkerLost(f"the worker of Claw '{self.claw}' stopped answering: {e}") from e

    async def run(
        self,
        input: str,
        *,
        thread: str,
        trigger: RunTrigger,
        message_id: int | None,
        will_retry: bool,
        acknowledge: bool,
        on_step: OnStep | None,
        resume: int | None,
    ) -> Run:
        async def forward(progress: float, total: float | None, message: str | None) -> None:
            sent = json.loads(message or "{}")
            if "event" in sent:
                self.mailboxes.events.publish(Event(**sent["event"]))
            elif on_step is not None and "step" in sent:
                await on_step(Step(**sent["step"]))

        arguments = {
            "input": input,
            "thread": thread,
            "trigger": trigger,
            "message_id": message_id,
            "will_retry": will_retry,
            "acknowledge": acknowledge,
            "resume": resume,
        }
        try:
            result = await self.client.call_tool("run", arguments, progress_callback=forward)
        except Exception as e:
            raise WorkerLost(f"the worker of Claw '{self.claw}' was lost during a run: {e}") from e
        if result.is_error or not result.structured_content:
            raise WorkerLost(f"the worker of Claw '{self.claw}' failed a run: {result.content}")
        for mailbox in result.structured_content.get("notified", []):  # the worker's run sent them
            self.mailboxes.notify(mailbox)
        run = await self.store.get_run(result.structured_content["run_id"])
        assert run is not None
        return run


def _servers_of(manifest: Manifest, claw: str) -> Manifest:
    """The manifest with only the tool servers the Claw's tool patterns can reach."""
    patterns = [p.split(".", 1)[0] for p in manifest.claws[claw].tools]
    servers = {n: s for n, s in manifest.servers.items() if any(fnmatchcase(n, p) for p in patterns)}
    return dataclasses.replace(manifest, servers=servers)


async def serve_worker(manifest: Manifest, claw: str) -> None:
    """The worker process: serve `run` for one Claw over stdio until the host closes it."""
    manifest.check_claw(claw)
    manifest = _servers_of(manifest, claw)
    store = configured_store(manifest, time.time)
    if isinstance(store, Leases) and (lease := os.environ.get(LEASE_VARIABLE)):
        host, epoch = lease.split()
        store.host, store.epochs = host, {claw: int(epoch)}
    events = Events(store, redact=manifest.redact)
    approvals = Approvals(manifest, store, events)
    hub = ToolHub(manifest, store, events, questions=approvals.question)
    providers = Providers(manifest.models)
    notified: set[str] = set()  # mailboxes the host is to notify: their consumers are there
    router = Router(manifest, Mailboxes(store, events, forward=notified.add), max_depth=MAX_DEPTH, asks=False)
    runtime = Runtime(manifest, store, events, hub, providers, router, approvals=approvals)
    server = MCPServer(f"clawmcp-worker-{claw}")

    @server.tool()
    async def run(
        input: str,
        ctx: Context,
        thread: str = "default",
        trigger: str = "message",
        message_id: int | None = None,
        will_retry: bool = False,
        acknowledge: bool = True,
        resume: int | None = None,
    ) -> dict[str, Any]:
        """Run the Claw once; progress carries each step and each event; the result is the run's id."""
        sent = itertools.count(1)

        async def report(**item: Any) -> None:
            await ctx.report_progress(next(sent), None, json.dumps(item))

        with events.subscribe() as stream:

            async def forward() -> None:
                with contextlib.suppress(anyio.WouldBlock, anyio.EndOfStream):
                    while True:
                        await report(event=dataclasses.asdict(stream.receive_nowait()))

            async def step(s: Step) -> None:
                await forward()
                await report(step=dataclasses.asdict(s))

            done = await runtime.run(
                claw,
                input,
                thread=thread,
                trigger=cast(RunTrigger, trigger),
                message_id=message_id,
                will_retry=will_retry,
                acknowledge=acknowledge,
                on_step=step,
                resume=resume,
            )
            await events.flush()
            await forward()
        mailboxes = sorted(notified)
        notified.clear()
        return {"run_id": done.id, "notified": mailboxes}

    async with store, providers, anyio.create_task_group() as tg:
        await tg.start(events.run)
        await tg.start(approvals.run)
        await tg.start(hub.run)
        await server.run_stdio_async()
        tg.cancel_scope.cancel()

"""The host: the composition root that owns the data_dir, the store, the tool hub, the model
providers and the runtime."""

from __future__ import annotations

import gc
import json
import logging
import os
import socket
import sys
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

import anyio
import httpx2
from anyio.abc import TaskGroup, TaskStatus

from clawmcp.address import loopback, split_listen
from clawmcp.alerts import Alerts
from clawmcp.approvals import Approvals
from clawmcp.claw import Claws
from clawmcp.cluster import Alone, Cluster, Leases
from clawmcp.errors import StoreError, UserError
from clawmcp.events import Events
from clawmcp.mailbox import Mailboxes
from clawmcp.manifest import Manifest
from clawmcp.metrics import Metrics
from clawmcp.models.providers import Providers
from clawmcp.reload import Changes, Reloader
from clawmcp.router import Router
from clawmcp.runtime import MAX_DEPTH, Remote, Runtime
from clawmcp.scheduler import Clock, Scheduler, SystemClock
from clawmcp.service import Service
from clawmcp.store import Store
from clawmcp.store.configured import configured_store
from clawmcp.store.lock import DataDirLock
from clawmcp.toolhub import ToolHub
from clawmcp.triggers import Triggers
from clawmcp.worker import Worker

__all__ = ["Host"]

log = logging.getLogger("clawmcp")


class Host:
    """Everything one `clawmcp serve` runs. Start it with `tg.start(host.run)`."""

    def __init__(
        self,
        manifest: Manifest,
        *,
        clock: Clock | None = None,
        store: Store | None = None,
        models: httpx2.AsyncBaseTransport | None = None,
        servers: Mapping[str, Any] | None = None,
    ) -> None:
        """What tests replace: `store` (the manifest's, `data_dir/state.db` by default), the `clock`, the
        network under the `models` (a fake API's transport) and in-process tool `servers` by name
        (`ToolHub` `local`)."""
        self.manifest = manifest
        address, port = split_listen(manifest.host.listen)
        if not loopback(address) and not manifest.host.auth.tokens:
            raise UserError(
                f"refusing to listen on {manifest.host.listen} without host.auth.tokens: "
                "a public address needs tokens (or listen on 127.0.0.1)"
            )
        self.clock = clock or SystemClock()
        self.store = store or configured_store(manifest, self.clock.now)
        name = manifest.host.name or f"{socket.gethostname()}:{port or os.getpid()}"
        self.cluster: Alone | Cluster = (
            Cluster(manifest, self.store, name, clock=self.clock.now)
            if isinstance(self.store, Leases)
            else Alone(manifest, self.store, name)
        )
        """Which Claws this host runs: all of them, or with other hosts on the store its share."""
        self.events = Events(self.store, self.clock.now, manifest.redact)
        self.events.shared = isinstance(self.cluster, Cluster)
        self.metrics = Metrics(self.events)
        self.mailboxes = Mailboxes(self.store, self.events)
        self.alerts = Alerts(manifest, self.mailboxes)
        self.events.listen(self.alerts.heard)
        self.approvals = Approvals(
            manifest, self.store, self.events, clock=self.clock, notify=self.mailboxes.notify
        )
        self.hub = ToolHub(
            manifest, self.store, self.events, local=servers, questions=self.approvals.question
        )
        self.providers = Providers(manifest.models, transport=models)
        self.router = Router(manifest, self.mailboxes, max_depth=MAX_DEPTH)
        self.scheduler = Scheduler(
            manifest, self.store, self.mailboxes, clock=self.clock, owns=self.cluster.owns
        )
        self.triggers = Triggers(manifest, self.mailboxes, owns=self.cluster.owns)
        self.hub.updated = self.triggers.updated
        workers: dict[str, Remote] = {}
        self.runtime = Runtime(
            manifest,
            self.store,
            self.events,
            self.hub,
            self.providers,
            self.router,
            self.scheduler,
            remotes=workers,
            approvals=self.approvals,
        )
        self.claws = Claws(
            manifest,
            self.store,
            self.runtime,
            self.mailboxes,
            clock=self.clock.now,
            isolate=lambda claw: Worker.started(manifest, claw, self.store, self.mailboxes),
            workers=workers,
        )
        self.reloader = Reloader(self)
        """Reloads the manifests (`clawmcp reload`, SIGHUP, `POST /api/reload`)."""
        self.service = Service(
            manifest,
            self.store,
            self.events,
            self.metrics,
            self.hub,
            self.runtime,
            self.scheduler,
            self.claws,
            self.cluster,
            self.approvals,
            self.triggers,
            self.readiness,
            reloader=self.reloader,
        )
        """What the edges (MCP servers, HTTP) may do with this host."""
        self.ready = False
        self.listen = manifest.host.listen
        """Where the host listens: `host.listen`, with the port it got when that asks for 0."""
        self._lock: DataDirLock | None = None
        self._tg: TaskGroup | None = None

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        with DataDirLock(self.manifest.data_dir) as self._lock:
            async with self.store, self.providers:
                try:
                    await self._run(task_status)
                finally:
                    with anyio.CancelScope(shield=True):
                        await self._stopped()

    def listening(self, listen: str) -> None:
        """The host listens at `listen` now: the lock file tells the CLI and stdio bridges."""
        self.listen = self.cluster.listen = listen
        assert self._lock is not None, "Host.run is not running"
        self._lock.set_info(listen=listen)

    async def _stopped(self) -> None:
        """After a clean stop: the messages whose runs were interrupted are queued again now, so
        the next start has nothing to recover and says so only after a crash."""
        try:
            queued = await self.cluster.leave()
        except StoreError as e:
            log.warning("stopping: the messages being handled stay for the next start (%s)", e)
            return
        if queued:
            log.info("stopping: %d message(s) being handled are queued again for the next start", queued)

    async def _run(self, task_status: TaskStatus[None]) -> None:
        async with anyio.create_task_group() as self._tg:
            tg = self._tg
            await tg.start(self.events.run)
            await tg.start(self.hub.run)
            for name, status in self.hub.status().items():
                if status.state != "up":
                    log.warning(
                        "tool server '%s' is down: %s; reconnecting",
                        name,
                        status.error,
                        extra={"server": name},
                    )
            for warning in self.hub.unmatched_patterns():
                log.warning("%s", warning)
            await tg.start(self.approvals.run)
            await tg.start(self.alerts.run)
            await tg.start(self.claws.run)
            await tg.start(self.scheduler.run)
            await tg.start(self.reloader.run)
            await tg.start(self.cluster.run, self)
            self.ready = True
            # What start-up made lives as long as the host: keep it out of the collector's
            # full passes, which otherwise stall the event loop (and the schedules) for
            # ~100 ms on a host with thousands of Claws and schedules.
            gc.freeze()
            task_status.started()

    # -- the Claws this host runs (`clawmcp.cluster.Duties`) -----------------------------------------

    async def gain(self, claws: list[str], *, grace: float) -> None:
        """Start the Claws' consumers and schedules; at start, wait until each has looked at its
        mailbox (see `Claws.start`)."""
        if self.ready:
            assert self._tg is not None
            self._tg.start_soon(self.claws.start, claws)
        else:
            await self.claws.start(claws)
        await self.scheduler.track(claws, grace=grace)

    async def lose(self, claws: list[str], *, drain: bool) -> None:
        self.scheduler.untrack(claws)
        await self.claws.stop(claws, drain=drain)

    async def heard(self, channel: str, payload: str) -> None:
        try:
            if channel == "clawmcp_mailbox" and self.cluster.owns(payload):
                self.mailboxes.notify(payload)
                self.approvals.heard()  # a decision, maybe, for a run waiting here
                await self._stop_cancelled(payload)  # or a cancel of a run going on here
            elif channel == "clawmcp_done":
                await self.mailboxes.check(int(payload))
            elif channel == "clawmcp_schedules" and self.cluster.owns(payload):
                await self.scheduler.track([payload])
            elif channel == "clawmcp_events":
                await self.events.heard(int(payload))
            elif channel == "clawmcp_reload" and payload != self.cluster.name:
                await self.reloader.follow(payload)
        except StoreError as e:  # it is looked at again in the next resync
            log.warning("cannot act on %s %s now: %s", channel, payload, e)

    async def resync(self) -> None:
        owned = [c for c in self.manifest.claws if self.cluster.owns(c)]
        for claw in owned:
            self.mailboxes.notify(claw)
        self.approvals.heard()
        try:
            for claw in owned:
                await self._stop_cancelled(claw)
            for message_id in self.mailboxes.waiting():
                await self.mailboxes.check(message_id)
            await self.scheduler.track(owned)
            await self.events.heard()
            await self.reloader.resync()
        except StoreError as e:
            log.warning("cannot look at the store's changes now: %s", e)

    async def _stop_cancelled(self, claw: str) -> None:
        """Stop the Claw's runs going on here whose messages were cancelled on another host."""
        for message_id in self.runtime.running(claw):
            message = await self.store.get_message(message_id)
            if message is not None and message.state == "cancelled":
                self.runtime.cancel(message_id)

    async def reload(self) -> Changes:
        """Read the manifests again and apply them; what changed (see `clawmcp.reload`)."""
        return await self.reloader.reload()

    def readiness(self) -> dict[str, Any]:
        """What `/readyz` shows anyone, token or not: counts, no names."""
        states = [s.state for s in self.hub.status().values()]
        up, login = states.count("up"), states.count("needs login")
        servers = {"up": up, "down": len(states) - up} | ({"needs_login": login} if login else {})
        return {"ready": self.ready, "servers": servers, "claws": len(self.manifest.claws)}


LOG_FORMATS = ("text", "json")


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: time (UTC), level, logger, message, the fields a call passes as
    `extra` (claw, run, schedule, server, ...) and the traceback, if any."""

    _PLAIN: ClassVar = {*vars(logging.makeLogRecord({})), "message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry |= {k: v for k, v in vars(record).items() if k not in self._PLAIN}
        if record.exc_info:
            entry["traceback"] = record.exc_text or self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class _Redacting(logging.Filter):
    """Every line shows the variable instead of a value that came from it (`Manifest.redact`)."""

    def __init__(self, redact: Callable[[str], str]) -> None:
        super().__init__()
        self.redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg, record.args = self.redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
        return True


def configure_logging(log_format: str | None = None, manifest: Manifest | None = None) -> None:
    """Our messages on stderr at INFO; libraries (httpx2, the SDK) only from WARNING. The format
    (`text` or `json`) defaults to $CLAWMCP_LOG_FORMAT and is passed on to worker processes there.
    With the manifest, values that came from its variables are never printed."""
    log_format = log_format or os.environ.get("CLAWMCP_LOG_FORMAT") or "text"
    if log_format not in LOG_FORMATS:
        raise UserError(f"CLAWMCP_LOG_FORMAT: '{log_format}' is not one of {', '.join(LOG_FORMATS)}")
    os.environ["CLAWMCP_LOG_FORMAT"] = log_format
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonLogFormatter() if log_format == "json" else logging.Formatter("clawmcp: %(message)s")
    )
    if manifest is not None:
        handler.addFilter(_Redacting(manifest.redact))
    logging.basicConfig(handlers=[handler], level=logging.WARNING)
    log.setLevel(logging.INFO)

"""Live reload of the manifests (`clawmcp reload`, SIGHUP, `POST /api/reload`; DESIGN §12).

A reload reads the manifests again from the paths the host was started with. Manifests with
problems change nothing: every problem is logged and raised (`ManifestError`), each as `clawmcp
validate` shows it. Valid ones are compared with the running manifest (`Changes`) and applied
without dropping work in flight:

- The one `Manifest` object every part of the host holds is updated in place
  (`Manifest.replace_with`), so the runtime, router, approvals, built-in tools and the HTTP guard
  see the new tables at their next look: a changed Claw's next run runs as it is defined now, and
  tokens and `allowed_hosts` hold from the next request.
- What a part built from the manifest is built again: the model providers that changed, the tool
  servers added, removed or changed (connected, closed, connected again), the catalog (manifest
  tools), the alert receivers, the supervisors' settings, and the schedules, matched by name as
  at start (`Scheduler.reload`).
- New Claws start (with several hosts, where ownership places them). Removed Claws stop after
  their current run and only then leave the manifest; their mailboxes stay in the store. The
  worker of a Claw with `isolation: process` starts again after its run when anything it runs on
  changed (it reads the manifest files itself).
- `host.listen`, `store`, `data_dir`, `name` and `lease` are what the running host is made of: a
  change to them is kept for the next start, and said so.

One reload at a time; the next waits until the Claws the previous one removed have stopped.

With several hosts on one PostgreSQL store, the reloading host first makes its Claw definitions
the store's and announces the reload (`Leases.agree`). Each other host reads its own manifest
paths again and applies them, or, when its Claw definitions differ from the store's, says so in
one line and keeps its manifest (a host missed the announcement: its next resync catches up).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import anyio
from anyio.abc import TaskGroup, TaskStatus

from clawmcp.address import loopback, split_listen
from clawmcp.cluster import Alone, Cluster, Duties, definitions
from clawmcp.errors import ManifestError, StoreError, UserError
from clawmcp.manifest import Host, Manifest, load
from clawmcp.triggers import watched

if TYPE_CHECKING:
    from clawmcp.alerts import Alerts
    from clawmcp.claw import Claws
    from clawmcp.events import Events
    from clawmcp.manifest.model import Supervision
    from clawmcp.models.providers import Providers
    from clawmcp.runtime import Runtime
    from clawmcp.scheduler import Scheduler
    from clawmcp.supervisor import Supervisor
    from clawmcp.toolhub import ToolHub

__all__ = ["RESTART", "Changes", "Delta", "Parts", "Reloader", "changes"]

log = logging.getLogger("clawmcp")

RESTART = ("listen", "store", "data_dir", "name", "lease")
"""The keys of `host:` that take effect at the next start only."""

Listener = Callable[[list[str], list[str]], None]
"""Hears of a reload: the Claws whose definitions changed, and those gone (removed, and stopped)."""


@dataclass(frozen=True)
class Delta:
    """What changed in one table: names added, removed, changed."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()

    @classmethod
    def of(cls, old: Mapping[str, Any], new: Mapping[str, Any]) -> Delta:
        return cls(
            tuple(sorted(new.keys() - old.keys())),
            tuple(sorted(old.keys() - new.keys())),
            tuple(sorted(k for k in old.keys() & new.keys() if old[k] != new[k])),
        )

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def said(self, what: str) -> str | None:
        """`Claws added a, b; removed c`, or None when nothing changed."""
        parts = [
            f"{verb} {', '.join(names)}"
            for verb, names in (("added", self.added), ("removed", self.removed), ("changed", self.changed))
            if names
        ]
        return f"{what} {'; '.join(parts)}" if parts else None


@dataclass(frozen=True)
class Changes:
    """What a reload changed."""

    claws: Delta
    servers: Delta
    models: Delta
    tools: Delta
    schedules: Delta
    """Schedules and triggers, named CLAW/NAME."""
    host: tuple[str, ...]
    """Keys of `host:` that changed and apply now."""
    restart: tuple[str, ...]
    """Keys of `host:` that changed and take effect at the next start (`RESTART`)."""

    def __bool__(self) -> bool:
        return any(
            (self.claws, self.servers, self.models, self.tools, self.schedules, self.host, self.restart)
        )

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def summary(self) -> str:
        """One line: what changed."""
        tables = (
            ("Claws", self.claws),
            ("servers", self.servers),
            ("models", self.models),
            ("tools", self.tools),
            ("schedules", self.schedules),
        )
        said = [text for what, delta in tables if (text := delta.said(what))]
        if self.host:
            said.append(f"host {', '.join(self.host)} changed")
        if self.restart:
            said.append(f"host {', '.join(self.restart)} changed: takes effect at the next start")
        return "; ".join(said) or "nothing changed"


def changes(old: Manifest, new: Manifest) -> Changes:
    """What differs between the running manifest and a new one."""
    applied: list[str] = []
    restart: list[str] = []
    for key in type(old.host).model_fields:
        if key in ("store", "data_dir"):  # as the host takes them (a default, the environment)
            differ = getattr(old, key) != getattr(new, key)
        else:
            differ = getattr(old.host, key) != getattr(new.host, key)
        if differ:
            (restart if key in RESTART else applied).append(key)
    return Changes(
        claws=Delta.of(old.claws, new.claws),
        servers=Delta.of(old.servers, new.servers),
        models=Delta.of(old.models, new.models),
        tools=Delta.of(old.tools, new.tools),
        schedules=Delta.of(_schedules(old), _schedules(new)),
        host=tuple(applied),
        restart=tuple(restart),
    )


def _schedules(manifest: Manifest) -> dict[str, Any]:
    """Schedules and triggers (one namespace per Claw) by CLAW/NAME."""
    found: dict[str, Any] = {}
    for claw, config in manifest.claws.items():
        found |= {f"{claw}/{s.name}": s for s in config.schedules}
        found |= {f"{claw}/{t.name}": t for t in config.triggers}
    return found


def _kept(old: Host, new: Host, restart: tuple[str, ...]) -> Host:
    """The new `host:` with the running host's values of the keys that need a restart."""
    if not restart:
        return new
    source = {key: old if key in restart else new for key in type(new).model_fields}
    values = {key: getattr(source[key], key) for key in source}
    given = {key for key in source if key in source[key].model_fields_set}
    return type(new).model_construct(given, **values)


def _supervise(supervisor: Supervisor, settings: Supervision) -> None:
    """The supervisor's settings as the manifest has them now (from each child's next exit on)."""
    supervisor.strategy, supervisor.intensity, supervisor.period = (
        settings.strategy,
        settings.intensity,
        settings.period,
    )
    supervisor.backoff, supervisor.max_backoff = settings.backoff, settings.max_backoff


def _who(host: str | None) -> str:
    return f"host '{host}'" if host else "another host"


class Parts(Duties, Protocol):
    """What a reload drives: the parts of a host (`clawmcp.host.Host`), which does their duties."""

    manifest: Manifest
    events: Events
    hub: ToolHub
    providers: Providers
    scheduler: Scheduler
    alerts: Alerts
    claws: Claws
    runtime: Runtime
    cluster: Alone | Cluster


class Reloader:
    """Reloads a host's manifests. Start with `tg.start(reloader.run)`: Claws removed by a
    reload finish their runs in its task group."""

    def __init__(self, host: Parts) -> None:
        self.host = host
        self.listeners: list[Listener] = []
        self._turn = anyio.Semaphore(1)
        """One reload at a time, held until the Claws it removed have stopped."""
        self._seen = host.cluster.claws if isinstance(host.cluster, Cluster) else None
        """With several hosts: the store's Claw definitions as this host last looked at them."""
        self._tg: TaskGroup | None = None

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as self._tg:
            task_status.started()
            await anyio.sleep_forever()

    async def reload(self) -> Changes:
        """Read the manifests again and apply them; what changed. `ManifestError` (every problem)
        or `UserError` when they cannot be applied: then nothing changed."""
        return await self._reload()

    async def follow(self, by: str | None) -> None:
        """Another host of the store reloaded (`by`; None: seen at a resync): this host reads its
        own manifests again and applies them if their Claws are the store's now."""
        with contextlib.suppress(UserError):  # logged
            await self._reload(following=True, by=by)

    async def resync(self) -> None:
        """With several hosts: apply a reload whose announcement this host missed."""
        cluster = self.host.cluster
        if not isinstance(cluster, Cluster):
            return
        stored = await cluster.leases.definitions()
        if stored != self._seen and stored != cluster.claws:
            await self.follow(None)
        self._seen = stored

    async def _reload(self, *, following: bool = False, by: str | None = None) -> Changes:
        """`following`: another host (`by`, if known) reloaded; apply only Claws that match."""
        await self._turn.acquire()
        handed = False
        try:
            new = await self._read(following, by)
            if new is None:
                return changes(self.host.manifest, self.host.manifest)
            found = changes(self.host.manifest, new)
            self._check(new, by)
            cluster = self.host.cluster
            if isinstance(cluster, Cluster) and not following:
                await cluster.leases.agree(definitions(new.claws))
                self._seen = definitions(new.claws)
            after = await self._apply(new, found)
            self._said(found, following, by)
            self._tell(list(found.claws.changed), [])
            if after:
                assert self._tg is not None, "Reloader.run is not running"
                self._tg.start_soon(self._after, *after)
                handed = True
            return found
        finally:
            if not handed:
                self._turn.release()

    async def _read(self, following: bool, by: str | None) -> Manifest | None:
        """The manifests as they are now, or None when this host follows another's reload and its
        own do not have the store's Claw definitions (said in one line)."""
        m = self.host.manifest
        try:
            new = await anyio.to_thread.run_sync(lambda: load(m.paths or m.files, mcp_config=m.mcp_config))
        except ManifestError as e:
            if following:
                log.error(
                    "%s reloaded, but this host's manifests have %d problem(s): it keeps its manifest",
                    _who(by),
                    len(e.problems),
                )
            else:
                log.error(
                    "reload refused, nothing changed: the manifests have %d problem(s)", len(e.problems)
                )
            for problem in e.problems:
                log.error("%s", problem)
            self._emit("refused", by, errors=[str(p) for p in e.problems])
            raise
        cluster = self.host.cluster
        if not following or not isinstance(cluster, Cluster):
            return new
        stored = await cluster.leases.definitions()
        self._seen = stored
        if (mine := definitions(new.claws)) != stored:
            differ = Delta.of(stored, mine)
            said = [
                f"{what}: {', '.join(names)}"
                for what, names in (
                    ("only here", differ.added),
                    ("missing here", differ.removed),
                    ("different here", differ.changed),
                )
                if names
            ]
            log.warning(
                "%s reloaded, but this host's Claws differ from the store's (%s): it keeps its manifest",
                _who(by),
                "; ".join(said),
            )
            self._emit("kept", by, differ=dataclasses.asdict(differ))
            return None
        return new

    def _check(self, new: Manifest, by: str | None) -> None:
        running = self.host.manifest.host.listen
        if not loopback(split_listen(running)[0]) and not new.host.auth.tokens:
            problem = (
                f"reload refused: the host listens on {running}, which needs host.auth.tokens; "
                "nothing changed"
            )
            log.error("%s", problem)
            self._emit("refused", by, errors=[problem])
            raise UserError(problem)

    async def _apply(self, new: Manifest, found: Changes) -> tuple[list[str], list[str]] | None:
        """Apply a valid manifest; the Claws left to stop (removed) and to start again (workers),
        for `_after`, if any."""
        h, m = self.host, self.host.manifest
        removed = list(found.claws.removed)
        servers = found.servers
        # A server whose watched resources changed (resource triggers) is connected again too.
        rewatched = [
            s for s in sorted(m.servers.keys() & new.servers.keys()) if watched(m, s) != watched(new, s)
        ]
        again = sorted({*servers.changed, *rewatched})
        for name in sorted(set(rewatched) - set(servers.changed)):
            log.info(
                "reload: tool server '%s' is connected again: the resources its triggers watch changed", name
            )
        await h.hub.remove([*servers.removed, *again])  # while the manifest still names them
        # The removed Claws stay in the manifest until they have stopped: their runs go on.
        claws = {**new.claws, **{c: m.claws[c] for c in removed}}
        old_isolation = {name: c.isolation for name, c in m.claws.items()}
        m.replace_with(dataclasses.replace(new, host=_kept(m.host, new.host, found.restart), claws=claws))
        h.providers.reload(m.models, found.models.changed)
        h.alerts.reload()
        _supervise(h.claws.supervisor, m.host.supervision)
        _supervise(h.hub.supervisor, m.host.supervision)
        h.hub.backoff = (m.host.supervision.backoff, m.host.supervision.max_backoff)
        h.cluster.retiring |= set(removed)
        await h.hub.add([*servers.added, *again])
        for name in [*servers.added, *again]:
            status = h.hub.upstreams[name].status
            if status.state != "up":
                log.warning("tool server '%s' is down: %s; reconnecting", name, status.error)
        for warning in h.hub.unmatched_patterns():
            log.warning("%s", warning)
        await h.scheduler.reload(leaving=removed)
        await h.cluster.reload(h, list(found.claws.added))
        anything = bool(found.models or found.servers or found.tools)
        workers = [
            c
            for c in sorted(h.cluster.owned - set(removed))
            if "process" in (old_isolation.get(c), m.claws[c].isolation)
            and (anything or c in found.claws.changed)
        ]
        return (removed, workers) if removed or workers else None

    async def _after(self, removed: list[str], workers: list[str]) -> None:
        """In the background, holding the turn: the workers start again after their runs; the
        removed Claws stop after theirs, then leave the manifest."""
        h = self.host
        try:
            for claw in workers:
                if h.cluster.owns(claw) and claw in h.claws.supervisor.children:
                    await h.claws.stop([claw], drain=True)
                    await h.claws.start([claw])
                    log.info("reload: Claw '%s' started again (its worker reads the manifests)", claw)
            if removed:
                await h.cluster.retire(h, removed)
                await self._idle(removed)
                m = h.manifest
                kept = {name: c for name, c in m.claws.items() if name not in removed}
                m.replace_with(dataclasses.replace(m, claws=kept))
                h.cluster.retiring -= set(removed)
                h.alerts.reload()
                await h.scheduler.reload(leaving=[])
                self._tell([], removed)
                log.info(
                    "reload: the removed Claws stopped (%s); their mailboxes stay in the store",
                    ", ".join(removed),
                )
        except StoreError as e:
            log.warning("reload: cannot finish now (%s); what it left stops at the next start", e)
        finally:
            self._turn.release()

    async def _idle(self, claws: list[str]) -> None:
        """Until no run of these Claws goes on here (direct asks too): at most their run_timeout,
        then what still runs is cancelled."""
        runtime, m = self.host.runtime, self.host.manifest

        async def idle() -> None:
            while True:
                finished = runtime.run_finished
                if not any(runtime.active[c] for c in claws):
                    return
                await finished.wait()

        within = max(m.claws[c].limits.run_timeout for c in claws)
        with anyio.move_on_after(within):
            await idle()
        for claw in claws:
            for message_id in runtime.running(claw):
                log.warning(
                    "reload: Claw '%s' is removed: its run of message %d is cancelled", claw, message_id
                )
                runtime.cancel(message_id)
        with anyio.move_on_after(within):
            await idle()

    def _tell(self, changed: list[str], gone: list[str]) -> None:
        for listener in self.listeners:
            listener(changed, gone)

    def _said(self, found: Changes, following: bool, by: str | None) -> None:
        if following and not found:  # a second look at a reload already applied
            return
        after = f" (as {_who(by)} did)" if following else ""
        log.info("reload%s: %s", after, found.summary())
        for key in found.restart:
            log.warning("reload: host.%s changed: it takes effect at the next start (clawmcp serve)", key)
        self._emit("applied", by, **found.as_dict(), summary=found.summary())

    def _emit(self, outcome: str, by: str | None, **data: Any) -> None:
        self.host.events.emit("reload", None, outcome=outcome, by=by, **data)

"""Which Claws this host runs.

A host alone on its store (SQLite, memory) runs every Claw: `Alone`. Several hosts on one
PostgreSQL store (DESIGN §8) share the Claws: `Cluster`. Each Claw is run by exactly one live host,
the holder of the Claw's lease. A host renews itself every heartbeat; one that is not renewed for
`lease` seconds is dead by the database's clock, and the others take its Claws. Each Claw prefers
one live host by rendezvous hashing of the Claw's and the hosts' names, so the Claws spread
evenly, a dead host's Claws spread over the others, a joining host takes about its share (each
handed over between two messages), and a host restarted under its name gets its Claws back.

The store refuses a write for a Claw from a host that does not hold its lease (`LeaseLost`), so a
paused or cut-off host cannot commit for a Claw another host has taken. It also stops its Claws
itself once it has not renewed for `lease - heartbeat` seconds (its "trust window"), before the
others may take them.

The host's side of this is `Duties`: start the work of the Claws gained (their mailbox consumers,
their schedules), stop the work of those lost, and act on what the other hosts announce.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Literal, Protocol, runtime_checkable

import anyio
from anyio.abc import TaskGroup, TaskStatus

from clawmcp.errors import StoreError, StoreUnavailable
from clawmcp.manifest import Claw, Manifest
from clawmcp.store import Store

__all__ = ["Alone", "Cluster", "Duties", "Leases", "definitions", "preferred"]

log = logging.getLogger("clawmcp")

POLL = 15.0
"""Seconds between looks at every owned mailbox and waiting ask, in case a notification was lost."""


def definitions(claws: Mapping[str, Claw]) -> dict[str, Any]:
    """Claw definitions as the store keeps them (the hosts of a store must agree on them)."""
    return {name: c.model_dump(mode="json") for name, c in claws.items()}


def preferred(claw: str, hosts: Sequence[str]) -> str:
    """The host that should run `claw`: rendezvous (highest random weight) hashing."""
    return max(hosts, key=lambda host: hashlib.sha256(f"{claw}\0{host}".encode()).digest())


class Duties(Protocol):
    """What a host does when its Claws change, and with what the other hosts announce."""

    async def gain(self, claws: list[str], *, grace: float) -> None:
        """Start the Claws' work here. `grace`: how late a schedule slot may be and still fire
        under `misfire: skip` (their previous owner may have died a while ago)."""

    async def lose(self, claws: list[str], *, drain: bool) -> None:
        """Stop the Claws' work here; with `drain`, let a run in progress finish first."""

    async def heard(self, channel: str, payload: str) -> None:
        """Another host announced something (`Leases.listen`)."""

    async def resync(self) -> None:
        """Announcements may have been missed: look again at every owned mailbox, waiting ask and
        schedule."""


@runtime_checkable
class Leases(Protocol):
    """What a store shared by several hosts keeps of them (`PostgresStore`)."""

    host: str | None
    epochs: dict[str, int]

    async def join(self, name: str, listen: str, claws: dict[str, Any], ttl: float) -> None: ...
    async def agree(self, claws: dict[str, Any]) -> None: ...
    async def definitions(self) -> dict[str, Any]: ...
    async def renew(self, ttl: float, listen: str) -> Literal["alive", "expired", "replaced"]: ...
    async def live_hosts(self) -> list[str]: ...
    async def silent_hosts(self) -> dict[str, datetime]: ...
    async def expire(self, name: str, seen: datetime) -> bool: ...
    async def take(self, claws: Sequence[str], now: float) -> tuple[list[str], int, int]: ...
    async def release(self, claws: Sequence[str]) -> int: ...
    def forget(self, claws: Sequence[str]) -> None: ...
    async def leave(self) -> int: ...
    async def hosts(self) -> list[dict[str, Any]]: ...
    async def owners(self) -> dict[str, str]: ...
    async def listen(
        self,
        heard: Callable[[str, str], None],
        resync: Callable[[], None],
        *,
        task_status: TaskStatus[None] = ...,
    ) -> None: ...


class Alone:
    """The only host of its store: it owns every Claw, from start to stop."""

    def __init__(self, manifest: Manifest, store: Store, name: str) -> None:
        self.manifest, self.store, self.name = manifest, store, name
        self.listen = manifest.host.listen
        self.owned: set[str] = set()
        self.retiring: set[str] = set()
        """Claws a reload removed that still finish their runs here (`retire`)."""
        self.started_at = time.time()

    def owns(self, claw: str) -> bool:
        return claw in self.owned

    async def reload(self, duties: Duties, added: list[str]) -> None:
        """A reload added these Claws: they start here. (A Claw removed earlier may have left a
        message running, cut short at its run_timeout: it is queued again.)"""
        if added:
            for claw in added:
                await self.store.requeue_running(claw)
            self.owned |= set(added)
            await duties.gain(added, grace=0.0)

    async def retire(self, duties: Duties, claws: list[str]) -> None:
        """A reload removed these Claws: each stops after its current run (its mailbox stays in
        the store)."""
        if mine := sorted(set(claws) & self.owned):
            await duties.lose(mine, drain=True)
            self.owned -= set(mine)

    async def run(self, duties: Duties, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Recover what a crash left running, then start every Claw."""
        runs = await self.store.interrupt_running()
        messages = await self.store.requeue_running()
        if runs or messages:
            log.warning(
                "recovered after a crash: %d runs interrupted, %d messages queued again", runs, messages
            )
        self.owned = set(self.manifest.claws)
        await duties.gain(sorted(self.owned), grace=0.0)
        task_status.started()

    async def leave(self) -> int:
        """After a clean stop: what was interrupted is queued again for the next start."""
        return await self.store.requeue_running()

    async def owners(self) -> dict[str, str]:
        return dict.fromkeys(self.manifest.claws, self.name)

    async def hosts(self) -> list[dict[str, Any]]:
        return [
            {
                "name": self.name,
                "listen": self.listen,
                "started_at": self.started_at,
                "renewed_at": time.time(),
                "alive": True,
                "claws": sorted(self.owned),
            }
        ]


class Cluster:
    """One of several hosts on a store that keeps `Leases`. Start with `tg.start(cluster.run, duties)`:
    it returns once the host has joined and taken its first share of the Claws."""

    def __init__(
        self,
        manifest: Manifest,
        leases: Leases,
        name: str,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.manifest, self.leases, self.name = manifest, leases, name
        self.listen = manifest.host.listen
        self.lease = manifest.host.lease
        self.heartbeat = min(1.0, self.lease / 3)
        self.clock, self.monotonic = clock, monotonic
        self.claws = definitions(manifest.claws)
        self.owned: set[str] = set()
        self.retiring: set[str] = set()
        """Claws a reload removed that still finish their runs here: no host takes them (`retire`)."""
        self.changed = anyio.Event()
        """Set (and replaced) each time this host's Claws change."""
        self._handing: set[str] = set()
        self._seen: dict[str, int] = {}  # live host -> rounds it has been seen live in a row
        self._silent: dict[str, tuple[datetime, float]] = {}  # host -> (expires_at, since when)
        self._trusted_until = 0.0
        self._wake = anyio.Event()
        self._tg: TaskGroup | None = None

    def owns(self, claw: str) -> bool:
        return claw in self.owned

    async def reload(self, duties: Duties, added: list[str]) -> None:
        """A reload changed the Claws: the next round (now) takes this host's share of those added."""
        self.claws = definitions({n: c for n, c in self.manifest.claws.items() if n not in self.retiring})
        self._wake.set()

    async def retire(self, duties: Duties, claws: list[str]) -> None:
        """A reload removed these Claws: each stops here after its current run, and its lease is
        given up. (`retiring` keeps them from being taken or handed over meanwhile.)"""
        mine = sorted(set(claws) & self.owned - self._handing)
        if not mine:
            return
        try:
            await duties.lose(mine, drain=True)
            self._own(self.owned - set(mine))
            await self.leases.release(mine)
        except StoreUnavailable as e:  # its lease expires, and nobody takes a Claw it lacks
            log.warning("host '%s': cannot give up the leases of %s now (%s)", self.name, ", ".join(mine), e)

    async def run(self, duties: Duties, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        await self._join()
        async with anyio.create_task_group() as self._tg:
            await self._tg.start(self.leases.listen, self._heard(duties), self._resync(duties))
            self._tg.start_soon(self._watch, duties)
            self._tg.start_soon(self._poll, duties)
            await self._round(duties, grace=0.0)
            task_status.started()
            while True:
                with anyio.move_on_after(self.heartbeat):
                    await self._wake.wait()
                self._wake = anyio.Event()
                await self._round(duties, grace=self.lease + 2 * self.heartbeat)

    async def _join(self) -> None:
        started = self.monotonic()
        await self.leases.join(self.name, self.listen, self.claws, self.lease)
        self._trusted_until = started + self.lease - self.heartbeat
        log.info("host '%s' joined the hosts of the store", self.name)

    def _heard(self, duties: Duties) -> Callable[[str, str], None]:
        def heard(channel: str, payload: str) -> None:
            if channel == "clawmcp_leases":
                self._wake.set()
            elif self._tg is not None:
                self._tg.start_soon(duties.heard, channel, payload)

        return heard

    def _resync(self, duties: Duties) -> Callable[[], None]:
        def resync() -> None:
            self._wake.set()
            if self._tg is not None:
                self._tg.start_soon(duties.resync)

        return resync

    async def _poll(self, duties: Duties) -> None:
        while True:
            await anyio.sleep(POLL)
            await duties.resync()

    async def _round(self, duties: Duties, *, grace: float) -> None:
        """Renew this host; take the free Claws it prefers; hand over those another host prefers."""
        started = self.monotonic()
        try:
            state = await self.leases.renew(self.lease, self.listen)
        except StoreUnavailable as e:
            log.warning(
                "host '%s': cannot renew (%s); its Claws stop in %.1fs unless it can",
                self.name,
                e,
                max(0.0, self._trusted_until - self.monotonic()),
            )
            return
        if state == "replaced":
            raise StoreError(f"another host joined the store with this host's name '{self.name}'")
        if state == "expired":
            log.warning(
                "host '%s' was not renewed in time: its Claws stop here and it joins again", self.name
            )
            await self._lose_all(duties)
            await self._join()
            return
        self._trusted_until = started + self.lease - self.heartbeat
        try:
            await self._reap()
            live = await self.leases.live_hosts()
            if self.name not in live:  # expired since it renewed: the next round joins again
                return
            self._seen = {h: self._seen.get(h, 0) + 1 for h in live}
            wanted = {
                c for c in self.manifest.claws if c not in self.retiring and preferred(c, live) == self.name
            }
            if wanted - self.owned:
                taken, runs, messages = await self.leases.take(sorted(wanted - self.owned), self.clock())
                if runs or messages:
                    log.warning(
                        "took over %s: %d runs interrupted, %d messages queued again",
                        ", ".join(taken),
                        runs,
                        messages,
                    )
                if taken:
                    self._own(self.owned | set(taken))
                    await duties.gain(taken, grace=grace)
        except StoreUnavailable as e:
            log.warning("host '%s': cannot take its Claws now (%s)", self.name, e)
            return
        assert self._tg is not None
        for claw in sorted(self.owned - wanted - self._handing - self.retiring):
            if self._seen.get(preferred(claw, live), 0) >= 2:  # a host that has stayed up a while
                self._handing.add(claw)
                self._tg.start_soon(self._hand_over, duties, claw)

    async def _reap(self) -> None:
        """End the hosts that died: a host's process holds a lock while it lives; one whose lock is
        free and that has not renewed itself for two heartbeats is dead (its row would expire
        only at the end of its lease)."""
        now, silent, before = self.monotonic(), await self.leases.silent_hosts(), self._silent
        self._silent = {
            h: (seen, before[h][1] if before.get(h, (None,))[0] == seen else now)
            for h, seen in silent.items()
        }
        for host, (seen, since) in self._silent.items():
            if now - since >= 2 * self.heartbeat and await self.leases.expire(host, seen):
                log.warning("host '%s' is gone (its process ended): its Claws are taken over", host)

    async def _hand_over(self, duties: Duties, claw: str) -> None:
        """Give a Claw to the host that prefers it, between two of its messages."""
        try:
            await duties.lose([claw], drain=True)
            self._own(self.owned - {claw})
            await self.leases.release([claw])
            log.info("host '%s' handed Claw '%s' over", self.name, claw)
        except StoreUnavailable as e:
            log.warning("host '%s': cannot hand Claw '%s' over now (%s)", self.name, claw, e)
        finally:
            self._handing.discard(claw)

    async def _watch(self, duties: Duties) -> None:
        """Stop every Claw here once the trust window has passed without a renewal."""
        while True:
            await anyio.sleep(max(0.0, self._trusted_until - self.monotonic()))
            if self.monotonic() >= self._trusted_until and self.owned:
                log.warning("host '%s' could not renew for %gs: its Claws stop here", self.name, self.lease)
                await self._lose_all(duties)
            await anyio.sleep(self.heartbeat)

    def _own(self, claws: set[str]) -> None:
        self.owned = claws
        changed, self.changed = self.changed, anyio.Event()
        changed.set()

    async def _lose_all(self, duties: Duties) -> None:
        lost = sorted(self.owned)
        self._own(set())
        self.leases.forget(lost)
        await duties.lose(lost, drain=False)

    async def leave(self) -> int:
        """After a clean stop (the Claws' work here has stopped): give every Claw up at once and
        leave the hosts of the store. How many messages were queued again."""
        self._own(set())
        return await self.leases.leave()

    async def owners(self) -> dict[str, str]:
        return await self.leases.owners()

    async def hosts(self) -> list[dict[str, Any]]:
        return await self.leases.hosts()

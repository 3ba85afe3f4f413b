"""The Claws of a host: each one's mailbox consumer, `tell`, and what `status` shows.

A message told to a Claw is committed to its mailbox before its id is returned. Each Claw has one
consumer task that takes its messages in order and runs the Claw on each; a message is done once
its run has finished. A run that fails is tried again later with backoff; after `MAX_ATTEMPTS`
the message is a dead letter, shown in `status` with its last error.
"""

from __future__ import annotations

import time
from fnmatch import fnmatchcase
from typing import Any

import anyio
from anyio.abc import TaskStatus
from pydantic import ValidationError

from clawmcp.errors import UserError
from clawmcp.manifest import Manifest, model
from clawmcp.manifest.check import tool_allowed
from clawmcp.runtime import Runtime
from clawmcp.store import Message, Run, Schedule, Store

__all__ = ["MAX_ATTEMPTS", "Claws"]

MAX_ATTEMPTS = 5
_RETRY_CAP = 60.0


class Claws:
    """Every Claw of a manifest. Start with `tg.start(claws.run)`."""

    def __init__(
        self, manifest: Manifest, store: Store, runtime: Runtime, *, retry_base: float = 1.0
    ) -> None:
        self.retry_base = retry_base
        self.settled = anyio.Event()
        """Set (and replaced) each time a message is acknowledged or retried or dead-lettered."""
        self.manifest, self.store, self.runtime, self.router = manifest, store, runtime, runtime.router

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as tg:
            for name in self.manifest.claws:
                tg.start_soon(self._consume, name)
            task_status.started()

    async def tell(
        self, claw: str, content: str, *, thread: str = "default", key: str | None = None
    ) -> Message:
        """Commit a message to the Claw's mailbox and wake it; the Claw handles it in the background.
        A `key` makes a retried tell safe: the same key gives the first message back."""
        self.manifest.check_claw(claw)
        return await self.router.deliver(claw, content, thread=thread, key=key)

    async def _consume(self, claw: str) -> None:
        while True:
            wake = self.router.wake[claw] = anyio.Event()
            if self.runtime.stopping:
                return
            message = await self.store.claim(claw)
            if message is None:
                await wake.wait()
                continue
            chain = self.router.chain_of(message.id)
            try:
                run = await self.runtime.run(
                    claw,
                    message.content,
                    thread=message.thread,
                    trigger="message",
                    message_id=message.id,
                    chain=chain,
                )
            except UserError:  # stopping: the message stays for the next start
                return
            if run.state == "interrupted":  # the host is stopping: the message stays for the next start
                return
            delay = await self._settle(message, run)
            fired, self.settled = self.settled, anyio.Event()
            fired.set()
            if delay is not None:
                await anyio.sleep(delay)  # the mailbox waits: its messages are handled in order

    async def _settle(self, message: Message, run: Run) -> float | None:
        """Done, dead, or queued again after a backoff, which is returned."""
        if run.state != "failed":
            await self.store.ack(message.id)
            self.router.handled(message.id, reply=run.reply, error=None if run.state == "done" else run.error)
            return None
        if message.attempts >= MAX_ATTEMPTS:
            await self.store.nack(message.id, run.error or "failed", retry_at=None)
            self.router.handled(message.id, error=f"dead letter after {message.attempts} tries: {run.error}")
            return None
        delay = min(_RETRY_CAP, self.retry_base * 2.0 ** (message.attempts - 1))
        await self.store.nack(message.id, run.error or "failed", retry_at=time.time() + delay)
        return delay

    async def schedule(self, claw: str, fields: dict[str, Any]) -> Schedule:
        """Add or replace (by name) a schedule made at run time; checked as a manifest schedule is."""
        self.manifest.check_claw(claw)
        try:
            schedule = model.Schedule.model_validate({k: v for k, v in fields.items() if v is not None})
        except ValidationError as e:
            problems = "; ".join(
                f"{'.'.join(map(str, p['loc'])) or 'schedule'}: {p['msg']}" for p in e.errors()
            )
            raise UserError(f"bad schedule: {problems}") from None
        config = self.manifest.claws[claw]
        if schedule.call and not tool_allowed(config.tools, schedule.call.tool):
            raise UserError(f"Claw '{claw}' may not call '{schedule.call.tool}' (its tools: {config.tools})")
        if schedule.send and not any(fnmatchcase(schedule.send.to, p) for p in config.talks_to):
            raise UserError(
                f"Claw '{claw}' may not send to '{schedule.send.to}' (talks_to: {config.talks_to})"
            )
        data = schedule.model_dump(mode="json", exclude_none=True)
        spec: dict[str, Any] = {k: data[k] for k in ("every", "cron", "at", "timezone") if k in data}
        action: dict[str, Any] = {k: data[k] for k in ("prompt", "call", "send") if k in data}
        return await self.store.put_schedule(
            claw,
            schedule.name,
            spec=spec,
            action=action,
            misfire=schedule.misfire,
            source="runtime",
            next_fire=None,
        )

    async def unschedule(self, claw: str, schedule_id: int) -> None:
        self.manifest.check_claw(claw)
        if not any(s.id == schedule_id for s in await self.store.schedules(claw)):
            raise UserError(f"Claw '{claw}' has no schedule {schedule_id}")
        await self.store.delete_schedule(schedule_id)

    async def schedules_of(self, claw: str) -> list[dict[str, Any]]:
        self.manifest.check_claw(claw)
        return [
            {k: getattr(s, k) for k in ("id", "name", "spec", "action", "misfire", "source", "next_fire")}
            for s in await self.store.schedules(claw)
        ]

    async def status(self, claw: str) -> dict[str, Any]:
        """What `status` and `claw://NAME/status` show."""
        self.manifest.check_claw(claw)
        config = self.manifest.claws[claw]
        model = self.manifest.models[config.model]
        runs = await self.store.runs(claw, limit=5)
        dead = await self.store.dead_letters(claw)
        return {
            "claw": claw,
            "description": config.description,
            "state": "running" if self.runtime.active[claw] else "idle",
            "model": {"name": config.model, "provider": model.provider, "model": model.model},
            "tools": [t.name for t in self.runtime.tools_for(claw)],
            "schedules": [s.name for s in await self.store.schedules(claw)],
            "mailbox": await self.store.depth(claw),
            "dead_letters": [{"id": m.id, "content": m.content, "error": m.last_error} for m in dead],
            "last_runs": [
                {
                    "id": r.id,
                    "trigger": r.trigger,
                    "thread": r.thread,
                    "state": r.state,
                    "error": r.error,
                    "started_at": r.started_at,
                    "ended_at": r.ended_at,
                }
                for r in runs
            ],
        }

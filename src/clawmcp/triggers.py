"""Triggers (DESIGN §12): what wakes a Claw besides its messages and its clock.

A webhook's delivery (checked by `clawmcp.hooks`) and an upstream resource's update become a
message in the Claw's mailbox of kind `fire`, as a schedule's fire is: its prompt, with the
templates filled in, or its tool call, handled by the Claw's consumer in order and tried again
after a crash. A `send` trigger queues its message to the other Claw. The runs have trigger
`webhook` or `resource` and the thread `hook:NAME` or `resource:NAME`.

A delivery with an id (GitHub's `X-GitHub-Delivery`, a Stripe event's id, `X-Delivery-Id`) is
queued once: the id is the message's key. A resource trigger has at most one message queued at a
time: an update while the last one still waits is merged into it (its run reads the resource as
it is then), as a schedule's fires are merged.

Nothing about a trigger is stored but its messages: the trigger is looked up in the manifest at
each delivery, so a reload changes it at once.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Literal

import anyio

from clawmcp.errors import UserError
from clawmcp.mailbox import Mailboxes
from clawmcp.manifest import Manifest
from clawmcp.manifest.model import TEMPLATE, Trigger, render
from clawmcp.scheduler import FireBody
from clawmcp.store import Message, Outgoing

__all__ = ["Triggers", "watched"]


def watched(manifest: Manifest, server: str) -> list[str]:
    """The URIs of `server` that resource triggers watch."""
    return sorted(
        {
            t.resource.uri
            for config in manifest.claws.values()
            for t in config.triggers
            if t.resource is not None and t.resource.server == server
        }
    )


class Triggers:
    """The triggers of a manifest's Claws, turned into messages."""

    def __init__(self, manifest: Manifest, mailboxes: Mailboxes, *, owns: Callable[[str], bool]) -> None:
        """`owns`: whether this host runs a Claw, and so turns its resource updates into messages
        (a webhook is taken by whichever host it reaches)."""
        self.manifest, self.mailboxes, self.owns = manifest, mailboxes, owns
        self._queued: dict[tuple[str, str], int] = {}  # (Claw, trigger) -> its message, maybe still queued
        self._lock = anyio.Lock()

    def find(self, claw: str, name: str) -> Trigger:
        self.manifest.check_claw(claw)
        triggers = self.manifest.claws[claw].triggers
        found = next((t for t in triggers if t.name == name), None)
        if found is None:
            names = ", ".join(t.name for t in triggers) or "none"
            raise UserError(f"Claw '{claw}' has no trigger '{name}' (triggers: {names})")
        return found

    async def deliver(
        self, claw: str, trigger: Trigger, values: Mapping[str, str], *, delivery: str | None = None
    ) -> tuple[Message, bool]:
        """Queue the trigger's action, its templates filled from `values` (`body`, `headers.NAME`
        or `uri`). Returns the message and whether it is new: False for a delivery id seen before."""
        source: Literal["webhook", "resource"] = "webhook" if trigger.webhook is not None else "resource"

        def field(template: re.Match[str]) -> str:
            return values.get(template[1].lower(), "")

        key = f"{source}:{claw}:{trigger.name}:{delivery}" if delivery else None
        if trigger.send is not None:
            content = render(TEMPLATE, trigger.send.content, field)
            message = Outgoing(trigger.send.to, content, sender=claw, thread=claw, key=key)
            action = "send"
        else:
            call = trigger.call.model_dump(mode="json") if trigger.call is not None else None
            body = FireBody(
                trigger.name,
                prompt=render(TEMPLATE, trigger.prompt, field),
                call=render(TEMPLATE, call, field),
                trigger=source,
            )
            thread = f"{'hook' if source == 'webhook' else 'resource'}:{trigger.name}"
            message = Outgoing(claw, body.dumps(), thread=thread, kind="fire", key=key)
            action = "call" if call is not None else "prompt"
        stored, new = await self.mailboxes.deliver(message)
        if new:
            events = self.mailboxes.events
            events.emit("fire", claw, schedule=trigger.name, trigger=source, action=action, message=stored.id)
        return stored, new

    async def updated(self, server: str, uri: str) -> None:
        """An upstream resource changed: a message for each resource trigger that watches it, of
        the Claws this host runs, unless one is still queued."""
        for claw, config in self.manifest.claws.items():
            for trigger in config.triggers:
                watched = trigger.resource
                if watched is None or watched.server != server or not self.owns(claw):
                    continue
                if uri != watched.uri and not uri.startswith(watched.uri.rstrip("/") + "/"):
                    continue
                async with self._lock:
                    last = self._queued.get((claw, trigger.name))
                    waiting = last is not None and await self.mailboxes.store.get_message(last)
                    if waiting and waiting.state == "queued":
                        continue
                    message, _ = await self.deliver(claw, trigger, {"uri": uri})
                    self._queued[claw, trigger.name] = message.id

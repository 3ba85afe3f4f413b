"""Failures reach people (`host.alerts`): an ask whose run failed, a message dead-lettered, a
schedule's fire that failed and a tool server that went down each become a message to the Claw
`to` names (thread `alerts`), or to every Claw subscribed to `topic` (thread `topic-T`), which may
tell a person through its own tools.

The host hears of these failures as events (`clawmcp.events`) and queues the messages just after.
A failure of the Claws that receive alerts is not sent to them (it could feed itself), only
logged like any other. Subscribed MCP clients hear of the same failures as `claw://` updates.
"""

from __future__ import annotations

import logging

import anyio
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectSendStream

from clawmcp.errors import StoreError
from clawmcp.events import fired
from clawmcp.mailbox import Mailboxes
from clawmcp.manifest import Manifest
from clawmcp.store import Event, Outgoing

__all__ = ["Alerts", "alert_text"]

log = logging.getLogger("clawmcp")


def alert_text(event: Event) -> str | None:
    """What a person should hear of the event, if it is a failure."""
    d, claw = event.data, f"Claw '{event.claw}'"
    if event.kind == "run" and d.get("state") == "failed" and d.get("trigger") == "ask":
        return f"run {d['run']} of {claw} failed: {d.get('error')}"
    if event.kind == "delivery" and d.get("outcome") == "dead":
        return f"message {d['id']} to {claw} is a dead letter after {d['attempts']} tries: {d.get('error')}"
    if event.kind == "fire" and d.get("outcome") == "failed":
        return f"{fired(d)} of {claw} failed: {d.get('error')}"
    if event.kind == "server" and d.get("state") == "down":
        return f"tool server '{d['server']}' is down: {d.get('error')}"
    return None


class Alerts:
    """Turns the failures of this host into messages. Start with `tg.start(alerts.run)`."""

    def __init__(self, manifest: Manifest, mailboxes: Mailboxes) -> None:
        self.manifest, self.mailboxes = manifest, mailboxes
        self._send: MemoryObjectSendStream[str] | None = None
        self.reload()

    def reload(self) -> None:
        """Work out again who receives the alerts (at start, and when the manifest is reloaded)."""
        self.config = config = self.manifest.host.alerts
        self._receivers = [  # the Claw named, or the topic's subscribers
            name
            for name, c in self.manifest.claws.items()
            if config is not None and (name == config.to or config.topic in c.subscribe)
        ]

    def receivers(self) -> list[str]:
        """The Claws that receive the alerts."""
        return self._receivers

    def alert(self, event: Event) -> str | None:
        """The alert an event makes: a failure, not of a Claw that receives the alerts."""
        text = alert_text(event)  # most events are none: looked at first
        if text is None or self.config is None or event.claw in self._receivers:
            return None
        return f"alert: {text}"

    def heard(self, event: Event) -> None:
        """An event of this host (an `Events` listener): queue its alert, if it makes one."""
        if self._send is not None and (text := self.alert(event)) is not None:
            try:
                self._send.send_nowait(text)
            except anyio.WouldBlock:  # a storm of failures: each is in the log all the same
                log.warning("too many alerts at once; not sent: %s", text)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        self._send, receive = anyio.create_memory_object_stream[str](1000)
        with self._send, receive:
            task_status.started()
            async for text in receive:
                for claw in self.receivers():
                    await self._send_to(claw, text)

    async def _send_to(self, claw: str, text: str) -> None:
        topic = self.config.topic if self.config else None
        message = Outgoing(claw, text, thread="alerts")
        if topic is not None:
            message = Outgoing(claw, text, thread=f"topic-{topic}", kind="topic")
        try:
            await self.mailboxes.enqueue(message)
        except StoreError as e:  # the failure itself is in the store and the log
            log.warning("alert not sent to Claw '%s' (%s): %s", claw, e, text)

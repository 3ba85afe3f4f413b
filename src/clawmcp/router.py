"""Messages between Claws: send, ask and wait, publish to a topic (DESIGN §3).

Every message is committed to the recipient's mailbox before anyone hears of it, and the
recipient is woken at once. An ask waits for the run that handles exactly that message: the
Claws consumer reports each handled message here, and the waiting caller gets that run's reply.
A Claw-to-Claw message lands in the recipient's thread named after the sender, so each pair of
Claws keeps one conversation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

import anyio

from clawmcp.errors import MessageRefused
from clawmcp.events import Events, excerpt
from clawmcp.manifest import Manifest
from clawmcp.store import Message, MessageKind, Store

__all__ = ["Router"]


@dataclass
class _Waiter:
    done: anyio.Event = field(default_factory=anyio.Event)
    reply: str | None = None
    error: str | None = None


class Router:
    """The mailboxes of a manifest's Claws."""

    def __init__(
        self, manifest: Manifest, store: Store, events: Events, *, max_depth: int, asks: bool = True
    ) -> None:
        self.manifest, self.store, self.events = manifest, store, events
        self.max_depth, self.asks = max_depth, asks
        self.wake = {name: anyio.Event() for name in manifest.claws}
        """Set when a Claw's mailbox gets a message; its consumer replaces it before each claim."""
        self._chains: dict[int, tuple[str, ...]] = {}
        self._waiters: dict[int, _Waiter] = {}

    async def deliver(
        self,
        to: str,
        content: str,
        *,
        sender: str | None = None,
        thread: str = "default",
        kind: MessageKind = "message",
        key: str | None = None,
        chain: tuple[str, ...] = (),
    ) -> Message:
        """Commit a message to a mailbox and wake its Claw. With a `key` already used for this
        mailbox, the first message is returned and nothing new is queued."""
        message, new = await self.store.enqueue(to, content, sender=sender, thread=thread, kind=kind, key=key)
        if new:
            self.events.emit(
                "message", to, id=message.id, sender=sender, type=kind, thread=thread, text=excerpt(content)
            )
        if chain:
            self._chains[message.id] = chain
        self.wake[to].set()
        return message

    def chain_of(self, message_id: int) -> tuple[str, ...]:
        """The Claws waiting on a message through `claw__ask` (empty after a restart: none wait)."""
        return self._chains.get(message_id, ())

    def _may_send(self, sender: str, to: str) -> None:
        self.manifest.check_claw(to)
        talks_to = self.manifest.claws[sender].talks_to
        if not any(fnmatchcase(to, pattern) for pattern in talks_to):
            raise MessageRefused(f"Claw '{sender}' may not message '{to}' (talks_to: {talks_to or 'none'})")

    async def send(self, sender: str, to: str, content: str) -> Message:
        self._may_send(sender, to)
        return await self.deliver(to, content, sender=sender, thread=sender)

    async def ask(self, sender: str, to: str, content: str, *, chain: tuple[str, ...], within: float) -> str:
        """Message `to` and wait for the reply of the run that handles exactly that message.

        `chain` holds the Claws already waiting, ending with `sender`; asking one of them again
        would wait forever, so it fails at once.
        """
        self._may_send(sender, to)
        if not self.asks:
            raise MessageRefused(
                f"claw__ask is not available to '{sender}', which runs with isolation: process;"
                " use claw__send"
            )
        if to in chain:
            loop = " → ".join((*chain, to))
            raise MessageRefused(f"ask loop: {loop}; '{to}' is already waiting in this chain")
        if len(chain) >= self.max_depth:
            raise MessageRefused(f"ask chain too deep ({' → '.join(chain)}); the limit is {self.max_depth}")
        waiter = _Waiter()
        message = await self.deliver(to, content, sender=sender, thread=sender, kind="ask", chain=chain)
        self._waiters[message.id] = waiter
        try:
            with anyio.move_on_after(within if within > 0 else math.inf):
                await waiter.done.wait()
        finally:
            del self._waiters[message.id]
        if not waiter.done.is_set():
            raise MessageRefused(f"'{to}' did not answer within {within:g}s (message {message.id})")
        if waiter.error is not None:
            raise MessageRefused(f"'{to}' could not answer message {message.id}: {waiter.error}")
        return waiter.reply or ""

    async def publish(self, sender: str, topic: str, content: str) -> list[Message]:
        """One durable copy for every Claw subscribed to `topic`."""
        subscribers = [name for name, claw in self.manifest.claws.items() if topic in claw.subscribe]
        return [
            await self.deliver(to, content, sender=sender, thread=f"topic-{topic}", kind="topic")
            for to in subscribers
        ]

    def handled(self, message_id: int, *, reply: str | None = None, error: str | None = None) -> None:
        """A message's run finished (a reply, or an error when it will not be tried again)."""
        self._chains.pop(message_id, None)
        if (waiter := self._waiters.get(message_id)) is not None:
            waiter.reply, waiter.error = reply, error
            waiter.done.set()

"""Messages between Claws: send, ask and wait, publish to a topic (DESIGN §3).

The router decides who may message whom; the mailboxes (`clawmcp.mailbox`) commit each message
before anyone hears of it and wake its recipient. An ask waits for the answer to exactly its
message. A Claw-to-Claw message lands in the recipient's thread named after the sender, so each
pair of Claws keeps one conversation.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from clawmcp.errors import MessageRefused
from clawmcp.mailbox import Mailboxes
from clawmcp.manifest import Manifest
from clawmcp.store import Message, Outgoing

__all__ = ["Router"]


class Router:
    """Messages between the Claws of a manifest."""

    def __init__(
        self, manifest: Manifest, mailboxes: Mailboxes, *, max_depth: int, asks: bool = True
    ) -> None:
        self.manifest, self.mailboxes = manifest, mailboxes
        self.max_depth, self.asks = max_depth, asks

    def _may_send(self, sender: str, to: str) -> None:
        self.manifest.check_claw(to)
        talks_to = self.manifest.claws[sender].talks_to
        if not any(fnmatchcase(to, pattern) for pattern in talks_to):
            raise MessageRefused(f"Claw '{sender}' may not message '{to}' (talks_to: {talks_to or 'none'})")

    async def send(self, sender: str, to: str, content: str) -> Message:
        self._may_send(sender, to)
        return await self.mailboxes.enqueue(Outgoing(to, content, sender=sender, thread=sender))

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
        message, answer = await self.mailboxes.ask(
            Outgoing(to, content, sender=sender, thread=sender, kind="ask"), chain=chain, within=within
        )
        if answer is None:
            raise MessageRefused(f"'{to}' did not answer within {within:g}s (message {message.id})")
        if answer.error is not None:
            raise MessageRefused(f"'{to}' could not answer message {message.id}: {answer.error}")
        return answer.reply or ""

    async def publish(self, sender: str, topic: str, content: str) -> list[Message]:
        """One durable copy for every Claw subscribed to `topic`."""
        subscribers = [name for name, claw in self.manifest.claws.items() if topic in claw.subscribe]
        return [
            await self.mailboxes.enqueue(
                Outgoing(to, content, sender=sender, thread=f"topic-{topic}", kind="topic")
            )
            for to in subscribers
        ]

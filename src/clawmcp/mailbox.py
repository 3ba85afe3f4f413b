"""The mailboxes of a host: the one owner of enqueue, claim, notify, wait and reply.

Every message is committed to the store before anyone hears of it; then its mailbox is notified,
and the mailbox's consumer, waiting on it, claims it. An ask waits here for the answer to exactly
its message, which the consumer reports once the message's run has finished.

In one process, notifications are events. With several hosts on one store, the store announces a
message for a Claw another host runs, and the answer to an ask (PostgreSQL NOTIFY): the host that
hears it calls `notify`, or `check`, which reads the ask's answer from the store. A worker process
has no consumers: it passes what it notifies to the host (`forward`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

import anyio

from clawmcp.events import Events, excerpt
from clawmcp.store import CANCELLED, Message, Outgoing, Store

__all__ = ["Answer", "Mailboxes"]


@dataclass(frozen=True)
class Answer:
    """How a message was answered: its run's reply, or why there is none."""

    reply: str | None = None
    error: str | None = None


class Mailboxes:
    """Enqueue, claim, notify, wait and reply for the mailboxes of one store."""

    def __init__(self, store: Store, events: Events, *, forward: Callable[[str], None] | None = None) -> None:
        self.store, self.events, self.forward = store, events, forward
        self._signals: dict[str, anyio.Event] = {}
        self._answers: dict[int, tuple[anyio.Event, list[Answer]]] = {}

    async def enqueue(self, message: Outgoing) -> Message:
        """Commit a message and notify its mailbox. With a `key` already used for this mailbox,
        the first message is returned and nothing new is queued."""
        return (await self.deliver(message))[0]

    async def deliver(self, message: Outgoing) -> tuple[Message, bool]:
        """`enqueue`, saying whether the message is new (False: its key was used before)."""
        stored, new = await self._commit(message)
        self.notify(message.mailbox)
        return stored, new

    async def ask(
        self,
        message: Outgoing,
        *,
        chain: tuple[str, ...],
        within: float,
        told: Callable[[int], Awaitable[None]] | None = None,
    ) -> tuple[Message, Answer | None]:
        """Enqueue a message and wait up to `within` seconds for its answer; None
        when there was none by then. `chain`: the Claws waiting on it through `claw__ask`;
        `told` hears the message's id once it is committed."""
        stored, _ = await self._commit(message, chain)
        with self.expect(stored.id) as answer:  # before anyone can claim it
            self.notify(message.mailbox)
            if told is not None:
                await told(stored.id)
            with anyio.move_on_after(within):
                return stored, await answer()
        return stored, None

    @contextlib.contextmanager
    def expect(self, message_id: int) -> Iterator[Callable[[], Awaitable[Answer]]]:
        """While in it, the message's answer can be awaited (with the function it gives)."""
        done, answers = anyio.Event(), list[Answer]()
        self._answers[message_id] = (done, answers)

        async def answer() -> Answer:
            await done.wait()
            return answers[0]

        try:
            yield answer
        finally:
            del self._answers[message_id]

    async def _commit(self, m: Outgoing, chain: tuple[str, ...] = ()) -> tuple[Message, bool]:
        stored, new = await self.store.enqueue(
            m.mailbox, m.content, sender=m.sender, thread=m.thread, kind=m.kind, key=m.key, chain=chain
        )
        if new:
            self.events.emit(
                "message",
                m.mailbox,
                id=stored.id,
                sender=m.sender,
                type=m.kind,
                thread=m.thread,
                text=excerpt(m.content),
            )
        return stored, new

    async def claim(self, mailbox: str) -> Message | None:
        return await self.store.claim(mailbox)

    def notify(self, mailbox: str) -> None:
        """The mailbox has a message to claim (committed by `enqueue`, or by the store, as a
        schedule's fire is)."""
        if self.forward is not None:
            self.forward(mailbox)
        self._signal(mailbox).set()

    async def wait(self, mailbox: str) -> None:
        """Until the mailbox is notified; at once when it was since the last wait returned."""
        await self._signal(mailbox).wait()
        self._signals[mailbox] = anyio.Event()

    def _signal(self, mailbox: str) -> anyio.Event:
        signal = self._signals.get(mailbox)
        if signal is None:
            signal = self._signals[mailbox] = anyio.Event()
        return signal

    def waiting(self) -> list[int]:
        """The asks waiting here for their answer."""
        return list(self._answers)

    async def check(self, message_id: int) -> None:
        """The ask may have been answered on another host: if it is done or dead, its waiter here
        gets the answer the store has."""
        if message_id not in self._answers:
            return
        message = await self.store.get_message(message_id)
        if message is None or message.state not in ("done", "dead", "cancelled"):
            return
        if message.state == "dead":
            answer = Answer(error=f"dead letter after {message.attempts} tries: {message.last_error}")
        elif message.state == "cancelled":
            answer = Answer(error=CANCELLED)
        elif (run := await self.store.message_run(message_id)) is None:
            answer = Answer()
        else:
            answer = Answer(run.reply, None if run.state == "done" else run.error)
        self.replied(message_id, answer)

    def replied(self, message_id: int, answer: Answer) -> None:
        """The message is answered: its run finished, or it will not be tried again."""
        if (waiting := self._answers.get(message_id)) is not None and not waiting[1]:
            waiting[1].append(answer)
            waiting[0].set()

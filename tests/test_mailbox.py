"""The mailboxes seam in memory: what `notify`, `wait`, `ask` and `replied` promise, which a store
with notifications of its own must keep across processes."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from clawmcp.events import Events
from clawmcp.mailbox import Answer, Mailboxes
from clawmcp.store import Outgoing
from clawmcp.store.memory import MemoryStore

pytestmark = pytest.mark.anyio


async def test_wait_returns_once_the_mailbox_is_notified_and_at_once_if_it_was_before() -> None:
    async with MemoryStore() as store:
        mailboxes = Mailboxes(store, Events(store))
        mailboxes.notify("a")  # before anyone waits: the next wait returns at once
        with anyio.fail_after(5):
            await mailboxes.wait("a")
        woke = anyio.Event()

        async def waiter() -> None:
            await mailboxes.wait("a")
            woke.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            for _ in range(10):
                await anyio.lowlevel.checkpoint()
            mailboxes.notify("b")  # another mailbox
            for _ in range(10):
                await anyio.lowlevel.checkpoint()
            assert not woke.is_set()  # no notification since the last wait returned
            mailboxes.notify("a")
            with anyio.fail_after(5):
                await woke.wait()


async def test_an_enqueued_message_is_committed_logged_and_notified_and_a_worker_passes_it_on() -> None:
    async with MemoryStore() as store:
        events, passed = Events(store), list[str]()
        mailboxes = Mailboxes(store, events, forward=passed.append)
        with events.subscribe() as live:
            message = await mailboxes.enqueue(Outgoing("b", "hello", sender="a", thread="a"))
            await events.flush()
            logged = live.receive_nowait()
        assert (logged.kind, logged.claw, logged.data["id"], logged.data["sender"]) == (
            "message",
            "b",
            message.id,
            "a",
        )
        assert passed == ["b"]  # a worker's mailboxes hand what they notify to the host
        claimed = await mailboxes.claim("b")
        assert claimed is not None and (claimed.id, claimed.state) == (message.id, "running")


async def test_an_ask_gets_the_answer_to_its_message_and_then_nobody_waits_on_it() -> None:
    async with MemoryStore() as store:
        mailboxes = Mailboxes(store, Events(store))

        async def answer() -> None:
            await mailboxes.wait("b")
            message = await mailboxes.claim("b")
            assert message is not None and message.chain == ("a",)  # kept with the message
            mailboxes.replied(message.id, Answer("fine"))

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(answer)
                _, got = await mailboxes.ask(Outgoing("b", "x", kind="ask"), chain=("a",), within=5)
        assert got == Answer("fine") and mailboxes.waiting() == []
        late, none = await mailboxes.ask(Outgoing("b", "y", kind="ask"), chain=("a",), within=0.01)
        assert none is None and mailboxes.waiting() == []
        stored = await store.get_message(late.id)
        assert stored is not None and stored.chain == (
            "a",
        )  # still handled in its chain, even after a restart

"""Messages and asks between Claws on the router alone, in memory: who may message whom, the
depth limit at its boundary and what a failed ask says."""

from __future__ import annotations

import functools
from pathlib import Path

import anyio
import pytest

from clawmcp.errors import MessageRefused, UserError
from clawmcp.events import Events
from clawmcp.mailbox import Answer, Mailboxes
from clawmcp.manifest import load
from clawmcp.router import Router
from clawmcp.store.memory import MemoryStore

pytestmark = pytest.mark.anyio

CLAWS = "abcde"


def router(tmp_path: Path, store: MemoryStore) -> Router:
    claws = (
        "\n".join(f"  {c}: {{model: m, talks_to: ['*']}}" for c in CLAWS)
        + "\n  shy: {model: m, talks_to: [a]}"
    )
    (tmp_path / "m.yaml").write_text(
        f"models: {{m: {{provider: scripted, rules: [{{reply: hi}}]}}}}\nclaws:\n{claws}\n"
    )
    return Router(load([tmp_path / "m.yaml"]), Mailboxes(store, Events(store)), max_depth=4)


async def answered(r: Router, store: MemoryStore, to: str, *, reply: str | None, error: str | None) -> None:
    """Wait for the ask's message to reach `to`, then settle it as its run would."""
    await r.mailboxes.wait(to)
    message = await r.mailboxes.claim(to)
    assert message is not None and message.kind == "ask"
    r.mailboxes.replied(message.id, Answer(reply, error))


async def test_an_ask_chain_holds_up_to_max_depth_claws_and_no_more(tmp_path: Path) -> None:
    async with MemoryStore() as store:
        r = router(tmp_path, store)
        with pytest.raises(MessageRefused, match=r"ask chain too deep \(a → b → c → d\); the limit is 4"):
            await r.ask("d", "e", "x", chain=("a", "b", "c", "d"), within=1)
        assert await store.depth("e") == 0  # refused before anything was queued
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: answered(r, store, "d", reply="fine", error=None))
                assert await r.ask("c", "d", "x", chain=("a", "b", "c"), within=5) == "fine"


async def test_an_ask_whose_recipient_could_not_answer_says_why(tmp_path: Path) -> None:
    async with MemoryStore() as store:
        r = router(tmp_path, store)
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: answered(r, store, "b", reply=None, error="boom"))
                with pytest.raises(MessageRefused, match=r"'b' could not answer message \d+: boom"):
                    await r.ask("a", "b", "x", chain=("a",), within=5)
        with pytest.raises(MessageRefused, match=r"'c' did not answer within 0.01s"):
            await r.ask("a", "c", "x", chain=("a",), within=0.01)


async def test_a_message_to_a_claw_not_in_talks_to_or_not_there_is_refused_and_nothing_queued(
    tmp_path: Path,
) -> None:
    async with MemoryStore() as store:
        r = router(tmp_path, store)
        for send in (r.send, functools.partial(r.ask, chain=("shy",), within=1)):
            with pytest.raises(MessageRefused, match=r"Claw 'shy' may not message 'b' \(talks_to: \['a'\]\)"):
                await send("shy", "b", "x")
            with pytest.raises(UserError, match="no Claw 'nobody'"):
                await send("a", "nobody", "x")
        assert await store.mailboxes() == {}


async def test_a_worker_process_refuses_claw_ask_and_queues_nothing(tmp_path: Path) -> None:
    async with MemoryStore() as store:
        r = router(tmp_path, store)
        r.asks = False  # as in the worker of a Claw with isolation: process
        with pytest.raises(
            MessageRefused, match="claw__ask is not available to 'a', which runs with isolation"
        ):
            await r.ask("a", "b", "x", chain=("a",), within=1)
        assert await store.mailboxes() == {}
        assert (await r.send("a", "b", "x")).mailbox == "b"  # claw__send still works

"""The behaviour every `Store` shares, run against `MemoryStore`, `SqliteStore` and `PostgresStore`."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from tests.pg import PostgresServer

from clawmcp.errors import StoreError
from clawmcp.store import Outgoing, Run, Schedule, Store
from clawmcp.store.memory import MemoryStore
from clawmcp.store.postgres import PostgresStore
from clawmcp.store.sqlite import SqliteStore

pytestmark = pytest.mark.anyio


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock, postgres: PostgresServer
) -> AsyncIterator[Store]:
    """An open store of each implementation, on the fake clock."""
    s: Store
    if request.param == "memory":
        s = MemoryStore(clock)
    elif request.param == "sqlite":
        s = SqliteStore(tmp_path / "s.db", clock=clock)
    else:
        s = PostgresStore(await postgres.database(), clock=clock)
    async with s:
        yield s


# -- mailboxes and messages -----------------------------------------------------------------------


async def test_enqueue_commits_a_new_queued_message(store: Store, clock: FakeClock) -> None:
    message, new = await store.enqueue("inbox", "hello", sender="bob", thread="t1", kind="ask", key="k")
    assert new
    assert (message.mailbox, message.content, message.sender, message.thread) == (
        "inbox",
        "hello",
        "bob",
        "t1",
    )
    assert (message.kind, message.key, message.reply_to, message.state) == ("ask", "k", None, "queued")
    assert (message.attempts, message.available_at, message.created_at) == (0, clock.now, clock.now)
    assert await store.get_message(message.id) == message


async def test_a_message_keeps_the_chain_of_claws_waiting_on_it(store: Store) -> None:
    asked, _ = await store.enqueue("c", "ask", kind="ask", chain=["a", "b"])
    told, _ = await store.enqueue("c", "tell")
    assert (asked.chain, told.chain) == (("a", "b"), ())
    claimed = await store.claim("c")
    assert claimed is not None and claimed.chain == ("a", "b")
    assert await store.get_message(told.id) == told


async def test_enqueue_with_a_known_key_returns_the_first_message(store: Store) -> None:
    first, _ = await store.enqueue("inbox", "one", key="k")
    again, new = await store.enqueue("inbox", "two", key="k")
    assert (again, new) == (first, False)
    assert await store.depth("inbox") == 1


async def test_enqueues_at_once_each_get_their_own_message_and_a_bad_one_fails_alone(store: Store) -> None:
    results: dict[int, tuple[int, bool] | str] = {}

    async def enqueue(n: int) -> None:
        try:
            message, new = await store.enqueue(
                f"m{n % 3}", str(n), key="same" if n % 5 == 0 else None, reply_to=999 if n == 7 else None
            )
            assert message.content == str(n) or not new
            results[n] = (message.id, new)
        except StoreError as e:
            results[n] = str(e)

    async with anyio.create_task_group() as tg:
        for n in range(30):
            tg.start_soon(enqueue, n)
    assert isinstance(results.pop(7), str)  # no message 999 to reply to
    keyed = [r for n in range(0, 30, 5) if isinstance(r := results.pop(n), tuple)]  # "same", twice each
    assert len(keyed) == 6
    assert sorted(new for _, new in keyed) == [False, False, False, True, True, True]
    assert len({i for i, _ in keyed}) == 3
    made = [r for r in results.values() if isinstance(r, tuple)]
    assert all(new for _, new in made) and len({i for i, _ in made}) == 23
    assert await store.depth("m0") + await store.depth("m1") + await store.depth("m2") == 26


async def test_the_same_key_in_another_mailbox_makes_a_new_message(store: Store) -> None:
    first, _ = await store.enqueue("a", "one", key="k")
    other, new = await store.enqueue("b", "one", key="k")
    assert new and other.id != first.id


async def test_messages_without_a_key_are_never_merged(store: Store) -> None:
    first, _ = await store.enqueue("inbox", "same")
    second, new = await store.enqueue("inbox", "same")
    assert new and second.id != first.id


async def test_a_reply_refers_to_its_message(store: Store) -> None:
    ask, _ = await store.enqueue("b", "question?", kind="ask")
    reply, _ = await store.enqueue("a", "answer", kind="reply", reply_to=ask.id)
    assert reply.reply_to == ask.id


async def test_claim_takes_the_oldest_queued_message_and_counts_an_attempt(store: Store) -> None:
    first, _ = await store.enqueue("inbox", "one")
    await store.enqueue("inbox", "two")
    await store.enqueue("elsewhere", "zero")
    claimed = await store.claim("inbox")
    assert claimed is not None
    assert (claimed.id, claimed.state, claimed.attempts) == (first.id, "running", 1)
    assert await store.get_message(first.id) == claimed


async def test_claim_of_an_empty_mailbox_returns_none(store: Store) -> None:
    assert await store.claim("inbox") is None


async def test_a_running_message_is_not_claimed_again(store: Store) -> None:
    await store.enqueue("inbox", "one")
    assert await store.claim("inbox") is not None
    assert await store.claim("inbox") is None


async def test_ack_marks_a_message_done(store: Store) -> None:
    message, _ = await store.enqueue("inbox", "one")
    await store.claim("inbox")
    await store.ack(message.id)
    done = await store.get_message(message.id)
    assert done is not None and done.state == "done"
    assert await store.claim("inbox") is None


async def test_a_nacked_message_is_claimable_only_once_the_clock_passes_retry_at(
    store: Store, clock: FakeClock
) -> None:
    message, _ = await store.enqueue("inbox", "one")
    await store.claim("inbox")
    await store.nack(message.id, "model timed out", retry_at=clock.now + 30)
    queued = await store.get_message(message.id)
    assert queued is not None
    assert (queued.state, queued.last_error, queued.available_at) == (
        "queued",
        "model timed out",
        clock.now + 30,
    )
    clock.advance(29)
    assert await store.claim("inbox") is None
    clock.advance(1)
    again = await store.claim("inbox")
    assert again is not None and (again.id, again.attempts) == (message.id, 2)


async def test_a_message_waiting_for_its_retry_does_not_hold_back_later_ones(
    store: Store, clock: FakeClock
) -> None:
    first, _ = await store.enqueue("inbox", "one")
    second, _ = await store.enqueue("inbox", "two")
    await store.claim("inbox")
    await store.nack(first.id, "failed", retry_at=clock.now + 60)
    claimed = await store.claim("inbox")
    assert claimed is not None and claimed.id == second.id


async def test_nack_without_retry_at_moves_the_message_to_the_dead_letters(store: Store) -> None:
    message, _ = await store.enqueue("inbox", "one")
    await store.enqueue("inbox", "two")
    await store.claim("inbox")
    await store.nack(message.id, "gave up", retry_at=None)
    [dead] = await store.dead_letters("inbox")
    assert (dead.id, dead.state, dead.last_error) == (message.id, "dead", "gave up")
    assert await store.dead_letters("elsewhere") == []


async def test_depth_counts_queued_and_running_messages(store: Store) -> None:
    ids = [(await store.enqueue("inbox", str(n)))[0].id for n in range(4)]
    await store.claim("inbox")
    await store.ack(ids[0])
    await store.claim("inbox")
    await store.claim("inbox")
    await store.nack(ids[2], "dead", retry_at=None)
    assert await store.depth("inbox") == 2  # ids[1] running, ids[3] queued
    assert await store.depth("elsewhere") == 0


async def test_mailboxes_counts_depth_and_dead_letters_per_mailbox(store: Store) -> None:
    ids = [(await store.enqueue("a", str(n)))[0].id for n in range(3)]
    await store.enqueue("b", "x")
    await store.claim("a")
    await store.ack(ids[0])
    await store.claim("a")
    await store.nack(ids[1], "dead", retry_at=None)
    assert await store.mailboxes() == {"a": (1, 1), "b": (1, 0)}
    await store.cancel(ids[2])
    assert (await store.mailboxes())["a"] == (0, 1)


async def test_requeue_running_queues_running_messages_again_with_the_same_id(store: Store) -> None:
    first, _ = await store.enqueue("a", "one")
    await store.enqueue("b", "two")
    await store.claim("a")
    await store.claim("b")
    assert await store.requeue_running() == 2
    again = await store.claim("a")
    assert again is not None and (again.id, again.attempts) == (first.id, 2)
    assert await store.requeue_running() == 1


async def test_requeue_running_of_one_mailbox_leaves_the_others(store: Store) -> None:
    await store.enqueue("a", "one")
    await store.enqueue("b", "two")
    await store.claim("a")
    await store.claim("b")
    assert await store.requeue_running("a") == 1
    assert await store.claim("b") is None
    assert await store.claim("a") is not None


async def test_get_message_of_an_unknown_id_returns_none(store: Store) -> None:
    assert await store.get_message(12345) is None


Change = Callable[[Store], Awaitable[object]]
CHANGES_OF_UNKNOWN_RECORDS: dict[str, Change] = {
    "ack": lambda s: s.ack(12345),
    "nack": lambda s: s.nack(12345, "x", retry_at=None),
    "enqueue replying to": lambda s: s.enqueue("inbox", "x", reply_to=12345),
    "start_run for": lambda s: s.start_run("c", "t", "message", "x", message_id=12345),
    "start_run under": lambda s: s.start_run("c", "t", "spawn", "x", parent_run_id=12345),
    "add_step": lambda s: s.add_step(12345, "model", {}),
    "finish_run": lambda s: s.finish_run(12345, "done"),
    "set_next_fire": lambda s: s.set_next_fire(12345, None),
    "claim_fire": lambda s: s.claim_fire(12345, 60.0, next_fire=None),
    "finish_fire": lambda s: s.finish_fire(12345, 60.0, "ok"),
    "finish_fire of a run": lambda s: s.finish_fire(1, 60.0, "ok", run_id=12345),
    "finish_fire acking": lambda s: s.finish_fire(1, 60.0, "ok", ack=12345),
    "record_tool_call": lambda s: s.record_tool_call(
        "c", "t", args_bytes=0, duration=0.0, outcome="ok", run_id=12345
    ),
    "request_approval": lambda s: s.request_approval(
        12345, kind="approval", tool="a.b", call_id="k", arguments={}, expires_at=0.0
    ),
    "decide": lambda s: s.decide(12345, "approved"),
    "resume_run": lambda s: s.resume_run(12345),
    "cancel": lambda s: s.cancel(12345),
    "add_summary of a run": lambda s: s.add_summary("c", "t", "x", through=0, run_id=12345),
}


@pytest.mark.parametrize("change", CHANGES_OF_UNKNOWN_RECORDS.values(), ids=CHANGES_OF_UNKNOWN_RECORDS.keys())
async def test_a_change_that_names_an_unknown_record_raises_store_error(store: Store, change: Change) -> None:
    with pytest.raises(StoreError):
        await change(store)


EVERY_OPERATION: dict[str, Change] = {
    "enqueue": lambda s: s.enqueue("inbox", "late"),
    "claim": lambda s: s.claim("inbox"),
    "enqueue_claimed": lambda s: s.enqueue_claimed("inbox", "now"),
    "cancel": lambda s: s.cancel(1),
    "ack": lambda s: s.ack(1),
    "nack": lambda s: s.nack(1, "x", retry_at=None),
    "get_message": lambda s: s.get_message(1),
    "depth": lambda s: s.depth("inbox"),
    "dead_letters": lambda s: s.dead_letters(),
    "settle_dead": lambda s: s.settle_dead(1, "retry"),
    "mailboxes": lambda s: s.mailboxes(),
    "requeue_running": lambda s: s.requeue_running(),
    "start_run": lambda s: s.start_run("c", "t", "message", "x"),
    "add_step": lambda s: s.add_step(1, "model", {}),
    "finish_run": lambda s: s.finish_run(1, "done"),
    "get_run": lambda s: s.get_run(1),
    "message_run": lambda s: s.message_run(1),
    "steps": lambda s: s.steps(1),
    "runs": lambda s: s.runs(),
    "interrupt_running": lambda s: s.interrupt_running(),
    "tokens_used": lambda s: s.tokens_used("c", 0.0),
    "request_approval": lambda s: s.request_approval(
        1, kind="approval", tool="a.b", call_id="k", arguments={}, expires_at=0.0
    ),
    "decide": lambda s: s.decide(1, "approved"),
    "approvals": lambda s: s.approvals(),
    "get_approval": lambda s: s.get_approval(1),
    "resume_run": lambda s: s.resume_run(1),
    "pins": lambda s: s.pins("gh"),
    "pin": lambda s: s.pin("gh", {"rm": ({}, "h")}),
    "secret": lambda s: s.secret("x"),
    "put_secret": lambda s: s.put_secret("x", b"y"),
    "history": lambda s: s.history("c", "t", 10),
    "threads": lambda s: s.threads("c"),
    "context": lambda s: s.context("c", "t", 10),
    "add_summary": lambda s: s.add_summary("c", "t", "x", through=0),
    "remember": lambda s: s.remember("c", "x"),
    "recall": lambda s: s.recall("c", "x"),
    "notes": lambda s: s.notes("c"),
    "put_schedule": lambda s: s.put_schedule(
        "c",
        "s",
        spec={"every": 60.0},
        action={"prompt": "p"},
        misfire="latest",
        source="runtime",
        next_fire=None,
    ),
    "put_schedules": lambda s: s.put_schedules(
        [Schedule(0, "c", "s", {"every": 60.0}, {"prompt": "p"}, "latest", "runtime", None, 0.0)]
    ),
    "delete_schedule": lambda s: s.delete_schedule(1),
    "schedules": lambda s: s.schedules(),
    "set_next_fire": lambda s: s.set_next_fire(1, None),
    "claim_fire": lambda s: s.claim_fire(1, 60.0, next_fire=None),
    "finish_fire": lambda s: s.finish_fire(1, 60.0, "ok"),
    "fires": lambda s: s.fires(1),
    "record_tool_call": lambda s: s.record_tool_call("c", "t", args_bytes=0, duration=0.0, outcome="ok"),
    "tool_calls": lambda s: s.tool_calls(),
    "add_events": lambda s: s.add_events([(0.0, "run", "c", {})]),
    "events": lambda s: s.events(),
}


@pytest.mark.parametrize("operation", EVERY_OPERATION.values(), ids=EVERY_OPERATION.keys())
async def test_a_closed_store_refuses_every_read_and_write(store: Store, operation: Change) -> None:
    await store.close()
    with pytest.raises(StoreError, match=r"closed|not open"):
        await operation(store)


async def test_ids_count_from_one_and_default_limits_hold(store: Store) -> None:
    message, _ = await store.enqueue("inbox", "first")
    assert message.id == 1
    for n in range(21):
        await store.start_run("c", "t", "message", str(n))
    assert len(await store.runs()) == 20
    for n in range(101):
        await store.remember("c", f"note {n} about deploys")
    assert len(await store.notes("c")) == 100
    assert len(await store.recall("c", "deploys")) == 5
    for _ in range(51):
        await store.record_tool_call("c", "t", args_bytes=0, duration=0.0, outcome="ok")
    assert len(await store.tool_calls()) == 50
    tick = await store.put_schedule(
        "c",
        "s",
        spec={"every": 60.0},
        action={"prompt": "p"},
        misfire="latest",
        source="runtime",
        next_fire=None,
    )
    for n in range(21):
        await store.claim_fire(tick.id, 60.0 * (n + 1), next_fire=None)
    assert len(await store.fires(tick.id)) == 20
    assert await store.delete_schedule(12345) is False


# -- runs and their steps ---------------------------------------------------------------------------


async def test_start_run_returns_a_running_run(store: Store, clock: FakeClock) -> None:
    message, _ = await store.enqueue("c", "hi")
    run, _ = await store.start_run("c", "t", "message", "hi", message_id=message.id)
    assert (run.claw, run.thread, run.trigger, run.input, run.message_id) == (
        "c",
        "t",
        "message",
        "hi",
        message.id,
    )
    assert (run.state, run.parent_run_id, run.started_at, run.ended_at) == ("running", None, clock.now, None)
    child, _ = await store.start_run("c", "t", "spawn", "sub", parent_run_id=run.id)
    assert child.parent_run_id == run.id
    assert await store.get_run(run.id) == run


async def test_steps_are_numbered_from_zero_and_keep_their_json_data(store: Store) -> None:
    run, _ = await store.start_run("c", "t", "message", "hi")
    other, _ = await store.start_run("c", "t", "message", "hi")
    data = {"text": "héllo", "calls": [1, 2.5, None, True], "nested": {"a": []}}
    first = await store.add_step(run.id, "model", data)
    await store.add_step(other.id, "model", "other run")
    second = await store.add_step(run.id, "tool_call", ("tuple", "becomes", "list"))
    assert (first.index, second.index) == (0, 1)
    steps = await store.steps(run.id)
    assert [(s.index, s.kind, s.data) for s in steps] == [
        (0, "model", data),
        (1, "tool_call", ["tuple", "becomes", "list"]),
    ]
    assert steps[0] == first


async def test_steps_added_at_once_are_numbered_without_gaps_or_collisions(store: Store) -> None:
    run, _ = await store.start_run("c", "t", "message", "hi")  # tool results are added concurrently

    async def add(writer: int) -> None:
        for n in range(10):
            await store.add_step(run.id, "tool_result", [writer, n])

    async with anyio.create_task_group() as tg:
        for writer in range(4):
            tg.start_soon(add, writer)
    steps = await store.steps(run.id)
    assert [s.index for s in steps] == list(range(40))
    assert sorted(s.data for s in steps) == [[w, n] for w in range(4) for n in range(10)]


async def test_finish_run_records_the_outcome(store: Store, clock: FakeClock) -> None:
    run, _ = await store.start_run("c", "t", "message", "hi")
    clock.advance(5)
    await store.finish_run(run.id, "done", reply="hello", input_tokens=10, output_tokens=3)
    done = await store.get_run(run.id)
    assert done is not None
    assert (done.state, done.reply, done.error, done.input_tokens, done.output_tokens, done.ended_at) == (
        "done", "hello", None, 10, 3, clock.now,
    )  # fmt: skip


async def test_finishing_a_run_commits_its_last_step_history_and_acknowledgement_as_one(
    store: Store, clock: FakeClock
) -> None:
    message, _ = await store.enqueue("c", "hi")
    claimed = await store.claim("c")
    assert claimed is not None
    run, _ = await store.start_run("c", "t", "message", "hi", message_id=message.id)
    await store.add_step(run.id, "model", {"calls": ["x"]})
    clock.advance(2)
    done = await store.finish_run(
        run.id,
        "done",
        reply="hello",
        step=("model", {"text": "hello"}),
        history=[("user", "hi"), ("assistant", "hello")],
        ack=True,
    )
    assert (done.state, done.reply, done.ended_at) == ("done", "hello", clock.now)
    assert done == await store.get_run(run.id)
    assert [(s.index, s.kind, s.data, s.at) for s in await store.steps(run.id)][1:] == [
        (1, "model", {"text": "hello"}, clock.now)
    ]
    assert [(h.role, h.content, h.run_id) for h in await store.history("c", "t", 10)] == [
        ("user", "hi", run.id),
        ("assistant", "hello", run.id),
    ]
    assert (await store.get_message(message.id)).state == "done"  # type: ignore[union-attr]


async def test_a_run_finished_without_ack_leaves_its_message_to_the_caller(store: Store) -> None:
    message, _ = await store.enqueue("c", "hi")
    await store.claim("c")
    run, _ = await store.start_run("c", "t", "message", "hi", message_id=message.id)
    failed = await store.finish_run(run.id, "failed", error="no")
    assert (failed.state, failed.error) == ("failed", "no")
    assert (await store.get_message(message.id)).state == "running"  # type: ignore[union-attr]
    assert await store.steps(run.id) == [] and await store.history("c", "t", 10) == []


async def test_a_run_starts_with_the_last_entries_of_its_thread(store: Store) -> None:
    first, context = await store.start_run("c", "t", "message", "one", history=3)
    assert context == []
    await store.finish_run(first.id, "done", history=[("user", "one"), ("assistant", "1")])
    await said(store, "c", "other", ("user", "elsewhere"))
    second, _ = await store.start_run("c", "t", "message", "two")
    await store.finish_run(second.id, "done", history=[("user", "two"), ("assistant", "2")])
    _, context = await store.start_run("c", "t", "message", "three", history=3)
    assert [h.content for h in context] == ["1", "two", "2"]


async def test_get_run_of_an_unknown_id_returns_none(store: Store) -> None:
    assert await store.get_run(12345) is None
    assert await store.steps(12345) == []


async def test_runs_are_listed_newest_first_and_filtered_by_claw(store: Store) -> None:
    ids = [(await store.start_run(claw, "t", "message", "x"))[0].id for claw in ("a", "b", "a", "a")]
    assert [r.id for r in await store.runs()] == ids[::-1]
    assert [r.id for r in await store.runs("a", limit=2)] == [ids[3], ids[2]]
    assert await store.runs("nobody") == []


async def test_interrupt_running_interrupts_only_running_runs(store: Store, clock: FakeClock) -> None:
    done, _ = await store.start_run("c", "t", "message", "x")
    await store.finish_run(done.id, "done")
    left, _ = await store.start_run("c", "t", "message", "y")
    assert await store.interrupt_running() == 1
    interrupted = await store.get_run(left.id)
    assert interrupted is not None and (interrupted.state, interrupted.ended_at) == ("interrupted", clock.now)
    assert (await store.get_run(done.id)) is not None
    assert await store.interrupt_running() == 0


async def test_interrupt_running_of_one_claw_leaves_the_others(store: Store) -> None:
    await store.start_run("c", "t", "message", "x")
    other, _ = await store.start_run("d", "t", "message", "y")
    assert await store.interrupt_running("c") == 1
    assert (await store.get_run(other.id)).state == "running"  # type: ignore[union-attr]


async def said(store: Store, claw: str, thread: str, *entries: tuple[str, Any]) -> Run:
    """A run of the thread that ends adding these entries (role, content) to its history."""
    run, _ = await store.start_run(claw, thread, "message", "x")
    return await store.finish_run(run.id, "done", history=entries)


# -- thread history ---------------------------------------------------------------------------------


async def test_history_returns_the_last_entries_oldest_first(store: Store, clock: FakeClock) -> None:
    run = await said(store, "c", "t", *[("user" if n % 2 == 0 else "assistant", {"n": n}) for n in range(5)])
    await said(store, "c", "other", ("user", "elsewhere"))
    await said(store, "d", "t", ("user", "another claw"))
    entries = await store.history("c", "t", limit=3)
    assert [(e.role, e.content) for e in entries] == [
        ("user", {"n": 2}),
        ("assistant", {"n": 3}),
        ("user", {"n": 4}),
    ]
    assert all((e.claw, e.thread, e.run_id, e.at) == ("c", "t", run.id, clock.now) for e in entries)
    assert len(await store.history("c", "t", limit=50)) == 5
    assert [e.content for e in await store.history("c", "t", limit=1)] == [{"n": 4}]
    assert await store.history("c", "t", limit=0) == []
    _, context = await store.start_run("c", "t", "message", "x")  # no history asked for: none given
    assert context == []


async def test_history_entries_have_increasing_ids_across_threads(store: Store) -> None:
    await said(store, "c", "t", ("user", "a"), ("assistant", "b"))
    await said(store, "c", "u", ("user", "c"))
    await said(store, "c", "t", ("user", "d"))
    ids = [e.id for e in await store.history("c", "t", 10)]
    assert ids == sorted(ids) and len(set(ids)) == 3
    _, context = await store.start_run("c", "t", "message", "x", history=10)
    assert [e.id for e in context] == ids


async def test_context_without_a_summary_is_the_last_entries(store: Store) -> None:
    await said(store, "c", "t", *[("user", str(n)) for n in range(5)])
    assert [e.content for e in await store.context("c", "t", 3)] == ["2", "3", "4"]
    assert await store.context("c", "t", 0) == []
    assert await store.context("c", "nothing", 3) == []


async def test_a_summary_stands_for_the_entries_up_to_the_one_it_names(
    store: Store, clock: FakeClock
) -> None:
    run = await said(store, "c", "t", *[("user", str(n)) for n in range(6)])
    await said(store, "c", "other", ("user", "elsewhere"))
    entries = await store.history("c", "t", 10)
    clock.advance(1)
    summary = await store.add_summary("c", "t", "zero to three", through=entries[3].id, run_id=run.id)
    assert (summary.claw, summary.thread, summary.role, summary.run_id, summary.at) == (
        "c", "t", "summary", run.id, clock.now,
    )  # fmt: skip
    assert summary.content == {"text": "zero to three", "through": entries[3].id}
    assert summary.id > entries[-1].id
    await said(store, "c", "t", ("user", "6"), ("assistant", "7"))
    context = await store.context("c", "t", 10)
    assert [(e.role, e.content) for e in context] == [
        ("summary", {"text": "zero to three", "through": entries[3].id}),
        ("user", "4"),
        ("user", "5"),
        ("user", "6"),
        ("assistant", "7"),
    ]
    assert context[0] == summary
    assert [e.content for e in await store.context("c", "t", 2)][1:] == ["6", "7"]
    assert [e.role for e in await store.context("c", "t", 0)] == ["summary"]
    # nothing is deleted: the history shows every entry, the summary where it was added
    assert [e.content for e in await store.history("c", "t", 20)] == [
        *[str(n) for n in range(6)],
        summary.content,
        "6",
        "7",
    ]
    assert await store.context("c", "other", 10) == await store.history("c", "other", 10)


async def test_the_latest_summary_is_the_one_in_the_context(store: Store) -> None:
    await said(store, "c", "t", *[("user", str(n)) for n in range(4)])
    entries = await store.history("c", "t", 10)
    await store.add_summary("c", "t", "first", through=entries[1].id)
    await store.add_summary("c", "t", "second", through=entries[2].id)
    await store.add_summary("d", "t", "another Claw's", through=entries[3].id)
    context = await store.context("c", "t", 10)
    assert [e.content for e in context] == [{"text": "second", "through": entries[2].id}, "3"]


async def test_threads_names_the_threads_of_one_claw(store: Store) -> None:
    for claw, thread in [("c", "b"), ("c", "a"), ("c", "b"), ("d", "z")]:
        await said(store, claw, thread, ("user", "hi"))
    assert await store.threads("c") == ["a", "b"]
    assert await store.threads("x") == []


# -- memory notes -----------------------------------------------------------------------------------


async def test_recall_finds_the_notes_that_contain_every_query_word(store: Store) -> None:
    both = await store.remember("c", "The deploy key lives in the vault")
    await store.remember("c", "The vault is in Zurich")
    await store.remember("c", "Rotate the deploy script weekly")
    assert await store.recall("c", "deploy vault") == [both]
    exact = await store.remember("c", "Zurich office")
    assert await store.recall("c", "office zurich") == [exact]  # every word of the note asked for


async def test_recall_ignores_case_and_the_notes_of_other_claws(store: Store) -> None:
    mine = await store.remember("c", "Alice prefers TEA")
    await store.remember("d", "alice prefers tea too")
    assert await store.recall("c", "alice tea") == [mine]


async def test_recall_ranks_the_closer_match_first_and_respects_limit(store: Store) -> None:
    loose = await store.remember("c", "budget " + "unrelated words about other things " * 10)
    close = await store.remember("c", "budget budget: the budget for Q3")
    assert await store.recall("c", "budget") == [close, loose]
    assert await store.recall("c", "budget", limit=1) == [close]


async def test_recall_splits_words_at_punctuation_and_numbers_like_the_notes(store: Store) -> None:
    note = await store.remember("c", "e-mail x@y.com about snake_case and pi=3.14")
    for query in ("mail", "y", "COM", "snake", "case", "14", "pi 3"):
        assert await store.recall("c", query) == [note], query
    assert await store.recall("c", "snake_case mail") == [note]
    assert await store.recall("c", "snak") == []  # whole words only


@pytest.mark.parametrize(
    "query", ['tea" NOT "coffee', "tea NOT coffee", "tea*", "(tea", "col:tea", "-tea", "^tea"]
)
async def test_recall_reads_query_syntax_as_plain_words(store: Store, query: str) -> None:
    note = await store.remember("c", "Alice prefers tea; not coffee. col tea")
    assert await store.recall("c", query) == [note]


@pytest.mark.parametrize("query", ["", '"', "* - :"])
async def test_recall_of_a_query_without_words_finds_nothing(store: Store, query: str) -> None:
    await store.remember("c", "Alice prefers tea")
    assert await store.recall("c", query) == []


async def test_remember_with_a_known_key_replaces_the_note(store: Store) -> None:
    first = await store.remember("c", "favourite colour is blue", key="colour")
    other = await store.remember("d", "favourite colour is green", key="colour")
    second = await store.remember("c", "favourite colour is red", key="colour")
    assert second.id == first.id and second.text == "favourite colour is red"
    assert await store.recall("c", "blue") == []
    assert await store.recall("c", "colour") == [second]
    assert await store.recall("d", "colour") == [other]


async def test_notes_lists_one_claws_notes_newest_first(store: Store) -> None:
    first = await store.remember("c", "one")
    await store.remember("d", "not mine")
    second = await store.remember("c", "two")
    assert await store.notes("c") == [second, first]
    assert await store.notes("c", limit=1) == [second]


# -- schedules and fires ----------------------------------------------------------------------------


async def test_put_schedule_with_a_known_name_replaces_it_keeping_its_id(
    store: Store, clock: FakeClock
) -> None:
    spec = {"cron": "0 9 * * *", "tz": "UTC"}
    first = await store.put_schedule(
        "c", "daily", spec=spec, action={"send": "hi"}, misfire="skip", source="manifest", next_fire=100.0
    )
    assert (first.claw, first.name, first.spec, first.action) == ("c", "daily", spec, {"send": "hi"})
    assert (first.misfire, first.source, first.next_fire, first.created_at) == (
        "skip",
        "manifest",
        100.0,
        clock.now,
    )
    clock.advance(10)
    second = await store.put_schedule(
        "c", "daily", spec={"every": 60}, action={}, misfire="catch_up", source="runtime", next_fire=None
    )
    assert (second.id, second.created_at, second.spec, second.source) == (
        first.id,
        first.created_at,
        {"every": 60},
        "runtime",
    )
    assert await store.schedules() == [second]


async def test_schedules_are_listed_by_claw_and_name(store: Store) -> None:
    for claw, name in [("b", "x"), ("a", "z"), ("a", "y")]:
        await store.put_schedule(
            claw, name, spec={}, action={}, misfire="skip", source="runtime", next_fire=None
        )
    assert [(s.claw, s.name) for s in await store.schedules()] == [("a", "y"), ("a", "z"), ("b", "x")]
    assert [s.name for s in await store.schedules("a")] == ["y", "z"]


async def test_put_schedules_stores_many_and_replaces_by_name(store: Store) -> None:
    first = await store.put_schedule(
        "c", "a", spec={"every": 1.0}, action={}, misfire="skip", source="manifest", next_fire=1.0
    )
    many = [
        Schedule(0, "c", name, {"every": 2.0}, {"prompt": name}, "all", "manifest", 5.0, 3.0)
        for name in ("a", "b")
    ]
    await store.put_schedules(many)
    a, b = await store.schedules("c")
    assert (a.id, a.spec, a.next_fire, a.created_at) == (first.id, {"every": 2.0}, 5.0, first.created_at)
    assert (b.name, b.action, b.misfire, b.created_at) == ("b", {"prompt": "b"}, "all", 3.0)


async def test_set_next_fire_moves_the_next_fire(store: Store) -> None:
    s = await store.put_schedule(
        "c", "n", spec={}, action={}, misfire="skip", source="runtime", next_fire=1.0
    )
    await store.set_next_fire(s.id, 2.0)
    assert [x.next_fire for x in await store.schedules()] == [2.0]


async def test_delete_schedule_reports_whether_it_existed_and_drops_its_fires(store: Store) -> None:
    s = await store.put_schedule(
        "c", "n", spec={}, action={}, misfire="skip", source="runtime", next_fire=None
    )
    await store.claim_fire(s.id, 60.0, next_fire=None)
    assert await store.delete_schedule(s.id)
    assert not await store.delete_schedule(s.id)
    assert await store.schedules() == []
    assert await store.fires(s.id) == []
    again = await store.put_schedule(
        "c", "n", spec={}, action={}, misfire="skip", source="runtime", next_fire=None
    )
    assert again.id != s.id


async def test_claim_fire_claims_each_slot_once(store: Store, clock: FakeClock) -> None:
    s = await store.put_schedule(
        "c", "n", spec={}, action={}, misfire="skip", source="runtime", next_fire=None
    )
    assert await store.claim_fire(s.id, 60.0, next_fire=120.0)
    assert not await store.claim_fire(s.id, 60.0, next_fire=120.0)
    assert await store.claim_fire(s.id, 120.0, next_fire=180.0)
    assert [x.next_fire for x in await store.schedules()] == [180.0]
    [later, first] = await store.fires(s.id)
    assert (first.slot, first.outcome, first.run_id, first.error, first.fired_at) == (
        60.0,
        "running",
        None,
        None,
        clock.now,
    )
    assert later.slot == 120.0


async def test_claim_fire_queues_its_message_once(store: Store) -> None:
    s = await store.put_schedule(
        "c", "n", spec={}, action={}, misfire="all", source="manifest", next_fire=60.0
    )
    message = Outgoing("c", "tick", thread="schedule:n", kind="fire", key="fire:1:60")
    assert await store.claim_fire(s.id, 60.0, next_fire=120.0, message=message)
    assert not await store.claim_fire(s.id, 60.0, next_fire=120.0, message=message)
    sent = await store.claim("c")
    assert sent is not None and (sent.content, sent.kind, sent.thread) == ("tick", "fire", "schedule:n")
    assert await store.claim("c") is None
    assert await store.claim_fire(s.id, 120.0, next_fire=None, outcome="ok")
    assert [f.outcome for f in await store.fires(s.id)] == ["ok", "running"]


async def test_finish_fire_records_the_outcome_and_fires_are_listed_newest_first(store: Store) -> None:
    s = await store.put_schedule(
        "c", "n", spec={}, action={}, misfire="skip", source="runtime", next_fire=None
    )
    run, _ = await store.start_run("c", "t", "schedule", "tick")
    for slot in (60.0, 120.0, 180.0):
        await store.claim_fire(s.id, slot, next_fire=None)
    await store.finish_fire(s.id, 60.0, "ok", run_id=run.id)
    await store.finish_fire(s.id, 120.0, "failed", error="boom")
    fires = await store.fires(s.id, limit=2)
    assert [(f.slot, f.outcome) for f in fires] == [(180.0, "running"), (120.0, "failed")]
    [oldest] = (await store.fires(s.id))[2:]
    assert (oldest.outcome, oldest.run_id) == ("ok", run.id)


# -- tool-call audit --------------------------------------------------------------------------------


async def test_tool_calls_are_listed_newest_first_and_filtered_by_claw(
    store: Store, clock: FakeClock
) -> None:
    run, _ = await store.start_run("a", "t", "message", "x")
    await store.record_tool_call("a", "fs.read", args_bytes=10, duration=0.5, outcome="ok", run_id=run.id)
    await store.record_tool_call("b", "web.get", args_bytes=20, duration=1.5, outcome="error", error="404")
    await store.record_tool_call("a", "fs.write", args_bytes=30, duration=0.1, outcome="refused")
    assert [c.tool for c in await store.tool_calls()] == ["fs.write", "web.get", "fs.read"]
    [_, oldest] = await store.tool_calls("a")
    assert (oldest.claw, oldest.tool, oldest.run_id, oldest.args_bytes, oldest.duration) == (
        "a",
        "fs.read",
        run.id,
        10,
        0.5,
    )
    assert (oldest.outcome, oldest.error, oldest.at) == ("ok", None, clock.now)
    assert [c.tool for c in await store.tool_calls(limit=1)] == ["fs.write"]
    [failed] = await store.tool_calls("b")
    assert (failed.outcome, failed.error) == ("error", "404")


# -- activity log -------------------------------------------------------------------------------------


async def test_events_come_back_in_order_with_ids_filtered_by_claw_and_cursor(store: Store) -> None:
    added = await store.add_events(
        [(1.0, "run", "a", {"run": 1}), (2.0, "tool", "b", {"tool": "t"}), (3.0, "server", None, {})]
    )
    assert [e.id for e in added] == sorted({e.id for e in added})
    assert [(e.at, e.kind, e.claw, e.data) for e in await store.events()] == [
        (1.0, "run", "a", {"run": 1}),
        (2.0, "tool", "b", {"tool": "t"}),
        (3.0, "server", None, {}),
    ]
    assert [e.kind for e in await store.events("a")] == ["run"]
    assert [e.kind for e in await store.events(after=added[0].id)] == ["tool", "server"]
    assert [e.kind for e in await store.events(limit=2)] == ["tool", "server"]  # the newest, oldest first


async def test_a_reader_following_the_log_sees_every_event_once_while_many_append(store: Store) -> None:
    async def append(writer: int) -> None:
        for n in range(20):
            await store.add_events([(0.0, "run", f"c{writer}", {"n": n}), (0.0, "tool", None, {})])

    seen: list[int] = []
    appended = anyio.Event()

    async def follow() -> None:
        while True:
            done = appended.is_set()
            seen.extend(e.id for e in await store.events(after=seen[-1] if seen else 0, limit=1000))
            if done:
                return
            await anyio.lowlevel.checkpoint()

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(follow)
            async with anyio.create_task_group() as appenders:
                for writer in range(8):
                    appenders.start_soon(append, writer)
            appended.set()
    assert seen == [e.id for e in await store.events(limit=1000)]


async def test_only_the_newest_events_are_kept(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(f"{type(store).__module__}.EVENTS_KEPT", 3)
    await store.add_events([(float(n), "run", "a", {"n": n}) for n in range(5)])
    await store.add_events([(5.0, "run", "a", {"n": 5})])
    assert [e.data["n"] for e in await store.events(limit=10)] == [3, 4, 5]


async def test_a_dead_letter_is_queued_again_from_zero_tries_or_discarded(
    store: Store, clock: FakeClock
) -> None:
    first, _ = await store.enqueue("a", "one")
    second, _ = await store.enqueue("b", "two")
    for m in (first, second):
        await store.claim(m.mailbox)
        await store.nack(m.id, "boom", retry_at=None)
    assert [m.id for m in await store.dead_letters()] == [first.id, second.id]
    assert [m.id for m in await store.dead_letters("b")] == [second.id]
    clock.advance(10)
    again = await store.settle_dead(first.id, "retry")
    assert (again.state, again.attempts, again.available_at, again.last_error) == (
        "queued",
        0,
        clock.now,
        "boom",
    )
    assert (await store.claim("a")) == dataclasses.replace(again, state="running", attempts=1)
    gone = await store.settle_dead(second.id, "discard")
    assert gone.state == "discarded" and await store.dead_letters() == [] and await store.depth("b") == 0
    with pytest.raises(StoreError, match=f"message {second.id} is not a dead letter"):
        await store.settle_dead(second.id, "retry")


async def test_a_fire_merges_with_its_schedules_fire_still_queued(store: Store) -> None:
    tick = await store.put_schedule(
        "c",
        "tick",
        spec={"every": 5.0},
        action={"prompt": "p"},
        misfire="latest",
        source="manifest",
        next_fire=5,
    )

    def fire(slot: float) -> Outgoing:
        return Outgoing("c", f"slot {slot}", kind="fire", key=f"schedule:{tick.id}:{slot}")

    assert await store.claim_fire(tick.id, 5, next_fire=10, message=fire(5), merge=True)
    assert await store.claim_fire(tick.id, 10, next_fire=15, message=fire(10), merge=True)
    assert await store.claim_fire(tick.id, 15, next_fire=20, message=fire(15))  # no merge: queued too
    assert [f.outcome for f in await store.fires(tick.id)] == ["running", "merged", "running"]
    assert await store.depth("c") == 2
    taken = await store.claim("c")
    assert taken is not None and taken.content == "slot 5"
    await store.ack(taken.id)
    await store.claim("c")  # nothing of the schedule is queued now: the next fire queues again
    assert await store.claim_fire(tick.id, 20, next_fire=25, message=fire(20), merge=True)
    assert (await store.fires(tick.id, limit=1))[0].outcome == "running"


async def test_a_fires_outcome_and_its_message_done_are_one_write_and_a_message_knows_its_run(
    store: Store,
) -> None:
    tick = await store.put_schedule(
        "c",
        "tick",
        spec={"every": 5.0},
        action={"prompt": "p"},
        misfire="latest",
        source="manifest",
        next_fire=5,
    )
    fire = Outgoing("c", "p", kind="fire", key=f"schedule:{tick.id}:5")
    assert await store.claim_fire(tick.id, 5, next_fire=10, message=fire)
    message = await store.claim("c")
    assert message is not None and await store.message_run(message.id) is None
    await store.start_run("c", "t", "schedule", "p", message_id=message.id)  # an earlier run
    second, _ = await store.start_run("c", "t", "schedule", "p", message_id=message.id)
    assert await store.message_run(message.id) == second
    await store.finish_fire(tick.id, 5, "ok", run_id=second.id, ack=message.id)
    assert (await store.get_message(message.id)).state == "done"  # type: ignore[union-attr]
    assert [(f.outcome, f.run_id) for f in await store.fires(tick.id)] == [("ok", second.id)]


# -- approvals and budgets -------------------------------------------------------------------------


async def parked(store: Store, clock: FakeClock, thread: str = "t") -> tuple[Run, int]:
    """A message's run that waits for approval of one call: the run and the approval's id."""
    message, _ = await store.enqueue("c", "delete it", thread=thread)
    claimed = await store.claim("c")
    assert claimed is not None and claimed.id == message.id
    run, _ = await store.start_run("c", thread, "message", "delete it", message_id=message.id)
    await store.add_step(run.id, "model", {"text": "", "calls": [{"id": "k1", "name": "gh__rm"}]})
    approval = await store.request_approval(
        run.id,
        kind="approval",
        tool="gh.rm",
        call_id="k1",
        arguments={"repo": "x", "force": True},
        expires_at=clock.now + 60,
        tokens=(100, 20),
    )
    return run, approval.id


async def test_an_approval_is_committed_with_its_run_waiting(store: Store, clock: FakeClock) -> None:
    run, approval_id = await parked(store, clock)
    approval = await store.get_approval(approval_id)
    assert approval is not None
    assert (approval.claw, approval.run_id, approval.message_id, approval.kind) == (
        "c",
        run.id,
        run.message_id,
        "approval",
    )
    assert (approval.tool, approval.call_id) == ("gh.rm", "k1")
    assert approval.arguments == {"repo": "x", "force": True}
    assert (approval.state, approval.note, approval.content, approval.decided_at) == (
        "pending",
        None,
        None,
        None,
    )
    assert (approval.created_at, approval.expires_at) == (clock.now, clock.now + 60)
    waiting = await store.get_run(run.id)
    assert waiting is not None and (waiting.state, waiting.input_tokens, waiting.output_tokens) == (
        "waiting",
        100,
        20,
    )
    assert await store.approvals(pending=True) == [approval]
    assert await store.approvals("c", run_id=run.id) == [approval]
    assert await store.approvals("d") == []
    ended, _ = await store.start_run("c", "t", "ask", "x")
    await store.finish_run(ended.id, "done")
    with pytest.raises(StoreError, match=f"run {ended.id} is not running"):
        await store.request_approval(
            ended.id, kind="approval", tool="gh.rm", call_id="k2", arguments={}, expires_at=clock.now
        )


async def test_a_parked_message_holds_its_thread_while_other_threads_go_on(
    store: Store, clock: FakeClock
) -> None:
    await parked(store, clock, thread="t")
    later, _ = await store.enqueue("c", "after it", thread="t")
    other, _ = await store.enqueue("c", "elsewhere", thread="u")
    claimed = await store.claim("c")
    assert claimed is not None and claimed.id == other.id
    assert await store.claim("c") is None
    assert (await store.get_message(later.id)).state == "queued"  # type: ignore[union-attr]


async def test_deciding_queues_the_parked_message_again_without_counting_a_try(
    store: Store, clock: FakeClock
) -> None:
    run, approval_id = await parked(store, clock)
    assert run.message_id is not None
    clock.advance(5)
    decided = await store.decide(approval_id, "approved", note="go ahead")
    assert (decided.state, decided.note, decided.decided_at) == ("approved", "go ahead", clock.now)
    message = await store.get_message(run.message_id)
    assert message is not None and (message.state, message.attempts, message.available_at) == (
        "queued",
        1,
        clock.now,
    )
    assert await store.approvals(pending=True) == []
    with pytest.raises(StoreError, match=f"approval {approval_id} is approved already"):
        await store.decide(approval_id, "denied")
    with pytest.raises(StoreError, match="approval 999 does not exist"):
        await store.decide(999, "denied")
    claimed = await store.claim("c")
    assert claimed is not None and (claimed.id, claimed.attempts) == (run.message_id, 2)
    resumed, context = await store.resume_run(run.id, history=10)
    assert (resumed.state, resumed.input_tokens, context) == ("running", 100, [])
    with pytest.raises(StoreError, match=f"run {run.id} is not waiting"):
        await store.resume_run(run.id)


async def test_a_run_waiting_on_two_approvals_goes_on_once_both_are_decided(
    store: Store, clock: FakeClock
) -> None:
    run, first = await parked(store, clock)
    second = await store.request_approval(
        run.id, kind="approval", tool="gh.rm", call_id="k2", arguments={}, expires_at=clock.now
    )
    assert run.message_id is not None
    await store.decide(first, "denied", note="no")
    assert (await store.get_message(run.message_id)).state == "running"  # type: ignore[union-attr]
    await store.decide(second.id, "approved")
    assert (await store.get_message(run.message_id)).state == "queued"  # type: ignore[union-attr]


async def test_a_question_leaves_its_run_and_message_as_they_are(store: Store, clock: FakeClock) -> None:
    message, _ = await store.enqueue("c", "x")
    await store.claim("c")
    run, _ = await store.start_run("c", "t", "message", "x", message_id=message.id)
    question = await store.request_approval(
        run.id,
        kind="question",
        tool="gh.ask",
        call_id="k",
        arguments={"message": "name?", "schema": {"type": "object"}},
        expires_at=clock.now + 5,
        tokens=(9, 9),
    )
    assert question.kind == "question"
    assert (await store.get_run(run.id)).state == "running"  # type: ignore[union-attr]
    answered = await store.decide(question.id, "approved", content={"name": "x"})
    assert answered.content == {"name": "x"}
    assert (await store.get_message(message.id)).state == "running"  # type: ignore[union-attr]


async def test_an_asks_waiting_run_is_interrupted_with_its_host_and_its_approval_expired(
    store: Store, clock: FakeClock
) -> None:
    asked, _ = await store.start_run("c", "t", "ask", "x")
    approval = await store.request_approval(
        asked.id, kind="approval", tool="gh.rm", call_id="k", arguments={}, expires_at=clock.now + 9
    )
    told, _ = await parked(store, clock, thread="u")
    assert await store.interrupt_running() == 1
    assert (await store.get_run(asked.id)).state == "interrupted"  # type: ignore[union-attr]
    assert (await store.get_run(told.id)).state == "waiting"  # type: ignore[union-attr]
    expired = await store.get_approval(approval.id)
    assert expired is not None and (expired.state, expired.note) == ("expired", "the run was interrupted")


async def test_a_claimed_enqueue_is_an_ask_running_on_its_first_try_that_holds_its_thread(
    store: Store, clock: FakeClock
) -> None:
    message = await store.enqueue_claimed("c", "now", thread="t")
    assert (message.mailbox, message.content, message.thread, message.kind) == ("c", "now", "t", "ask")
    assert (message.state, message.attempts, message.created_at) == ("running", 1, clock.now)
    assert await store.get_message(message.id) == message
    await store.enqueue("c", "after it", thread="t")
    assert await store.claim("c") is None
    run, _ = await store.start_run("c", "t", "ask", "now", message_id=message.id)
    await store.finish_run(run.id, "done", reply="hi", ack=True)
    assert (await store.get_message(message.id)).state == "done"  # type: ignore[union-attr]
    assert await store.message_run(message.id) == await store.get_run(run.id)


async def test_cancel_drops_a_queued_message_and_refuses_one_that_ended(store: Store) -> None:
    queued, _ = await store.enqueue("c", "x")
    cancelled, run = await store.cancel(queued.id)
    assert (cancelled.id, cancelled.state, run) == (queued.id, "cancelled", None)
    assert await store.claim("c") is None
    assert await store.depth("c") == 0
    with pytest.raises(StoreError, match=f"message {queued.id} is cancelled already"):
        await store.cancel(queued.id)
    done, _ = await store.enqueue("c", "y")
    await store.claim("c")
    await store.ack(done.id)
    with pytest.raises(StoreError, match=f"message {done.id} is done already"):
        await store.cancel(done.id)


async def test_a_cancelled_running_message_stays_cancelled_whatever_its_run_does(store: Store) -> None:
    message, _ = await store.enqueue("c", "x")
    await store.claim("c")
    run, _ = await store.start_run("c", "t", "message", "x", message_id=message.id)
    cancelled, running = await store.cancel(message.id)
    assert cancelled.state == "cancelled" and running is not None
    assert (running.id, running.state) == (run.id, "running")  # its host stops it
    await store.finish_run(run.id, "cancelled", ack=True)
    await store.ack(message.id)
    await store.nack(message.id, "late", retry_at=None)
    assert (await store.get_message(message.id)).state == "cancelled"  # type: ignore[union-attr]
    assert await store.requeue_running() == 0


async def test_cancel_of_a_parked_message_ends_its_run_and_withdraws_its_approvals(
    store: Store, clock: FakeClock
) -> None:
    run, approval_id = await parked(store, clock)
    assert run.message_id is not None
    clock.advance(3)
    message, ended = await store.cancel(run.message_id)
    assert message.state == "cancelled"
    assert ended is not None and (ended.id, ended.state, ended.ended_at) == (run.id, "cancelled", clock.now)
    withdrawn = await store.get_approval(approval_id)
    assert withdrawn is not None and (withdrawn.state, withdrawn.decided_at) == ("withdrawn", clock.now)
    assert await store.approvals(pending=True) == []
    with pytest.raises(StoreError, match=f"approval {approval_id} is withdrawn already"):
        await store.decide(approval_id, "approved")


async def test_tokens_used_counts_the_claws_runs_ended_since(store: Store, clock: FakeClock) -> None:
    before, _ = await store.start_run("c", "t", "message", "x")
    await store.finish_run(before.id, "done", input_tokens=1000, output_tokens=1)
    clock.advance(10)
    since = clock.now
    for tokens in ((30, 5), (None, 7), (None, None)):
        run, _ = await store.start_run("c", "t", "message", "x")
        await store.finish_run(run.id, "done", input_tokens=tokens[0], output_tokens=tokens[1])
    other, _ = await store.start_run("d", "t", "message", "x")
    await store.finish_run(other.id, "done", input_tokens=500)
    await store.start_run("c", "t", "message", "still running")
    assert await store.tokens_used("c", since) == 42
    assert await store.tokens_used("e", since) == 0


async def test_pins_keep_each_tools_definition_and_hash_per_server(store: Store, clock: FakeClock) -> None:
    assert await store.pins("gh") == {}
    await store.pin(
        "gh", {"rm": ({"name": "rm", "description": "remove"}, "h1"), "ls": ({"name": "ls"}, "h2")}
    )
    await store.pin("other", {"rm": ({"name": "rm"}, "h3")})
    clock.advance(5)
    await store.pin("gh", {"rm": ({"name": "rm", "description": "remove it all"}, "h4")})
    pins = await store.pins("gh")
    assert sorted(pins) == ["ls", "rm"]
    assert (pins["rm"].definition, pins["rm"].hash, pins["rm"].pinned_at) == (
        {"name": "rm", "description": "remove it all"},
        "h4",
        clock.now,
    )
    assert (pins["ls"].server, pins["ls"].tool, pins["ls"].hash) == ("gh", "ls", "h2")


async def test_a_secret_is_kept_replaced_and_forgotten_by_name(store: Store) -> None:
    assert await store.secret("oauth:gh") is None
    await store.put_secret("oauth:gh", b"\x00sealed\xff")
    await store.put_secret("oauth:other", b"x")
    assert await store.secret("oauth:gh") == b"\x00sealed\xff"
    await store.put_secret("oauth:gh", b"again")
    assert await store.secret("oauth:gh") == b"again"
    await store.put_secret("oauth:gh", None)
    await store.put_secret("oauth:gone", None)
    assert (await store.secret("oauth:gh"), await store.secret("oauth:other")) == (None, b"x")

"""The writer task: batched commits, failures confined to their operation, answers after commit."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import anyio
import anyio.from_thread
import anyio.lowlevel
import pytest

from clawmcp.errors import StoreError, StoreUnavailable
from clawmcp.store.writer import Operation, Writer, store_error

pytestmark = pytest.mark.anyio


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    with contextlib.closing(
        sqlite3.connect(tmp_path / "w.db", isolation_level=None, check_same_thread=False)
    ) as conn:
        conn.executescript(
            """
            PRAGMA journal_mode = WAL;
            PRAGMA foreign_keys = ON;
            CREATE TABLE t (v INTEGER PRIMARY KEY CHECK (v >= 0), parent INTEGER REFERENCES t (v));
            """
        )
        yield conn


def insert(v: int) -> Operation[int]:
    def op(conn: sqlite3.Connection) -> int:
        conn.execute("INSERT INTO t (v) VALUES (?)", (v,))
        return v

    return op


async def values(conn: sqlite3.Connection) -> list[int]:
    return [v for (v,) in conn.execute("SELECT v FROM t ORDER BY v")]


def holder() -> tuple[Operation[None], anyio.Event, threading.Event]:
    """An operation that keeps the writer busy in its thread until the gate opens."""
    entered, gate = anyio.Event(), threading.Event()
    token = anyio.lowlevel.current_token()

    def hold(conn: sqlite3.Connection) -> None:
        anyio.from_thread.run_sync(entered.set, token=token)
        gate.wait(10)

    return hold, entered, gate


@contextlib.asynccontextmanager
async def running(writer: Writer) -> AsyncIterator[anyio.abc.TaskGroup]:
    async with anyio.create_task_group() as tg:
        tg.start_soon(writer.run)
        yield tg
        writer.close()


async def outcome(call: Callable[[], Awaitable[object]]) -> object:
    try:
        return await call()
    except Exception as e:
        return e


async def run_as_one_batch(writer: Writer, operations: list[Operation[object]]) -> list[object]:
    """Hold the writer in a batch of its own until every operation is queued, so that all of them
    go into the next batch; return what each caller got (a result or an exception)."""
    hold, entered, gate = holder()
    outcomes: list[object] = [None] * len(operations)

    async def call(i: int) -> None:
        outcomes[i] = await outcome(lambda: writer.write(operations[i]))

    async with anyio.create_task_group() as tg:
        tg.start_soon(writer.write, hold)
        await entered.wait()
        for i in range(len(operations)):
            tg.start_soon(call, i)
        await anyio.wait_all_tasks_blocked()
        gate.set()
    return outcomes


async def test_concurrent_writes_share_commits_and_are_committed_when_answered(
    conn: sqlite3.Connection, tmp_path: Path
) -> None:
    writer = Writer(conn, "w.db")
    with contextlib.closing(sqlite3.connect(tmp_path / "w.db")) as other:

        async def write_and_check(v: int) -> None:
            assert await writer.write(insert(v)) == v
            assert other.execute("SELECT count(*) FROM t WHERE v = ?", (v,)).fetchone() == (1,)

        with anyio.fail_after(10):
            async with running(writer), anyio.create_task_group() as tg:
                for v in range(200):
                    tg.start_soon(write_and_check, v)
    assert await values(conn) == list(range(200))
    assert 0 < writer.commits < 200


async def test_a_failing_operation_is_rolled_back_alone_and_only_its_caller_sees_the_error(
    conn: sqlite3.Connection,
) -> None:
    def insert_then_fail(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t (v) VALUES (3)")
        raise ValueError("the operation changed its mind")

    writer = Writer(conn, "w.db")
    with anyio.fail_after(10):
        async with running(writer):
            outcomes = await run_as_one_batch(writer, [insert(1), insert(-1), insert(2), insert_then_fail])
    assert outcomes[0] == 1 and outcomes[2] == 2
    assert isinstance(outcomes[1], StoreError) and "CHECK constraint failed" in str(outcomes[1])
    assert isinstance(outcomes[3], ValueError)
    assert await values(conn) == [1, 2]
    assert writer.commits == 2  # the holding batch, then all four together


async def test_a_failed_commit_fails_every_operation_of_its_batch(conn: sqlite3.Connection) -> None:
    def dangle(conn: sqlite3.Connection) -> None:
        # A deferred foreign key is checked only at COMMIT, which therefore fails.
        conn.execute("PRAGMA defer_foreign_keys = ON")
        conn.execute("INSERT INTO t (v, parent) VALUES (5, 999)")

    writer = Writer(conn, "w.db")
    with anyio.fail_after(10):
        async with running(writer):
            outcomes = await run_as_one_batch(writer, [insert(1), dangle, insert(2)])
            assert all(isinstance(o, StoreError) and "commit failed" in str(o) for o in outcomes)
            assert await writer.write(insert(7)) == 7  # the writer goes on
    assert await values(conn) == [7]


async def test_close_lets_the_queued_writes_commit_then_refuses_more(conn: sqlite3.Connection) -> None:
    writer = Writer(conn, "w.db")
    results: list[int] = []

    async def write(v: int) -> None:
        results.append(await writer.write(insert(v)))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for v in range(10):
                tg.start_soon(write, v)
            await anyio.wait_all_tasks_blocked()
            writer.close()
            await writer.run()
    assert sorted(results) == list(range(10))
    with pytest.raises(StoreError, match="closed"):
        await writer.write(insert(11))


async def test_a_cancelled_writer_answers_the_writes_it_had_not_started(conn: sqlite3.Connection) -> None:
    writer = Writer(conn, "w.db")
    hold, entered, gate = holder()
    outcomes = []

    async def queued() -> None:
        outcomes.append(await outcome(lambda: writer.write(insert(1))))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as callers, anyio.create_task_group() as tg:
            tg.start_soon(writer.run)
            callers.start_soon(writer.write, hold)
            await entered.wait()
            callers.start_soon(queued)
            await anyio.wait_all_tasks_blocked()
            tg.cancel_scope.cancel()
            gate.set()
    [late] = outcomes
    assert isinstance(late, StoreError)
    assert await values(conn) == []
    with pytest.raises(StoreError, match="closed"):
        await writer.write(insert(2))


async def test_only_a_batch_with_a_durable_write_is_synced_to_disk(conn: sqlite3.Connection) -> None:
    def level(conn: sqlite3.Connection) -> int:
        [(value,)] = conn.execute("PRAGMA synchronous").fetchall()
        return int(value)

    conn.execute("PRAGMA synchronous = FULL")
    writer = Writer(conn, "w.db")
    with anyio.fail_after(10):
        async with running(writer):
            assert await writer.write(level, durable=False) == 1  # NORMAL: no fsync at its commit
            assert await writer.write(level) == 2  # FULL
    conn.execute("PRAGMA synchronous = NORMAL")  # a store opened with NORMAL stays so
    writer = Writer(conn, "w.db")
    with anyio.fail_after(10):
        async with running(writer):
            assert await writer.write(level) == 1


async def test_a_cancelled_writer_returns_only_once_its_batch_in_flight_is_done(
    conn: sqlite3.Connection,
) -> None:
    writer = Writer(conn, "w.db")
    hold, entered, gate = holder()
    order = []

    async def opener() -> None:
        await anyio.wait_all_tasks_blocked()  # the cancelled writer waits for its thread
        order.append("batch done")
        gate.set()

    with anyio.fail_after(10):
        async with anyio.create_task_group() as callers:
            async with anyio.create_task_group() as tg:
                tg.start_soon(writer.run)
                callers.start_soon(writer.write, hold)
                await entered.wait()
                callers.start_soon(opener)
                tg.cancel_scope.cancel()
            order.append("writer returned")
    assert order == ["batch done", "writer returned"]


PASSING = [5, 6, 7, 10, 13, 14, 10 | 3 << 8]  # BUSY, LOCKED, NOMEM, IOERR, FULL, CANTOPEN, IOERR_WRITE
LASTING = [1, 11, 19, 26, None]  # ERROR, CORRUPT, CONSTRAINT, NOTADB, none at all


@pytest.mark.parametrize(("code", "passes"), [(c, True) for c in PASSING] + [(c, False) for c in LASTING])
async def test_a_sqlite_error_that_may_pass_is_store_unavailable(code: int | None, passes: bool) -> None:
    error = sqlite3.OperationalError("something")
    if code is not None:
        error.sqlite_errorcode = code  # as sqlite3 sets it when it raises
    translated = store_error(error, "state.db")
    assert isinstance(translated, StoreUnavailable) == passes
    assert isinstance(translated, StoreError) and str(translated) == "state.db: something"

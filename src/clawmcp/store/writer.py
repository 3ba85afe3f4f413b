"""`Writer`: one task runs every write of a SQLite connection, many writes per commit.

A write is an operation, a plain function of the `sqlite3` connection. Callers hand operations to
the writer task over a memory stream and wait. The writer takes the first waiting operation and
every other one already queued and runs them, in one worker thread call, in one transaction, each
inside its own savepoint; it commits once, and only then answers their callers. One fsync and one
thread hop cover many writes, a failing operation takes only itself back, and no caller hears back
before its change is on disk.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable
from typing import Any, Generic, TypeVar, cast

import anyio
import anyio.to_thread

from clawmcp.errors import StoreError

__all__ = ["BATCH_MAX", "Operation", "Writer"]

T = TypeVar("T")
Operation = Callable[[sqlite3.Connection], T]
"""Runs in the writer's worker thread: it must not touch the event loop."""

BATCH_MAX = 500
"""The most operations one commit covers."""


class _Pending(Generic[T]):
    """An operation waiting for the writer and, once `done` is set, its outcome."""

    def __init__(self, operation: Operation[T]) -> None:
        self.operation = operation
        self.done = anyio.Event()
        self.result: T | None = None
        self.error: BaseException | None = None

    def finish(self, result: T | None = None, error: BaseException | None = None) -> None:
        self.result, self.error = result, error
        self.done.set()

    def outcome(self) -> T:
        if self.error is not None:
            raise self.error
        return cast(T, self.result)


class Writer:
    """The only user of `conn` (opened with `isolation_level=None` and `check_same_thread=False`)
    once `run` is started.

    `name` (the database file) prefixes the messages of the `StoreError`s it raises.
    """

    def __init__(self, conn: sqlite3.Connection, name: str) -> None:
        self.commits = 0
        """How many transactions have been committed: fewer than the writes, under load."""
        self._conn = conn
        self._name = name
        self._send, self._receive = anyio.create_memory_object_stream[_Pending[Any]](BATCH_MAX)

    async def write(self, operation: Operation[T]) -> T:
        """Run `operation` in the writer's next transaction; return its result once committed.

        What the operation raises is raised here (an `sqlite3.Error` as `StoreError`); a commit
        that fails raises `StoreError` for every operation of its batch.
        """
        pending = _Pending(operation)
        try:
            await self._send.send(pending)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError) as e:
            raise StoreError(f"{self._name}: the state store is closed") from e
        await pending.done.wait()
        return pending.outcome()

    def close(self) -> None:
        """Take no more writes; `run` returns once those already queued are committed."""
        self._send.close()

    async def run(self) -> None:
        """The writer task: commit batches until `close`, or until cancelled."""
        receive = self._receive
        with receive:
            try:
                async for first in receive:
                    batch = [first]
                    with contextlib.suppress(anyio.WouldBlock, anyio.EndOfStream):
                        while len(batch) < BATCH_MAX:
                            batch.append(receive.receive_nowait())
                    # A batch once started finishes, so no caller is left unsure whether it was written.
                    with anyio.CancelScope(shield=True):
                        await self._commit(batch)
            finally:
                # Cancelled: answer the writes not started rather than leave their callers waiting.
                self._send.close()
                with contextlib.suppress(anyio.WouldBlock, anyio.EndOfStream):
                    while True:
                        error = StoreError(f"{self._name}: the state store closed before this write")
                        receive.receive_nowait().finish(error=error)

    async def _commit(self, batch: list[_Pending[Any]]) -> None:
        outcomes = await anyio.to_thread.run_sync(self._run_batch, [p.operation for p in batch])
        for pending, (result, error) in zip(batch, outcomes, strict=True):
            pending.finish(result, error)

    def _run_batch(self, operations: list[Operation[Any]]) -> list[tuple[Any, BaseException | None]]:
        """In the worker thread: one transaction, a savepoint per operation, one commit."""
        conn = self._conn
        outcomes: list[tuple[Any, BaseException | None]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for operation in operations:
                conn.execute("SAVEPOINT operation")
                try:
                    outcomes.append((operation(conn), None))
                except Exception as e:
                    outcomes.append((None, self._translate(e)))
                    conn.execute("ROLLBACK TO operation")
                conn.execute("RELEASE operation")
            conn.execute("COMMIT")
            self.commits += 1
        except Exception as e:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            message = f"{self._name}: the commit failed, nothing of it was written: {e}"
            outcomes = [(None, StoreError(message)) for _ in operations]
        return outcomes

    def _translate(self, error: Exception) -> Exception:
        if not isinstance(error, sqlite3.Error):
            return error
        translated = StoreError(f"{self._name}: {error}")
        translated.__cause__ = error
        return translated

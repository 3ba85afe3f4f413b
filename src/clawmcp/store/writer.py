"""`Writer`: one thread runs every write of a SQLite connection, many writes per commit.

A write is an operation, a plain function of the `sqlite3` connection. Callers hand operations
straight to the writer's thread and wait. The thread takes the first waiting operation and every
other one already queued and runs them in one transaction, each inside its own savepoint; it
commits once, and only then answers their callers on the event loop. One fsync and one hop each
way cover many writes, a failing operation takes only itself back, and no caller hears back before
its change is on disk.

A write that need not survive a power loss (`durable=False`: a claim, the start of a run, whose
loss equals a crash just before them) is committed without an fsync when its whole batch is of
such writes. It still survives a crash of the process (it is in the operating system's hands),
and the next durable commit, one fsync of the same WAL file, makes it durable too.
"""

from __future__ import annotations

import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar, cast

import anyio
import anyio.from_thread
import anyio.lowlevel
from anyio.lowlevel import EventLoopToken

from clawmcp.errors import StoreError, StoreUnavailable

__all__ = ["BATCH_MAX", "Operation", "Writer", "store_error"]

T = TypeVar("T")
Operation = Callable[[sqlite3.Connection], T]
"""Runs in the writer's worker thread: it must not touch the event loop."""

BATCH_MAX = 500
"""The most operations one commit covers."""


class _Pending(Generic[T]):
    """An operation waiting for the writer and, once `done` is set, its outcome."""

    def __init__(self, operation: Operation[T], durable: bool) -> None:
        self.operation, self.durable = operation, durable
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

    The writer runs in a thread of its own, which callers hand their operations straight to: a
    write costs one hop to that thread and one back, the least a write off the event loop can.
    `name` (the database file) prefixes the messages of the `StoreError`s it raises.
    """

    def __init__(self, conn: sqlite3.Connection, name: str) -> None:
        self.commits = 0
        """How many transactions have been committed: fewer than the writes, under load."""
        self._conn = conn
        self._name = name
        [(level,)] = conn.execute("PRAGMA synchronous").fetchall()
        self._full = self._synced = level >= 2  # FULL: fsync each durable commit
        self._queue: queue.SimpleQueue[_Pending[Any] | None] = queue.SimpleQueue()
        self._closed = self._refuse = False

    async def write(self, operation: Operation[T], *, durable: bool = True) -> T:
        """Run `operation` in the writer's next transaction; return its result once committed
        (with `durable=False`, committed but maybe not yet synced to disk).

        What the operation raises is raised here (an `sqlite3.Error` as `StoreError`); a commit
        that fails raises `StoreError` for every operation of its batch.
        """
        if self._closed:
            raise StoreError(f"{self._name}: the state store is closed")
        pending = _Pending(operation, durable)
        self._queue.put(pending)
        await pending.done.wait()
        return pending.outcome()

    def close(self) -> None:
        """Take no more writes; `run` returns once those already queued are committed."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)

    async def run(self) -> None:
        """Commit batches in the writer's thread until `close`; cancelled, answer the writes not
        started with an error rather than leave their callers waiting (a batch once started
        finishes, so no caller is left unsure whether it was written)."""
        stopped = anyio.Event()
        token = anyio.lowlevel.current_token()
        threading.Thread(
            target=self._work, args=(token, stopped), name=f"writer {self._name}", daemon=True
        ).start()
        try:
            await stopped.wait()
        finally:
            if not stopped.is_set():
                self._refuse = True
                self.close()
                with anyio.CancelScope(shield=True):
                    await stopped.wait()

    def _work(self, token: EventLoopToken, stopped: anyio.Event) -> None:
        """The writer's thread: run batches and answer their callers on the event loop."""
        try:
            closed = False
            while not closed:
                batch, closed = self._take()
                if not batch:
                    continue
                if self._refuse:
                    error = StoreError(f"{self._name}: the state store closed before this write")
                    outcomes: list[tuple[Any, BaseException | None]] = [(None, error)] * len(batch)
                else:
                    outcomes = self._run_batch([p.operation for p in batch], any(p.durable for p in batch))
                anyio.from_thread.run_sync(_answer, batch, outcomes, token=token)
        finally:
            anyio.from_thread.run_sync(stopped.set, token=token)

    def _take(self) -> tuple[list[_Pending[Any]], bool]:
        """The first waiting operation and every other one queued (at most `BATCH_MAX`), and
        whether `close` came after them."""
        batch: list[_Pending[Any]] = []
        item = self._queue.get()
        while item is not None:
            batch.append(item)
            if len(batch) == BATCH_MAX:
                break
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
        return batch, item is None

    def _run_batch(
        self, operations: list[Operation[Any]], durable: bool
    ) -> list[tuple[Any, BaseException | None]]:
        """In the worker thread: one transaction, a savepoint per operation, one commit."""
        conn = self._conn
        outcomes: list[tuple[Any, BaseException | None]] = []
        try:
            if self._full and durable != self._synced:
                conn.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
                self._synced = durable
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
            kind = StoreUnavailable if _passing(e) else StoreError
            outcomes = [(None, kind(message)) for _ in operations]
        return outcomes

    def _translate(self, error: Exception) -> Exception:
        return store_error(error, self._name) if isinstance(error, sqlite3.Error) else error


def _answer(batch: list[_Pending[Any]], outcomes: list[tuple[Any, BaseException | None]]) -> None:
    for pending, (result, error) in zip(batch, outcomes, strict=True):
        pending.finish(result, error)


_PASSING = {5, 6, 7, 10, 13, 14}  # SQLITE_BUSY, LOCKED, NOMEM, IOERR, FULL, CANTOPEN


def _passing(error: BaseException) -> bool:
    """Whether a SQLite error is a state of the disk or of other processes, which may pass."""
    code = getattr(error, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in _PASSING


def store_error(error: sqlite3.Error, name: str) -> StoreError:
    """A SQLite error as ours: `StoreUnavailable` when it may pass."""
    translated = (StoreUnavailable if _passing(error) else StoreError)(f"{name}: {error}")
    translated.__cause__ = error
    return translated

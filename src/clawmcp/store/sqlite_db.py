"""The SQLite database under `SqliteStore`: its connections, its writer and its schema.

Every write goes through one `Writer` (a thread of its own), which owns the write connection and
commits many writes at once. Reads use a second connection; in WAL mode they neither wait for the
writer nor block it. The schema comes from the numbered files in `migrations/`, applied at open
(see `migrate`).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

import aiosqlite
import anyio
import anyio.to_thread
from anyio.abc import TaskGroup

from clawmcp.errors import StoreError
from clawmcp.store.schema import load_migrations
from clawmcp.store.writer import Operation, Writer, store_error

__all__ = ["SCHEMA_VERSION", "Database", "Params", "fetch", "migrate"]

T = TypeVar("T")
BUSY_TIMEOUT_MS = 5000
Params = Sequence[Any] | Mapping[str, Any]


_MIGRATIONS = load_migrations("migrations")
SCHEMA_VERSION = _MIGRATIONS[-1].version
"""The schema version this clawmcp writes: the number of its newest migration."""


async def _rows(conn: aiosqlite.Connection, sql: str, params: Params = ()) -> list[sqlite3.Row]:
    return list(await conn.execute_fetchall(sql, params))


def fetch(conn: sqlite3.Connection, sql: str, params: Params = ()) -> list[sqlite3.Row]:
    """`_rows` for the writer's own connection, in its thread."""
    return conn.execute(sql, params).fetchall()


def migrate(conn: sqlite3.Connection, upto: int = SCHEMA_VERSION) -> None:
    """Apply, in order, every migration newer than the database's `user_version` up to `upto`,
    each in its own transaction together with the bump of `user_version`.

    `conn` must be opened with `isolation_level=None`. A database written by a newer clawmcp is
    refused with `StoreError`.
    """
    [(_, _, file)] = fetch(conn, "PRAGMA database_list")
    [(version,)] = fetch(conn, "PRAGMA user_version")
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{file} has schema version {version} but this clawmcp knows only up to "
            f"{SCHEMA_VERSION}; upgrade clawmcp to open it"
        )
    for m in _MIGRATIONS:
        if version < m.version <= upto:
            script = f"BEGIN IMMEDIATE;\n{m.sql}\n;\nPRAGMA user_version = {m.version};\nCOMMIT;"
            try:
                conn.executescript(script)
            except sqlite3.Error as e:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise StoreError(f"{file}: migration {m.file} failed: {e}") from e


class Database:
    """The SQLite file at `path` (created with its parent folder when missing), open or closed.

    `synchronous="FULL"` (the default) makes every commit durable across a power loss;
    `"NORMAL"` may lose the last commits on power loss (never on a crash of the process) in
    exchange for fewer fsyncs. Runs on asyncio only (aiosqlite).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
    ) -> None:
        self.path = Path(path)
        self._synchronous = synchronous
        self._write_conn: sqlite3.Connection | None = None
        self._read_conn: aiosqlite.Connection | None = None
        self._writer: Writer | None = None
        self._task_group: TaskGroup | None = None

    @property
    def commits(self) -> int:
        """How many transactions the writer has committed: fewer than the writes, under load."""
        return self._writer.commits if self._writer else 0

    # -- lifecycle ------------------------------------------------------------------------------

    async def open(self) -> None:
        """Open the file, bring its schema up to date and start the writer."""
        if self._task_group is not None:
            raise StoreError(f"state store {self.path} is already open")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._write_conn = await anyio.to_thread.run_sync(self._open_writer)
            self._read_conn = await self._connect()
            await self._read_conn.execute("PRAGMA query_only = ON")
        except BaseException as e:
            with anyio.CancelScope(shield=True):
                await self._close_connections()
            if isinstance(e, OSError | sqlite3.Error):
                raise StoreError(f"cannot open state store {self.path}: {e}") from e
            raise
        self._writer = Writer(self._write_conn, str(self.path))
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        self._task_group.start_soon(self._write_until_closed, self._writer)

    @staticmethod
    async def _write_until_closed(writer: Writer) -> None:
        # Shielded: when the host is cancelled, what stops above the store (a run finishing, the
        # last audit records) still writes; `close` ends the writer once those are committed.
        with anyio.CancelScope(shield=True):
            await writer.run()

    async def close(self) -> None:
        """Let the writes already queued commit, stop the writer, close the file.

        Must be called from the task that called `open`.
        """
        if self._task_group is None or self._writer is None:
            return
        task_group, self._task_group = self._task_group, None
        self._writer.close()
        try:
            await task_group.__aexit__(None, None, None)
        finally:
            with anyio.CancelScope(shield=True):
                await self._close_connections()

    def _open_writer(self) -> sqlite3.Connection:
        """The write connection, in a worker thread: pragmas, WAL, schema up to date."""
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            conn.row_factory = sqlite3.Row
            conn.executescript(
                f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}; PRAGMA synchronous = {self._synchronous};"
                " PRAGMA foreign_keys = ON;"
            )
            [(mode,)] = fetch(conn, "PRAGMA journal_mode = WAL")
            if mode != "wal":
                raise StoreError(f"state store {self.path} cannot use WAL mode (it is in {mode} mode)")
            migrate(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    async def _connect(self) -> aiosqlite.Connection:
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        conn.row_factory = sqlite3.Row
        await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        return conn

    async def _close_connections(self) -> None:
        if self._read_conn is not None:
            with contextlib.suppress(sqlite3.Error):
                await self._read_conn.close()
        if self._write_conn is not None:
            with contextlib.suppress(sqlite3.Error):
                await anyio.to_thread.run_sync(self._write_conn.close)
        self._read_conn = self._write_conn = None

    async def pragmas(self) -> dict[str, Any]:
        """The settings of the write connection, for diagnostics."""

        def read(conn: sqlite3.Connection) -> dict[str, Any]:
            names = ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
            return {name: fetch(conn, f"PRAGMA {name}")[0][0] for name in names}

        return await self._write(read)

    # -- the seam to the writer and the read connection -------------------------------------

    async def _write(self, operation: Operation[T], *, durable: bool = True) -> T:
        if self._writer is None:
            raise StoreError(f"state store {self.path} is not open")
        return await self._writer.write(operation, durable=durable)

    async def _change(self, sql: str, params: Params, missing: str) -> None:
        """Run an UPDATE that must change a row; no such row is the caller's mistake."""

        def change(conn: sqlite3.Connection) -> None:
            if conn.execute(sql, params).rowcount == 0:
                raise StoreError(missing)

        await self._write(change)

    async def _read(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        if self._read_conn is None:
            raise StoreError(f"state store {self.path} is not open")
        try:
            return await _rows(self._read_conn, sql, params)
        except sqlite3.Error as e:
            raise store_error(e, f"state store {self.path}") from e

"""`PostgresStore`: the state store in a PostgreSQL database, which several hosts may share.

Every operation is one transaction on a connection from a pool (asyncpg, asyncio only). Each runs
shielded from cancellation: a cancel in the middle of a transaction would leave the connection in
an aborted transaction (asyncpg does not shield its own clean-up). Shielded calls stay bounded by
the pool's `command_timeout` per statement and the server's `lock_timeout` and `statement_timeout`.

Notes are searched like SQLite's FTS5 searches them: the store splits the text into words itself
(letters and digits, case folded) and writes them as a tsvector with positions, so that
PostgreSQL's own parser and dictionaries never see the text (they would keep `x@y.com` or `3.14`
whole and fold case differently). The query is those same words joined with `&`.

Events are appended under a transaction-scoped advisory lock: identity ids are handed out in
order, but without the lock they could commit out of order, and a reader that follows the log by
`id > last` would skip an event that committed after a higher id it had already read.
"""

from __future__ import annotations

import json
import re
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, TypeVar
from urllib.parse import urlsplit

import anyio
import asyncpg

from clawmcp.errors import StoreError, StoreUnavailable
from clawmcp.store import (
    EVENTS_KEPT,
    Clock,
    Event,
    EventKind,
    Fire,
    FireOutcome,
    HistoryEntry,
    Message,
    MessageKind,
    Note,
    Outgoing,
    Run,
    RunState,
    RunTrigger,
    Schedule,
    Step,
    StepKind,
    Store,
    ToolCall,
    ToolOutcome,
)
from clawmcp.store.schema import load_migrations

__all__ = ["SCHEMA_VERSION", "PostgresStore", "display_url"]

T = TypeVar("T")
if TYPE_CHECKING:
    Connection: TypeAlias = asyncpg.pool.PoolConnectionProxy[asyncpg.Record]
_MIGRATIONS = load_migrations("pg_migrations")
SCHEMA_VERSION = _MIGRATIONS[-1].version
"""The schema version this clawmcp writes: the number of its newest PostgreSQL migration."""

TIMEOUT = 10.0
"""Seconds one statement (or the wait for a connection) may take before the call fails."""

_WORD = re.compile(r"[^\W_]+")
_LEXEME_BYTES = 2046  # PostgreSQL refuses longer lexemes; such a "word" is not searchable anyway
_POSITION_MAX = 16383  # tsvector positions stop here

# SQLSTATE classes of errors that may pass: connection, transaction rollback (deadlock,
# serialization), insufficient resources (disk full), operator intervention (shutdown,
# cancelled by a timeout), object not in prerequisite state (lock not available), system error.
_PASSING = ("08", "40", "53", "55", "57", "58")


def display_url(url: str) -> str:
    """The URL without its password, to name the store in messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def _words(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.casefold()) if len(w.encode()) <= _LEXEME_BYTES]


def _tsvector(text: str) -> str:
    """The note's words with their positions, as a tsvector literal (`'word':1,4 'other':2`)."""
    positions: dict[str, list[str]] = defaultdict(list)
    for n, word in enumerate(_words(text), start=1):
        positions[word].append(str(min(n, _POSITION_MAX)))
    return " ".join(f"'{word}':{','.join(at)}" for word, at in positions.items())


def _message(row: asyncpg.Record | None) -> Message | None:
    return Message(**dict(row)) if row else None


def _run(row: asyncpg.Record | None) -> Run | None:
    return Run(**{k: v for k, v in row.items() if k != "step_count"}) if row else None


def _decoded(row: asyncpg.Record, *json_columns: str) -> dict[str, Any]:
    values = dict(row)
    for column in json_columns:
        values[column] = json.loads(values[column])
    return values


_ENQUEUE = """
    INSERT INTO messages
        (mailbox, content, sender, thread, kind, reply_to, key, available_at, created_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)
    ON CONFLICT (mailbox, key) DO NOTHING
    RETURNING *
"""
_ADD_STEP = """
    WITH n AS (UPDATE runs SET step_count = step_count + 1 WHERE id = $1 RETURNING step_count - 1 AS idx)
    INSERT INTO run_steps (run_id, idx, kind, data, at) SELECT $1, idx, $2, $3, $4 FROM n
    RETURNING run_id, idx AS "index", kind, data, at
"""
_HISTORY = """
    SELECT claw, thread, role, content, run_id, at FROM (
        SELECT * FROM history WHERE claw = $1 AND thread = $2 ORDER BY id DESC LIMIT $3
    ) h
    ORDER BY id
"""
_ADD_HISTORY = "INSERT INTO history (claw, thread, role, content, run_id, at) VALUES ($1, $2, $3, $4, $5, $6)"
_PUT_SCHEDULE = """
    INSERT INTO schedules (claw, name, spec, action, misfire, source, next_fire, created_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
    ON CONFLICT (claw, name) DO UPDATE SET
        spec = excluded.spec, action = excluded.action, misfire = excluded.misfire,
        source = excluded.source, next_fire = excluded.next_fire
    RETURNING *
"""


async def _enqueue(conn: Connection, params: tuple[Any, ...], now: float) -> tuple[Message, bool]:
    """Insert a message (mailbox, content, sender, thread, kind, reply_to, key), or return the one
    already there with its key (a concurrent insert of the key is waited for, then seen)."""
    if row := await conn.fetchrow(_ENQUEUE, *params, now):
        return Message(**dict(row)), True
    mailbox, key = params[0], params[6]
    row = await conn.fetchrow("SELECT * FROM messages WHERE mailbox = $1 AND key = $2", mailbox, key)
    assert row is not None
    return Message(**dict(row)), False


async def _add_step(conn: Connection, run_id: int, kind: StepKind, data: Any, at: float) -> Step:
    row = await conn.fetchrow(_ADD_STEP, run_id, kind, json.dumps(data), at)
    if row is None:
        raise StoreError(f"no run {run_id}")
    return Step(**_decoded(row, "data"))


class PostgresStore(Store):
    """A `Store` in the PostgreSQL database at `url` (`postgresql://USER:PASSWORD@HOST:PORT/DB`;
    `?host=/some/dir` for a Unix socket). Its schema is brought up to date at open, under an
    advisory lock, so that several hosts may open the same database at once."""

    def __init__(self, url: str, *, clock: Clock = time.time, pool_size: int = 10) -> None:
        self.url = url
        self.name = display_url(url)
        self._clock = clock
        self._pool_size = pool_size
        self._pool: asyncpg.Pool[asyncpg.Record] | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect, bring the schema up to date."""
        if self._pool is not None:
            raise StoreError(f"state store {self.name} is already open")
        with anyio.CancelScope(shield=True):
            try:
                pool = await asyncpg.create_pool(
                    self.url,
                    min_size=1,
                    max_size=self._pool_size,
                    command_timeout=TIMEOUT,
                    timeout=TIMEOUT,
                    server_settings={
                        "application_name": "clawmcp",
                        "lock_timeout": f"{int(TIMEOUT * 500)}ms",
                        "statement_timeout": f"{int(TIMEOUT * 1000)}ms",
                        "idle_in_transaction_session_timeout": f"{int(TIMEOUT * 3000)}ms",
                    },
                )
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as e:
                raise StoreError(f"cannot open state store {self.name}: {e}") from e
            self._pool = pool
            try:
                await self._migrate()
            except BaseException:
                await self.close()
                raise

    async def close(self) -> None:
        """Wait for the calls in progress (each bounded), then close every connection."""
        pool, self._pool = self._pool, None
        if pool is not None:
            with anyio.CancelScope(shield=True), anyio.move_on_after(TIMEOUT) as waited:
                await pool.close()
            if waited.cancelled_caught:
                pool.terminate()

    async def _migrate(self) -> None:
        async def migrate(conn: Connection) -> None:
            # A session lock: hosts that start together apply each migration once, in turn.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('clawmcp:migrate'))")
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations"
                " (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            version = await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_migrations")
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.name} has schema version {version} but this clawmcp knows only up to "
                    f"{SCHEMA_VERSION}; upgrade clawmcp to open it"
                )
            for m in _MIGRATIONS:
                if m.version > version:
                    try:
                        await conn.execute(m.sql)
                    except asyncpg.PostgresError as e:
                        raise StoreError(f"{self.name}: migration {m.file} failed: {e}") from e
                    await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", m.version)

        await self._transaction(migrate)

    # -- the one way to the database ------------------------------------------------------------

    async def _transaction(self, operation: Callable[[Connection], Awaitable[T]]) -> T:
        """Run `operation` in one transaction, shielded from cancellation."""
        if self._pool is None:
            raise StoreError(f"state store {self.name} is not open")
        pool = self._pool
        with anyio.CancelScope(shield=True):
            try:
                async with pool.acquire(timeout=TIMEOUT) as conn, conn.transaction():
                    result = await operation(conn)
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as e:
                state = getattr(e, "sqlstate", None) or ""
                passing = not isinstance(e, asyncpg.PostgresError) or state[:2] in _PASSING
                raise (StoreUnavailable if passing else StoreError)(f"state store {self.name}: {e}") from e
        return result

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        return await self._transaction(lambda conn: conn.fetch(sql, *args))

    async def _fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        return await self._transaction(lambda conn: conn.fetchrow(sql, *args))

    async def _change(self, sql: str, args: Sequence[Any], missing: str) -> None:
        """Run an UPDATE that must change a row; no such row is the caller's mistake."""
        if await self._fetchrow(f"{sql} RETURNING 1", *args) is None:
            raise StoreError(missing)

    # -- mailboxes and messages -----------------------------------------------------------------

    async def enqueue(
        self,
        mailbox: str,
        content: str,
        *,
        sender: str | None = None,
        thread: str = "default",
        kind: MessageKind = "message",
        reply_to: int | None = None,
        key: str | None = None,
    ) -> tuple[Message, bool]:
        params = (mailbox, content, sender, thread, kind, reply_to, key)
        return await self._transaction(lambda conn: _enqueue(conn, params, self._clock()))

    async def claim(self, mailbox: str) -> Message | None:
        sql = """
            UPDATE messages SET state = 'running', attempts = attempts + 1
            WHERE id = (
                SELECT id FROM messages
                WHERE mailbox = $1 AND state = 'queued' AND available_at <= $2
                ORDER BY id LIMIT 1
                FOR UPDATE SKIP LOCKED
            )
            RETURNING *
        """
        return _message(await self._fetchrow(sql, mailbox, self._clock()))

    async def ack(self, message_id: int) -> None:
        sql = "UPDATE messages SET state = 'done' WHERE id = $1"
        await self._change(sql, (message_id,), f"no message {message_id}")

    async def nack(self, message_id: int, error: str, *, retry_at: float | None) -> None:
        sql = """
            UPDATE messages
            SET state = CASE WHEN $3::float8 IS NULL THEN 'dead' ELSE 'queued' END,
                available_at = coalesce($3, available_at),
                last_error = $2
            WHERE id = $1
        """
        await self._change(sql, (message_id, error, retry_at), f"no message {message_id}")

    async def get_message(self, message_id: int) -> Message | None:
        return _message(await self._fetchrow("SELECT * FROM messages WHERE id = $1", message_id))

    async def depth(self, mailbox: str) -> int:
        sql = "SELECT count(*) FROM messages WHERE mailbox = $1 AND state IN ('queued', 'running')"
        return int(await self._transaction(lambda conn: conn.fetchval(sql, mailbox)))

    async def dead_letters(self, mailbox: str | None = None) -> list[Message]:
        sql = """
            SELECT * FROM messages WHERE ($1::text IS NULL OR mailbox = $1) AND state = 'dead' ORDER BY id
        """
        return [Message(**dict(row)) for row in await self._fetch(sql, mailbox)]

    async def settle_dead(self, message_id: int, action: Literal["retry", "discard"]) -> Message:
        sql = """
            UPDATE messages
            SET state = CASE WHEN $2 THEN 'queued' ELSE 'discarded' END,
                attempts = CASE WHEN $2 THEN 0 ELSE attempts END,
                available_at = CASE WHEN $2 THEN $3 ELSE available_at END
            WHERE id = $1 AND state = 'dead'
            RETURNING *
        """
        message = _message(await self._fetchrow(sql, message_id, action == "retry", self._clock()))
        if message is None:
            raise StoreError(f"message {message_id} is not a dead letter")
        return message

    async def mailboxes(self) -> dict[str, tuple[int, int]]:
        sql = """
            SELECT mailbox, count(*) FILTER (WHERE state IN ('queued', 'running')) AS open,
                count(*) FILTER (WHERE state = 'dead') AS dead
            FROM messages WHERE state <> 'done' GROUP BY mailbox
        """
        return {row["mailbox"]: (row["open"], row["dead"]) for row in await self._fetch(sql)}

    async def requeue_running(self, mailbox: str | None = None) -> int:
        sql = """
            UPDATE messages SET state = 'queued'
            WHERE state = 'running' AND ($1::text IS NULL OR mailbox = $1) RETURNING id
        """
        return len(await self._fetch(sql, mailbox))

    # -- runs and their steps -------------------------------------------------------------------

    async def start_run(
        self,
        claw: str,
        thread: str,
        trigger: RunTrigger,
        input: str,
        *,
        message_id: int | None = None,
        parent_run_id: int | None = None,
        history: int = 0,
    ) -> tuple[Run, list[HistoryEntry]]:
        sql = """
            INSERT INTO runs (claw, thread, trigger, input, message_id, parent_run_id, started_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7)
            RETURNING *
        """
        params = (claw, thread, trigger, input, message_id, parent_run_id, self._clock())

        async def start(conn: Connection) -> tuple[Run, list[HistoryEntry]]:
            context = await conn.fetch(_HISTORY, claw, thread, history) if history > 0 else []
            run = _run(await conn.fetchrow(sql, *params))
            assert run is not None
            return run, [HistoryEntry(**_decoded(h, "content")) for h in context]

        return await self._transaction(start)

    async def add_step(self, run_id: int, kind: StepKind, data: Any) -> Step:
        now = self._clock()
        return await self._transaction(lambda conn: _add_step(conn, run_id, kind, data, now))

    async def finish_run(
        self,
        run_id: int,
        state: RunState,
        *,
        reply: str | None = None,
        error: str | None = None,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        step: tuple[StepKind, Any] | None = None,
        history: Sequence[tuple[str, Any]] = (),
        ack: bool = False,
    ) -> Run:
        now = self._clock()
        finish = """
            UPDATE runs
            SET state = $1, reply = $2, error = $3, input_tokens = $4, output_tokens = $5, ended_at = $6
            WHERE id = $7
            RETURNING *
        """
        params = (state, reply, error, input_tokens, output_tokens, now, run_id)

        async def write(conn: Connection) -> Run:
            run = _run(await conn.fetchrow(finish, *params))
            if run is None:
                raise StoreError(f"no run {run_id}")
            if step is not None:
                await _add_step(conn, run_id, step[0], step[1], now)
            await conn.executemany(
                _ADD_HISTORY,
                [(run.claw, run.thread, role, json.dumps(content), run_id, now) for role, content in history],
            )
            if ack and run.message_id is not None:
                await conn.execute("UPDATE messages SET state = 'done' WHERE id = $1", run.message_id)
            return run

        return await self._transaction(write)

    async def get_run(self, run_id: int) -> Run | None:
        return _run(await self._fetchrow("SELECT * FROM runs WHERE id = $1", run_id))

    async def message_run(self, message_id: int) -> Run | None:
        sql = "SELECT * FROM runs WHERE message_id = $1 ORDER BY id DESC LIMIT 1"
        return _run(await self._fetchrow(sql, message_id))

    async def steps(self, run_id: int) -> list[Step]:
        sql = 'SELECT run_id, idx AS "index", kind, data, at FROM run_steps WHERE run_id = $1 ORDER BY idx'
        return [Step(**_decoded(row, "data")) for row in await self._fetch(sql, run_id)]

    async def runs(self, claw: str | None = None, limit: int = 20) -> list[Run]:
        sql = "SELECT * FROM runs WHERE ($1::text IS NULL OR claw = $1) ORDER BY id DESC LIMIT $2"
        return [r for row in await self._fetch(sql, claw, limit) if (r := _run(row))]

    async def interrupt_running(self, claw: str | None = None) -> int:
        sql = """
            UPDATE runs SET state = 'interrupted', ended_at = $1
            WHERE state = 'running' AND ($2::text IS NULL OR claw = $2) RETURNING id
        """
        return len(await self._fetch(sql, self._clock(), claw))

    # -- thread history -------------------------------------------------------------------------

    async def history(self, claw: str, thread: str, limit: int) -> list[HistoryEntry]:
        rows = await self._fetch(_HISTORY, claw, thread, limit)
        return [HistoryEntry(**_decoded(row, "content")) for row in rows]

    async def threads(self, claw: str) -> list[str]:
        sql = "SELECT DISTINCT thread FROM history WHERE claw = $1 ORDER BY thread"
        return [row["thread"] for row in await self._fetch(sql, claw)]

    # -- memory notes ---------------------------------------------------------------------------

    async def remember(self, claw: str, text: str, key: str | None = None) -> Note:
        sql = """
            INSERT INTO notes (claw, key, text, words, at) VALUES ($1, $2, $3, $4::tsvector, $5)
            ON CONFLICT (claw, key) DO UPDATE
                SET text = excluded.text, words = excluded.words, at = excluded.at
            RETURNING id, claw, key, text, at
        """
        row = await self._fetchrow(sql, claw, key, text, _tsvector(text), self._clock())
        assert row is not None
        return Note(**dict(row))

    async def recall(self, claw: str, query: str, limit: int = 5) -> list[Note]:
        # The share of the note's words that are query words ranks it, as in MemoryStore.
        words = sorted(set(_words(query)))
        if not words:
            return []
        sql = """
            SELECT id, claw, key, text, at FROM notes
            WHERE claw = $1 AND words @@ $2::tsquery
            ORDER BY (
                SELECT sum(cardinality(positions) * (lexeme = ANY($3))::int)::float8
                    / sum(cardinality(positions))
                FROM unnest(words)
            ) DESC, id DESC
            LIMIT $4
        """
        tsquery = " & ".join(f"'{w}'" for w in words)
        return [Note(**dict(row)) for row in await self._fetch(sql, claw, tsquery, words, limit)]

    async def notes(self, claw: str, limit: int = 100) -> list[Note]:
        sql = "SELECT id, claw, key, text, at FROM notes WHERE claw = $1 ORDER BY at DESC, id DESC LIMIT $2"
        return [Note(**dict(row)) for row in await self._fetch(sql, claw, limit)]

    # -- schedules and fires --------------------------------------------------------------------

    async def put_schedule(
        self,
        claw: str,
        name: str,
        *,
        spec: dict[str, Any],
        action: dict[str, Any],
        misfire: str,
        source: Literal["manifest", "runtime"],
        next_fire: float | None,
        created_at: float | None = None,
    ) -> Schedule:
        created = self._clock() if created_at is None else created_at
        params = (claw, name, json.dumps(spec), json.dumps(action), misfire, source, next_fire, created)
        row = await self._fetchrow(_PUT_SCHEDULE, *params)
        assert row is not None
        return Schedule(**_decoded(row, "spec", "action"))

    async def put_schedules(self, schedules: Sequence[Schedule]) -> None:
        rows = [
            (
                x.claw,
                x.name,
                json.dumps(x.spec),
                json.dumps(x.action),
                x.misfire,
                x.source,
                x.next_fire,
                x.created_at,
            )
            for x in schedules
        ]
        await self._transaction(lambda conn: conn.executemany(_PUT_SCHEDULE, rows))

    async def delete_schedule(self, schedule_id: int) -> bool:
        sql = "DELETE FROM schedules WHERE id = $1 RETURNING id"
        return await self._fetchrow(sql, schedule_id) is not None

    async def schedules(self, claw: str | None = None) -> list[Schedule]:
        sql = "SELECT * FROM schedules WHERE ($1::text IS NULL OR claw = $1) ORDER BY claw, name"
        return [Schedule(**_decoded(row, "spec", "action")) for row in await self._fetch(sql, claw)]

    async def set_next_fire(self, schedule_id: int, next_fire: float | None) -> None:
        sql = "UPDATE schedules SET next_fire = $2 WHERE id = $1"
        await self._change(sql, (schedule_id, next_fire), f"no schedule {schedule_id}")

    async def claim_fire(
        self,
        schedule_id: int,
        slot: float,
        *,
        next_fire: float | None,
        message: Outgoing | None = None,
        outcome: FireOutcome = "running",
        merge: bool = False,
    ) -> bool:
        now = self._clock()
        moved = "UPDATE schedules SET next_fire = $2 WHERE id = $1 RETURNING id"
        waiting = """
            SELECT 1 FROM messages
            WHERE mailbox = $1 AND state = 'queued' AND kind = 'fire' AND key LIKE $2 LIMIT 1
        """
        fire = """
            INSERT INTO fires (schedule_id, slot, outcome, fired_at) VALUES ($1, $2, $3, $4)
            ON CONFLICT DO NOTHING RETURNING slot
        """

        async def claim(conn: Connection) -> bool:
            nonlocal message, outcome
            if await conn.fetchrow(moved, schedule_id, next_fire) is None:
                raise StoreError(f"no schedule {schedule_id}")
            if (
                merge
                and message
                and await conn.fetchrow(waiting, message.mailbox, f"schedule:{schedule_id}:%")
            ):
                message, outcome = None, "merged"
            if await conn.fetchrow(fire, schedule_id, slot, outcome, now) is None:
                return False
            if message:
                m = message
                await _enqueue(conn, (m.mailbox, m.content, m.sender, m.thread, m.kind, None, m.key), now)
            return True

        return await self._transaction(claim)

    async def finish_fire(
        self,
        schedule_id: int,
        slot: float,
        outcome: FireOutcome,
        *,
        run_id: int | None = None,
        error: str | None = None,
        ack: int | None = None,
    ) -> None:
        sql = """
            UPDATE fires SET outcome = $3, run_id = $4, error = $5 WHERE schedule_id = $1 AND slot = $2
            RETURNING 1
        """

        async def finish(conn: Connection) -> None:
            if await conn.fetchrow(sql, schedule_id, slot, outcome, run_id, error) is None:
                raise StoreError(f"no fire of schedule {schedule_id} at slot {slot}")
            if ack is not None:
                await conn.execute("UPDATE messages SET state = 'done' WHERE id = $1", ack)

        await self._transaction(finish)

    async def fires(self, schedule_id: int, limit: int = 20) -> list[Fire]:
        sql = "SELECT * FROM fires WHERE schedule_id = $1 ORDER BY slot DESC LIMIT $2"
        return [Fire(**dict(row)) for row in await self._fetch(sql, schedule_id, limit)]

    # -- tool-call audit ------------------------------------------------------------------------

    async def record_tool_call(
        self,
        claw: str,
        tool: str,
        *,
        args_bytes: int,
        duration: float,
        outcome: ToolOutcome,
        error: str | None = None,
        run_id: int | None = None,
    ) -> None:
        sql = """
            INSERT INTO tool_calls (claw, tool, run_id, args_bytes, duration, outcome, error, at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
        """
        params = (claw, tool, run_id, args_bytes, duration, outcome, error, self._clock())
        await self._transaction(lambda conn: conn.execute(sql, *params))

    async def tool_calls(self, claw: str | None = None, limit: int = 50) -> list[ToolCall]:
        sql = "SELECT * FROM tool_calls WHERE ($1::text IS NULL OR claw = $1) ORDER BY id DESC LIMIT $2"
        return [ToolCall(**dict(row)) for row in await self._fetch(sql, claw, limit)]

    # -- activity log ---------------------------------------------------------------------------

    async def add_events(
        self, events: Sequence[tuple[float, EventKind, str | None, dict[str, Any]]]
    ) -> list[Event]:
        sql = """
            INSERT INTO events (at, kind, claw, data)
            SELECT * FROM unnest($1::float8[], $2::text[], $3::text[], $4::text[])
            RETURNING id
        """
        columns = [list(column) for column in zip(*events, strict=True)] or [[], [], [], []]
        columns[3] = [json.dumps(data) for data in columns[3]]

        async def add(conn: Connection) -> list[Event]:
            # One appender at a time, so ids commit in order (the module's docstring says why).
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('clawmcp:events'))")
            ids = sorted(row["id"] for row in await conn.fetch(sql, *columns))
            if ids:
                await conn.execute("DELETE FROM events WHERE id <= $1", ids[-1] - EVENTS_KEPT)
            return [
                Event(i, at, kind, claw, data) for i, (at, kind, claw, data) in zip(ids, events, strict=True)
            ]

        return await self._transaction(add)

    async def events(self, claw: str | None = None, *, after: int = 0, limit: int = 100) -> list[Event]:
        sql = """
            SELECT * FROM events WHERE id > $1 AND ($2::text IS NULL OR claw = $2) ORDER BY id DESC LIMIT $3
        """
        return [
            Event(**_decoded(row, "data")) for row in reversed(await self._fetch(sql, after, claw, limit))
        ]

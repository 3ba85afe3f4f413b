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

import dataclasses
import json
import logging
import re
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, TypeVar
from urllib.parse import urlsplit

import anyio
import asyncpg
from anyio.abc import TaskStatus

from clawmcp.errors import LeaseLost, StoreError, StoreUnavailable, UserError
from clawmcp.store import (
    EVENTS_KEPT,
    Approval,
    ApprovalKind,
    ApprovalState,
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
    Pin,
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
log = logging.getLogger("clawmcp")
if TYPE_CHECKING:
    Connection: TypeAlias = asyncpg.pool.PoolConnectionProxy[asyncpg.Record]
_MIGRATIONS = load_migrations("pg_migrations")
SCHEMA_VERSION = _MIGRATIONS[-1].version
"""The schema version this clawmcp writes: the number of its newest PostgreSQL migration."""

CHANNELS = (
    "clawmcp_mailbox",
    "clawmcp_done",
    "clawmcp_leases",
    "clawmcp_schedules",
    "clawmcp_events",
    "clawmcp_reload",
)
"""What a host hears from the others: a mailbox has a message (payload: the Claw), an ask is
answered (the message id), a lease is free, a Claw's schedules changed (the Claw), events were
appended (the last id), a host reloaded its manifests (its name)."""
PROBE = 10.0
"""Seconds between probes of the connection that listens for notifications."""
ENQUEUE_BATCH = 1000
"""At most this many enqueues share a commit."""
TIMEOUT = 10.0
"""Seconds one statement (or the wait for a connection) may take before the call fails."""

_WORD = re.compile(r"[^\W_]+")
_LEXEME_BYTES = 2046  # PostgreSQL refuses longer lexemes; such a "word" is not searchable anyway
_POSITION_MAX = 16383  # tsvector positions stop here

# SQLSTATE classes of errors that may pass: connection, transaction rollback (deadlock,
# serialization), insufficient resources (disk full), operator intervention (shutdown,
# cancelled by a timeout), object not in prerequisite state (lock not available), system error.
_PASSING = ("08", "40", "53", "55", "57", "58")


async def _keep(conn: asyncpg.Connection[asyncpg.Record]) -> None:
    """A connection goes back to the pool as it is (instead of a RESET ALL round trip each time)."""


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


_MESSAGE_FIELDS = {f.name for f in dataclasses.fields(Message)}


def _message(row: asyncpg.Record | None) -> Message | None:
    if row is None:
        return None
    values = {k: v for k, v in row.items() if k in _MESSAGE_FIELDS}
    return Message(**values | {"chain": tuple(row["chain"])})


def _run(row: asyncpg.Record | None) -> Run | None:
    return Run(**{k: v for k, v in row.items() if k != "step_count"}) if row else None


def _decoded(row: asyncpg.Record, *json_columns: str) -> dict[str, Any]:
    values = dict(row)
    for column in json_columns:
        values[column] = json.loads(values[column])
    return values


def _approval(row: asyncpg.Record) -> Approval:
    return Approval(**_decoded(row, "arguments", "content"))


_HOST_LOCK = "SELECT pg_try_advisory_lock(hashtextextended('clawmcp:host:' || $1, 0))"
_FENCE = """
    SELECT 1 FROM claw_leases l JOIN hosts h ON h.id = l.host
    WHERE l.claw = $1 AND l.host = $2 AND l.epoch = $3 AND h.expires_at > now()
    FOR SHARE OF l
"""
_MESSAGE_CLAW = "SELECT mailbox FROM messages WHERE id = $1"
_CLAIM = """
    WITH lazy AS (  -- not worth an fsync: a claim lost to a crash of the database just gives the message back
        SELECT set_config('synchronous_commit', 'off', true)
    ), lease AS (
        SELECT 1 FROM claw_leases l JOIN hosts h ON h.id = l.host
        WHERE l.claw = $1 AND l.host = $3 AND l.epoch = $4 AND h.expires_at > now()
        FOR SHARE OF l
    )
    UPDATE messages SET state = 'running', attempts = attempts + 1, epoch = $4
    WHERE id = (
        SELECT id FROM messages
        WHERE mailbox = $1 AND state = 'queued' AND available_at <= $2 AND thread NOT IN (
            SELECT thread FROM messages WHERE mailbox = $1 AND state = 'running'  -- once, not per row
        )
        ORDER BY id LIMIT 1
        FOR UPDATE SKIP LOCKED
    ) AND ($3::uuid IS NULL OR EXISTS (SELECT 1 FROM lease)) AND EXISTS (SELECT 1 FROM lazy)
    RETURNING *
"""
_SETTLE = """
    WITH lease AS (
        SELECT 1 FROM messages m
            JOIN claw_leases l ON l.claw = m.mailbox AND l.epoch = m.epoch
            JOIN hosts h ON h.id = l.host
        WHERE m.id = $1 AND l.host = $2 AND h.expires_at > now()
        FOR SHARE OF l
    ), settled AS (
        UPDATE messages SET {update}
        WHERE id = $1 AND ($2::uuid IS NULL OR EXISTS (SELECT 1 FROM lease))
        RETURNING kind, state
    ), answered AS (  -- the host where the ask waits hears of it
        SELECT pg_notify('clawmcp_done', $1::text) FROM settled
        WHERE kind = 'ask' AND state IN ('done', 'dead')
    )
    SELECT (SELECT count(*) FROM answered) FROM settled
"""
_RUN_CLAW = "SELECT claw FROM runs WHERE id = $1"
# After a crash, of these Claws ($1; NULL: all): their runs left running, and those left waiting
# that no message holds (a direct ask's, whose asker is gone), are interrupted, their pending
# approvals expired. How many runs.
_INTERRUPT = """
    WITH ended AS (
        UPDATE runs SET state = 'interrupted', ended_at = $2
        WHERE (state = 'running' OR (state = 'waiting' AND message_id IS NULL))
            AND ($1::text[] IS NULL OR claw = ANY($1::text[]))
        RETURNING id
    ), expired AS (
        UPDATE approvals SET state = 'expired', note = 'the run was interrupted', decided_at = $2
        WHERE state = 'pending' AND run_id IN (SELECT id FROM ended)
    )
    SELECT count(*) FROM ended
"""
_SCHEDULE_CLAW = "SELECT claw FROM schedules WHERE id = $1"
# An ask answered (done, dead or cancelled): the host where it is asked hears of it.
_ANSWERED = """
    SELECT pg_notify('clawmcp_done', id::text) FROM messages
    WHERE id = $1 AND kind = 'ask' AND state IN ('done', 'dead', 'cancelled')
"""
# A person cancels a message: its run waiting for a person ends cancelled ($1: now, $2: message)
# and its pending approvals are withdrawn ($1: now, $2: the run).
_CANCEL_WAITING = """
    UPDATE runs SET state = 'cancelled', error = 'cancelled by a person', ended_at = $1
    WHERE id = (SELECT max(id) FROM runs WHERE message_id = $2) AND state = 'waiting'
    RETURNING *
"""
_WITHDRAW = """
    UPDATE approvals SET state = 'withdrawn', note = 'the message was cancelled', decided_at = $1
    WHERE run_id = $2 AND state = 'pending'
"""
# Many messages in one statement: each row of the batch (by its ordinality n) comes back with the
# message made for it, or none where its key was used already (read with _KEYED). The mailboxes of
# the new messages that this host does not run ($10) hear of them.
_ENQUEUE_MANY = """
    WITH batch AS (
        SELECT nextval(pg_get_serial_sequence('messages', 'id')) AS i, t.*
        FROM unnest(
            $1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::text[], $8::text[]
        ) WITH ORDINALITY AS t (mb, ct, se, th, ki, re, ke, ch, n)
    ), made AS (
        INSERT INTO messages
            (id, mailbox, content, sender, thread, kind, reply_to, key, chain, available_at, created_at)
        OVERRIDING SYSTEM VALUE
        SELECT i, mb, ct, se, th, ki, re, ke, ARRAY(SELECT json_array_elements_text(ch::json)), $9, $9
        FROM batch ORDER BY i
        ON CONFLICT (mailbox, key) DO NOTHING
        RETURNING *
    ), announced AS (
        SELECT pg_notify('clawmcp_mailbox', mailbox)
        FROM (SELECT DISTINCT mailbox FROM made) d WHERE mailbox <> ALL($10::text[])
    )
    SELECT made.*, (SELECT count(*) FROM announced) AS announced
    FROM batch LEFT JOIN made ON made.id = batch.i ORDER BY batch.n
"""
_KEYED = """
    SELECT m.* FROM messages m JOIN unnest($1::text[], $2::text[]) AS u (mailbox, key)
        ON m.mailbox = u.mailbox AND m.key = u.key
"""
_ENQUEUE = """
    INSERT INTO messages
        (mailbox, content, sender, thread, kind, reply_to, key, chain, available_at, created_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)
    ON CONFLICT (mailbox, key) DO NOTHING
    RETURNING *
"""
_ADD_STEP = """
    WITH n AS (UPDATE runs SET step_count = step_count + 1 WHERE id = $1 RETURNING step_count - 1 AS idx)
    INSERT INTO run_steps (run_id, idx, kind, data, at) SELECT $1, idx, $2, $3, $4 FROM n
    RETURNING run_id, idx AS "index", kind, data, at
"""
_HISTORY = """
    SELECT id, claw, thread, role, content, run_id, at FROM (
        SELECT * FROM history WHERE claw = $1 AND thread = $2 ORDER BY id DESC LIMIT $3
    ) h
    ORDER BY id
"""
_CONTEXT = """
    WITH summary AS (
        SELECT * FROM history WHERE claw = $1 AND thread = $2 AND role = 'summary'
        ORDER BY id DESC LIMIT 1
    )
    SELECT id, claw, thread, role, content, run_id, at FROM (
        SELECT 0 AS part, * FROM summary
        UNION ALL
        (
            SELECT 1 AS part, * FROM history
            WHERE claw = $1 AND thread = $2 AND role <> 'summary'
                AND id > coalesce((SELECT (content::jsonb ->> 'through')::bigint FROM summary), 0)
            ORDER BY id DESC LIMIT $3
        )
    ) h
    ORDER BY part, id
"""
_ADD_HISTORY = "INSERT INTO history (claw, thread, role, content, run_id, at) VALUES ($1, $2, $3, $4, $5, $6)"
_ADD_SUMMARY = """
    INSERT INTO history (claw, thread, role, content, run_id, at) VALUES ($1, $2, 'summary', $3, $4, $5)
    RETURNING *
"""
_PUT_SCHEDULE = """
    INSERT INTO schedules (claw, name, spec, action, misfire, source, next_fire, created_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
    ON CONFLICT (claw, name) DO UPDATE SET
        spec = excluded.spec, action = excluded.action, misfire = excluded.misfire,
        source = excluded.source, next_fire = excluded.next_fire
    RETURNING *
"""


@dataclass
class _Enqueue:
    """One enqueue waiting to be committed with others (`PostgresStore.enqueue`)."""

    params: tuple[Any, ...]  # mailbox, content, sender, thread, kind, reply_to, key, chain as JSON
    done: anyio.Event = field(default_factory=anyio.Event)
    result: tuple[Message, bool] | None = None
    error: StoreError | None = None


async def _enqueue(conn: Connection, params: tuple[Any, ...], now: float) -> tuple[Message, bool]:
    """Insert a message (mailbox, content, sender, thread, kind, reply_to, key, chain), or return
    the one already there with its key (a concurrent insert of the key is waited for, then seen)."""
    if message := _message(await conn.fetchrow(_ENQUEUE, *params, now)):
        return message, True
    mailbox, key = params[0], params[6]
    sql = "SELECT * FROM messages WHERE mailbox = $1 AND key = $2"
    message = _message(await conn.fetchrow(sql, mailbox, key))
    assert message is not None
    return message, False


async def _add_step(conn: Connection, run_id: int, kind: StepKind, data: Any, at: float) -> Step:
    """Number the step under the run's row lock: steps added at once never collide."""
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
        self._enqueues: list[_Enqueue] = []
        self._committing: anyio.Event | None = None  # set when the batch being committed is
        self.host: str | None = None
        self.host_name = ""
        """This host's id once it has joined the hosts of the store: from then on, the writes
        for a Claw commit only while this host holds the Claw's lease (`_fence`)."""
        self.epochs: dict[str, int] = {}
        """The leases this host holds: Claw -> epoch."""

    # -- lifecycle ------------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect, bring the schema up to date."""
        if self._pool is not None:
            raise StoreError(f"state store {self.name} is already open")
        with anyio.CancelScope(shield=True):
            try:
                pool = await asyncpg.create_pool(
                    self.url,
                    reset=_keep,  # the store keeps no session state: nothing to reset
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

    async def _transaction(
        self, operation: Callable[[Connection], Awaitable[T]], *, statement: bool = False
    ) -> T:
        """Run `operation` in one transaction, shielded from cancellation. A single `statement` is
        its own transaction: no BEGIN and COMMIT to wait for."""
        if self._pool is None:
            raise StoreError(f"state store {self.name} is not open")
        pool = self._pool
        with anyio.CancelScope(shield=True):
            try:
                async with pool.acquire(timeout=TIMEOUT) as conn:
                    if statement:
                        result = await operation(conn)
                    else:
                        async with conn.transaction():
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

    async def _fence(self, conn: Connection, claw: str | None) -> None:
        """Refuse (`LeaseLost`) a write for `claw` unless this host holds its lease, alive by the
        database's clock. The lease row stays share-locked until the write commits, so no other
        host can take the Claw in between: a write of a host that lost its Claw never commits."""
        if self.host is None or claw is None:
            return
        epoch = self.epochs.get(claw)
        if epoch is None or await conn.fetchval(_FENCE, claw, self.host, epoch) is None:
            raise LeaseLost(f"this host no longer owns Claw '{claw}'")

    async def _fence_row(self, conn: Connection, sql: str, row_id: int, missing: str) -> None:
        """`_fence` for the Claw of a row found by `sql` (its id as $1); `missing` if none."""
        claw = await conn.fetchval(sql, row_id)
        if claw is None:
            raise StoreError(missing)
        await self._fence(conn, claw)

    async def _announce(self, conn: Connection, *mailboxes: str) -> None:
        """Wake the mailboxes' consumers on whichever hosts own them (on this one, the caller does)."""
        if elsewhere := sorted({m for m in mailboxes if m not in self.epochs}):
            await conn.execute("SELECT pg_notify('clawmcp_mailbox', m) FROM unnest($1::text[]) m", elsewhere)

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
        chain: Sequence[str] = (),
    ) -> tuple[Message, bool]:
        if self._pool is None:
            raise StoreError(f"state store {self.name} is not open")
        item = _Enqueue((mailbox, content, sender, thread, kind, reply_to, key, json.dumps(list(chain))))
        self._enqueues.append(item)
        with anyio.CancelScope(shield=True):  # committed once asked for, as every call is
            while not item.done.is_set():
                if self._committing is None:  # this caller commits what is waiting, its own too
                    self._committing = anyio.Event()
                    batch, self._enqueues = self._enqueues[:ENQUEUE_BATCH], self._enqueues[ENQUEUE_BATCH:]
                    try:
                        await self._enqueue_all(batch)
                    finally:
                        committed, self._committing = self._committing, None
                        committed.set()
                else:
                    await self._committing.wait()
        if item.error is not None:
            raise item.error
        assert item.result is not None
        return item.result

    async def _enqueue_all(self, batch: list[_Enqueue]) -> None:
        """Commit many enqueues in one statement (and a second one to read the messages of keys
        already used), each item's result or error set. When the batch fails for one bad item,
        each is tried alone."""
        now = self._clock()

        async def insert(conn: Connection) -> list[tuple[Message, bool]]:
            columns = [list(column) for column in zip(*(item.params for item in batch), strict=True)]
            rows = await conn.fetch(_ENQUEUE_MANY, *columns, now, list(self.epochs))
            made = [_message(row) if row["id"] is not None else None for row in rows]
            if keys := [(i.params[0], i.params[6]) for i, m in zip(batch, made, strict=True) if m is None]:
                pairs = [list(column) for column in zip(*keys, strict=True)]  # keys used before
                found = {
                    (m.mailbox, m.key): m for row in await conn.fetch(_KEYED, *pairs) if (m := _message(row))
                }
                return [
                    (m, True) if m else (found[(i.params[0], i.params[6])], False)
                    for i, m in zip(batch, made, strict=True)
                ]
            return [(m, True) for m in made if m]

        try:
            results = await self._transaction(insert, statement=True)
        except StoreError as e:
            if len(batch) > 1 and not isinstance(e, StoreUnavailable):
                for item in batch:
                    await self._enqueue_all([item])
                return
            for item in batch:
                item.error = e
                item.done.set()
            return
        for item, result in zip(batch, results, strict=True):
            item.result = result
            item.done.set()

    # Claiming and settling are the consumer's every message: one statement each, with the fence
    # (the `lease` CTE) inside it. The claim records the epoch it was made under; the message is
    # settled only under the same one.

    async def enqueue_claimed(self, mailbox: str, content: str, *, thread: str = "default") -> Message:
        sql = """
            INSERT INTO messages
                (mailbox, content, thread, kind, state, attempts, epoch, available_at, created_at)
            VALUES ($1, $2, $3, 'ask', 'running', 1, $4, $5, $5)
            RETURNING *
        """

        async def insert(conn: Connection) -> Message:
            await self._fence(conn, mailbox)
            message = _message(
                await conn.fetchrow(sql, mailbox, content, thread, self.epochs.get(mailbox), self._clock())
            )
            assert message is not None
            return message

        return await self._transaction(insert)

    async def cancel(self, message_id: int) -> tuple[Message, Run | None]:
        cancel = """
            UPDATE messages SET state = 'cancelled' WHERE id = $1 AND state IN ('queued', 'running')
            RETURNING *
        """
        latest = "SELECT * FROM runs WHERE message_id = $1 ORDER BY id DESC LIMIT 1"
        now = self._clock()

        async def write(conn: Connection) -> tuple[Message, Run | None]:
            message = _message(await conn.fetchrow(cancel, message_id))
            if message is None:
                found = await conn.fetchval("SELECT state FROM messages WHERE id = $1", message_id)
                raise StoreError(
                    f"message {message_id} is {found} already" if found else f"no message {message_id}"
                )
            run = _run(await conn.fetchrow(_CANCEL_WAITING, now, message_id))
            if run is not None:
                await conn.execute(_WITHDRAW, now, run.id)
            else:
                run = _run(await conn.fetchrow(latest, message_id))
            await conn.execute(_ANSWERED, message_id)
            await self._announce(conn, message.mailbox)  # its host stops its run
            return message, run

        return await self._transaction(write)

    async def claim(self, mailbox: str) -> Message | None:
        epoch = self.epochs.get(mailbox)
        if self.host is not None and epoch is None:
            raise LeaseLost(f"this host no longer owns Claw '{mailbox}'")
        params = (mailbox, self._clock(), self.host, epoch)
        message = _message(await self._transaction(lambda c: c.fetchrow(_CLAIM, *params), statement=True))
        if message is None and self.host is not None:  # the mailbox is empty, or no longer ours
            await self._transaction(lambda conn: self._fence(conn, mailbox))
        return message

    async def ack(self, message_id: int) -> None:
        await self._settle(message_id, "state = CASE WHEN state = 'cancelled' THEN state ELSE 'done' END")

    async def nack(self, message_id: int, error: str, *, retry_at: float | None) -> None:
        update = """
            state = CASE WHEN state = 'cancelled' THEN state WHEN $4::float8 IS NULL THEN 'dead'
                ELSE 'queued' END,
            available_at = coalesce($4, available_at),
            last_error = $3
        """
        await self._settle(message_id, update, error, retry_at)

    async def _settle(self, message_id: int, update: str, *args: Any) -> None:
        """Ack or nack a message of a Claw this host owns; an answered ask is announced."""
        sql = _SETTLE.replace("{update}", update)
        params = (message_id, self.host, *args)
        if await self._transaction(lambda conn: conn.fetchrow(sql, *params), statement=True) is None:
            mailbox = await self._transaction(lambda conn: conn.fetchval(_MESSAGE_CLAW, message_id))
            if mailbox is None:
                raise StoreError(f"no message {message_id}")
            raise LeaseLost(f"this host no longer owns Claw '{mailbox}'")

    async def get_message(self, message_id: int) -> Message | None:
        return _message(await self._fetchrow("SELECT * FROM messages WHERE id = $1", message_id))

    async def depth(self, mailbox: str) -> int:
        sql = "SELECT count(*) FROM messages WHERE mailbox = $1 AND state IN ('queued', 'running')"
        return int(await self._transaction(lambda conn: conn.fetchval(sql, mailbox)))

    async def dead_letters(self, mailbox: str | None = None) -> list[Message]:
        sql = """
            SELECT * FROM messages WHERE ($1::text IS NULL OR mailbox = $1) AND state = 'dead' ORDER BY id
        """
        return [m for row in await self._fetch(sql, mailbox) if (m := _message(row))]

    async def settle_dead(self, message_id: int, action: Literal["retry", "discard"]) -> Message:
        sql = """
            UPDATE messages
            SET state = CASE WHEN $2 THEN 'queued' ELSE 'discarded' END,
                attempts = CASE WHEN $2 THEN 0 ELSE attempts END,
                available_at = CASE WHEN $2 THEN $3 ELSE available_at END
            WHERE id = $1 AND state = 'dead'
            RETURNING *
        """

        async def settle(conn: Connection) -> Message:
            message = _message(await conn.fetchrow(sql, message_id, action == "retry", self._clock()))
            if message is None:
                raise StoreError(f"message {message_id} is not a dead letter")
            if action == "retry":
                await self._announce(conn, message.mailbox)
            return message

        return await self._transaction(settle)

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

        async def requeue(conn: Connection) -> int:
            await self._fence(conn, mailbox)
            return len(await conn.fetch(sql, mailbox))

        return await self._transaction(requeue)

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
            await self._fence(conn, claw)
            context = await conn.fetch(_HISTORY, claw, thread, history) if history > 0 else []
            run = _run(await conn.fetchrow(sql, *params))
            assert run is not None
            return run, [HistoryEntry(**_decoded(h, "content")) for h in context]

        return await self._transaction(start)

    async def add_step(self, run_id: int, kind: StepKind, data: Any) -> Step:
        now = self._clock()

        async def add(conn: Connection) -> Step:
            await self._fence_row(conn, _RUN_CLAW, run_id, f"no run {run_id}")
            return await _add_step(conn, run_id, kind, data, now)

        return await self._transaction(add)

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
            await self._fence_row(conn, _RUN_CLAW, run_id, f"no run {run_id}")
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
                sql = "UPDATE messages SET state = 'done' WHERE id = $1 AND state = 'running'"
                await conn.execute(sql, run.message_id)
                await conn.execute(_ANSWERED, run.message_id)
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
        async def interrupt(conn: Connection) -> int:
            await self._fence(conn, claw)
            return int(await conn.fetchval(_INTERRUPT, None if claw is None else [claw], self._clock()))

        return await self._transaction(interrupt)

    async def tokens_used(self, claw: str, since: float) -> int:
        sql = """
            SELECT coalesce(sum(coalesce(input_tokens, 0) + coalesce(output_tokens, 0)), 0) FROM runs
            WHERE claw = $1 AND ended_at >= $2
        """
        return int(await self._transaction(lambda conn: conn.fetchval(sql, claw, since)))

    # -- pinned tools ---------------------------------------------------------------------------

    async def secret(self, name: str) -> bytes | None:
        value = await self._transaction(
            lambda conn: conn.fetchval("SELECT value FROM secrets WHERE name = $1", name)
        )
        return None if value is None else bytes(value)

    async def put_secret(self, name: str, value: bytes | None) -> None:
        sql = """
            INSERT INTO secrets (name, value, updated_at) VALUES ($1, $2, $3)
            ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at
        """
        if value is None:
            await self._transaction(lambda conn: conn.execute("DELETE FROM secrets WHERE name = $1", name))
        else:
            now = self._clock()
            await self._transaction(lambda conn: conn.execute(sql, name, value, now))

    async def pins(self, server: str) -> dict[str, Pin]:
        rows = await self._fetch("SELECT * FROM pins WHERE server = $1", server)
        return {row["tool"]: Pin(**_decoded(row, "definition")) for row in rows}

    async def pin(self, server: str, definitions: dict[str, tuple[dict[str, Any], str]]) -> None:
        sql = """
            INSERT INTO pins (server, tool, definition, hash, pinned_at) VALUES ($1, $2, $3, $4, $5)
            ON CONFLICT (server, tool) DO UPDATE
                SET definition = excluded.definition, hash = excluded.hash, pinned_at = excluded.pinned_at
        """
        now = self._clock()
        rows = [(server, t, json.dumps(d), h, now) for t, (d, h) in definitions.items()]
        await self._transaction(lambda conn: conn.executemany(sql, rows))

    # -- approvals ------------------------------------------------------------------------------

    async def request_approval(
        self,
        run_id: int,
        *,
        kind: ApprovalKind,
        tool: str,
        call_id: str,
        arguments: Any,
        expires_at: float,
        tokens: tuple[int | None, int | None] = (None, None),
    ) -> Approval:
        sql = """
            WITH waiting AS (
                UPDATE runs SET
                    state = CASE WHEN $4 = 'approval' THEN 'waiting' ELSE state END,
                    input_tokens = CASE WHEN $4 = 'approval' THEN $2 ELSE input_tokens END,
                    output_tokens = CASE WHEN $4 = 'approval' THEN $3 ELSE output_tokens END
                WHERE id = $1 AND state IN ('running', 'waiting') RETURNING claw, message_id
            )
            INSERT INTO approvals
                (claw, run_id, message_id, kind, tool, call_id, arguments, created_at, expires_at)
            SELECT claw, $1, message_id, $4, $5, $6, $7, $8, $9 FROM waiting
            RETURNING *
        """
        params = (run_id, *tokens, kind, tool, call_id, json.dumps(arguments), self._clock(), expires_at)

        async def request(conn: Connection) -> Approval:
            await self._fence_row(conn, _RUN_CLAW, run_id, f"no run {run_id}")
            row = await conn.fetchrow(sql, *params)
            if row is None:
                raise StoreError(f"run {run_id} is not running")
            return _approval(row)

        return await self._transaction(request)

    async def decide(
        self, approval_id: int, state: ApprovalState, *, note: str | None = None, content: Any = None
    ) -> Approval:
        decide = """
            UPDATE approvals SET state = $2, note = $3, content = $4, decided_at = $5
            WHERE id = $1 AND state = 'pending' RETURNING *
        """
        resume = """
            UPDATE messages SET state = 'queued', attempts = greatest(attempts - 1, 1), available_at = $1
            WHERE id = $2 AND state = 'running' AND $4 = 'approval' AND NOT EXISTS (
                SELECT 1 FROM approvals WHERE run_id = $3 AND state = 'pending' AND kind = 'approval'
            )
        """
        now = self._clock()

        async def write(conn: Connection) -> Approval:
            row = await conn.fetchrow(decide, approval_id, state, note, json.dumps(content), now)
            if row is None:
                found = await conn.fetchval("SELECT state FROM approvals WHERE id = $1", approval_id)
                said = f"is {found} already" if found else "does not exist"
                raise StoreError(f"approval {approval_id} {said}")
            approval = _approval(row)
            await conn.execute(resume, now, approval.message_id, approval.run_id, approval.kind)
            await self._announce(conn, approval.claw)  # its message, or a direct ask waiting there
            return approval

        return await self._transaction(write)

    async def approvals(
        self, claw: str | None = None, *, run_id: int | None = None, pending: bool = False, limit: int = 100
    ) -> list[Approval]:
        sql = """
            SELECT * FROM (
                SELECT * FROM approvals
                WHERE ($1::text IS NULL OR claw = $1) AND ($2::bigint IS NULL OR run_id = $2)
                    AND (NOT $3 OR state = 'pending')
                ORDER BY id DESC LIMIT $4
            ) a
            ORDER BY id
        """
        return [_approval(row) for row in await self._fetch(sql, claw, run_id, pending, limit)]

    async def get_approval(self, approval_id: int) -> Approval | None:
        row = await self._fetchrow("SELECT * FROM approvals WHERE id = $1", approval_id)
        return _approval(row) if row else None

    async def resume_run(self, run_id: int, *, history: int = 0) -> tuple[Run, list[HistoryEntry]]:
        sql = "UPDATE runs SET state = 'running' WHERE id = $1 AND state = 'waiting' RETURNING *"

        async def resume(conn: Connection) -> tuple[Run, list[HistoryEntry]]:
            await self._fence_row(conn, _RUN_CLAW, run_id, f"no run {run_id}")
            run = _run(await conn.fetchrow(sql, run_id))
            if run is None:
                raise StoreError(f"run {run_id} is not waiting")
            context = await conn.fetch(_HISTORY, run.claw, run.thread, history) if history > 0 else []
            return run, [HistoryEntry(**_decoded(h, "content")) for h in context]

        return await self._transaction(resume)

    # -- thread history -------------------------------------------------------------------------

    async def history(self, claw: str, thread: str, limit: int) -> list[HistoryEntry]:
        rows = await self._fetch(_HISTORY, claw, thread, limit)
        return [HistoryEntry(**_decoded(row, "content")) for row in rows]

    async def context(self, claw: str, thread: str, limit: int) -> list[HistoryEntry]:
        rows = await self._fetch(_CONTEXT, claw, thread, limit)
        return [HistoryEntry(**_decoded(row, "content")) for row in rows]

    async def add_summary(
        self, claw: str, thread: str, text: str, *, through: int, run_id: int | None = None
    ) -> HistoryEntry:
        content = json.dumps({"text": text, "through": through})
        now = self._clock()

        async def add(conn: Connection) -> HistoryEntry:
            await self._fence(conn, claw)
            row = await conn.fetchrow(_ADD_SUMMARY, claw, thread, content, run_id, now)
            assert row is not None
            return HistoryEntry(**_decoded(row, "content"))

        return await self._transaction(add)

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

        async def put(conn: Connection) -> Schedule:
            row = await conn.fetchrow(_PUT_SCHEDULE, *params)
            assert row is not None
            await self._schedules_changed(conn, claw)
            return Schedule(**_decoded(row, "spec", "action"))

        return await self._transaction(put)

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
        async def delete(conn: Connection) -> bool:
            claw = await conn.fetchval("DELETE FROM schedules WHERE id = $1 RETURNING claw", schedule_id)
            if claw is not None:
                await self._schedules_changed(conn, claw)
            return claw is not None

        return await self._transaction(delete)

    async def _schedules_changed(self, conn: Connection, claw: str) -> None:
        """The host that runs the Claw (if another) takes its schedules in hand again."""
        if claw not in self.epochs:
            await conn.execute("SELECT pg_notify('clawmcp_schedules', $1)", claw)

    async def schedules(self, claw: str | None = None) -> list[Schedule]:
        sql = "SELECT * FROM schedules WHERE ($1::text IS NULL OR claw = $1) ORDER BY claw, name"
        return [Schedule(**_decoded(row, "spec", "action")) for row in await self._fetch(sql, claw)]

    async def set_next_fire(self, schedule_id: int, next_fire: float | None) -> None:
        async def move(conn: Connection) -> None:
            await self._fence_row(conn, _SCHEDULE_CLAW, schedule_id, f"no schedule {schedule_id}")
            await conn.execute("UPDATE schedules SET next_fire = $2 WHERE id = $1", schedule_id, next_fire)

        await self._transaction(move)

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
        moved = "UPDATE schedules SET next_fire = $2 WHERE id = $1"
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
            await self._fence_row(conn, _SCHEDULE_CLAW, schedule_id, f"no schedule {schedule_id}")
            await conn.execute(moved, schedule_id, next_fire)
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
                _, new = await _enqueue(
                    conn, (m.mailbox, m.content, m.sender, m.thread, m.kind, None, m.key, []), now
                )
                if new:
                    await self._announce(conn, m.mailbox)
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
            await self._fence_row(conn, _SCHEDULE_CLAW, schedule_id, f"no schedule {schedule_id}")
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
                if self.host is not None:  # the hosts that follow the log read them
                    await conn.execute("SELECT pg_notify('clawmcp_events', $1)", str(ids[-1]))
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

    # -- several hosts: membership, leases, notifications ---------------------------------------

    async def join(self, name: str, listen: str, claws: dict[str, Any], ttl: float) -> None:
        """Join the hosts of this store as a new host (a new id) named `name`, alive for `ttl`
        seconds unless renewed. A live host of the same name is taken to be this host's previous
        run and replaced. Refused (`UserError`) when the Claw definitions differ from those of
        the live hosts; with none alive, this host's definitions become the store's."""
        host = str(uuid.uuid4())

        async def join(conn: Connection) -> None:
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('clawmcp:join'))")
            await conn.execute(  # its previous run, and hosts gone for a day
                "DELETE FROM hosts WHERE name = $1 OR expires_at < now() - interval '1 day'", name
            )
            live = await conn.fetch("SELECT name FROM hosts WHERE expires_at > now() ORDER BY name")
            agreed = await conn.fetchval("SELECT claws FROM cluster")
            if live and agreed is not None and (differ := _differences(json.loads(agreed), claws)):
                others = ", ".join(row["name"] for row in live)
                raise UserError(
                    f"this host's Claws differ from those of the running hosts ({others}): {differ}; "
                    "deploy the same Claw definitions (or stop every host to change them)"
                )
            await conn.execute(
                "INSERT INTO cluster (id, claws, applied_by) VALUES (1, $1, $2) ON CONFLICT (id) DO UPDATE"
                " SET claws = excluded.claws, applied_by = excluded.applied_by, applied_at = now()",
                json.dumps(claws),
                name,
            )
            await conn.execute(
                "INSERT INTO hosts (id, name, listen, expires_at)"
                " VALUES ($1, $2, $3, now() + $4 * interval '1s')",
                host,
                name,
                listen,
                ttl,
            )
            await conn.execute(
                "INSERT INTO claw_leases (claw) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING", list(claws)
            )

        await self._transaction(join)
        self.host, self.host_name, self.epochs = host, name, {}

    async def agree(self, claws: dict[str, Any]) -> None:
        """This host reloaded its manifests: its Claw definitions become the store's (those a host
        must have to join), the Claws new to the store get their leases, and the other hosts hear
        of it (`clawmcp_reload`, with this host's name), in one transaction."""

        async def agree(conn: Connection) -> None:
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('clawmcp:join'))")
            await conn.execute(
                "UPDATE cluster SET claws = $1, applied_by = $2, applied_at = now() WHERE id = 1",
                json.dumps(claws),
                self.host_name,
            )
            await conn.execute(
                "INSERT INTO claw_leases (claw) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING", list(claws)
            )
            await conn.execute("SELECT pg_notify('clawmcp_reload', $1)", self.host_name)

        await self._transaction(agree)

    async def definitions(self) -> dict[str, Any]:
        """The Claw definitions of the store: those of the host that joined or reloaded last."""
        row = await self._fetchrow("SELECT claws FROM cluster")
        return {} if row is None else dict(json.loads(row["claws"]))

    async def silent_hosts(self) -> dict[str, datetime]:
        """The other live hosts whose process holds no connection to listen on (it died, or it
        is connecting again): name -> their row's `expires_at`."""
        sql = """
            SELECT name, expires_at FROM hosts
            WHERE expires_at > now() AND id <> $1
              AND pg_try_advisory_xact_lock(hashtextextended('clawmcp:host:' || name, 0))
        """
        return {row["name"]: row["expires_at"] for row in await self._fetch(sql, self.host)}

    async def expire(self, name: str, seen: datetime) -> bool:
        """End the life of a host that died: its Claws are free now. Only if it has not renewed
        itself since `seen` (its `expires_at`), so that a live host is never hit."""
        sql = "UPDATE hosts SET expires_at = now() WHERE name = $1 AND expires_at = $2 RETURNING 1"
        return await self._fetchrow(sql, name, seen) is not None

    async def renew(self, ttl: float, listen: str) -> Literal["alive", "expired", "replaced"]:
        """Keep this host alive for `ttl` more seconds: `alive`; or it was too late (`expired`:
        its leases may have moved) or another host took its name (`replaced`)."""
        sql = """
            UPDATE hosts SET renewed_at = now(), expires_at = now() + $2 * interval '1s', listen = $3
            WHERE id = $1
        """

        async def renew(conn: Connection) -> Literal["alive", "expired", "replaced"]:
            row = await conn.fetchrow(
                "SELECT expires_at > now() AS alive FROM hosts WHERE id = $1 FOR UPDATE", self.host
            )
            if row is None:
                return "replaced"
            if not row["alive"]:
                return "expired"
            await conn.execute(sql, self.host, ttl, listen)
            return "alive"

        return await self._transaction(renew)

    async def live_hosts(self) -> list[str]:
        """The names of the hosts alive now."""
        return [row["name"] for row in await self._fetch("SELECT name FROM hosts WHERE expires_at > now()")]

    async def take(self, claws: Sequence[str], now: float) -> tuple[list[str], int, int]:
        """Take (again, with a new epoch, if this host stopped them) the leases of those of `claws`
        that no other live host holds, while this host is alive;
        in the same transaction, what their last owner left running is recovered (runs
        interrupted, messages queued again). The Claws taken, and how many runs and messages."""
        take = """
            UPDATE claw_leases l SET host = $2, epoch = nextval('lease_epoch'), acquired_at = now()
            WHERE l.claw = ANY($1::text[])
              AND (l.host IS NULL OR l.host = $2 OR NOT EXISTS (
                  SELECT 1 FROM hosts h WHERE h.id = l.host AND h.expires_at > now()))
              AND EXISTS (SELECT 1 FROM hosts WHERE id = $2 AND expires_at > now())
            RETURNING l.claw, l.epoch
        """
        requeue = """
            UPDATE messages SET state = 'queued'
            WHERE mailbox = ANY($1::text[]) AND state = 'running' RETURNING id
        """

        async def take_leases(conn: Connection) -> tuple[dict[str, int], int, int]:
            taken = {row["claw"]: row["epoch"] for row in await conn.fetch(take, list(claws), self.host)}
            if not taken:
                return taken, 0, 0
            runs = await conn.fetchval(_INTERRUPT, list(taken), now)
            messages = await conn.fetch(requeue, list(taken))
            return taken, int(runs), len(messages)

        taken, runs, messages = await self._transaction(take_leases)
        self.epochs.update(taken)
        return sorted(taken), runs, messages

    async def release(self, claws: Sequence[str]) -> int:
        """Give up these Claws' leases (their work here has stopped): what they left running is
        queued again, and the other hosts hear that the Claws are free. How many messages."""
        requeue = """
            UPDATE messages SET state = 'queued'
            WHERE mailbox = ANY($1::text[]) AND state = 'running' RETURNING id
        """
        free = "UPDATE claw_leases SET host = NULL WHERE claw = ANY($1::text[]) AND host = $2 RETURNING claw"

        async def release(conn: Connection) -> int:
            freed = [row["claw"] for row in await conn.fetch(free, list(claws), self.host)]
            messages = await conn.fetch(requeue, freed)
            await conn.execute("SELECT pg_notify('clawmcp_leases', '')")
            return len(messages)

        try:
            return await self._transaction(release)
        finally:
            self.forget(claws)

    def forget(self, claws: Sequence[str]) -> None:
        """This host no longer counts on these leases (it stopped their work): its writes for
        them are refused from now on."""
        for claw in claws:
            self.epochs.pop(claw, None)

    async def leave(self) -> int:
        """`release` every lease, then leave the hosts of the store."""
        messages = await self.release(list(self.epochs))
        await self._transaction(lambda conn: conn.execute("DELETE FROM hosts WHERE id = $1", self.host))
        self.host = None
        return messages

    async def hosts(self) -> list[dict[str, Any]]:
        """The hosts of the store, alive or gone: name, listen address, when it started and last
        renewed itself (seconds since the epoch), whether alive, and the Claws it owns."""
        sql = """
            SELECT h.name, h.listen, extract(epoch FROM h.started_at)::float8 AS started_at,
                extract(epoch FROM h.renewed_at)::float8 AS renewed_at, h.expires_at > now() AS alive,
                coalesce(array_agg(l.claw ORDER BY l.claw) FILTER (WHERE l.claw IS NOT NULL), '{}') AS claws
            FROM hosts h LEFT JOIN claw_leases l ON l.host = h.id
            GROUP BY h.id ORDER BY h.name
        """
        return [
            {**dict(row), "claws": list(row["claws"]) if row["alive"] else []}
            for row in await self._fetch(sql)
        ]

    async def owners(self) -> dict[str, str]:
        """The Claws that have a live owner: Claw -> host name."""
        sql = """
            SELECT l.claw, h.name FROM claw_leases l JOIN hosts h ON h.id = l.host WHERE h.expires_at > now()
        """
        return {row["claw"]: row["name"] for row in await self._fetch(sql)}

    async def listen(
        self,
        heard: Callable[[str, str], None],
        resync: Callable[[], None],
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Hear the store's notifications (`heard(channel, payload)`) on a connection of its own,
        for ever. Notifications sent while it was not connected are lost: after every
        (re)connection `resync` is called, so that the host looks again at what it may have
        missed."""
        started = False
        while True:
            try:
                conn = await asyncpg.connect(self.url, timeout=TIMEOUT)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as e:
                log.warning(
                    "state store %s: cannot listen for notifications (%s); trying again", self.name, e
                )
                await anyio.sleep(1)
                continue
            lost = anyio.Event()
            try:
                conn.add_termination_listener(lambda _, lost=lost: lost.set())
                # Held while this connection lives: when the process dies, the other hosts see it
                # free at once (`silent_hosts`), long before the host's row expires.
                if not await conn.fetchval(_HOST_LOCK, self.host_name):
                    log.warning(
                        "state store %s: another process holds the lock of host '%s'",
                        self.name,
                        self.host_name,
                    )
                for channel in CHANNELS:
                    await conn.add_listener(
                        channel, lambda _c, _pid, channel, payload: heard(channel, payload)
                    )
                resync()
                if not started:
                    task_status.started()
                    started = True
                while not lost.is_set():
                    with anyio.move_on_after(PROBE):
                        await lost.wait()
                    if not lost.is_set():
                        await conn.fetchval("SELECT 1", timeout=TIMEOUT)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as e:
                log.warning("state store %s: notifications lost (%s); listening again", self.name, e)
            finally:
                conn.terminate()
            await anyio.sleep(1)


def _differences(stored: dict[str, Any], mine: dict[str, Any]) -> str:
    """What differs between two sets of Claw definitions, in a few words."""
    said = [f"Claw '{c}' is only on this host" for c in sorted(mine.keys() - stored.keys())]
    said += [f"Claw '{c}' is missing here" for c in sorted(stored.keys() - mine.keys())]
    for claw in sorted(mine.keys() & stored.keys()):
        if keys := sorted(
            k for k in mine[claw].keys() | stored[claw].keys() if mine[claw].get(k) != stored[claw].get(k)
        ):
            said.append(f"Claw '{claw}' differs in {', '.join(keys)}")
    return "; ".join(said)

"""`SqliteStore`: the state store in one SQLite file (`clawmcp.store.sqlite_db` is the database
under it: connections, writer, schema)."""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from clawmcp.errors import StoreError
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
from clawmcp.store.sqlite_db import SCHEMA_VERSION, Database, fetch, migrate

__all__ = ["SCHEMA_VERSION", "SqliteStore", "migrate"]

# The words of a recall query, split like FTS5's unicode61 tokenizer splits the notes.
_WORD = re.compile(r"[^\W_]+")


def _message(row: sqlite3.Row) -> Message:
    values = dict(row)
    return Message(**values | {"chain": tuple(json.loads(values["chain"]))})


def _enqueue(conn: sqlite3.Connection, params: tuple[Any, ...], now: float) -> tuple[Message, bool]:
    """Insert a message (mailbox, content, sender, thread, kind, reply_to, key, chain as JSON),
    or return the one already queued with its key."""
    sql = """
        INSERT INTO messages
            (mailbox, content, sender, thread, kind, reply_to, key, chain, available_at, created_at)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (mailbox, key) DO NOTHING
        RETURNING *
    """
    if rows := fetch(conn, sql, (*params, now, now)):
        return _message(rows[0]), True
    mailbox, key = params[0], params[6]
    [row] = fetch(conn, "SELECT * FROM messages WHERE mailbox = ? AND key = ?", (mailbox, key))
    return _message(row), False


# A person cancels a message: its run waiting for a person ends cancelled (?1: now, ?2: message)
# and its pending approvals are withdrawn (?1: now, ?2: the run).
_CANCEL_WAITING = """
    UPDATE runs SET state = 'cancelled', error = 'cancelled by a person', ended_at = ?1
    WHERE id = (SELECT max(id) FROM runs WHERE message_id = ?2) AND state = 'waiting'
    RETURNING *
"""
_WITHDRAW = """
    UPDATE approvals SET state = 'withdrawn', note = 'the message was cancelled', decided_at = ?1
    WHERE run_id = ?2 AND state = 'pending'
"""
_EVENTS = """
    SELECT * FROM events WHERE id > ? AND (? IS NULL OR claw = ?) ORDER BY id DESC LIMIT ?
"""
_HISTORY = """
    SELECT id, claw, thread, role, content, run_id, at FROM (
        SELECT * FROM history WHERE claw = ? AND thread = ? ORDER BY id DESC LIMIT ?
    )
    ORDER BY id
"""
_CONTEXT = """
    WITH summary AS (
        SELECT * FROM history WHERE claw = :claw AND thread = :thread AND role = 'summary'
        ORDER BY id DESC LIMIT 1
    )
    SELECT id, claw, thread, role, content, run_id, at FROM (
        SELECT 0 AS part, * FROM summary
        UNION ALL
        SELECT * FROM (
            SELECT 1 AS part, * FROM history
            WHERE claw = :claw AND thread = :thread AND role <> 'summary'
                AND id > coalesce((SELECT json_extract(content, '$.through') FROM summary), 0)
            ORDER BY id DESC LIMIT :limit
        )
    )
    ORDER BY part, id
"""
_ADD_STEP = """
    INSERT INTO run_steps (run_id, idx, kind, data, at)
    SELECT :run_id, count(*), :kind, :data, :at FROM run_steps WHERE run_id = :run_id
    RETURNING run_id, idx AS "index", kind, data, at
"""


def _decode(row: sqlite3.Row, *json_columns: str) -> dict[str, Any]:
    values = dict(row)
    for column in json_columns:
        values[column] = json.loads(values[column])
    return values


def _approval(row: sqlite3.Row) -> Approval:
    return Approval(**_decode(row, "arguments", "content"))


class SqliteStore(Database, Store):
    """A `Store` in the SQLite file at `path` (created with its parent folder when missing).

    `synchronous="FULL"` (the default) makes every commit durable across a power loss;
    `"NORMAL"` may lose the last commits on power loss (never on a crash of the process) in
    exchange for fewer fsyncs. Runs on asyncio only (aiosqlite).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
        clock: Clock = time.time,
    ) -> None:
        super().__init__(path, synchronous=synchronous)
        self._clock = clock

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
        params = (mailbox, content, sender, thread, kind, reply_to, key, json.dumps(list(chain)))
        return await self._write(lambda conn: _enqueue(conn, params, self._clock()))

    async def enqueue_claimed(self, mailbox: str, content: str, *, thread: str = "default") -> Message:
        sql = """
            INSERT INTO messages (mailbox, content, thread, kind, state, attempts, available_at, created_at)
            VALUES (?1, ?2, ?3, 'ask', 'running', 1, ?4, ?4)
            RETURNING *
        """
        params = (mailbox, content, thread, self._clock())
        # Not durable, as a claim: a power cut before the run's first step only loses an ask
        # whose asker had no answer (a later durable commit makes this one durable too).
        [row] = await self._write(lambda conn: fetch(conn, sql, params), durable=False)
        return _message(row)

    async def cancel(self, message_id: int) -> tuple[Message, Run | None]:
        cancel = """
            UPDATE messages SET state = 'cancelled' WHERE id = ? AND state IN ('queued', 'running')
            RETURNING *
        """
        now = self._clock()

        def write(conn: sqlite3.Connection) -> tuple[Message, Run | None]:
            rows = fetch(conn, cancel, (message_id,))
            if not rows:
                found = fetch(conn, "SELECT state FROM messages WHERE id = ?", (message_id,))
                raise StoreError(
                    f"message {message_id} is {found[0][0]} already" if found else f"no message {message_id}"
                )
            runs = fetch(conn, _CANCEL_WAITING, (now, message_id))
            if runs:
                conn.execute(_WITHDRAW, (now, runs[0]["id"]))
            else:
                runs = fetch(
                    conn, "SELECT * FROM runs WHERE message_id = ? ORDER BY id DESC LIMIT 1", (message_id,)
                )
            return _message(rows[0]), Run(**dict(runs[0])) if runs else None

        return await self._write(write)

    async def claim(self, mailbox: str) -> Message | None:
        sql = """
            UPDATE messages SET state = 'running', attempts = attempts + 1
            WHERE id = (
                SELECT id FROM messages
                WHERE mailbox = ?1 AND state = 'queued' AND available_at <= ?2 AND thread NOT IN (
                    SELECT thread FROM messages WHERE mailbox = ?1 AND state = 'running'
                )
                ORDER BY id LIMIT 1
            )
            RETURNING *
        """
        params = (mailbox, self._clock())
        # Not durable: losing a claim to a power cut only gives the message back to the mailbox.
        rows = await self._write(lambda conn: fetch(conn, sql, params), durable=False)
        return _message(rows[0]) if rows else None

    async def ack(self, message_id: int) -> None:
        sql = "UPDATE messages SET state = iif(state = 'cancelled', state, 'done') WHERE id = ?"
        await self._change(sql, (message_id,), f"no message {message_id}")

    async def nack(self, message_id: int, error: str, *, retry_at: float | None) -> None:
        sql = """
            UPDATE messages
            SET state = CASE WHEN state = 'cancelled' THEN state WHEN :retry_at IS NULL THEN 'dead'
                ELSE 'queued' END,
                available_at = coalesce(:retry_at, available_at),
                last_error = :error
            WHERE id = :id
        """
        params = {"id": message_id, "error": error, "retry_at": retry_at}
        await self._change(sql, params, f"no message {message_id}")

    async def get_message(self, message_id: int) -> Message | None:
        rows = await self._read("SELECT * FROM messages WHERE id = ?", (message_id,))
        return _message(rows[0]) if rows else None

    async def depth(self, mailbox: str) -> int:
        sql = "SELECT count(*) FROM messages WHERE mailbox = ? AND state IN ('queued', 'running')"
        [(count,)] = await self._read(sql, (mailbox,))
        return int(count)

    async def dead_letters(self, mailbox: str | None = None) -> list[Message]:
        sql = "SELECT * FROM messages WHERE (? IS NULL OR mailbox = ?) AND state = 'dead' ORDER BY id"
        return [_message(row) for row in await self._read(sql, (mailbox, mailbox))]

    async def settle_dead(self, message_id: int, action: Literal["retry", "discard"]) -> Message:
        sql = """
            UPDATE messages
            SET state = iif(:retry, 'queued', 'discarded'),
                attempts = iif(:retry, 0, attempts),
                available_at = iif(:retry, :now, available_at)
            WHERE id = :id AND state = 'dead'
            RETURNING *
        """
        params = {"id": message_id, "retry": action == "retry", "now": self._clock()}
        rows = await self._write(lambda conn: fetch(conn, sql, params))
        if not rows:
            raise StoreError(f"message {message_id} is not a dead letter")
        return _message(rows[0])

    async def mailboxes(self) -> dict[str, tuple[int, int]]:
        sql = """
            SELECT mailbox, sum(state IN ('queued', 'running')), sum(state = 'dead') FROM messages
            WHERE state != 'done' GROUP BY mailbox
        """
        return {row[0]: (int(row[1]), int(row[2])) for row in await self._read(sql)}

    async def requeue_running(self, mailbox: str | None = None) -> int:
        sql = """
            UPDATE messages SET state = 'queued'
            WHERE state = 'running' AND (? IS NULL OR mailbox = ?) RETURNING id
        """
        return len(await self._write(lambda conn: fetch(conn, sql, (mailbox, mailbox))))

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
            VALUES (?, ?, ?, ?, ?, ?, ?)
            RETURNING *
        """
        params = (claw, thread, trigger, input, message_id, parent_run_id, self._clock())

        def start(conn: sqlite3.Connection) -> tuple[Run, list[HistoryEntry]]:
            context = fetch(conn, _HISTORY, (claw, thread, history)) if history > 0 else []
            [row] = fetch(conn, sql, params)
            return Run(**dict(row)), [HistoryEntry(**_decode(h, "content")) for h in context]

        # Not durable: a run lost to a power cut had not done anything yet (its steps are durable).
        return await self._write(start, durable=False)

    async def add_step(self, run_id: int, kind: StepKind, data: Any) -> Step:
        params = {"run_id": run_id, "kind": kind, "data": json.dumps(data), "at": self._clock()}
        [row] = await self._write(lambda conn: fetch(conn, _ADD_STEP, params))
        return Step(**_decode(row, "data"))

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
            SET state = ?, reply = ?, error = ?, input_tokens = ?, output_tokens = ?, ended_at = ?
            WHERE id = ?
            RETURNING *
        """
        params = (state, reply, error, input_tokens, output_tokens, now, run_id)

        def write(conn: sqlite3.Connection) -> Run:
            rows = fetch(conn, finish, params)
            if not rows:
                raise StoreError(f"no run {run_id}")
            run = Run(**dict(rows[0]))
            if step is not None:
                fetch(
                    conn,
                    _ADD_STEP,
                    {"run_id": run_id, "kind": step[0], "data": json.dumps(step[1]), "at": now},
                )
            conn.executemany(
                "INSERT INTO history (claw, thread, role, content, run_id, at) VALUES (?, ?, ?, ?, ?, ?)",
                [(run.claw, run.thread, role, json.dumps(content), run_id, now) for role, content in history],
            )
            if ack and run.message_id is not None:
                sql = "UPDATE messages SET state = 'done' WHERE id = ? AND state = 'running'"
                conn.execute(sql, (run.message_id,))
            return run

        return await self._write(write)

    async def get_run(self, run_id: int) -> Run | None:
        rows = await self._read("SELECT * FROM runs WHERE id = ?", (run_id,))
        return Run(**dict(rows[0])) if rows else None

    async def message_run(self, message_id: int) -> Run | None:
        sql = "SELECT * FROM runs WHERE message_id = ? ORDER BY id DESC LIMIT 1"
        rows = await self._read(sql, (message_id,))
        return Run(**dict(rows[0])) if rows else None

    async def steps(self, run_id: int) -> list[Step]:
        sql = 'SELECT run_id, idx AS "index", kind, data, at FROM run_steps WHERE run_id = ? ORDER BY idx'
        return [Step(**_decode(row, "data")) for row in await self._read(sql, (run_id,))]

    async def runs(self, claw: str | None = None, limit: int = 20) -> list[Run]:
        if claw is None:
            rows = await self._read("SELECT * FROM runs ORDER BY id DESC LIMIT ?", (limit,))
        else:
            sql = "SELECT * FROM runs WHERE claw = ? ORDER BY id DESC LIMIT ?"
            rows = await self._read(sql, (claw, limit))
        return [Run(**dict(row)) for row in rows]

    async def interrupt_running(self, claw: str | None = None) -> int:
        runs = """
            UPDATE runs SET state = 'interrupted', ended_at = ?1
            WHERE (state = 'running' OR (state = 'waiting' AND message_id IS NULL))
                AND (?2 IS NULL OR claw = ?2)
            RETURNING id
        """
        approvals = """
            UPDATE approvals SET state = 'expired', note = 'the run was interrupted', decided_at = ?
            WHERE state = 'pending' AND run_id IN ({})
        """

        def interrupt(conn: sqlite3.Connection) -> int:
            ids = [row[0] for row in fetch(conn, runs, (self._clock(), claw))]
            conn.execute(approvals.format(",".join("?" * len(ids))), (self._clock(), *ids))
            return len(ids)

        return await self._write(interrupt)

    async def tokens_used(self, claw: str, since: float) -> int:
        sql = """
            SELECT coalesce(sum(coalesce(input_tokens, 0) + coalesce(output_tokens, 0)), 0) FROM runs
            WHERE claw = ? AND ended_at >= ?
        """
        [(used,)] = await self._read(sql, (claw, since))
        return int(used)

    # -- pinned tools ---------------------------------------------------------------------------

    async def pins(self, server: str) -> dict[str, Pin]:
        rows = await self._read("SELECT * FROM pins WHERE server = ?", (server,))
        return {row["tool"]: Pin(**_decode(row, "definition")) for row in rows}

    async def pin(self, server: str, definitions: dict[str, tuple[dict[str, Any], str]]) -> None:
        sql = """
            INSERT INTO pins (server, tool, definition, hash, pinned_at) VALUES (?, ?, ?, ?, ?)
            ON CONFLICT (server, tool) DO UPDATE
                SET definition = excluded.definition, hash = excluded.hash, pinned_at = excluded.pinned_at
        """
        now = self._clock()
        rows = [(server, t, json.dumps(d), h, now) for t, (d, h) in definitions.items()]
        await self._write(lambda conn: conn.executemany(sql, rows))

    async def secret(self, name: str) -> bytes | None:
        rows = await self._read("SELECT value FROM secrets WHERE name = ?", (name,))
        return bytes(rows[0][0]) if rows else None

    async def put_secret(self, name: str, value: bytes | None) -> None:
        if value is None:
            await self._write(lambda conn: conn.execute("DELETE FROM secrets WHERE name = ?", (name,)))
            return
        sql = """
            INSERT INTO secrets (name, value, updated_at) VALUES (?, ?, ?)
            ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at
        """
        params = (name, value, self._clock())
        await self._write(lambda conn: conn.execute(sql, params))

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
        wait = """
            UPDATE runs SET
                state = CASE WHEN ?1 = 'approval' THEN 'waiting' ELSE state END,
                input_tokens = CASE WHEN ?1 = 'approval' THEN ?2 ELSE input_tokens END,
                output_tokens = CASE WHEN ?1 = 'approval' THEN ?3 ELSE output_tokens END
            WHERE id = ?4 AND state IN ('running', 'waiting') RETURNING claw, message_id
        """
        insert = """
            INSERT INTO approvals
                (claw, run_id, message_id, kind, tool, call_id, arguments, created_at, expires_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
            RETURNING *
        """

        def request(conn: sqlite3.Connection) -> Approval:
            rows = fetch(conn, wait, (kind, *tokens, run_id))
            if not rows:
                raise StoreError(f"run {run_id} is not running")
            claw, message_id = rows[0]
            params = (claw, run_id, message_id, kind, tool, call_id, json.dumps(arguments))
            [row] = fetch(conn, insert, (*params, self._clock(), expires_at))
            return _approval(row)

        return await self._write(request)

    async def decide(
        self, approval_id: int, state: ApprovalState, *, note: str | None = None, content: Any = None
    ) -> Approval:
        decide = """
            UPDATE approvals SET state = ?, note = ?, content = ?, decided_at = ?
            WHERE id = ? AND state = 'pending' RETURNING *
        """
        resume = """
            UPDATE messages SET state = 'queued', attempts = max(attempts - 1, 1), available_at = ?1
            WHERE id = ?2 AND state = 'running' AND ?4 = 'approval' AND NOT EXISTS (
                SELECT 1 FROM approvals WHERE run_id = ?3 AND state = 'pending' AND kind = 'approval'
            )
        """
        now = self._clock()

        def write(conn: sqlite3.Connection) -> Approval:
            rows = fetch(conn, decide, (state, note, json.dumps(content), now, approval_id))
            if not rows:
                found = fetch(conn, "SELECT state FROM approvals WHERE id = ?", (approval_id,))
                said = f"is {found[0][0]} already" if found else "does not exist"
                raise StoreError(f"approval {approval_id} {said}")
            approval = _approval(rows[0])
            conn.execute(resume, (now, approval.message_id, approval.run_id, approval.kind))
            return approval

        return await self._write(write)

    async def approvals(
        self, claw: str | None = None, *, run_id: int | None = None, pending: bool = False, limit: int = 100
    ) -> list[Approval]:
        sql = """
            SELECT * FROM (
                SELECT * FROM approvals
                WHERE (?1 IS NULL OR claw = ?1) AND (?2 IS NULL OR run_id = ?2)
                    AND (NOT ?3 OR state = 'pending')
                ORDER BY id DESC LIMIT ?4
            )
            ORDER BY id
        """
        return [_approval(row) for row in await self._read(sql, (claw, run_id, pending, limit))]

    async def get_approval(self, approval_id: int) -> Approval | None:
        rows = await self._read("SELECT * FROM approvals WHERE id = ?", (approval_id,))
        return _approval(rows[0]) if rows else None

    async def resume_run(self, run_id: int, *, history: int = 0) -> tuple[Run, list[HistoryEntry]]:
        sql = "UPDATE runs SET state = 'running' WHERE id = ? AND state = 'waiting' RETURNING *"

        def resume(conn: sqlite3.Connection) -> tuple[Run, list[HistoryEntry]]:
            rows = fetch(conn, sql, (run_id,))
            if not rows:
                raise StoreError(f"run {run_id} is not waiting")
            run = Run(**dict(rows[0]))
            context = fetch(conn, _HISTORY, (run.claw, run.thread, history)) if history > 0 else []
            return run, [HistoryEntry(**_decode(h, "content")) for h in context]

        return await self._write(resume)

    # -- thread history -------------------------------------------------------------------------

    async def history(self, claw: str, thread: str, limit: int) -> list[HistoryEntry]:
        rows = await self._read(_HISTORY, (claw, thread, limit))
        return [HistoryEntry(**_decode(row, "content")) for row in rows]

    async def context(self, claw: str, thread: str, limit: int) -> list[HistoryEntry]:
        rows = await self._read(_CONTEXT, {"claw": claw, "thread": thread, "limit": limit})
        return [HistoryEntry(**_decode(row, "content")) for row in rows]

    async def add_summary(
        self, claw: str, thread: str, text: str, *, through: int, run_id: int | None = None
    ) -> HistoryEntry:
        sql = """
            INSERT INTO history (claw, thread, role, content, run_id, at) VALUES (?, ?, 'summary', ?, ?, ?)
            RETURNING *
        """
        params = (claw, thread, json.dumps({"text": text, "through": through}), run_id, self._clock())
        [row] = await self._write(lambda conn: fetch(conn, sql, params))
        return HistoryEntry(**_decode(row, "content"))

    async def threads(self, claw: str) -> list[str]:
        sql = "SELECT DISTINCT thread FROM history WHERE claw = ? ORDER BY thread"
        return [row["thread"] for row in await self._read(sql, (claw,))]

    # -- memory notes ---------------------------------------------------------------------------

    async def remember(self, claw: str, text: str, key: str | None = None) -> Note:
        sql = """
            INSERT INTO notes (claw, key, text, at) VALUES (?, ?, ?, ?)
            ON CONFLICT (claw, key) DO UPDATE SET text = excluded.text, at = excluded.at
            RETURNING *
        """
        params = (claw, key, text, self._clock())
        [row] = await self._write(lambda conn: fetch(conn, sql, params))
        return Note(**dict(row))

    async def recall(self, claw: str, query: str, limit: int = 5) -> list[Note]:
        # Each word quoted, so that FTS5 reads none of the query as its own syntax.
        words = [f'"{word}"' for word in _WORD.findall(query)]
        if not words:
            return []
        sql = """
            SELECT notes.* FROM notes_fts JOIN notes ON notes.id = notes_fts.rowid
            WHERE notes_fts MATCH ? AND notes.claw = ?
            ORDER BY bm25(notes_fts), notes.id DESC
            LIMIT ?
        """
        return [Note(**dict(row)) for row in await self._read(sql, (" ".join(words), claw, limit))]

    async def notes(self, claw: str, limit: int = 100) -> list[Note]:
        sql = "SELECT * FROM notes WHERE claw = ? ORDER BY at DESC, id DESC LIMIT ?"
        return [Note(**dict(row)) for row in await self._read(sql, (claw, limit))]

    # -- schedules and fires --------------------------------------------------------------------

    _PUT_SCHEDULE = """
        INSERT INTO schedules (claw, name, spec, action, misfire, source, next_fire, created_at)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (claw, name) DO UPDATE SET
            spec = excluded.spec, action = excluded.action, misfire = excluded.misfire,
            source = excluded.source, next_fire = excluded.next_fire
        RETURNING *
    """

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
        [row] = await self._write(lambda conn: fetch(conn, self._PUT_SCHEDULE, params))
        return Schedule(**_decode(row, "spec", "action"))

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

        def put(conn: sqlite3.Connection) -> None:
            for row in rows:
                conn.execute(self._PUT_SCHEDULE, row).fetchall()

        await self._write(put)

    async def delete_schedule(self, schedule_id: int) -> bool:
        sql = "DELETE FROM schedules WHERE id = ? RETURNING id"
        return bool(await self._write(lambda conn: fetch(conn, sql, (schedule_id,))))

    async def schedules(self, claw: str | None = None) -> list[Schedule]:
        if claw is None:
            rows = await self._read("SELECT * FROM schedules ORDER BY claw, name")
        else:
            rows = await self._read("SELECT * FROM schedules WHERE claw = ? ORDER BY name", (claw,))
        return [Schedule(**_decode(row, "spec", "action")) for row in rows]

    async def set_next_fire(self, schedule_id: int, next_fire: float | None) -> None:
        sql = "UPDATE schedules SET next_fire = ? WHERE id = ?"
        await self._change(sql, (next_fire, schedule_id), f"no schedule {schedule_id}")

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
        waiting = """
            SELECT 1 FROM messages
            WHERE mailbox = ? AND state = 'queued' AND kind = 'fire' AND key LIKE ? LIMIT 1
        """

        def claim(conn: sqlite3.Connection) -> bool:
            nonlocal message, outcome
            moved = "UPDATE schedules SET next_fire = ? WHERE id = ?"
            if conn.execute(moved, (next_fire, schedule_id)).rowcount == 0:
                raise StoreError(f"no schedule {schedule_id}")
            if merge and message and fetch(conn, waiting, (message.mailbox, f"schedule:{schedule_id}:%")):
                message, outcome = None, "merged"
            fire = """
                INSERT INTO fires (schedule_id, slot, outcome, fired_at) VALUES (?, ?, ?, ?)
                ON CONFLICT DO NOTHING RETURNING slot
            """
            if not fetch(conn, fire, (schedule_id, slot, outcome, now)):
                return False
            if message:
                m = message
                _enqueue(conn, (m.mailbox, m.content, m.sender, m.thread, m.kind, None, m.key, "[]"), now)
            return True

        return await self._write(claim)

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
        sql = "UPDATE fires SET outcome = ?, run_id = ?, error = ? WHERE schedule_id = ? AND slot = ?"
        params = (outcome, run_id, error, schedule_id, slot)

        def finish(conn: sqlite3.Connection) -> None:
            if conn.execute(sql, params).rowcount == 0:
                raise StoreError(f"no fire of schedule {schedule_id} at slot {slot}")
            if ack is not None:
                conn.execute("UPDATE messages SET state = 'done' WHERE id = ?", (ack,))

        await self._write(finish)

    async def fires(self, schedule_id: int, limit: int = 20) -> list[Fire]:
        sql = "SELECT * FROM fires WHERE schedule_id = ? ORDER BY slot DESC LIMIT ?"
        return [Fire(**dict(row)) for row in await self._read(sql, (schedule_id, limit))]

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
            VALUES (?, ?, ?, ?, ?, ?, ?, ?)
        """
        params = (claw, tool, run_id, args_bytes, duration, outcome, error, self._clock())
        await self._write(lambda conn: fetch(conn, sql, params))

    async def tool_calls(self, claw: str | None = None, limit: int = 50) -> list[ToolCall]:
        if claw is None:
            rows = await self._read("SELECT * FROM tool_calls ORDER BY id DESC LIMIT ?", (limit,))
        else:
            sql = "SELECT * FROM tool_calls WHERE claw = ? ORDER BY id DESC LIMIT ?"
            rows = await self._read(sql, (claw, limit))
        return [ToolCall(**dict(row)) for row in rows]

    # -- activity log ---------------------------------------------------------------------------

    async def add_events(
        self, events: Sequence[tuple[float, EventKind, str | None, dict[str, Any]]]
    ) -> list[Event]:
        rows = [(at, kind, claw, json.dumps(data)) for at, kind, claw, data in events]

        def add(conn: sqlite3.Connection) -> list[Event]:
            added = []
            for row, (at, kind, claw, data) in zip(rows, events, strict=True):
                cursor = conn.execute("INSERT INTO events (at, kind, claw, data) VALUES (?, ?, ?, ?)", row)
                assert cursor.lastrowid is not None
                added.append(Event(cursor.lastrowid, at, kind, claw, data))
            if added:
                conn.execute("DELETE FROM events WHERE id <= ?", (added[-1].id - EVENTS_KEPT,))
            return added

        return await self._write(add)

    async def events(self, claw: str | None = None, *, after: int = 0, limit: int = 100) -> list[Event]:
        rows = await self._read(_EVENTS, (after, claw, claw, limit))
        return [Event(**_decode(row, "data")) for row in reversed(rows)]


def read_events(path: Path, claw: str | None = None, limit: int = 100) -> list[Event]:
    """`SqliteStore.events` of a state store no host has open (`clawmcp logs` without a host), read
    only: nothing is written, nothing migrated."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            conn.row_factory = sqlite3.Row
            rows = fetch(conn, _EVENTS, (0, claw, claw, limit))
    except sqlite3.Error as e:
        raise StoreError(f"cannot read the activity log in {path}: {e}") from e
    return [Event(**_decode(row, "data")) for row in reversed(rows)]

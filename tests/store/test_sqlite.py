"""What only `SqliteStore` has: its file, its settings, its migrations, its concurrency."""

from __future__ import annotations

import contextlib
import re
import sqlite3
from pathlib import Path

import anyio
import pytest

from clawmcp.errors import StoreError
from clawmcp.store.sqlite import SCHEMA_VERSION, SqliteStore, migrate

pytestmark = pytest.mark.anyio


def query(path: Path, sql: str) -> list[tuple[object, ...]]:
    """`sql` run on a connection of its own, as another process would."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return conn.execute(sql).fetchall()


def schema(path: Path) -> list[tuple[object, ...]]:
    return query(path, "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name")


# -- the file and its settings ----------------------------------------------------------------------


async def test_the_store_writes_in_wal_mode_with_full_sync_and_foreign_keys(tmp_path: Path) -> None:
    async with SqliteStore(tmp_path / "state.db") as store:
        assert await store.pragmas() == {
            "journal_mode": "wal",
            "synchronous": 2,  # FULL
            "foreign_keys": 1,
            "busy_timeout": 5000,
        }
    assert query(tmp_path / "state.db", "PRAGMA journal_mode") == [("wal",)]


async def test_synchronous_normal_can_be_chosen(tmp_path: Path) -> None:
    async with SqliteStore(tmp_path / "state.db", synchronous="NORMAL") as store:
        assert (await store.pragmas())["synchronous"] == 1


async def test_open_creates_the_missing_parent_folders(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "state.db"
    async with SqliteStore(path) as store:
        await store.enqueue("inbox", "hi")
    assert path.is_file()


async def test_what_was_committed_is_there_after_reopening(tmp_path: Path) -> None:
    async with SqliteStore(tmp_path / "state.db") as store:
        message, _ = await store.enqueue("inbox", "hi", key="k")
        await store.claim("inbox")
        await store.start_run("c", "t", "message", "hi", message_id=message.id)
    async with SqliteStore(tmp_path / "state.db") as store:
        assert await store.requeue_running() == 1
        assert await store.interrupt_running() == 1
        assert await store.enqueue("inbox", "again", key="k") == (await store.get_message(message.id), False)


async def test_a_store_can_be_opened_again_after_closing(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.db")
    async with store:
        await store.enqueue("inbox", "one")
    async with store:
        await store.enqueue("inbox", "two")
        assert await store.depth("inbox") == 2


async def test_a_store_that_is_open_refuses_to_open_again(tmp_path: Path) -> None:
    async with SqliteStore(tmp_path / "state.db") as store:
        with pytest.raises(StoreError, match="already open"):
            await store.open()


async def test_a_store_never_opened_refuses_reads_and_writes(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.db")
    with pytest.raises(StoreError, match="not open"):
        await store.enqueue("inbox", "hi")
    with pytest.raises(StoreError, match="not open"):
        await store.depth("inbox")


async def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(b"these are not the pages you are looking for\n" * 100)
    with pytest.raises(
        StoreError, match=re.escape(f"cannot open state store {path}: file is not a database")
    ):
        await SqliteStore(path).open()


async def test_a_path_under_a_plain_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(StoreError, match="cannot open state store"):
        await SqliteStore(tmp_path / "file" / "state.db").open()


# -- migrations ---------------------------------------------------------------------------------------


async def test_an_empty_file_is_migrated_to_the_schema_version(tmp_path: Path) -> None:
    (tmp_path / "state.db").touch()
    async with SqliteStore(tmp_path / "state.db"):
        pass
    assert query(tmp_path / "state.db", "PRAGMA user_version") == [(SCHEMA_VERSION,)]


@pytest.mark.parametrize("version", range(SCHEMA_VERSION))
async def test_a_file_at_an_older_version_is_migrated_to_the_schema_of_a_fresh_one(
    tmp_path: Path, version: int
) -> None:
    async with SqliteStore(tmp_path / "fresh.db"):
        pass
    with contextlib.closing(sqlite3.connect(tmp_path / "old.db", isolation_level=None)) as conn:
        migrate(conn, upto=version)
    assert query(tmp_path / "old.db", "PRAGMA user_version") == [(version,)]
    async with SqliteStore(tmp_path / "old.db"):
        pass
    assert query(tmp_path / "old.db", "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert schema(tmp_path / "old.db") == schema(tmp_path / "fresh.db")


async def test_a_file_from_a_newer_clawmcp_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    query(path, f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError) as refused:
        await SqliteStore(path).open()
    assert str(path) in str(refused.value)
    assert f"schema version {SCHEMA_VERSION + 1}" in str(refused.value)
    assert f"only up to {SCHEMA_VERSION}" in str(refused.value)
    assert query(path, "PRAGMA user_version") == [(SCHEMA_VERSION + 1,)]


# -- concurrency --------------------------------------------------------------------------------------


async def test_concurrent_enqueues_all_commit_in_fewer_transactions(tmp_path: Path) -> None:
    async with SqliteStore(tmp_path / "state.db") as store:
        before = store.commits
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                for n in range(200):
                    tg.start_soon(store.enqueue, "inbox", f"message {n}")
        assert await store.depth("inbox") == 200
        assert 0 < store.commits - before < 200


async def test_a_failing_write_among_concurrent_ones_fails_alone(tmp_path: Path) -> None:
    async with SqliteStore(tmp_path / "state.db") as store:
        failed: list[BaseException] = []

        async def add_step_to_no_run() -> None:
            with pytest.raises(StoreError, match="FOREIGN KEY") as e:
                await store.add_step(12345, "model", {})
            failed.append(e.value)

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                for n in range(100):
                    tg.start_soon(store.enqueue, "inbox", f"message {n}")
                    if n == 50:
                        tg.start_soon(add_step_to_no_run)
        assert len(failed) == 1
        assert await store.depth("inbox") == 100


async def test_an_open_read_transaction_does_not_block_writes(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    async with SqliteStore(path) as store:
        await store.enqueue("inbox", "before")
        with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as reader:
            reader.execute("BEGIN")
            assert reader.execute("SELECT count(*) FROM messages").fetchone() == (1,)
            with anyio.fail_after(5):
                for n in range(20):
                    await store.enqueue("inbox", f"during {n}")
            assert await store.depth("inbox") == 21
            assert reader.execute("SELECT count(*) FROM messages").fetchone() == (1,)  # its snapshot
            reader.execute("COMMIT")

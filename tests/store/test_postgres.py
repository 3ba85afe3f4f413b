"""What only `PostgresStore` has: several hosts opening one database, migrations under a lock,
cancellation, a server that goes away. (Its behaviour as a store is in test_contract.py.)"""

from __future__ import annotations

from typing import Any

import anyio
import asyncpg
import pytest
from tests.pg import PostgresServer, postgres_server

from clawmcp.errors import LeaseLost, StoreError, StoreUnavailable
from clawmcp.store.postgres import SCHEMA_VERSION, PostgresStore, display_url

pytestmark = pytest.mark.anyio


async def test_hosts_opening_a_new_database_together_apply_each_migration_once(
    postgres: PostgresServer,
) -> None:
    url = await postgres.database()
    stores = [PostgresStore(url) for _ in range(4)]
    async with anyio.create_task_group() as tg:
        for store in stores:
            tg.start_soon(store.open)
    try:
        conn = await asyncpg.connect(url)
        versions = [row["version"] for row in await conn.fetch("SELECT version FROM schema_migrations")]
        await conn.close()
        assert versions == list(range(1, SCHEMA_VERSION + 1))
        message, _ = await stores[0].enqueue("a", "hi")
        assert await stores[3].get_message(message.id) == message
    finally:
        for store in stores:
            await store.close()


async def test_a_database_of_a_newer_clawmcp_is_refused(postgres: PostgresServer) -> None:
    url = await postgres.database()
    async with PostgresStore(url):
        pass
    conn = await asyncpg.connect(url)
    await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", SCHEMA_VERSION + 1)
    await conn.close()
    store = PostgresStore(url)
    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1} .* upgrade clawmcp"):
        await store.open()
    with pytest.raises(StoreError, match="not open"):
        await store.depth("a")


async def test_a_call_cancelled_in_the_middle_of_its_transaction_commits_and_the_store_goes_on(
    postgres: PostgresServer,
) -> None:
    url = await postgres.database()
    async with PostgresStore(url) as store:
        blocker = await asyncpg.connect(url)
        blocking = blocker.transaction()
        await blocking.start()  # holds key "k" of mailbox "a" until it rolls back
        await blocker.execute(
            "INSERT INTO messages (mailbox, content, thread, kind, key, available_at, created_at)"
            " VALUES ('a', 'held', 'default', 'message', 'k', 0, 0)"
        )
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                caller = anyio.CancelScope()

                async def enqueue() -> None:
                    with caller:
                        await store.enqueue("a", "sent as the caller gave up", key="k")

                tg.start_soon(enqueue)
                waiting = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                while not await blocker.fetchval(waiting):  # noqa: ASYNC110 (a server state, no event)
                    await anyio.sleep(0.01)  # until the enqueue waits for the key
                caller.cancel()
                await anyio.sleep(0.05)  # time for a cancel to reach a call that is not shielded
                await blocking.rollback()
        await blocker.close()
        message = await store.claim("a")
        assert message is not None and message.content == "sent as the caller gave up"
        assert await store.depth("a") == 1


async def test_a_store_that_cannot_be_reached_is_named_without_its_password() -> None:
    url = "postgresql://clawmcp:s3cret@/nothing?host=/nonexistent-folder&port=5432"
    assert "s3cret" not in display_url(url) and "clawmcp:***@" in display_url(url)
    with pytest.raises(StoreError, match="cannot open state store postgresql://clawmcp:\\*\\*\\*@") as e:
        await PostgresStore(url).open()
    assert "s3cret" not in str(e.value)


@pytest.mark.processes
async def test_while_the_server_is_down_calls_fail_as_unavailable_and_work_again_after() -> None:
    with postgres_server() as server:
        async with PostgresStore(server.url()) as store:
            first, _ = await store.enqueue("a", "before", thread="1")
            server.pg_ctl("-m", "immediate", "stop")
            with pytest.raises(StoreUnavailable, match="state store postgresql://postgres@/postgres"):
                await store.enqueue("a", "while down")
            server.pg_ctl("start")
            second, _ = await store.enqueue("a", "after", thread="2")
            assert [m.content for m in [await store.claim("a"), await store.claim("a")] if m] == [
                "before",
                "after",
            ]
            assert second.id > first.id


async def test_a_host_that_lost_a_claws_lease_can_write_nothing_more_for_it(postgres: PostgresServer) -> None:
    url = await postgres.database()
    async with PostgresStore(url) as a, PostgresStore(url) as b:
        claws: dict[str, Any] = {"c": {}, "d": {}}
        await a.join("a", "127.0.0.1:1", claws, ttl=30)
        await b.join("b", "127.0.0.1:2", claws, ttl=30)
        assert (await a.take(["c"], now=0.0))[0] == ["c"]
        assert (await b.take(["c"], now=0.0))[0] == []  # a holds it
        schedule = await a.put_schedule(
            "c",
            "s",
            spec={"every": 60.0},
            action={"prompt": "p"},
            misfire="latest",
            source="runtime",
            next_fire=60,
        )
        first, _ = await a.enqueue("c", "one")
        await a.enqueue("c", "two")
        claimed = await a.claim("c")
        assert claimed is not None
        run, _ = await a.start_run("c", "t", "message", "one", message_id=claimed.id)
        await a.add_step(run.id, "model", {})
        asked, _ = await a.start_run("c", "u", "ask", "an ask waiting for a person")
        waits = await a.request_approval(
            asked.id, kind="approval", tool="x.y", call_id="k", arguments={}, expires_at=9
        )

        admin = await asyncpg.connect(url)  # a pauses past its lease: by the database's clock it is gone
        await admin.execute("UPDATE hosts SET expires_at = now() - interval '1s' WHERE name = 'a'")
        await admin.close()
        taken, runs, messages = await b.take(["c"], now=0.0)
        assert (taken, runs, messages) == (["c"], 2, 1)  # b recovered what a left running or waiting
        assert (await b.get_run(asked.id)).state == "interrupted"  # type: ignore[union-attr]
        assert (await b.get_approval(waits.id)).state == "expired"  # type: ignore[union-attr]

        refused = [
            a.claim("c"),
            a.ack(first.id),
            a.nack(first.id, "x", retry_at=None),
            a.start_run("c", "t", "message", "x"),
            a.add_step(run.id, "tool_result", {}),
            a.finish_run(run.id, "done", reply="late", ack=True),
            a.interrupt_running("c"),
            a.requeue_running("c"),
            a.claim_fire(schedule.id, 60.0, next_fire=120.0),
            a.set_next_fire(schedule.id, 1.0),
            a.finish_fire(schedule.id, 60.0, "ok"),
            a.request_approval(run.id, kind="approval", tool="x.y", call_id="k", arguments={}, expires_at=0),
            a.resume_run(run.id),
            a.add_summary("c", "t", "late", through=0),
        ]
        for write in refused:
            with pytest.raises(LeaseLost, match="no longer owns Claw 'c'"):
                await write
        assert (await b.get_run(run.id)).state == "interrupted"  # type: ignore[union-attr]
        assert [s.kind for s in await b.steps(run.id)] == ["model"]
        assert (await b.get_message(first.id)).state == "queued"  # type: ignore[union-attr]
        assert await b.fires(schedule.id) == []
        again = await b.claim("c")
        assert again is not None and again.id == first.id  # b goes on with it
        await a.enqueue("c", "anyone may still tell")  # not a write of the owner's

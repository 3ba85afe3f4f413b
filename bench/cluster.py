"""Several hosts on one PostgreSQL store: messages per second, delivery latency, takeover time.

A throwaway PostgreSQL server (tests/pg.py) with fsync on, as a deployment runs it.

1. Through the mailboxes of one store, as bench/messaging.py does for SQLite: SENDERS tasks commit
   MESSAGES messages (each committed before its id returns) to 8 mailboxes whose consumers claim
   and acknowledge them; latency from the send to the claim. Baselines in the same run: plain
   asyncpg inserts into a one-table database, one commit per message from SENDERS tasks over a
   pool as large as the store's, and BATCH messages per commit.
2. Real hosts: 1, 2 and 3 `clawmcp serve` processes share 12 scripted Claws; MESSAGES / 5
   messages are committed to the Claws' mailboxes at once and the hosts run them (a run each:
   claimed, started, replied, acknowledged). Handled per second, and the latency from commit to
   the end of the run.
3. Takeover: 3 hosts (the default lease, 10 s), the owner of a Claw is killed (SIGKILL) and
   restarted, TAKEOVERS times; the time from the kill until another host holds the Claw's lease.
   Goal: lease + 2 s.

    .venv/bin/python bench/cluster.py [MESSAGES] [TAKEOVERS]
"""

from __future__ import annotations

import contextlib
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import asyncpg
from _figures import record
from messaging import through

sys.path.insert(0, str(Path(__file__).parent.parent))  # tests/pg.py: the throwaway server
from tests.pg import PostgresServer, postgres_server

from clawmcp.store.postgres import PostgresStore

SENDERS, MAILBOXES, BATCH, POOL = 100, 8, 100, 10
CLAWS = [f"c{i}" for i in range(12)]
LEASE = 10.0


async def baseline(url: str, messages: int, batch: int, many: bool = False) -> float:
    """Messages per second for plain inserts: `batch` per commit on one connection, one statement
    each (as bench/messaging.py's baseline), or with `many` all in one `executemany`; or (batch 1)
    one per commit from SENDERS tasks over a pool."""
    admin = await asyncpg.connect(url)
    await admin.execute(
        "CREATE TABLE m (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, mailbox text, content text)"
    )
    await admin.close()
    insert = "INSERT INTO m (mailbox, content) VALUES ($1, $2)"
    async with asyncpg.create_pool(url, min_size=POOL, max_size=POOL) as pool:
        start = time.perf_counter()
        if batch > 1:
            async with pool.acquire() as conn:
                for first in range(0, messages, batch):
                    rows = [(f"c{i % 8}", str(i)) for i in range(first, min(messages, first + batch))]
                    async with conn.transaction():
                        if many:
                            await conn.executemany(insert, rows)
                        else:
                            for row in rows:
                                await conn.execute(insert, *row)
        else:

            async def send(first: int) -> None:
                for i in range(first, messages, SENDERS):
                    await pool.execute(insert, f"c{i % 8}", str(i))

            async with anyio.create_task_group() as tg:
                for first in range(SENDERS):
                    tg.start_soon(send, first)
        took = time.perf_counter() - start
    return messages / took


async def ours(url: str, messages: int) -> tuple[float, list[float]]:
    """bench/messaging.py's measure through the mailboxes, on one PostgresStore."""
    async with PostgresStore(url, pool_size=POOL) as store:
        return await through(store, messages)


def manifest(folder: Path, name: str) -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(
        f"host: {{listen: '127.0.0.1:0', data_dir: state-{name}, name: {name}, lease: {LEASE}s}}\n"
        "models: {m: {provider: scripted, rules: [{reply: ok}]}}\n"
        f"claws: {{{', '.join(f'{c}: {{model: m}}' for c in CLAWS)}}}\n"
    )
    return path


@contextlib.contextmanager
def hosts(folder: Path, url: str, names: list[str]) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    """`clawmcp serve` processes on the store, each started once it has said it listens."""
    started: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name in names:
            started[name] = start(folder, url, name)
        yield started
    finally:
        for process in started.values():
            process.kill()
            process.wait()


def start(folder: Path, url: str, name: str) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "clawmcp", "serve", str(manifest(folder, name))]
    process = subprocess.Popen(
        command, cwd=folder, env={"CLAWMCP_STORE": url, "PATH": "/usr/bin:/bin"}, stderr=subprocess.PIPE
    )
    assert process.stderr is not None
    for line in process.stderr:
        if b"listening on" in line:
            return process
    raise RuntimeError(f"host {name} did not start")


async def poll(check: Callable[[], Awaitable[Any]], within: float = 60) -> None:
    """Until `check` holds: the state of other processes, read every 20 ms."""
    with anyio.fail_after(within):
        while not await check():  # noqa: ASYNC110 (another process's state: no event to wait on)
            await anyio.sleep(0.02)


async def placed(url: str, hosts: int) -> None:
    """Until every Claw has a live owner, the owners being `hosts` many."""
    conn = await asyncpg.connect(url)
    sql = """
        SELECT count(*) = $1 AND count(DISTINCT l.host) = $2 FROM claw_leases l JOIN hosts h ON h.id = l.host
        WHERE h.expires_at > now()
    """
    await poll(lambda: conn.fetchval(sql, len(CLAWS), hosts))
    await conn.close()


async def handled(
    server: PostgresServer, folder: Path, count: int, messages: int
) -> tuple[float, list[float]]:
    """Runs per second of `count` hosts draining `messages` messages, and the commit-to-done latency (ms)."""
    url = await server.database()
    with hosts(folder, url, [f"h{i}" for i in range(1, count + 1)]):
        await placed(url, count)
        async with PostgresStore(url) as store:
            start = time.perf_counter()
            async with anyio.create_task_group() as tg:
                for i in range(messages):
                    tg.start_soon(store.enqueue, CLAWS[i % len(CLAWS)], str(i))
            conn = await asyncpg.connect(url)
            await poll(lambda: conn.fetchval("SELECT count(*) = 0 FROM messages WHERE state <> 'done'"), 600)
            took = time.perf_counter() - start
            rows = await conn.fetch(
                "SELECT r.ended_at - m.created_at AS latency"
                " FROM runs r JOIN messages m ON m.id = r.message_id"
            )
            await conn.close()
    return messages / took, [r["latency"] * 1000 for r in rows]


async def takeovers(server: PostgresServer, folder: Path, times: int) -> list[float]:
    """Seconds from SIGKILL of a Claw's owner until another host holds its lease."""
    url = await server.database()
    names = ["h1", "h2", "h3"]
    took = []
    owner = """
        SELECT h.name FROM claw_leases l JOIN hosts h ON h.id = l.host
        WHERE l.claw = $1 AND h.expires_at > now()
    """
    with hosts(folder, url, names) as started:
        await placed(url, 3)
        conn = await asyncpg.connect(url)
        for n in range(times):
            claw = CLAWS[n % len(CLAWS)]
            victim = await conn.fetchval(owner, claw)
            started[victim].kill()
            killed = time.perf_counter()
            started[victim].wait()
            await poll(lambda claw=claw, victim=victim: _moved(conn.fetchval(owner, claw), victim))
            took.append(time.perf_counter() - killed)
            started[victim] = start(folder, url, victim)
            await placed(url, 3)
        await conn.close()
    return took


async def _moved(owner: Awaitable[str | None], victim: str) -> bool:
    return await owner not in (victim, None)


def percentiles(ms: list[float]) -> tuple[float, float]:
    ms = sorted(ms)
    return statistics.median(ms), ms[max(0, int(len(ms) * 0.99) - 1)]


async def main(messages: int, times: int) -> None:
    with postgres_server(fsync=True) as server, tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        single = await baseline(await server.database(), messages // 2, 1)
        batched = await baseline(await server.database(), messages, BATCH)
        many = await baseline(await server.database(), messages, BATCH, many=True)
        rate, latency = await ours(await server.database(), messages)
        drains = {n: await handled(server, folder / f"drain{n}", n, messages // 5) for n in (1, 2, 3)}
        took = await takeovers(server, folder / "takeover", times)
    p50, p99 = percentiles(latency)
    print(f"baseline, one commit per message, {SENDERS} senders {single:>9,.0f} messages/s")
    print(f"baseline, {BATCH} messages per commit           {batched:>9,.0f} messages/s")
    print(f"baseline, {BATCH} per commit in one executemany {many:>9,.0f} messages/s")
    print(f"clawmcp mailboxes, {SENDERS} senders            {rate:>9,.0f} messages/s", end="   ")
    print(f"delivery p50 {p50:.1f} ms  p99 {p99:.1f} ms")
    print(
        f"ratio to batched {rate / batched:.2f}   to one-per-commit {rate / single:.2f}",
        "  (goal: ≥ 0.8 of batched)",
    )
    record(
        f"PostgreSQL: messages/s, {SENDERS} senders (baseline: {BATCH} per commit)",
        rate,
        batched,
        "msg/s",
        "ratio ≥ 0.8",
    )
    record(f"PostgreSQL: messages/s (baseline: {BATCH} per commit, one executemany)", rate, many, "msg/s")
    record(
        f"PostgreSQL: messages/s (baseline: one commit per message, {SENDERS} senders)", rate, single, "msg/s"
    )
    record("PostgreSQL: delivery p99 under a burst", p99, None, "ms")
    for n, (drained, ends) in drains.items():
        e50, e99 = percentiles(ends)
        print(
            f"{n} host(s) running {len(CLAWS)} Claws: {drained:>7,.0f} runs/s",
            f"  commit to done p50 {e50:.0f} ms  p99 {e99:.0f} ms",
        )
        record(
            f"{n} host(s), {len(CLAWS)} Claws: messages run (baseline: one commit per message)",
            drained,
            single,
            "msg/s",
        )
    median = statistics.median(took)
    print(
        f"takeover after SIGKILL (lease {LEASE:g} s): median {median:.2f} s,",
        f"max {max(took):.2f} s of {len(took)}",
    )
    record(
        f"takeover after SIGKILL, median of {len(took)} (lease {LEASE:g} s)",
        median,
        None,
        "s",
        f"≤ {LEASE + 2:g} s",
    )


if __name__ == "__main__":
    anyio.run(
        main, int(sys.argv[1]) if len(sys.argv) > 1 else 10_000, int(sys.argv[2]) if len(sys.argv) > 2 else 5
    )

"""Durable messaging: messages per second and delivery latency, against plain aiosqlite baselines.

Ours: SENDERS tasks deliver MESSAGES messages through the mailboxes (each committed before its id
returns) to 8 mailboxes whose consumers claim and acknowledge them; latency is from the send
to the claim. In a burst the consumers fall behind, so latency is also measured at a steady pace
(one message every 2 ms). Baselines in the same run, same file system, WAL and synchronous=FULL: plain
aiosqlite inserts into a one-table database with one commit per message, and with one commit
per batch of BATCH messages. Last, one Claw with a scripted model drains MESSAGES / 5 messages
told to it at once (goal: at least 500 a second).

    .venv/bin/python bench/messaging.py [MESSAGES]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiosqlite
import anyio
from _figures import record

from clawmcp.events import Events
from clawmcp.host import Host
from clawmcp.mailbox import Mailboxes
from clawmcp.manifest import load
from clawmcp.store import Outgoing, Store
from clawmcp.store.sqlite import SqliteStore

SENDERS, MAILBOXES, BATCH = 100, 8, 100


async def baseline(path: Path, messages: int, batch: int) -> float:
    """Messages per second for plain inserts, `batch` per commit."""
    async with aiosqlite.connect(path, isolation_level=None) as db:
        await db.executescript(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;"
            "CREATE TABLE m (id INTEGER PRIMARY KEY, mailbox TEXT, content TEXT, at REAL)"
        )
        start = time.perf_counter()
        for first in range(0, messages, batch):
            await db.execute("BEGIN")
            for i in range(first, min(messages, first + batch)):
                await db.execute(
                    "INSERT INTO m (mailbox, content, at) VALUES (?, ?, ?)", (f"c{i % 8}", str(i), 0.0)
                )
            await db.execute("COMMIT")
        return messages / (time.perf_counter() - start)


def write_manifest(folder: Path, claws: int = MAILBOXES) -> Path:
    """Scripted Claws c0, c1, ... with their data_dir in `folder`."""
    names = "\n".join(f"  c{i}: {{model: m}}" for i in range(claws))
    folder.mkdir()
    path = folder / "m.yaml"
    path.write_text(
        f"host: {{data_dir: {folder}}}\nmodels: {{m: {{provider: scripted, rules: [{{reply: hi}}]}}}}\n"
        f"claws:\n{names}\n"
    )
    return path


async def ours(folder: Path, messages: int, pace: float = 0.0) -> tuple[float, list[float]]:
    """`through` a SQLite store in `folder`."""
    async with SqliteStore(folder / "state.db") as store:
        return await through(store, messages, pace)


async def through(store: Store, messages: int, pace: float = 0.0) -> tuple[float, list[float]]:
    """Messages per second through the mailboxes of an open store, and each message's
    send-to-claim latency (ms). With `pace`, one sender sends a message every `pace` seconds
    instead of a burst from SENDERS."""
    sent: dict[int, float] = {}
    latency: list[float] = []
    all_claimed = anyio.Event()
    async with anyio.create_task_group() as tg:
        mailboxes = Mailboxes(store, Events(store))

        async def consume(mailbox: str) -> None:
            while True:
                message = await mailboxes.claim(mailbox)
                if message is None:
                    await mailboxes.wait(mailbox)
                    continue
                latency.append((time.perf_counter() - sent[message.id]) * 1000)
                await store.ack(message.id)
                if len(latency) == messages:
                    all_claimed.set()

        async def send(first: int, step: int) -> None:
            for i in range(first, messages, step):
                started = time.perf_counter()
                message = await mailboxes.enqueue(Outgoing(f"c{i % MAILBOXES}", str(i)))
                sent[message.id] = started
                await anyio.sleep(pace)

        for i in range(MAILBOXES):
            tg.start_soon(consume, f"c{i}")
        start = time.perf_counter()
        async with anyio.create_task_group() as senders:
            senders_ = 1 if pace else SENDERS
            for first in range(senders_):
                senders.start_soon(send, first, senders_)
        rate = messages / (time.perf_counter() - start)
        await all_claimed.wait()
        tg.cancel_scope.cancel()
    return rate, latency


async def drain(folder: Path, messages: int) -> float:
    """Messages per second one Claw (a scripted model, the default 40 entries of history) handles
    from its mailbox: each a run (claimed, started, its reply committed with its history and
    acknowledgement), in a whole host."""
    host = Host(load([write_manifest(folder, claws=1)]))
    async with anyio.create_task_group() as tg:
        await tg.start(host.run)
        start = time.perf_counter()
        async with anyio.create_task_group() as senders:
            for i in range(messages):
                senders.start_soon(host.claws.tell, "c0", str(i))
        while await host.store.depth("c0"):
            await host.claws.settled.wait()
        rate = messages / (time.perf_counter() - start)
        host.runtime.stop()
        tg.cancel_scope.cancel()
    return rate


def percentiles(ms: list[float]) -> tuple[float, float]:
    ms = sorted(ms)
    return statistics.median(ms), ms[int(len(ms) * 0.99) - 1]


async def main(messages: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        single = await baseline(folder / "single.db", messages // 10, 1)
        batched = await baseline(folder / "batched.db", messages, BATCH)
        rate, latency = await ours(folder / "burst", messages)
        _, paced = await ours(folder / "paced", 1_000, pace=0.002)
        drained = await drain(folder / "drain", messages // 5)
    p50, p99 = percentiles(latency)
    paced50, paced99 = percentiles(paced)
    print(f"baseline, one commit per message     {single:>9,.0f} messages/s")
    print(f"baseline, {BATCH} messages per commit    {batched:>9,.0f} messages/s")
    print(f"clawmcp router, {SENDERS} senders         {rate:>9,.0f} messages/s", end="   ")
    print(f"delivery p50 {p50:.1f} ms  p99 {p99:.1f} ms")
    print(f"clawmcp router, one message / 2 ms   delivery p50 {paced50:.1f} ms  p99 {paced99:.1f} ms")
    print(f"ratio to batched {rate / batched:.2f}   to one-per-commit {rate / single:.1f}", end="   ")
    print("(goal: ≥ 0.8 of batched)")
    record(
        f"messages/s, {SENDERS} senders (baseline: {BATCH} per commit)", rate, batched, "msg/s", "ratio ≥ 0.8"
    )
    record("messages/s (baseline: one commit per message)", rate, single, "msg/s")
    print(f"one Claw draining its mailbox         {drained:>9,.0f} messages/s (goal: ≥ 500)")
    record(
        "one Claw's mailbox drained, scripted (baseline: one commit per message)",
        drained,
        single,
        "msg/s",
        "≥ 500 msg/s",
    )
    record("delivery p99 under a burst", p99, None, "ms")
    record("delivery p99, one message / 2 ms", paced99, None, "ms")


if __name__ == "__main__":
    anyio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)

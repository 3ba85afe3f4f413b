"""Enqueue messages into a SqliteStore from several tasks, as fast as it goes, printing the id of
each message once its enqueue has returned (that is, once it is committed).

Run by test_sqlite_crash.py, which kills this process at a random moment: usage: crash_writer.py DB
"""

from __future__ import annotations

import itertools
import sys

import anyio

from clawmcp.store.sqlite import SqliteStore

WRITERS = 8


async def enqueue_forever(store: SqliteStore, writer: int) -> None:
    for n in itertools.count():
        message, _ = await store.enqueue("crash", f"writer {writer} message {n}")
        print(message.id, flush=True)


async def main(path: str) -> None:
    async with SqliteStore(path) as store, anyio.create_task_group() as tg:
        for writer in range(WRITERS):
            tg.start_soon(enqueue_forever, store, writer)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], backend="asyncio")

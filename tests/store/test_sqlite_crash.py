"""A SqliteStore killed with SIGKILL loses none of the writes it had answered."""

from __future__ import annotations

import contextlib
import random
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

CRASH_WRITER = Path(__file__).with_name("crash_writer.py")
ROUNDS = 20


def read_ids_then_kill(path: Path, count: int) -> list[int]:
    """Run the crash writer on `path`, read `count` committed ids from it, then SIGKILL it."""
    with subprocess.Popen(
        [sys.executable, str(CRASH_WRITER), str(path)], stdout=subprocess.PIPE, text=True
    ) as child:
        assert child.stdout is not None
        guard = threading.Timer(20, child.kill)  # a hung child ends the read with EOF, not a hang
        guard.start()
        try:
            lines = [child.stdout.readline() for _ in range(count)]
        finally:
            guard.cancel()
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=10)
    assert all(line.endswith("\n") for line in lines), f"the writer stopped early: {lines[-3:]}"
    return [int(line) for line in lines]


@pytest.mark.processes
def test_every_answered_write_survives_a_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    answered: list[int] = []
    for _ in range(ROUNDS):
        # The same file every round: each writer also opens a file its predecessor crashed on.
        count = random.randint(20, 400)
        answered += read_ids_then_kill(path, count)
        with contextlib.closing(sqlite3.connect(path)) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            present = {id for (id,) in conn.execute("SELECT id FROM messages")}
        missing = set(answered) - present
        assert not missing, f"{len(missing)} answered writes lost after a kill at write {count}"
    assert len(set(answered)) == len(answered)

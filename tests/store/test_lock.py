"""One host per data_dir: the lock, what it tells others, and what a killed holder leaves."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from clawmcp.errors import HostBusy, StoreError
from clawmcp.store.lock import DataDirLock, read_lock_info

HOLDER = """
import sys
from clawmcp.store.lock import DataDirLock

with DataDirLock(sys.argv[1]) as lock:
    lock.set_info(listen="127.0.0.1:8700")
    print("locked", flush=True)
    sys.stdin.read()
"""


@contextmanager
def holder(data_dir: Path) -> Iterator[subprocess.Popen[str]]:
    """A child process that holds the lock on `data_dir` until its stdin closes or it is killed."""
    with subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(data_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        assert child.stdin is not None and child.stdout is not None
        guard = threading.Timer(20, child.kill)  # a hung child ends the read with EOF, not a hang
        guard.start()
        try:
            assert child.stdout.readline() == "locked\n"
        finally:
            guard.cancel()
        try:
            yield child
        finally:
            child.kill()
            child.wait(timeout=10)


def test_taking_the_lock_creates_the_data_dir_and_records_the_pid(tmp_path: Path) -> None:
    data_dir = tmp_path / "a" / "data"
    with DataDirLock(data_dir) as lock:
        assert json.loads(lock.path.read_text()) == {"pid": os.getpid(), "listen": None}
        lock.set_info(listen="127.0.0.1:8700")
        assert read_lock_info(data_dir) == {"pid": os.getpid(), "listen": "127.0.0.1:8700"}
    assert read_lock_info(data_dir) is None


def test_a_second_lock_on_the_same_data_dir_raises_host_busy_naming_the_holder(tmp_path: Path) -> None:
    busy = re.escape(f"another clawmcp host (pid {os.getpid()}) is using {tmp_path}; stop it")
    with DataDirLock(tmp_path), pytest.raises(HostBusy, match=busy):
        DataDirLock(tmp_path).acquire()


def test_a_refused_lock_leaves_the_holders_info_intact(tmp_path: Path) -> None:
    with DataDirLock(tmp_path) as lock:
        lock.set_info(listen="127.0.0.1:8700")
        with pytest.raises(HostBusy):
            DataDirLock(tmp_path).acquire()
        assert read_lock_info(tmp_path) == {"pid": os.getpid(), "listen": "127.0.0.1:8700"}


def test_a_released_lock_can_be_taken_again(tmp_path: Path) -> None:
    with DataDirLock(tmp_path):
        pass
    with DataDirLock(tmp_path) as lock:
        assert read_lock_info(tmp_path) == {"pid": os.getpid(), "listen": None}
    lock.release()  # releasing twice is harmless


def test_read_lock_info_of_a_data_dir_never_locked_is_none(tmp_path: Path) -> None:
    assert read_lock_info(tmp_path / "nothing here") is None


@pytest.mark.processes
def test_a_lock_held_by_another_process_is_busy_and_tells_its_info(tmp_path: Path) -> None:
    with holder(tmp_path) as child:
        assert read_lock_info(tmp_path) == {"pid": child.pid, "listen": "127.0.0.1:8700"}
        with pytest.raises(HostBusy, match=re.escape(f"(pid {child.pid})")):
            DataDirLock(tmp_path).acquire()


@pytest.mark.processes
def test_a_holder_killed_with_sigkill_leaves_the_lock_free(tmp_path: Path) -> None:
    with holder(tmp_path) as child:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        assert read_lock_info(tmp_path) is None
        with DataDirLock(tmp_path):
            assert read_lock_info(tmp_path) == {"pid": os.getpid(), "listen": None}


def test_a_data_dir_that_cannot_be_created_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(StoreError, match=r"cannot use data_dir .*file/state"):
        DataDirLock(tmp_path / "file" / "state").acquire()

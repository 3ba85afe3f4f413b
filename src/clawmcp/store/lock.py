"""`DataDirLock`: one host per data_dir.

The lock is an exclusive `flock` on `data_dir/host.lock`. The kernel drops a flock when its holder's
file is closed, which includes any exit of the process, even by SIGKILL; so a crashed host never
leaves a stale lock behind and there is no pid file to clean up. While the lock is held, the file
holds JSON about its holder (`{"pid": ..., "listen": ...}`) so that other commands can find the
running host with `read_lock_info`.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from clawmcp.errors import HostBusy, StoreError

__all__ = ["LOCK_FILE", "DataDirLock", "read_lock_info"]

LOCK_FILE = "host.lock"


class DataDirLock:
    """An exclusive lock on a data_dir: `with DataDirLock(data_dir) as lock: ...`.

    Entering creates the data_dir if needed and raises `HostBusy` when another host holds the lock.
    """

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / LOCK_FILE
        self._fd: int | None = None
        self._info: dict[str, Any] = {}

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    def acquire(self) -> None:
        """Take the lock and write this process's pid into it; raise `HostBusy` if it is taken."""
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this DataDirLock")
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            # No O_TRUNC: until we hold the lock, the file's content belongs to the holder.
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise StoreError(f"cannot use data_dir {self.data_dir}: {e.strerror}") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_info(fd).get("pid", "?")
            os.close(fd)
            raise HostBusy(
                f"another clawmcp host (pid {pid}) is using {self.data_dir}; stop it or use another data_dir"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._info = {"pid": os.getpid(), "listen": None}
        self._write_info()

    def set_info(self, **info: Any) -> None:
        """Add JSON values to what the lock file tells others, e.g. `set_info(listen="host:port")`."""
        self._info.update(info)
        self._write_info()

    def release(self) -> None:
        """Give the lock up; releasing a lock not held does nothing."""
        if self._fd is None:
            return
        os.ftruncate(self._fd, 0)
        os.close(self._fd)  # closing the file drops the flock
        self._fd = None

    def _write_info(self) -> None:
        if self._fd is None:
            raise RuntimeError(f"{self.path} is not held")
        data = json.dumps(self._info).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)


def read_lock_info(data_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """What the host holding the lock on `data_dir` wrote into it, or None when no host holds it.

    The dict is empty when a holder has not written its info yet.
    """
    try:
        fd = os.open(Path(data_dir) / LOCK_FILE, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_info(fd)
        return None  # we got the lock, so nobody holds it; closing the file drops ours
    finally:
        os.close(fd)


def _read_info(fd: int) -> dict[str, Any]:
    try:
        info = json.loads(os.pread(fd, 64 * 1024, 0))
    except ValueError:  # the holder is between truncating and writing
        return {}
    return info if isinstance(info, dict) else {}

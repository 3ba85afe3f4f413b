"""A throwaway PostgreSQL server for tests and benchmarks: Debian's binaries, data and socket in a
temp folder, reached only through its Unix socket (no port, so no race for one and nothing
reachable from the network). Run as the `postgres` user when we are root: the server refuses root.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import asyncpg

__all__ = ["PostgresServer", "postgres_server"]

PREFIX = "clawmcp-pg-"
PORT = 5432  # only names the socket file (`.s.PGSQL.5432`): the server listens on no port


@dataclass
class PostgresServer:
    folder: str
    bindir: str
    run_as: list[str]
    fsync: bool = False

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@/{database}?host={self.folder}&port={PORT}"

    async def database(self) -> str:
        """A new empty database; its URL. (Through the socket: no process, no port.)"""
        name = f"t_{uuid.uuid4().hex[:12]}"
        conn = await asyncpg.connect(self.url())
        try:
            await conn.execute(f"CREATE DATABASE {name}")
        finally:
            await conn.close()
        return self.url(name)

    def pg_ctl(self, *args: str) -> None:
        data = f"{self.folder}/data"
        durable = "" if self.fsync else " -c fsync=off -c full_page_writes=off"
        options = f"-c listen_addresses='' -p {PORT} -k {self.folder}{durable}"
        subprocess.run(
            [
                *self.run_as,
                f"{self.bindir}/pg_ctl",
                "-D",
                data,
                "-l",
                f"{self.folder}/log",
                "-w",
                "-o",
                options,
                *args,
            ],
            check=True,
            capture_output=True,
        )


def _stop_strays(bindir: str, run_as: list[str]) -> None:
    """Stop the servers of test runs that were killed before they could (their owner is gone)."""
    for folder in glob.glob(f"{tempfile.gettempdir()}/{PREFIX}*"):
        try:
            with open(f"{folder}/owner") as owner:
                pid = int(owner.read())
        except (OSError, ValueError):
            continue  # being made just now
        try:
            os.kill(pid, 0)
            continue  # its test run goes on
        except ProcessLookupError:
            pass
        subprocess.run(
            [*run_as, f"{bindir}/pg_ctl", "-D", f"{folder}/data", "-m", "immediate", "stop"],
            capture_output=True,
        )
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def postgres_server(fsync: bool = False) -> Iterator[PostgresServer]:
    """Start a server in a new temp folder; stop it and remove the folder at the end. Without
    `fsync`, a commit survives a crash of the server but not of the machine: enough for tests."""
    found = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    if not found:
        raise RuntimeError("PostgreSQL is not installed: apt-get install postgresql (scripts/test does)")
    bindir = os.path.dirname(max(found, key=lambda p: int(p.split("/")[-3])))
    run_as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    _stop_strays(bindir, run_as)
    folder = tempfile.mkdtemp(prefix=PREFIX)
    with open(f"{folder}/owner", "w") as owner:
        owner.write(str(os.getpid()))
    if run_as:
        os.chown(folder, pwd.getpwnam("postgres").pw_uid, -1)
    server = PostgresServer(folder, bindir, run_as, fsync)
    try:
        initdb = [f"{bindir}/initdb", "-D", f"{folder}/data", "-U", "postgres", "--auth=trust", "--no-sync"]
        subprocess.run(
            [*run_as, *initdb, "-E", "UTF8", "--locale=C.UTF-8"],
            check=True,
            capture_output=True,
        )
        server.pg_ctl("start")
        yield server
    finally:
        subprocess.run(
            [*run_as, f"{bindir}/pg_ctl", "-D", f"{folder}/data", "-m", "immediate", "stop"],
            capture_output=True,
        )
        shutil.rmtree(folder, ignore_errors=True)

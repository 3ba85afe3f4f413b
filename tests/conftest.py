from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.pg import PostgresServer, postgres_server

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # aiosqlite runs on asyncio only


@pytest.fixture(autouse=True)
def _no_process_or_port(request: pytest.FixtureRequest) -> Iterator[None]:
    """A unit test (outside tests/e2e) starts no process and opens no network port: the core is
    tested in memory. Tests of a real process on purpose are marked `processes`."""
    if "e2e" in request.path.parts or request.node.get_closest_marker("processes"):
        yield
        return

    def refuse(what: str) -> Any:
        def refused(self: Any, *args: Any, **kwargs: Any) -> None:
            raise AssertionError(f"a unit test {what}: mark it `processes` or move it to tests/e2e")

        return refused

    def network_only(what: str, method: Any) -> Any:
        def checked(self: socket.socket, *args: Any) -> Any:
            if self.family == socket.AF_UNIX:
                return method(self, *args)
            raise AssertionError(f"a unit test {what}: mark it `processes` or move it to tests/e2e")

        return checked

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(subprocess.Popen, "__init__", refuse("started a process"))
        patch.setattr(socket.socket, "bind", network_only("opened a port", socket.socket.bind))
        patch.setattr(socket.socket, "connect", network_only("connected to a port", socket.socket.connect))
        yield


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL server for the whole test run (tests/pg.py)."""
    with postgres_server() as server:
        yield server

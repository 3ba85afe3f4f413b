"""How the host takes HTTP connections: its listening socket, and deadlines and a cap that keep
slow or idle clients from holding what others need.

Each connection must send a whole request head within `HEAD_TIMEOUT` of opening (and of its
previous response, when kept alive), and a request's body within `BODY_TIMEOUT` of its head; else
it is closed. Past `max_connections()` open connections, a new one is closed at once. Without
these, a few hundred sockets that send half a request line hold a file descriptor each, before
any token is checked, until the host can open nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import socket
from collections.abc import Iterator
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol, RequestResponseCycle

from clawmcp.errors import UserError

__all__ = ["BODY_TIMEOUT", "HEAD_TIMEOUT", "Deadlines", "QuietServer", "listen_socket", "max_connections"]

HEAD_TIMEOUT = 10.0
"""Seconds a connection has to send a request's head (line and headers)."""
BODY_TIMEOUT = 30.0
"""Seconds a request has to send its whole body once its head is in."""


def max_connections() -> int:
    """Half the process's file descriptors: the rest stay for the store, tool servers, workers."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(32, soft // 2) if soft != resource.RLIM_INFINITY else 32_768


def listen_socket(address: str, port: int) -> socket.socket:
    """The listening socket. Its protocol is named (`IPPROTO_TCP`, where `create_server` leaves 0)
    because asyncio sets TCP_NODELAY only on accepted sockets of that protocol: without it, Nagle's
    algorithm holds each response's last segment until the client's delayed ACK, ~40 ms."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        sock.listen(1024)
    except OSError as e:
        sock.close()
        shown = f"[{address}]" if family == socket.AF_INET6 else address
        raise UserError(f"cannot listen on {shown}:{port}: {e.strerror}") from None
    return sock


class Deadlines(H11Protocol):
    """uvicorn's h11 protocol with the deadlines and the cap above (passed as `http=` to its
    Config, with `head`, `body` and `cap` bound by `functools.partial`)."""

    def __init__(self, *args: Any, head: float, body: float, cap: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.head, self.body, self.cap = head, body, cap
        self.head_timer: asyncio.TimerHandle | None = None
        self.body_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.cap:
            transport.close()
            return
        self._await_head()

    def data_received(self, data: bytes) -> None:
        cycle = self.cycle
        super().data_received(data)
        if self.cycle is not cycle and self.cycle is not None and self.cycle.more_body:
            if self.body_timer is not None:
                self.body_timer.cancel()
            self.body_timer = self.loop.call_later(self.body, self._body_late, self.cycle)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self.head_timer, self.body_timer):
            if timer is not None:
                timer.cancel()
        super().connection_lost(exc)

    def _await_head(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
        self.head_timer = self.loop.call_later(self.head, self._head_late, self.cycle)

    def _head_late(self, cycle: RequestResponseCycle | None) -> None:
        if self.cycle is cycle:  # no new request head since the deadline was set
            self.transport.close()

    def _body_late(self, cycle: RequestResponseCycle) -> None:
        if cycle.more_body and not cycle.response_complete:
            self.transport.close()


class QuietServer(uvicorn.Server):
    """uvicorn without its own signal handling: the host decides when to stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

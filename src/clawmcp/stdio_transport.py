"""The stdio transport to a tool server: its process, a line per JSON-RPC message each way.

Why not the SDK's `stdio_client`: it joins each 64 KiB chunk of a long line to all the line read
so far and splits the whole again, so a big result costs time that grows with the square of its
size (20 MB: 9 CPU-seconds; 50 MB never arrived). Here lines are found in one growing buffer,
each byte looked at once, and a message over `LINE_CAP` is dropped: the call it answers gets an
error saying so, and the connection goes on.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
from collections.abc import AsyncIterator
from typing import IO, Any

import anyio
import mcp_types as types
from anyio.abc import Process
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.client.stdio import StdioServerParameters, get_default_environment
from mcp.shared.message import SessionMessage

__all__ = ["LINE_CAP", "stdio_transport"]

LINE_CAP = 16 * 1_048_576
"""Bytes one message from a tool server may have: a bigger result is an error for its call."""
_STOP_WAIT = 2.0  # seconds a server has to exit once its stdin is closed, then after SIGTERM
_ID = re.compile(rb'"id"\s*:\s*(-?\d+|"(?:[^"\\]|\\.)*")')

Streams = tuple[MemoryObjectReceiveStream[SessionMessage | Exception], MemoryObjectSendStream[SessionMessage]]


@contextlib.asynccontextmanager
async def stdio_transport(
    params: StdioServerParameters, errlog: IO[str], *, cap: int = LINE_CAP
) -> AsyncIterator[Streams]:
    """Start the server and yield the streams a `Client` takes; on exit, stop it: stdin closed,
    then SIGTERM, then SIGKILL to its process group."""
    process = await anyio.open_process(
        [params.command, *params.args],
        env=get_default_environment() | (params.env or {}),
        cwd=params.cwd,
        stderr=errlog,
        start_new_session=True,  # its own process group, so that what it starts stops with it
    )
    incoming, read = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    write, outgoing = anyio.create_memory_object_stream[SessionMessage](0)
    async with anyio.create_task_group() as tg:
        tg.start_soon(_read, process, incoming, cap)
        tg.start_soon(_write, process, outgoing)
        try:
            yield read, write
        finally:
            with anyio.CancelScope(shield=True):
                await _stop(process)
            tg.cancel_scope.cancel()
            for stream in (read, write, incoming, outgoing):
                stream.close()


async def _read(
    process: Process, incoming: MemoryObjectSendStream[SessionMessage | Exception], cap: int
) -> None:
    assert process.stdout is not None
    buffer, start, skipping = bytearray(), 0, False
    with (
        incoming,
        contextlib.suppress(anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError),
    ):
        async for chunk in process.stdout:
            seen = len(buffer)
            buffer += chunk
            while (end := buffer.find(b"\n", seen)) >= 0:
                if not skipping:
                    await incoming.send(_message(bytes(buffer[start:end])))
                skipping, start, seen = False, end + 1, end + 1
            if len(buffer) - start > cap and not skipping:  # too big: answer its call, drop the rest
                await incoming.send(_too_big(bytes(buffer[start : start + 200]), cap))
                skipping = True
            if skipping or start:
                del buffer[: len(buffer) if skipping else start]
                start = 0


def _message(line: bytes) -> SessionMessage | Exception:
    try:
        return SessionMessage(types.jsonrpc_message_adapter.validate_json(line, by_name=False))
    except ValueError as e:  # the session reports it
        return e


def _too_big(head: bytes, cap: int) -> SessionMessage | Exception:
    found = _ID.search(head)
    if found is None:
        return ValueError(f"the server sent a message over {cap // 1_048_576} MiB, without an id")
    ident: Any = found[1].decode()
    ident = int(ident) if ident.lstrip("-").isdigit() else ident[1:-1]
    message = f"the result is over {cap // 1_048_576} MiB, more than a tool result may be"
    error = types.ErrorData(code=types.INTERNAL_ERROR, message=message)
    return SessionMessage(types.JSONRPCError(jsonrpc="2.0", id=ident, error=error))


async def _write(process: Process, outgoing: MemoryObjectReceiveStream[SessionMessage]) -> None:
    assert process.stdin is not None
    with outgoing, contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
        async for message in outgoing:
            text = message.message.model_dump_json(by_alias=True, exclude_unset=True)
            await process.stdin.send(text.encode() + b"\n")


async def _stop(process: Process) -> None:
    assert process.stdin is not None
    with contextlib.suppress(OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
        await process.stdin.aclose()
    for sig in (None, signal.SIGTERM, signal.SIGKILL):
        if sig is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, sig)
        with anyio.move_on_after(_STOP_WAIT):
            await process.aclose()  # its pipes closed, the process reaped
            return

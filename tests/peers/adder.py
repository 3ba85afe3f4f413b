"""A small SDK tool server for interop tests: `python adder.py stdio|sse|streamable-http [FD]`:
over HTTP it serves on the listening socket it inherits as file descriptor FD (bound by the test,
which so knows the port, with no race for it)."""

from __future__ import annotations

import contextlib
import socket
import sys

import anyio
import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from mcp.types import Icon, ToolAnnotations

server = MCPServer("adder")


@server.tool(title="Adder", annotations=ToolAnnotations(read_only_hint=True), icons=[Icon(src="data:,+")])
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


@server.tool()
async def wait(seconds: float) -> str:
    """Answer after a while."""
    await anyio.sleep(seconds)
    return "done"


@server.tool()
async def count(to: int, ctx: Context) -> str:
    """Count to `to`, reporting each step as progress."""
    for n in range(1, to + 1):
        await ctx.report_progress(n, to, f"at {n}")
    return f"counted to {to}"


@server.tool()
async def grow(ctx: Context) -> str:
    """Add a tool `fresh` and tell clients of both eras that the tool list changed."""
    server.add_tool(lambda: "fresh", name="fresh", description="Added at run time.")
    with contextlib.suppress(Exception):  # 2026-era listeners
        await ctx.notify_tools_changed()
    with contextlib.suppress(Exception):  # handshake-era sessions
        await ctx.request_context.session.send_tool_list_changed()
    return "grown"


if __name__ == "__main__":
    transport = sys.argv[1]
    if transport == "stdio":
        server.run("stdio")
    else:
        app = server.sse_app() if transport == "sse" else server.streamable_http_app()
        listening = socket.socket(fileno=int(sys.argv[2]))
        anyio.run(uvicorn.Server(uvicorn.Config(app, log_level="warning")).serve, [listening])

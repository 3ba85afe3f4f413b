"""A small SDK tool server for interop tests: `python adder.py stdio|sse|streamable-http [PORT]`."""

from __future__ import annotations

import contextlib
import sys

import anyio
from mcp.server.mcpserver import Context, MCPServer

server = MCPServer("adder")


@server.tool()
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
        server.run(transport, host="127.0.0.1", port=int(sys.argv[2]))  # type: ignore[call-overload]

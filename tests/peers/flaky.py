"""A stdio tool server that quits a moment after it starts, so its connections keep dropping."""

from __future__ import annotations

import anyio
from mcp.server.mcpserver import MCPServer

server = MCPServer("flaky")


@server.tool()
def noop() -> str:
    """Do nothing."""
    return "ok"


async def main() -> None:
    with anyio.move_on_after(0.5):
        await server.run_stdio_async()


if __name__ == "__main__":
    anyio.run(main)

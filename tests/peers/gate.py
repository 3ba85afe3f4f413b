"""A tool server whose `hold` waits for the test: `python gate.py FIFO` (stdio).

`hold()` opens the named pipe FIFO for reading, which blocks until the test opens it for
writing, and returns what the test wrote: a run held in a tool call for as long as a test needs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import anyio
from mcp.server.mcpserver import MCPServer

server = MCPServer("gate")


@server.tool()
async def hold() -> str:
    """Wait until released; what the releaser said."""
    return await anyio.to_thread.run_sync(Path(sys.argv[1]).read_text, abandon_on_cancel=True)


if __name__ == "__main__":
    server.run("stdio")

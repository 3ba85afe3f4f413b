"""A tool server whose `hold` waits for the test: `python gate.py FIFO` (stdio).

`hold()` waits until the test writes to the named pipe FIFO, and returns what it wrote: a run held
in a tool call for as long as a test needs. The pipe is read without blocking the event loop, so
a cancelled call or a closed stdin ends the server at once.
"""

from __future__ import annotations

import os
import sys

import anyio
from mcp.server.mcpserver import MCPServer

server = MCPServer("gate")


@server.tool()
async def hold() -> str:
    """Wait until released; what the releaser said."""
    fd = os.open(sys.argv[1], os.O_RDONLY | os.O_NONBLOCK)  # no writer yet: nothing to read
    try:
        said = b""
        while True:
            await anyio.wait_readable(fd)
            chunk = os.read(fd, 65536)
            if not chunk and said:  # the writer wrote and closed
                return said.decode()
            said += chunk
    finally:
        os.close(fd)


if __name__ == "__main__":
    server.run("stdio")

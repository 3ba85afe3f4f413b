"""A tool server whose results are as big as asked: `python big.py` (stdio)."""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer

server = MCPServer("big")


@server.tool()
def big(megabytes: float) -> str:
    """A text of `megabytes` MiB."""
    return "x" * int(megabytes * 1_048_576)


if __name__ == "__main__":
    server.run("stdio")

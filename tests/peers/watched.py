"""A tool server whose resource changes: `python watched.py` (stdio), or `server()` in process.

`note://inbox` holds the text last given to the tool `change`; each change (and each of the
`count` updates of `burst`) is told to the clients that follow the resource, in both eras:
`subscriptions/listen` (2026) and `resources/subscribe` (the handshake era).
"""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.types import EmptyResult, SubscribeRequestParams

INBOX = "note://inbox"


def server() -> MCPServer:
    mcp = MCPServer("watched")
    text = [""]
    followers: list[Any] = []  # the sessions of handshake-era subscribers

    @mcp.resource(INBOX)
    def inbox() -> str:
        return text[0]

    async def updated(ctx: Context, uri: str = INBOX) -> None:
        await ctx.notify_resource_updated(uri)
        for session in followers:  # each one, whatever it follows (the spec allows sub-resources)
            await session.send_resource_updated(uri)

    async def change(new: str, ctx: Context, uri: str = INBOX) -> str:
        """Change the inbox (or tell of a change of another URI)."""
        text[0] = new
        await updated(ctx, uri)
        return "changed"

    async def burst(count: int, ctx: Context) -> str:
        """Tell of `count` changes in a row."""
        for _ in range(count):
            await updated(ctx)
        return f"{count} updates"

    async def subscribe(ctx: Any, params: SubscribeRequestParams) -> EmptyResult:
        followers.append(ctx.session)
        return EmptyResult()

    mcp.add_tool(change)
    mcp.add_tool(burst)
    mcp._lowlevel_server.add_request_handler("resources/subscribe", SubscribeRequestParams, subscribe)
    return mcp


if __name__ == "__main__":
    server().run("stdio")

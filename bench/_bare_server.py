"""The floor for bench/http.py: a bare SDK 2.x `MCPServer` over streamable HTTP, at /mcp.

.venv/bin/python bench/_bare_server.py PORT
"""

from __future__ import annotations

import sys
from datetime import datetime
from zoneinfo import ZoneInfo

from mcp.server.mcpserver import MCPServer
from pydantic import BaseModel

server = MCPServer("bare", log_level="WARNING")


class TimeResult(BaseModel):
    """What mcp-server-time's `get_current_time` returns."""

    timezone: str
    datetime: str
    day_of_week: str
    is_dst: bool


@server.tool()
def get_current_time(timezone: str) -> TimeResult:
    """Current time in an IANA timezone."""
    now = datetime.now(ZoneInfo(timezone))
    return TimeResult(
        timezone=timezone,
        datetime=now.isoformat(timespec="seconds"),
        day_of_week=now.strftime("%A"),
        is_dst=bool(now.dst()),
    )


@server.tool()
def tell(message: str) -> str:
    """Does nothing with the message."""
    return "queued"


if __name__ == "__main__":
    server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[1]))

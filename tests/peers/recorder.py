"""A tool server that records what it is given: `python recorder.py DB` (stdio).

`record(n)` adds a row to `deliveries` every time and to `seen` (unique) once: the handler of the
crash test, which makes its effect happen once however often a message is delivered.
"""

from __future__ import annotations

import sqlite3
import sys

from mcp.server.mcpserver import MCPServer

server = MCPServer("recorder")
db = sqlite3.connect(
    sys.argv[1], isolation_level=None, check_same_thread=False
)  # tools run in worker threads
db.execute("PRAGMA journal_mode = WAL")
db.execute("CREATE TABLE IF NOT EXISTS seen (n TEXT PRIMARY KEY)")
db.execute("CREATE TABLE IF NOT EXISTS deliveries (n TEXT)")


@server.tool()
def record(n: str) -> str:
    """Record one delivery of `n`."""
    with db:
        db.execute("INSERT INTO deliveries VALUES (?)", (n,))
        db.execute("INSERT OR IGNORE INTO seen VALUES (?)", (n,))
    return "recorded"


if __name__ == "__main__":
    server.run("stdio")

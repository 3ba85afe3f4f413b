"""A tool server that asks for input during a call: `python greeter.py` (stdio). `greet` asks
the client for a name (elicitation, in either protocol era) and greets it."""

from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import AcceptedElicitation, Elicit, ElicitationResult, MCPServer, Resolve
from pydantic import BaseModel

server = MCPServer("greeter")


class Name(BaseModel):
    name: str


def ask_name() -> Elicit[Name]:
    return Elicit("What is your name?", Name)


@server.tool()
def greet(asked: Annotated[ElicitationResult[Name], Resolve(ask_name)]) -> str:
    """Greet whoever answers."""
    return (
        f"hello {asked.data.name}" if isinstance(asked, AcceptedElicitation) else f"no name ({asked.action})"
    )


if __name__ == "__main__":
    server.run("stdio")

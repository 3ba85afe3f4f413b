"""The built-in `claw__*` tools every Claw has (DESIGN §3), run inside the host.

They live apart from the tool hub because they act on the Claw itself (its memory, later its
messages and schedules), not on a tool server.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import jsonschema

from clawmcp.models import ToolSpec
from clawmcp.store import Store

__all__ = ["Builtins"]

_SPECS = [
    ToolSpec(
        "claw__remember",
        "Store a note in your persistent memory. A note with the same key replaces the old one.",
        {
            "type": "object",
            "properties": {
                "text": {"type": "string", "minLength": 1, "description": "what to remember"},
                "key": {"type": "string", "description": "optional name; reusing it replaces that note"},
            },
            "required": ["text"],
            "additionalProperties": False,
        },
    ),
    ToolSpec(
        "claw__recall",
        "Search your persistent memory: notes that contain every word of the query, best first.",
        {
            "type": "object",
            "properties": {
                "query": {"type": "string", "minLength": 1},
                "limit": {"type": "integer", "minimum": 1, "maximum": 50, "default": 5},
            },
            "required": ["query"],
            "additionalProperties": False,
        },
    ),
]


class Builtins:
    """The built-in tools of the Claws of one host."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.specs = {spec.name: spec for spec in _SPECS}

    def specs_for(self, claw: str) -> list[ToolSpec]:
        return list(self.specs.values())

    async def call(self, claw: str, name: str, arguments: Any) -> tuple[str, bool]:
        """Run a built-in tool for a Claw: the result text and whether it is an error."""
        spec = self.specs.get(name)
        if spec is None:
            return f"no built-in tool '{name}'", True
        error = jsonschema.exceptions.best_match(
            jsonschema.Draft202012Validator(spec.parameters).iter_errors(arguments)
        )
        if error is not None:
            where = ".".join(str(p) for p in error.absolute_path)
            return f"{name}: invalid arguments: {where + ': ' if where else ''}{error.message}", True
        if name == "claw__remember":
            note = await self.store.remember(claw, arguments["text"], arguments.get("key"))
            return f"remembered (note {note.id})", False
        notes = await self.store.recall(claw, arguments["query"], arguments.get("limit", 5))
        if not notes:
            return f"no note matches {arguments['query']!r}", False
        return json.dumps(
            [
                {
                    "key": n.key,
                    "text": n.text,
                    "at": datetime.fromtimestamp(n.at, UTC).isoformat(timespec="seconds"),
                }
                for n in notes
            ]
        ), False

"""The conversation a provider turns into the model's next `Turn`, and the interface every provider
has: plain data, no network (the runtime imports this, not the providers).

A `Msg` is the user's text, an assistant turn (text and tool calls), or the results of one turn's
tool calls. Each provider maps it to its own wire format.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from clawmcp.manifest.model import Model

__all__ = ["Msg", "Provider", "ToolRequest", "ToolResult", "ToolSpec", "Turn"]


@dataclass(frozen=True)
class ToolSpec:
    """A tool as a model sees it: its wire name, what it does and the JSON Schema of its arguments."""

    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class ToolRequest:
    """A tool call the model asks for. `arguments` is what the model sent: normally a JSON object,
    but a model may send anything, and the runtime answers that with an error result."""

    id: str
    name: str
    arguments: Any


@dataclass(frozen=True)
class ToolResult:
    call_id: str
    name: str
    text: str
    is_error: bool = False


@dataclass(frozen=True)
class Turn:
    """One answer of the model. No `calls` means `text` is the final reply."""

    text: str = ""
    calls: tuple[ToolRequest, ...] = ()
    input_tokens: int | None = None
    output_tokens: int | None = None


@dataclass(frozen=True)
class Msg:
    role: Literal["user", "assistant", "tool"]
    text: str = ""
    calls: tuple[ToolRequest, ...] = ()  # assistant
    results: tuple[ToolResult, ...] = field(default=())  # tool: the results of one turn's calls


class Provider(abc.ABC):
    """One configured model."""

    def __init__(self, name: str, model: Model) -> None:
        self.name, self.model = name, model

    @abc.abstractmethod
    async def complete(self, system: str, messages: Sequence[Msg], tools: Sequence[ToolSpec]) -> Turn:
        """The model's next turn. Raises `ModelError` when the provider refuses or cannot be reached."""

"""Where a Claw's reasoning comes from: one small interface, three providers.

A provider turns a conversation (system text, messages, the tools on offer) into the model's next
`Turn`: text, tool calls, or both. `openai` and `anthropic` speak their wire formats over httpx2
(no vendor SDKs); `scripted` follows the manifest's rules and needs no network.

The conversation is provider-neutral: a `Msg` is the user's text, an assistant turn (text and tool
calls), or the results of one turn's tool calls. Each provider maps it to its own format.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Self

import httpx2

from clawmcp.manifest.model import Model

__all__ = ["Msg", "Provider", "Providers", "ToolRequest", "ToolResult", "ToolSpec", "Turn"]


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


class Providers(Mapping[str, Provider]):
    """A provider for every model of a manifest, sharing one HTTP client. Use `async with`."""

    def __init__(self, models: Mapping[str, Model], *, retry_base: float = 0.5) -> None:
        from clawmcp.models import anthropic, openai, scripted

        self._http = httpx2.AsyncClient(limits=httpx2.Limits(max_connections=200))
        kinds: dict[str, Any] = {
            "openai": lambda n, m: openai.OpenAI(n, m, self._http, retry_base),
            "anthropic": lambda n, m: anthropic.Anthropic(n, m, self._http, retry_base),
            "scripted": scripted.Scripted,
        }
        self._providers: dict[str, Provider] = {
            name: kinds[model.provider](name, model) for name, model in models.items()
        }

    def __getitem__(self, name: str) -> Provider:
        return self._providers[name]

    def __iter__(self) -> Any:
        return iter(self._providers)

    def __len__(self) -> int:
        return len(self._providers)

    async def __aenter__(self) -> Self:
        await self._http.__aenter__()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._http.__aexit__(et, e, tb)

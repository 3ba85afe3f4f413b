"""The Anthropic Messages API: `tool_use` and `tool_result` content blocks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx2

from clawmcp.manifest.model import Model
from clawmcp.models._http import HttpProvider, WireModel
from clawmcp.models.base import Msg, ToolRequest, ToolSpec, Turn

__all__ = ["API_VERSION", "DEFAULT_BASE_URL", "DEFAULT_MAX_TOKENS", "Anthropic"]

DEFAULT_BASE_URL = "https://api.anthropic.com"
API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096
"""The API requires `max_tokens`; this is sent when the manifest gives none."""
_EMPTY = "(empty)"  # the API refuses empty text blocks


class Anthropic(HttpProvider):
    def __init__(self, name: str, model: Model, http: httpx2.AsyncClient, retry_base: float) -> None:
        super().__init__(name, model, http, retry_base)
        base = (model.base_url or DEFAULT_BASE_URL).rstrip("/")
        self.url = base + ("/messages" if base.endswith("/v1") else "/v1/messages")
        self.headers = {"anthropic-version": API_VERSION, **model.headers}
        if model.api_key and (key := model.api_key.get_secret_value()):
            self.headers["x-api-key"] = key

    async def complete(self, system: str, messages: Sequence[Msg], tools: Sequence[ToolSpec]) -> Turn:
        body: dict[str, Any] = {
            "model": self.model.model,
            "max_tokens": self.model.max_tokens or DEFAULT_MAX_TOKENS,
            "messages": [_message(m) for m in messages],
        }
        if system:
            body["system"] = system
        if tools:
            body["tools"] = [
                {"name": t.name, "description": t.description, "input_schema": t.parameters} for t in tools
            ]
        if self.model.temperature is not None:
            body["temperature"] = self.model.temperature
        answer = await self.post(body, _Answer)
        text = "".join(b.text for b in answer.content if b.type == "text")
        calls = tuple(ToolRequest(b.id, b.name, b.input) for b in answer.content if b.type == "tool_use")
        usage = answer.usage or _Usage()
        return Turn(text, calls, usage.input_tokens, usage.output_tokens)


class _Block(WireModel):
    type: str
    text: str = ""
    id: str = ""
    name: str = ""
    input: Any = None


class _Usage(WireModel):
    input_tokens: int | None = None
    output_tokens: int | None = None


class _Answer(WireModel):
    content: list[_Block]
    usage: _Usage | None = None


def _message(m: Msg) -> dict[str, Any]:
    if m.role == "user":
        return {"role": "user", "content": m.text or _EMPTY}
    if m.role == "assistant":
        text = m.text or ("" if m.calls else _EMPTY)
        content: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
        content += [{"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments} for c in m.calls]
        return {"role": "assistant", "content": content}
    return {
        "role": "user",
        "content": [
            {
                "type": "tool_result",
                "tool_use_id": r.call_id,
                "content": r.text or _EMPTY,
                "is_error": r.is_error,
            }
            for r in m.results
        ],
    }

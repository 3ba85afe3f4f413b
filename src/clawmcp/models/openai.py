"""The Chat Completions wire format (`tools` / `tool_calls`): OpenAI and every compatible server
(Ollama, vLLM, llama.cpp server, LM Studio, OpenRouter)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import httpx2
import pydantic

from clawmcp.manifest.model import Model
from clawmcp.models._http import HttpProvider, WireModel
from clawmcp.models.base import Msg, ToolRequest, ToolSpec, Turn

__all__ = ["DEFAULT_BASE_URL", "OpenAI"]

DEFAULT_BASE_URL = "https://api.openai.com/v1"


class OpenAI(HttpProvider):
    def __init__(self, name: str, model: Model, http: httpx2.AsyncClient, retry_base: float) -> None:
        super().__init__(name, model, http, retry_base)
        self.url = (model.base_url or DEFAULT_BASE_URL).rstrip("/") + "/chat/completions"
        self.headers = dict(model.headers)
        if model.api_key and (key := model.api_key.get_secret_value()):
            self.headers["Authorization"] = f"Bearer {key}"

    async def complete(self, system: str, messages: Sequence[Msg], tools: Sequence[ToolSpec]) -> Turn:
        body: dict[str, Any] = {"model": self.model.model, "messages": _messages(system, messages)}
        if tools:
            body["tools"] = [
                {
                    "type": "function",
                    "function": {"name": t.name, "description": t.description, "parameters": t.parameters},
                }
                for t in tools
            ]
        if self.model.temperature is not None:
            body["temperature"] = self.model.temperature
        if self.model.max_tokens is not None:
            body["max_tokens"] = self.model.max_tokens
        answer = await self.post(body, _Answer)
        message = answer.choices[0].message
        calls = tuple(
            ToolRequest(c.id or f"call_{i}", c.function.name, _arguments(c.function.arguments))
            for i, c in enumerate(message.tool_calls or ())
        )
        usage = answer.usage or _Usage()
        return Turn(_text(message.content), calls, usage.prompt_tokens, usage.completion_tokens)


class _Function(WireModel):
    name: str
    arguments: Any = None


class _Call(WireModel):
    id: str | None = None
    function: _Function


class _Part(WireModel):
    type: str
    text: str = ""


class _Message(WireModel):
    content: str | list[_Part | str] | None = None
    tool_calls: list[_Call] | None = None


class _Choice(WireModel):
    message: _Message


class _Usage(WireModel):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class _Answer(WireModel):
    choices: list[_Choice] = pydantic.Field(min_length=1)
    usage: _Usage | None = None


def _text(content: str | list[_Part | str] | None) -> str:
    """The reply's text; several servers send a list of parts, whose text parts are joined."""
    if content is None or isinstance(content, str):
        return content or ""
    return "".join(
        p if isinstance(p, str) else p.text for p in content if isinstance(p, str) or p.type == "text"
    )


def _arguments(raw: Any) -> Any:
    """The arguments are a JSON string; one that does not parse is passed on as it is."""
    raw = raw or "{}"
    try:
        return json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return raw


def _messages(system: str, messages: Sequence[Msg]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    for m in messages:
        if m.role == "user":
            out.append({"role": "user", "content": m.text})
        elif m.role == "assistant":
            message: dict[str, Any] = {"role": "assistant", "content": m.text or None}
            if m.calls:
                message["tool_calls"] = [
                    {
                        "id": c.id,
                        "type": "function",
                        "function": {
                            "name": c.name,
                            "arguments": c.arguments
                            if isinstance(c.arguments, str)
                            else json.dumps(c.arguments),
                        },
                    }
                    for c in m.calls
                ]
            out.append(message)
        else:
            out += [{"role": "tool", "tool_call_id": r.call_id, "content": r.text} for r in m.results]
    return out

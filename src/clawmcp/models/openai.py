"""The Chat Completions wire format (`tools` / `tool_calls`): OpenAI and every compatible server
(Ollama, vLLM, llama.cpp server, LM Studio, OpenRouter)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import httpx2

from clawmcp.errors import ModelError
from clawmcp.manifest.model import Model
from clawmcp.models import Msg, Provider, ToolRequest, ToolSpec, Turn
from clawmcp.models._http import post_json

__all__ = ["DEFAULT_BASE_URL", "OpenAI"]

DEFAULT_BASE_URL = "https://api.openai.com/v1"


class OpenAI(Provider):
    def __init__(self, name: str, model: Model, http: httpx2.AsyncClient, retry_base: float) -> None:
        super().__init__(name, model)
        self.http, self.retry_base = http, retry_base
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
        answer = await post_json(
            self, self.http, self.url, headers=self.headers, body=body, retry_base=self.retry_base
        )
        try:
            message = answer["choices"][0]["message"]
            calls = tuple(
                ToolRequest(c.get("id") or f"call_{i}", c["function"]["name"], _arguments(c["function"]))
                for i, c in enumerate(message.get("tool_calls") or [])
            )
        except (KeyError, IndexError, TypeError) as e:
            raise ModelError(f"model '{self.name}': unexpected answer from {self.url}: missing {e}") from None
        usage = answer.get("usage") or {}
        return Turn(
            text=message.get("content") or "",
            calls=calls,
            input_tokens=usage.get("prompt_tokens"),
            output_tokens=usage.get("completion_tokens"),
        )


def _arguments(function: dict[str, Any]) -> Any:
    """The arguments are a JSON string; one that does not parse is passed on as it is."""
    raw = function.get("arguments") or "{}"
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

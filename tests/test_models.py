"""The openai and anthropic providers against fake APIs that answer in the documented wire formats,
inside a whole host in memory: the model asks for the time tool, gets the result, then replies."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import (
    API,
    LOCAL,
    FakeAPI,
    anthropic_error,
    anthropic_text,
    anthropic_tool_call,
    hosting,
    openai_error,
    openai_text,
    openai_tool_call,
    time_server,
)

# built-ins of a Claw without talks_to: no send or ask
BUILTINS = {
    "claw__remember",
    "claw__recall",
    "claw__publish",
    "claw__spawn",
    "claw__schedule",
    "claw__unschedule",
}
WIRE = {
    "openai": (openai_tool_call, openai_text, openai_error),
    "anthropic": (anthropic_tool_call, anthropic_text, anthropic_error),
}


def manifest(provider: str, url: str, *, max_steps: int = 8) -> str:
    return f"""
models:
  brain:
    provider: {provider}
    base_url: "{url}"
    api_key: sk-test-key
    model: {provider}-test
    headers: {{X-Title: clawmcp-test}}
servers:
  time: {LOCAL}
claws:
  clock:
    instructions: You tell the time.
    model: brain
    tools: ["time.get_current_time"]
    limits: {{max_steps: {max_steps}}}
"""


@pytest.mark.anyio
async def test_openai_sends_the_documented_chat_completions_requests(tmp_path: Path) -> None:
    answers = [
        openai_tool_call("call_abc", "time__get_current_time", {"timezone": "UTC"}),
        openai_text("It is noon in UTC."),
    ]
    api = FakeAPI(lambda n, body: answers[n])
    async with hosting(
        tmp_path, servers={"time": time_server()}, body=manifest("openai", API + "/v1"), api=api
    ) as host:
        run = await host.runtime.run("clock", "What time is it?")
        steps = await host.store.steps(run.id)

    first, second = (r.body for r in api.requests)
    assert [r.path for r in api.requests] == ["/v1/chat/completions"] * 2
    assert api.requests[0].headers["authorization"] == "Bearer sk-test-key"
    assert api.requests[0].headers["x-title"] == "clawmcp-test"
    assert first["model"] == "openai-test"
    assert first["messages"] == [
        {"role": "system", "content": "You tell the time."},
        {"role": "user", "content": "What time is it?"},
    ]
    tools = {t["function"]["name"]: t for t in first["tools"]}
    assert set(tools) == {"time__get_current_time", *BUILTINS}
    clock = tools["time__get_current_time"]
    assert clock["type"] == "function"
    assert clock["function"]["parameters"]["type"] == "object"
    assert "timezone" in clock["function"]["parameters"]["properties"]

    assistant, result = second["messages"][-2:]
    assert assistant["role"] == "assistant" and assistant["content"] is None
    [call] = assistant["tool_calls"]
    assert call["id"] == "call_abc" and call["type"] == "function"
    assert call["function"]["name"] == "time__get_current_time"
    assert json.loads(call["function"]["arguments"]) == {"timezone": "UTC"}
    assert result["role"] == "tool" and result["tool_call_id"] == "call_abc"
    assert json.loads(result["content"])["timezone"] == "UTC"

    assert (run.state, run.reply, run.input_tokens, run.output_tokens) == (
        "done",
        "It is noon in UTC.",
        22,
        6,
    )
    assert [s.kind for s in steps] == ["model", "tool_call", "tool_result", "model"]
    assert steps[2].data["is_error"] is False and '"timezone": "UTC"' in steps[2].data["text"]


@pytest.mark.anyio
async def test_anthropic_sends_the_documented_messages_requests(tmp_path: Path) -> None:
    answers = [
        anthropic_tool_call("toolu_01", "time__get_current_time", {"timezone": "UTC"}),
        anthropic_text("It is noon in UTC."),
    ]
    api = FakeAPI(lambda n, body: answers[n])
    async with hosting(
        tmp_path, servers={"time": time_server()}, body=manifest("anthropic", API), api=api
    ) as host:
        run = await host.runtime.run("clock", "What time is it?")
        steps = await host.store.steps(run.id)

    first, second = (r.body for r in api.requests)
    assert [r.path for r in api.requests] == ["/v1/messages"] * 2
    headers = api.requests[0].headers
    assert headers["x-api-key"] == "sk-test-key" and headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in headers and headers["x-title"] == "clawmcp-test"
    assert first["model"] == "anthropic-test" and first["max_tokens"] == 4096
    assert first["system"] == "You tell the time."
    assert first["messages"] == [{"role": "user", "content": "What time is it?"}]
    tools = {t["name"]: t for t in first["tools"]}
    assert set(tools) == {"time__get_current_time", *BUILTINS}
    assert tools["time__get_current_time"]["input_schema"]["type"] == "object"

    assistant, result = second["messages"][-2:]
    assert assistant == {
        "role": "assistant",
        "content": [
            {"type": "text", "text": "Let me look."},
            {
                "type": "tool_use",
                "id": "toolu_01",
                "name": "time__get_current_time",
                "input": {"timezone": "UTC"},
            },
        ],
    }
    [block] = result["content"]
    assert result["role"] == "user" and block["type"] == "tool_result"
    assert block["tool_use_id"] == "toolu_01" and block["is_error"] is False
    assert json.loads(block["content"])["timezone"] == "UTC"

    assert (run.state, run.reply, run.input_tokens, run.output_tokens) == (
        "done",
        "It is noon in UTC.",
        22,
        6,
    )
    assert [s.kind for s in steps] == ["model", "tool_call", "tool_result", "model"]


@pytest.mark.anyio
@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_rate_limit_is_retried_after_the_time_the_server_asks_for(
    tmp_path: Path, provider: str
) -> None:
    _, text, error = WIRE[provider]
    answers = [error(429, "Rate limit reached", {"Retry-After": "1"}), text("fine")]
    api = FakeAPI(lambda n, body: answers[n])
    async with hosting(
        tmp_path, servers={"time": time_server()}, body=manifest(provider, API), api=api
    ) as host:
        run = await host.runtime.run("clock", "hello")
    assert (run.state, run.reply) == ("done", "fine")
    assert len(api.requests) == 2
    assert api.requests[1].at - api.requests[0].at >= 1.0  # the first backoff alone would be 0.5 s


@pytest.mark.anyio
@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_bad_key_fails_the_run_with_one_clear_error(tmp_path: Path, provider: str) -> None:
    _, _, error = WIRE[provider]
    api = FakeAPI(lambda n, body: error(401, "invalid x-api-key"))
    async with hosting(
        tmp_path, servers={"time": time_server()}, body=manifest(provider, API), api=api
    ) as host:
        run = await host.runtime.run("clock", "hello")
        history = await host.store.history("clock", "default", 10)
    assert run.state == "failed"
    assert run.error == f"model 'brain' ({provider}, {provider}-test): 401 Unauthorized: invalid x-api-key"
    assert len(api.requests) == 1  # not retried
    assert [h.content for h in history] == ["hello", f"[no reply: {run.error}]"]


@pytest.mark.anyio
@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_model_that_keeps_calling_tools_stops_at_max_steps(tmp_path: Path, provider: str) -> None:
    call, _, _ = WIRE[provider]

    def answer(n: int, body: Any) -> Any:
        return call(f"call_{n}", "time__get_current_time", {"timezone": "UTC"})

    api = FakeAPI(answer)
    async with hosting(
        tmp_path, servers={"time": time_server()}, body=manifest(provider, API, max_steps=3), api=api
    ) as host:
        run = await host.runtime.run("clock", "loop forever")
        steps = await host.store.steps(run.id)
    assert run.state == "limit"
    assert run.error == "stopped at max_steps (3); the model still asked for tools"
    assert len(api.requests) == 3
    # the last turn's calls are recorded but not run
    assert [s.kind for s in steps] == ["model", "tool_call", "tool_result"] * 2 + ["model"]


@pytest.mark.anyio
async def test_a_server_error_is_retried(tmp_path: Path) -> None:
    answers = [openai_error(500, "boom"), openai_text("recovered")]
    api = FakeAPI(lambda n, body: answers[n])
    async with hosting(
        tmp_path, servers={"time": time_server()}, body=manifest("openai", API), api=api
    ) as host:
        run = await host.runtime.run("clock", "hello")
    assert (run.state, run.reply, len(api.requests)) == ("done", "recovered", 2)


@pytest.mark.anyio
async def test_a_reply_sent_as_a_list_of_parts_is_joined(tmp_path: Path) -> None:
    parts = [{"type": "text", "text": "It is "}, {"type": "text", "text": "noon."}]
    api = FakeAPI(lambda n, body: openai_text(parts))  # type: ignore[arg-type]
    async with hosting(
        tmp_path, servers={"time": time_server()}, body=manifest("openai", API), api=api
    ) as host:
        run = await host.runtime.run("clock", "hello")
        history = await host.store.history("clock", "default", 10)
    assert (run.state, run.reply) == ("done", "It is noon.")
    assert [h.content for h in history] == ["hello", "It is noon."]


def _bent(path: list[str | int], value: Any) -> Any:
    """A good OpenAI answer with the value at `path` replaced."""
    _, _, body = openai_text("fine")
    inner = body
    for key in path[:-1]:
        inner = inner[key]
    inner[path[-1]] = value
    return 200, {}, body


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("bent", "problem"),
    [
        (_bent(["choices", 0, "message"], "just text"), "choices.0.message: Input should be"),
        (_bent(["choices", 0, "message", "tool_calls"], ["a", "b"]), "choices.0.message.tool_calls.0"),
        (_bent(["usage"], "lots"), "usage: Input should be"),
        (_bent(["choices"], []), "choices: List should have at least 1 item"),
        ((200, {}, ["not", "an", "object"]), "Input should be"),
    ],
)
async def test_a_malformed_answer_fails_the_run_with_a_model_error(
    tmp_path: Path, bent: Any, problem: str
) -> None:
    api = FakeAPI(lambda n, body: bent)
    async with hosting(
        tmp_path, servers={"time": time_server()}, body=manifest("openai", API), api=api
    ) as host:
        run = await host.runtime.run("clock", "hello")
    assert run.state == "failed"
    assert run.error is not None
    assert run.error.startswith(f"model 'brain' (openai, openai-test): unexpected answer from {API}")
    assert problem in run.error

from __future__ import annotations

import json
import os
import socket
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp.types import CallToolResult, TextContent

from clawmcp.manifest.model import Tool
from clawmcp.tools import OUTPUT_CAP, input_schema, run_tool

PY = sys.executable


def tool(**fields: Any) -> Tool:
    return Tool.model_validate(fields)


def text(result: CallToolResult) -> str:
    [content] = result.content
    assert isinstance(content, TextContent)
    return content.text


async def run(name: str, t: Tool, arguments: dict[str, Any], **kw: Any) -> CallToolResult:
    with anyio.fail_after(10):
        return await run_tool(name, t, arguments, **kw)


class _Echo(BaseHTTPRequestHandler):
    """Answers every request with its method, path, headers and JSON body; `/fail` gives a 500."""

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length)
        if self.path == "/fail":
            status, payload = 500, b"boom"
        else:
            status = 200
            echo = {
                "method": self.command,
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": json.loads(raw) if raw else None,
            }
            payload = json.dumps(echo).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json" if status == 200 else "text/plain")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def echo_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_input_schema_requires_inputs_without_a_default() -> None:
    t = tool(input={"a": {"type": "string"}, "b": {"type": "integer", "default": 1}}, command=["echo"])
    assert input_schema(t) == {
        "type": "object",
        "properties": {"a": {"type": "string"}, "b": {"type": "integer", "default": 1}},
        "required": ["a"],
        "additionalProperties": False,
    }


@pytest.mark.anyio
async def test_a_value_with_shell_metacharacters_arrives_as_one_literal_argument() -> None:
    t = tool(
        input={"text": {"type": "string"}, "n": {"type": "integer"}},
        command=[PY, "-c", "import json, sys; print(json.dumps(sys.argv[1:]))", "{text}", "n={n}", "{x y}"],
    )
    nasty = "a b; rm -rf / && echo $HOME `id` | cat"
    result = await run("argv", t, {"text": nasty, "n": 3})
    assert not result.is_error
    assert json.loads(text(result)) == [nasty, "n=3", "{x y}"]


@pytest.mark.anyio
async def test_a_missing_optional_argument_gets_its_default() -> None:
    t = tool(input={"greeting": {"type": "string", "default": "hello there"}}, command=["echo", "{greeting}"])
    result = await run("greet", t, {})
    assert result == CallToolResult(content=[TextContent(type="text", text="hello there\n")])


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("arguments", "named"),
    [({"count": "three"}, "count"), ({"count": 1, "colour": "red"}, "colour"), ({}, "count")],
    ids=["wrong-type", "unknown-extra", "missing"],
)
async def test_invalid_arguments_are_refused_before_anything_runs(
    tmp_path: Path, arguments: dict[str, Any], named: str
) -> None:
    t = tool(
        input={"count": {"type": "integer"}},
        command=[PY, "-c", "import pathlib; pathlib.Path('ran').touch()", "{count}"],
        cwd=str(tmp_path),
    )
    result = await run("touch", t, arguments)
    assert result.is_error
    assert text(result).startswith("tools.touch: invalid arguments: ")
    assert named in text(result)
    assert not (tmp_path / "ran").exists()


@pytest.mark.anyio
async def test_a_command_past_its_timeout_is_killed(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    write_pid_and_sleep = (
        "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(60)"
    )
    t = tool(
        command=[PY, "-c", write_pid_and_sleep, str(pid_file)],
        timeout="1s",
    )
    with anyio.fail_after(5):
        result = await run_tool("sleepy", t, {})
    assert result.is_error
    assert text(result) == "tools.sleepy: timed out after 1s"
    with pytest.raises(ProcessLookupError):  # killed and reaped, not a zombie
        os.kill(int(pid_file.read_text()), 0)


@pytest.mark.anyio
async def test_output_over_one_mebibyte_is_cut_with_a_note() -> None:
    t = tool(command=[PY, "-c", "import sys; sys.stdout.write('x' * (3 * 1024 * 1024))"])
    result = await run("big", t, {})
    assert not result.is_error
    assert text(result) == "x" * OUTPUT_CAP + "\n[output cut at 1 MiB]"


@pytest.mark.anyio
async def test_a_non_zero_exit_is_an_error_with_status_and_stderr() -> None:
    t = tool(command=["sh", "-c", "echo partial; echo 'disk on fire' >&2; exit 3"])
    result = await run("fail", t, {})
    assert result.is_error
    assert text(result) == "tools.fail: exited with status 3\ndisk on fire\n"


@pytest.mark.anyio
async def test_a_missing_program_is_an_error_naming_it() -> None:
    t = tool(command=["clawmcp-no-such-program", "x"])
    result = await run("ghost", t, {})
    assert result.is_error
    assert text(result) == "tools.ghost: cannot run 'clawmcp-no-such-program': No such file or directory"


@pytest.mark.anyio
async def test_http_get_percent_encodes_url_placeholders(echo_url: str) -> None:
    t = tool(
        input={"name": {"type": "string"}, "q": {"type": "string"}},
        http={"url": echo_url + "/items/{name}?q={q}", "headers": {"X-Name": "is {name}"}},
    )
    result = await run("get", t, {"name": "a b/c?d", "q": "x&y=z"})
    assert not result.is_error
    echo = json.loads(text(result))
    assert result.structured_content == echo
    assert echo["method"] == "GET"
    assert echo["path"] == "/items/a%20b%2Fc%3Fd?q=x%26y%3Dz"
    assert echo["headers"]["x-name"] == "is a b/c?d"


@pytest.mark.anyio
async def test_http_post_sends_a_json_body_where_a_lone_placeholder_keeps_its_type(echo_url: str) -> None:
    t = tool(
        input={"n": {"type": "integer"}, "tag": {"type": "string", "default": "blue"}},
        http={
            "method": "POST",
            "url": echo_url + "/things",
            "body": {"count": "{n}", "label": "n is {n}", "tags": ["{tag}", "{not a field}"], "on": True},
        },
    )
    async with httpx2.AsyncClient() as client:
        result = await run("post", t, {"n": 5}, http=client)
    assert not result.is_error
    assert result.structured_content is not None
    assert result.structured_content["body"] == {
        "count": 5,
        "label": "n is 5",
        "tags": ["blue", "{not a field}"],
        "on": True,
    }


@pytest.mark.anyio
async def test_http_500_is_an_error_with_status_and_body(echo_url: str) -> None:
    t = tool(http={"url": echo_url + "/fail"})
    result = await run("broken", t, {})
    assert result.is_error
    assert text(result) == "tools.broken: HTTP 500 from 127.0.0.1\nboom"


@pytest.mark.anyio
async def test_a_refused_connection_is_an_error_naming_the_host() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound but not listening: connecting is refused
        t = tool(http={"url": f"http://127.0.0.1:{closed.getsockname()[1]}/x"})
        result = await run("down", t, {})
    assert result.is_error
    assert text(result).startswith("tools.down: cannot reach 127.0.0.1: ")


ARGV = [PY, "-c", "import json, pathlib, sys; pathlib.Path('ran').touch(); print(json.dumps(sys.argv[1:]))"]


@pytest.mark.anyio
async def test_an_argument_that_would_be_read_as_an_option_is_refused(tmp_path: Path) -> None:
    t = tool(input={"file": {"type": "string"}}, command=[*ARGV, "{file}"], cwd=str(tmp_path))
    result = await run("sort", t, {"file": "-o/etc/passwd"})
    assert result.is_error and not (tmp_path / "ran").exists()
    assert text(result).startswith("tools.sort: argument 'file' may not start with '-'")
    inside = tool(input={"file": {"type": "string"}}, command=[*ARGV, "--file={file}"], cwd=str(tmp_path))
    assert json.loads(text(await run("sort", inside, {"file": "-x"}))) == ["--file=-x"]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("command", "schema"),
    [
        (["--", "{flag}"], {"type": "string"}),
        (["{flag}"], {"type": "string", "enum": ["-r", "-n"]}),
        (["{flag}"], {"type": "string", "pattern": "^-[rn]$"}),
    ],
    ids=["after-double-dash", "enum", "pattern"],
)
async def test_a_leading_dash_passes_where_the_manifest_allows_it(
    tmp_path: Path, command: list[str], schema: dict[str, Any]
) -> None:
    t = tool(input={"flag": schema}, command=[*ARGV, *command], cwd=str(tmp_path))
    result = await run("sort", t, {"flag": "-r"})
    assert not result.is_error
    assert json.loads(text(result))[-1] == "-r"


@pytest.mark.anyio
async def test_a_nul_or_a_non_ascii_header_is_an_error_naming_it(echo_url: str) -> None:
    t = tool(input={"file": {"type": "string"}}, command=["echo", "{file}"])
    assert text(await run("echo", t, {"file": "a\0b"})) == "tools.echo: argument 'file' holds a NUL character"
    h = tool(input={"who": {"type": "string"}}, http={"url": f"{echo_url}/x", "headers": {"X-Who": "{who}"}})
    result = await run("hello", h, {"who": "José"})
    assert result.is_error and "header 'X-Who' would hold non-ASCII characters" in text(result)


@pytest.mark.anyio
async def test_a_command_gets_a_minimal_environment_plus_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOST_SECRET", "sk-of-the-host")
    script = "import json, os; print(json.dumps(dict(os.environ)))"
    t = tool(command=[PY, "-c", script], env={"COLOUR": "blue"})
    seen = json.loads(text(await run("env", t, {})))
    assert "HOST_SECRET" not in seen and seen["COLOUR"] == "blue" and seen["PATH"] == os.environ["PATH"]

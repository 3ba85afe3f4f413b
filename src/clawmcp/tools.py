"""Manifest-defined tools (DESIGN §2 `tools:`): run a command or make an HTTP call per tool call.

A tool failure is never raised: it becomes a `CallToolResult` with `is_error=True` and one line
naming the tool (`tools.NAME: ...`), which is what a model or MCP client gets back.
"""

from __future__ import annotations

import copy
import json
import os
import re
import signal
import subprocess
import sys
from typing import Any
from urllib.parse import quote, urlsplit

import anyio
import httpx2
from anyio.abc import ByteReceiveStream, Process
from mcp.client.stdio import get_default_environment
from mcp.types import CallToolResult, TextContent

from clawmcp.arguments import invalid_arguments
from clawmcp.manifest.model import PLACEHOLDER, Tool

__all__ = ["OUTPUT_CAP", "input_schema", "run_tool"]

OUTPUT_CAP = 1_048_576
"""Bytes of stdout or of an HTTP response body kept; the rest is dropped with a note."""
_STDERR_CAP = 65_536
_ERROR_BODY_CAP = 2_048
_CUT_NOTE = "[output cut at 1 MiB]"


def input_schema(tool: Tool) -> dict[str, Any]:
    """The JSON Schema object of the tool's arguments: every input is required unless it has a default."""
    return {
        "type": "object",
        "properties": tool.input,
        "required": [name for name, prop in tool.input.items() if "default" not in prop],
        "additionalProperties": False,
    }


async def run_tool(
    name: str, tool: Tool, arguments: dict[str, Any], *, http: httpx2.AsyncClient | None = None
) -> CallToolResult:
    """Validate `arguments`, fill in defaults and run the tool; failures come back as error results.

    `http` is the client for HTTP tools; without one a temporary client is used.
    """
    args = {k: copy.deepcopy(p["default"]) for k, p in tool.input.items() if "default" in p}
    args.update(arguments)
    if problem := invalid_arguments(input_schema(tool), args) or _unsafe(tool, args):
        return _error(name, problem)
    if tool.command is not None:
        return await _run_command(name, tool, tool.command, args)
    assert tool.http is not None
    if http is not None:
        return await _call_http(name, tool, args, http)
    async with httpx2.AsyncClient() as client:
        return await _call_http(name, tool, args, client)


_OPTIONS_OK = {"enum", "const", "pattern"}


def _unsafe(tool: Tool, args: dict[str, Any]) -> str | None:
    """What an argument must not do where it is placed: be read as an option of a command (a
    value at the start of an argv element that begins with `-`, unless a `--` comes before it or
    the input's schema says exactly what it may be: `enum`, `const` or `pattern`), hold a NUL (no
    argv or header can), or put non-ASCII characters into an HTTP header."""
    for key, value in args.items():
        if "\0" in _text(value):
            return f"argument '{key}' holds a NUL character"
    for part in tool.command or ():
        if part == "--":  # what follows is never an option
            break
        first = PLACEHOLDER.match(part)
        if first and _fill(part, args).startswith("-") and not _OPTIONS_OK & tool.input[first[1]].keys():
            return (
                f"argument '{first[1]}' may not start with '-': the command would read it as an "
                "option (put '--' before it in the command, or give it an enum, const or pattern)"
            )
    for header, template in (tool.http.headers if tool.http else {}).items():
        if not _fill(template, args).isascii():
            return f"header '{header}' would hold non-ASCII characters (from {template})"
    return None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _fill(template: str, args: dict[str, Any], encode: bool = False) -> str:
    def one(match: re.Match[str]) -> str:
        text = _text(args[match[1]])
        return quote(text, safe="") if encode else text

    return PLACEHOLDER.sub(one, template)


def _fill_body(body: Any, args: dict[str, Any]) -> Any:
    if isinstance(body, str):
        whole = PLACEHOLDER.fullmatch(body)
        # A lone `{name}` keeps the argument's JSON type, so numbers stay numbers.
        return copy.deepcopy(args[whole[1]]) if whole else _fill(body, args)
    if isinstance(body, list):
        return [_fill_body(item, args) for item in body]
    if isinstance(body, dict):
        return {key: _fill_body(value, args) for key, value in body.items()}
    return body


def _error(name: str, message: str) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=f"tools.{name}: {message}")], is_error=True)


class _Capped:
    """A byte buffer that keeps the first `cap` bytes and remembers whether more came."""

    def __init__(self, cap: int, note: str = _CUT_NOTE) -> None:
        self.cap = cap
        self.note = note
        self.data = bytearray()
        self.cut = False

    def add(self, chunk: bytes) -> bool:
        """Keep what fits; False once something had to be dropped."""
        room = self.cap - len(self.data)
        if len(chunk) > room:
            self.data += chunk[:room]
            self.cut = True
        else:
            self.data += chunk
        return not self.cut

    async def drain(self, stream: ByteReceiveStream | None) -> None:
        # Keep reading past the cap so the child never blocks on a full pipe.
        if stream is not None:
            async for chunk in stream:
                self.add(chunk)

    def text(self) -> str:
        text = self.data.decode("utf-8", errors="replace")
        if self.cut:
            text += ("" if text.endswith("\n") or not text else "\n") + self.note
        return text


def _kill(process: Process) -> None:
    try:
        if sys.platform == "win32":
            process.kill()
        else:
            # The child leads its own session: kill what it started too (`sh -c "sleep 60"`).
            os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


async def _run_command(name: str, tool: Tool, command: list[str], args: dict[str, Any]) -> CallToolResult:
    argv = [_fill(part, args) for part in command]
    try:
        process = await anyio.open_process(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=tool.cwd,
            env=get_default_environment() | tool.env,  # not the host's keys and tokens
            start_new_session=True,
        )
    except OSError as e:
        where = f" in '{tool.cwd}'" if tool.cwd is not None and e.filename == tool.cwd else ""
        return _error(name, f"cannot run '{argv[0]}'{where}: {e.strerror or e}")
    out, err = _Capped(OUTPUT_CAP), _Capped(_STDERR_CAP, "[stderr cut at 64 KiB]")
    async with process:  # on exit: pipes closed and the child reaped, also when cancelled
        try:
            with anyio.move_on_after(tool.timeout) as scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(out.drain, process.stdout)
                    tg.start_soon(err.drain, process.stderr)
                await process.wait()
        finally:
            if process.returncode is None:
                _kill(process)
                # Its exit is seen before its pipes close: closing them first has asyncio reap
                # the child under its watcher ("Unknown child process pid ..." on stderr).
                with anyio.CancelScope(shield=True):
                    await process.wait()
    if scope.cancelled_caught:
        return _error(name, f"timed out after {tool.timeout:g}s")
    status = process.returncode
    assert status is not None  # reaped when `async with process` ended
    if status != 0:
        how = f"killed by signal {-status}" if status < 0 else f"exited with status {status}"
        detail = err.text() or out.text()
        return _error(name, how + (f"\n{detail}" if detail else ""))
    return CallToolResult(content=[TextContent(type="text", text=out.text())])


async def _call_http(
    name: str, tool: Tool, args: dict[str, Any], client: httpx2.AsyncClient
) -> CallToolResult:
    assert tool.http is not None
    call = tool.http
    url = _fill(call.url, args, encode=True)
    host = urlsplit(url).hostname or url
    headers = {key: _fill(value, args) for key, value in call.headers.items()}
    body = _fill_body(copy.deepcopy(call.body), args) if call.body is not None else None
    got = _Capped(OUTPUT_CAP)
    try:
        # httpx timeouts are per operation; the scope bounds the whole call.
        with anyio.move_on_after(tool.timeout) as scope:
            request = client.build_request(call.method, url, headers=headers, json=body, timeout=tool.timeout)
            response = await client.send(request, stream=True)
            try:
                async for chunk in response.aiter_bytes():
                    if not got.add(chunk):
                        break  # the rest is not wanted; closing the response drops it
            finally:
                await response.aclose()
    except httpx2.TimeoutException:
        return _error(name, f"timed out after {tool.timeout:g}s talking to {host}")
    except (httpx2.HTTPError, httpx2.InvalidURL) as e:
        return _error(name, f"cannot reach {host}: {e or type(e).__name__}")
    if scope.cancelled_caught:
        return _error(name, f"timed out after {tool.timeout:g}s talking to {host}")
    if response.status_code >= 400:
        snippet = bytes(got.data[:_ERROR_BODY_CAP]).decode("utf-8", errors="replace")
        return _error(name, f"HTTP {response.status_code} from {host}" + (f"\n{snippet}" if snippet else ""))
    text = got.text()
    media = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if not got.cut and (media == "application/json" or media.endswith("+json")):
        try:
            value = json.loads(text)
        except ValueError:
            pass
        else:
            structured = value if isinstance(value, dict) else None
            return CallToolResult(
                content=[TextContent(type="text", text=text)], structured_content=structured
            )
    return CallToolResult(content=[TextContent(type="text", text=text)])

"""Reloading a running `clawmcp serve` as a user does: `clawmcp reload`, SIGHUP and `POST
/api/reload`, with real files, while a run goes on; broken files are refused with the problems
`clawmcp validate` prints, and the host goes on as it was."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx2
import pytest
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

from clawmcp.reload import Delta
from clawmcp.store.sqlite import SqliteStore
from tests.fakes import hosting, logged

pytestmark = pytest.mark.anyio

HOST = "host: {listen: '127.0.0.1:0', data_dir: state}\n"
MODELS = (
    "models: {m: {provider: scripted, rules: [{when: '^hold', steps: [{tool: tools__gate}],"
    " reply: 'held: {{ results[0] }}'}, {reply: 'hi {{ input }}'}]}}\n"
)
BROKEN = HOST + MODELS + "claws: {a: {model: m, colour: red}, z: {model: nowhere}}\n"
"""Three problems: the scripted rule's tool is gone, an unknown key, a model that is not there."""


def manifest(tmp_path: Path, claws: str) -> Path:
    path = tmp_path / "m.yaml"
    gate = tmp_path / "gate"
    tools = f"tools: {{gate: {{command: [cat, '{gate}'], timeout: 60s}}}}\n"
    path.write_text(HOST + MODELS + tools + f"claws: {{{claws}}}\n")
    return path


class Served:
    """A `clawmcp serve` process and the lines of its log so far."""

    def __init__(self, process: Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self._more = anyio.Event()

    async def read(self) -> None:
        assert self.process.stderr is not None
        stream = BufferedByteReceiveStream(self.process.stderr)
        while True:
            try:
                line = await stream.receive_until(b"\n", 1_000_000)
            except (anyio.EndOfStream, anyio.IncompleteRead):
                return
            self.lines.append(line.decode())
            more, self._more = self._more, anyio.Event()
            more.set()

    async def said(self, text: str, after: int = 0) -> int:
        """Until the host has logged a line holding `text` (from line `after` on); its index."""
        with anyio.fail_after(30):
            while True:
                more = self._more
                found = [i for i, line in enumerate(self.lines) if i >= after and text in line]
                if found:
                    return found[0]
                await more.wait()

    @property
    def base(self) -> str:
        [said] = [line for line in self.lines if "listening on " in line]
        return said.split("listening on ", 1)[1].split()[0]


@asynccontextmanager
async def served(path: Path) -> AsyncIterator[Served]:
    command = [sys.executable, "-m", "clawmcp", "serve", str(path)]
    async with (
        await anyio.open_process(command, stdout=subprocess.DEVNULL) as process,
        anyio.create_task_group() as tg,
    ):
        host = Served(process)
        tg.start_soon(host.read)
        try:
            await host.said("listening on ")
            yield host
        finally:
            process.terminate()
            with anyio.fail_after(30):
                await process.wait()


async def clawmcp(*args: str) -> tuple[int, str, str]:
    done = await anyio.run_process([sys.executable, "-m", "clawmcp", *args], check=False)
    return done.returncode, done.stdout.decode(), done.stderr.decode()


async def in_activity(base: str, text: str) -> None:
    """Until the activity log has a line holding `text` (it is read from its start, then followed)."""
    with anyio.fail_after(30):
        async with (
            httpx2.AsyncClient(timeout=None) as http,
            http.stream("GET", f"{base}/api/events?follow=1") as events,
        ):
            async for line in events.aiter_lines():
                if line.startswith("data:") and text in json.loads(line[5:])["line"]:
                    return


async def release(tmp_path: Path, said: str) -> None:
    """Let the tool call at the gate go on (opening the pipe waits for it)."""
    await anyio.to_thread.run_sync((tmp_path / "gate").write_text, said)


async def claws(base: str) -> list[str]:
    async with httpx2.AsyncClient() as http:
        return [c["claw"] for c in (await http.get(f"{base}/api/claws")).json()]


async def test_clawmcp_reload_applies_new_files_while_a_run_goes_on_and_refuses_broken_ones(
    tmp_path: Path,
) -> None:
    os.mkfifo(tmp_path / "gate")
    path = manifest(tmp_path, "a: {model: m, tools: ['tools.gate']}")
    async with served(path) as host:
        answers: list[Any] = []

        async def ask() -> None:
            async with httpx2.AsyncClient(timeout=60) as http:
                answer = await http.post(f"{host.base}/api/claws/a/ask", json={"message": "hold"})
                answers.append(answer.json())

        async with anyio.create_task_group() as tg:
            tg.start_soon(ask)
            await in_activity(host.base, "model turn 1: calls tools__gate")  # the run waits at the gate

            manifest(tmp_path, "a: {model: m, tools: ['tools.gate']}, b: {model: m}")
            code, out, err = await clawmcp("reload", "-p", str(path))
            assert (code, out, err) == (0, "reloaded: Claws added b\n", "")
            assert await clawmcp("ask", "b", "there", "-p", str(path)) == (0, "hi there\n", "")
            await host.said("clawmcp: reload: Claws added b")

            path.write_text(BROKEN)
            validated = await clawmcp("validate", str(path))
            reloaded = await clawmcp("reload", "-p", str(path))
            assert validated[0] == reloaded[0] == 1
            assert reloaded[2] == validated[2] and validated[2].count("\n") == 3, validated
            assert await claws(host.base) == ["a", "b"]  # as it was
            assert not answers
            await release(tmp_path, "open")
        assert answers == [{"run": 1, "state": "done", "reply": "held: open", "error": None}]
        assert await clawmcp("ask", "b", "again", "-p", str(path)) == (0, "hi again\n", "")


async def test_sighup_and_post_api_reload_apply_the_files_or_say_what_is_wrong(tmp_path: Path) -> None:
    path = manifest(tmp_path, "a: {model: m}")
    async with served(path) as host, httpx2.AsyncClient() as http:
        manifest(tmp_path, "a: {model: m}, b: {model: m}")
        host.process.send_signal(signal.SIGHUP)
        await host.said("clawmcp: reload: Claws added b")
        assert await claws(host.base) == ["a", "b"]

        path.write_text(BROKEN)
        validated = (await clawmcp("validate", str(path)))[2].splitlines()
        seen = len(host.lines)
        host.process.send_signal(signal.SIGHUP)
        refused = await host.said(
            "reload refused, nothing changed: the manifests have 3 problem(s)", after=seen
        )
        await host.said(validated[-1], after=refused)
        assert host.lines[refused + 1 : refused + 4] == [f"clawmcp: {line}" for line in validated]

        answer = await http.post(f"{host.base}/api/reload")
        assert answer.status_code == 422
        assert answer.json() == {
            "error": "the manifests have problems; nothing changed",
            "problems": validated,
        }

        manifest(tmp_path, "b: {model: m}")
        answer = await http.post(f"{host.base}/api/reload")
        assert answer.status_code == 200
        assert answer.json()["claws"] == {"added": [], "removed": ["a"], "changed": []}
        await host.said("clawmcp: reload: the removed Claws stopped (a)")
        assert await claws(host.base) == ["b"]
        assert host.process.returncode is None


async def test_a_claw_in_its_own_process_runs_with_the_reloaded_model(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="clawmcp")

    def body(reply: str) -> str:
        return (
            "host: {data_dir: data}\n"
            f"models: {{m: {{provider: scripted, rules: [{{reply: '{reply} {{{{ input }}}}'}}]}}}}\n"
            "claws: {iso: {model: m, isolation: process}}\n"
        )

    async with hosting(tmp_path, body("one"), store=SqliteStore(tmp_path / "data" / "state.db")) as host:
        assert (await host.service.ask("iso", "x")).reply == "one x"
        (tmp_path / "m.yaml").write_text(body("two"))
        with logged("reload: Claw 'iso' started again") as restarted:
            changes = await host.reload()
            with anyio.fail_after(30):
                await restarted.wait()
        assert changes.models == Delta(changed=("m",)) and not changes.claws
        assert (await host.service.ask("iso", "x")).reply == "two x"

"""Claws with `isolation: process`: a real `clawmcp worker` child process per Claw, killed with
SIGKILL by the Claw's own tool, under the host's supervisor."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import anyio
import pytest

from clawmcp.host import Host
from clawmcp.store.sqlite import SqliteStore
from tests.conftest import ROOT
from tests.fakes import hosting

pytestmark = pytest.mark.anyio

KILLER = ROOT / "tests" / "peers" / "killer.py"


def manifest(tmp_path: Path, killer_args: str) -> str:
    return f"""
host:
  data_dir: data
  supervision: {{intensity: 2, period: 1m, backoff: 10ms, max_backoff: 50ms}}
models:
  m:
    provider: scripted
    rules:
      - when: "^pass on"
        steps: [{{tool: claw__send, arguments: {{to: plain, content: "from iso"}}}}]
        reply: passed on
      - when: "^boom"
        steps: [{{tool: tools__killer}}]
        reply: "{{{{ results[0] }}}}"
      - reply: "echo: {{{{ input }}}}"
tools:
  killer: {{command: ["{sys.executable}", "{KILLER}", "{tmp_path / "marker"}"{killer_args}]}}
claws:
  iso: {{model: m, tools: ["tools.killer"], isolation: process, talks_to: [plain]}}
  plain: {{model: m}}
"""


def on_disk(tmp_path: Path, body: str) -> AbstractAsyncContextManager[Host]:
    """A host on its SQLite file, which its worker processes open too."""
    return hosting(tmp_path, body, store=SqliteStore(tmp_path / "data" / "state.db"))


async def until(host: Host, check: Callable[[], Awaitable[bool]]) -> None:
    """Wait until `check` holds, looking again whenever a message settles or a task changes."""
    with anyio.fail_after(60):
        while True:
            settled, changed = host.claws.settled, host.claws.supervisor.changed
            if await check():
                return
            async with anyio.create_task_group() as tg:

                async def wake_on(event: anyio.Event) -> None:
                    await event.wait()
                    tg.cancel_scope.cancel()

                tg.start_soon(wake_on, settled)
                tg.start_soon(wake_on, changed)


async def test_a_process_claw_killed_mid_run_comes_back_and_gets_its_message_again(tmp_path: Path) -> None:
    async with on_disk(tmp_path, manifest(tmp_path, "")) as host:
        message = await host.claws.tell("iso", "boom")

        async def handled() -> bool:
            return (await host.store.get_message(message.id)).state == "done"  # type: ignore[union-attr]

        await until(host, handled)
        runs = sorted(await host.store.runs("iso"), key=lambda r: r.id)
        assert [(r.state, r.message_id) for r in runs] == [("interrupted", message.id), ("done", message.id)]
        assert (runs[-1].reply or "").strip() == "survived"
        assert host.claws.supervisor.children["iso"].restarts == 1
        asked = await host.runtime.run("iso", "hello")  # an ask goes to the new worker
        assert (asked.state, asked.reply) == ("done", "echo: hello")


async def test_a_claw_that_keeps_crashing_is_marked_failed_and_the_others_keep_answering(
    tmp_path: Path,
) -> None:
    async with on_disk(tmp_path, manifest(tmp_path, ', "always"')) as host:
        await host.claws.tell("iso", "boom")

        async def failed() -> bool:
            return host.claws.supervisor.children["iso"].state == "failed"

        await until(host, failed)
        status = await host.claws.status("iso")
        assert (status["state"], status["restarts"], status["mailbox"]) == ("failed", 2, 1)
        assert "worker of Claw 'iso'" in status["crash"]
        answer = await host.runtime.run("plain", "still there?")
        assert answer.reply == "echo: still there?"


async def test_a_message_sent_by_a_process_claw_wakes_its_recipient_in_the_host(tmp_path: Path) -> None:
    async with on_disk(tmp_path, manifest(tmp_path, "")) as host:
        await host.claws.tell("iso", "pass on")

        async def received() -> bool:
            return any(r.input == "from iso" and r.state == "done" for r in await host.store.runs("plain"))

        await until(host, received)  # the worker's run notified plain's mailbox, which is in the host

"""An every-second schedule survives a host killed with SIGKILL: each slot fires exactly once.

`clawmcp serve` runs a Claw whose schedule (every 1s, misfire: all) calls the recorder tool
server (tests/peers/recorder.py), which counts every call. The host is SIGKILLed at random
moments at least twenty times and started again; a last host, in this process, catches up. Then
the fires are exactly the slots from the first to the last, none twice and none missing, each
handled, and the recorder saw one call per fire plus at most one repeat per kill (a fire whose
call was made but not yet acknowledged when the host died is delivered again).
"""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import anyio
import pytest

from clawmcp import web
from clawmcp.host import Host
from clawmcp.manifest import load
from tests.e2e.test_serve import serving
from tests.fakes import PEERS

KILLS = 20


def manifest(tmp_path: Path) -> Path:
    recorder = f"{{command: python, args: ['{PEERS / 'recorder.py'}', '{tmp_path / 'recorded.db'}']}}"
    path = tmp_path / "m.yaml"
    path.write_text(
        "host: {listen: '127.0.0.1:0', data_dir: state}\n"
        "models:\n  m: {provider: scripted, rules: [{reply: ok}]}\n"
        f"servers:\n  rec: {recorder}\n"
        "claws:\n"
        "  ticker:\n"
        "    model: m\n"
        "    tools: ['rec.record']\n"
        "    schedules:\n"
        "      - {name: tick, every: 1s, misfire: all, call: {tool: rec.record, arguments: {n: tick}}}\n"
    )
    return path


@pytest.mark.anyio
async def test_an_every_second_schedule_fires_each_slot_once_across_sigkills(tmp_path: Path) -> None:
    path = manifest(tmp_path)
    for _ in range(KILLS):
        async with serving(path, mcp_config=False) as (process, _):
            await anyio.sleep(random.uniform(0.2, 1.5))  # a random moment to kill it, not a wait
            process.kill()
            await process.wait()
    host = Host(load([path]))  # the last host runs in this process, so its progress can be awaited
    async with web.serving(host):
        [schedule] = await host.store.schedules("ticker")
        cutoff = host.clock.now()
        with anyio.fail_after(60):
            while True:
                settled = host.claws.settled
                fires = await host.store.fires(schedule.id, limit=100_000)
                handled = [f for f in fires if f.outcome != "running"]
                if fires and max(f.slot for f in handled) >= cutoff:
                    break
                await settled.wait()
    slots = sorted(f.slot for f in fires)
    numbers = [round(slot - schedule.created_at) for slot in slots]
    assert numbers == list(range(1, len(slots) + 1))  # every slot from the first, none twice
    assert [f.slot for f in handled if f.outcome != "ok"] == []
    assert all(f.outcome == "ok" for f in fires if f.slot <= cutoff)
    with sqlite3.connect(tmp_path / "recorded.db") as recorded:
        [(calls,)] = recorded.execute("SELECT count(*) FROM deliveries")
    done = sum(1 for f in fires if f.outcome == "ok")
    assert done <= calls <= done + KILLS

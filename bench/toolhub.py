"""Tool hub overhead: sequential calls through the hub vs the SDK `Client` straight to the same server.

Both sides call `get_current_time` on their own `mcp-server-time` stdio process, interleaved in
rounds so that drift on the machine hits both alike. The hub side is what a Claw gets: allowlist
check, wire names and the audit record in a real SQLite store (synchronous=FULL).

    .venv/bin/python bench/toolhub.py [CALLS]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
from _figures import record
from mcp import Client, StdioServerParameters

from clawmcp.manifest import load
from clawmcp.store.sqlite import SqliteStore
from clawmcp.toolhub import ToolHub

ARGS = ["-m", "mcp_server_time", "--local-timezone", "UTC"]
MANIFEST = """
models: {m: {provider: scripted, rules: [{reply: hi}]}}
servers: {time: {command: python, args: [-m, mcp_server_time, --local-timezone, UTC]}}
claws: {bench: {model: m, tools: [time.get_current_time]}}
"""


async def timed(call: Callable[[], Awaitable[object]], n: int, into: list[float]) -> None:
    for _ in range(n):
        start = time.perf_counter()
        await call()
        into.append((time.perf_counter() - start) * 1000)


def summary(name: str, ms: list[float]) -> tuple[float, float]:
    ms = sorted(ms)
    median, p99 = statistics.median(ms), ms[int(len(ms) * 0.99) - 1]
    print(f"{name:<8} median {median:.3f} ms   p99 {p99:.3f} ms   ({len(ms)} calls)")
    return median, p99


async def main(calls: int) -> None:
    rounds, args = 5, {"timezone": "UTC"}
    direct_ms: list[float] = []
    hub_ms: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "m.yaml").write_text(MANIFEST)
        store = SqliteStore(Path(tmp) / "state.db")
        hub = ToolHub(load([Path(tmp) / "m.yaml"]), store)
        params = StdioServerParameters(command=sys.executable, args=ARGS)
        async with store, Client(params) as client, anyio.create_task_group() as tg:
            await tg.start(hub.run)

            async def direct() -> object:
                return await client.call_tool("get_current_time", args)

            async def through_hub() -> object:
                return await hub.call("bench", "time__get_current_time", args)

            await timed(direct, 50, [])  # warm up both
            await timed(through_hub, 50, [])
            for _ in range(rounds):
                await timed(direct, calls // rounds, direct_ms)
                await timed(through_hub, calls // rounds, hub_ms)
            tg.cancel_scope.cancel()
        audited = len(await _count(store))
    d_median, d_p99 = summary("direct", direct_ms)
    h_median, h_p99 = summary("hub", hub_ms)
    print(f"ratio    median {h_median / d_median:.2f}   p99 {h_p99 / d_p99:.2f}   (goal: median ≤ 1.10)")
    print(f"audited  {audited} of {len(hub_ms) + 50} hub calls")
    record("tool call through the hub, median", h_median, d_median, "ms", "ratio ≤ 1.10")
    record("tool call through the hub, p99", h_p99, d_p99, "ms")
    await big_results(8 if calls < 1000 else 16)


async def big_results(megabytes: int) -> None:
    """One result of `megabytes` MiB (tests/peers/big.py) through the hub, and with the SDK client
    straight to the server: the SDK's stdio reader costs time that grows with the square of a
    result's size; the hub's own transport does not."""
    big = Path(__file__).parent.parent / "tests" / "peers" / "big.py"
    args = {"megabytes": megabytes - 0.5}  # under the hub's cap
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "m.yaml").write_text(
            f"models: {{m: {{provider: scripted, rules: [{{reply: hi}}]}}}}\n"
            f"servers: {{big: {{command: python, args: ['{big}']}}}}\n"
            "claws: {bench: {model: m, tools: [big.big]}}\n"
        )
        store = SqliteStore(Path(tmp) / "state.db")
        hub = ToolHub(load([Path(tmp) / "m.yaml"]), store)
        params = StdioServerParameters(command=sys.executable, args=[str(big)])
        async with store, Client(params) as client, anyio.create_task_group() as tg:
            await tg.start(hub.run)
            started = time.perf_counter()
            await client.call_tool("big", args, read_timeout_seconds=600)
            direct = time.perf_counter() - started
            started = time.perf_counter()
            await hub.call("bench", "big__big", args)
            through = time.perf_counter() - started
            tg.cancel_scope.cancel()
    print(f"big      {megabytes - 0.5} MiB result: hub {through:.2f} s, SDK client {direct:.2f} s")
    record(
        f"a {megabytes - 0.5:g} MiB result through the hub (baseline: SDK stdio client)", through, direct, "s"
    )


async def _count(store: SqliteStore) -> list[object]:
    async with store:
        return list(await store.tool_calls(limit=1_000_000))


if __name__ == "__main__":
    anyio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 1000)

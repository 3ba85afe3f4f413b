"""MCP over streamable HTTP: `clawmcp serve` against mcp-proxy and a bare SDK server, same client.

Three servers, each its own process on a loopback port: `clawmcp serve` with one Claw that exposes
its allowed tool `time__get_current_time` (an `mcp-server-time` stdio process) beside `tell` and
`ask` (a scripted model); mcp-proxy (sparfenyuk/mcp-proxy, on SDK 1.x, so in its own venv,
bench/.venv-mcp-proxy, made if missing) in front of the same `mcp-server-time`; and a bare SDK 2.x
`MCPServer` (bench/_bare_server.py) with a `get_current_time` and a no-op `tell`: the floor for an
MCP call over HTTP. Every client is the SDK 2.x `Client` in handshake mode (what mcp-proxy speaks).
Per server and tool: CALLS sequential calls from one client (p50, p99), and calls/s from 1, 10 and
50 concurrent clients (a session each, all connected before timing). The servers take turns in
rounds so that drift on the machine hits all alike. All clients share one process: on a small
machine it, more than the servers, can bound the calls/s of 10 and 50 clients.

Baselines: mcp-proxy for the gateway call (`time__get_current_time` against its `get_current_time`),
the bare server for `tell`. Goals: gateway p50 ratio ≤ 1.0, `tell` p50 ratio ≤ 1.5.

    .venv/bin/python bench/mcphttp.py [CALLS]
"""

from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import AsyncExitStack, ExitStack
from pathlib import Path

import anyio
import httpx2
from _figures import record
from mcp import Client

BENCH = Path(__file__).parent
PROXY_VENV = BENCH / ".venv-mcp-proxy"
UPSTREAM = [sys.executable, "-m", "mcp_server_time", "--local-timezone", "UTC"]
ROUNDS, CLIENTS, MODE = 5, (1, 10, 50), "legacy"
MANIFEST = """
host: {{listen: "127.0.0.1:{port}", data_dir: "{data}"}}
servers: {{time: {{command: python, args: [-m, mcp_server_time, --local-timezone, UTC]}}}}
models: {{m: {{provider: scripted, rules: [{{reply: hi}}]}}}}
claws: {{c: {{model: m, tools: ["time.*"], expose: {{tools: true}}}}}}
"""
TIME, HI = {"timezone": "UTC"}, {"message": "hi"}
# (figure, server, tool, arguments); ask is only timed sequentially.
CASES = [
    ("gateway", "clawmcp", "time__get_current_time", TIME),
    ("gateway", "mcp-proxy", "get_current_time", TIME),
    ("gateway", "bare", "get_current_time", TIME),
    ("tell", "clawmcp", "tell", HI),
    ("tell", "bare", "tell", HI),
    ("ask", "clawmcp", "ask", HI),
]


def mcp_proxy() -> Path:
    """mcp-proxy in its own venv: it pins the SDK 1.x."""
    exe = PROXY_VENV / "bin" / "mcp-proxy"
    if not exe.exists():
        subprocess.run([sys.executable, "-m", "venv", str(PROXY_VENV)], check=True)
        subprocess.run([str(PROXY_VENV / "bin" / "pip"), "install", "-q", "mcp-proxy"], check=True)
    return exe


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(command: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:  # its own process group: stop() ends its children too
        return subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True
        )


def stop(proc: subprocess.Popen[bytes]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(10)
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


async def wait_ready(http: httpx2.AsyncClient, url: str, proc: subprocess.Popen[bytes]) -> None:
    with anyio.fail_after(60):
        while proc.poll() is None:
            try:
                r = await http.get(url)
                if not url.endswith("/readyz") or (r.status_code == 200 and r.json()["ready"]):
                    return
            except httpx2.TransportError:
                pass
            await anyio.sleep(0.1)
        raise RuntimeError(f"the server for {url} exited with {proc.returncode}")


async def sequential(client: Client, tool: str, args: dict[str, str], n: int, into: list[float]) -> None:
    for _ in range(n):
        start = time.perf_counter()
        await client.call_tool(tool, args)
        into.append((time.perf_counter() - start) * 1000)


async def burst(clients: list[Client], tool: str, args: dict[str, str], seconds: float) -> tuple[int, float]:
    """Calls made by all `clients` at once, each calling until `seconds` are up; and the time taken."""
    done = 0
    start = time.perf_counter()

    async def calls(client: Client) -> None:
        nonlocal done
        while time.perf_counter() - start < seconds:
            await client.call_tool(tool, args)
            done += 1

    async with anyio.create_task_group() as tg:
        for client in clients:
            tg.start_soon(calls, client)
    return done, time.perf_counter() - start


def percentiles(ms: list[float]) -> tuple[float, float]:
    ms = sorted(ms)
    return statistics.median(ms), ms[int(len(ms) * 0.99) - 1]


async def measure(servers: dict[str, tuple[str, str, subprocess.Popen[bytes]]], calls: int) -> None:
    async with httpx2.AsyncClient() as http, AsyncExitStack() as stack:
        for _, ready, proc in servers.values():
            await wait_ready(http, ready, proc)
        api = servers["clawmcp"][1].replace("/readyz", "/api/claws")

        async def settle(server: str, tool: str) -> None:
            """After `tell`, wait (untimed) for the Claw's mailbox to empty: its runs would slow what
            is measured next, on any server."""
            with anyio.fail_after(600):
                while server == "clawmcp" and tool == "tell":
                    if not (await http.get(api)).json()[0]["mailbox"]:
                        return
                    await anyio.sleep(0.05)

        # No fail_after around this: the sessions outlive it. Each request times out instead.
        pools = {
            name: [
                await stack.enter_async_context(Client(url, mode=MODE, read_timeout_seconds=60))
                for _ in range(max(CLIENTS))
            ]
            for name, (url, _, _) in servers.items()
        }
        for _, server, tool, args in CASES:  # warm up every session, and check the tools work
            for client in pools[server] if tool != "ask" else pools[server][:1] * 20:
                if (result := await client.call_tool(tool, args)).is_error:
                    raise RuntimeError(f"{server} {tool}: {result.content}")
            await settle(server, tool)
        latency: dict[tuple[str, str], list[float]] = {(f, s): [] for f, s, _, _ in CASES}
        rate: dict[tuple[str, str, int], list[float]] = {}
        for _ in range(ROUNDS):
            for figure, server, tool, args in CASES:
                await sequential(pools[server][0], tool, args, calls // ROUNDS, latency[figure, server])
                await settle(server, tool)
        seconds = max(0.1, calls / 1000)  # per round, server, tool and number of clients
        for n in CLIENTS:
            for _ in range(ROUNDS):
                for figure, server, tool, args in CASES[:-1]:
                    done, took = await burst(pools[server][:n], tool, args, seconds)
                    total = rate.setdefault((figure, server, n), [0, 0.0])
                    total[0], total[1] = total[0] + done, total[1] + took
                    await settle(server, tool)
    report(latency, {key: done / took for key, (done, took) in rate.items()})


def report(latency: dict[tuple[str, str], list[float]], rate: dict[tuple[str, str, int], float]) -> None:
    p = {key: percentiles(ms) for key, ms in latency.items()}
    for (figure, server), (p50, p99) in p.items():
        rates = "".join(f"{rate[figure, server, n]:>8,.0f}" for n in CLIENTS if (figure, server, n) in rate)
        print(f"{figure:<8} {server:<10} p50 {p50:6.2f} ms  p99 {p99:6.2f} ms", end="")
        print(f"   calls/s, {'/'.join(map(str, CLIENTS))} clients {rates}" if rates else "")
    ours, proxy, bare = p["gateway", "clawmcp"], p["gateway", "mcp-proxy"], p["gateway", "bare"]
    tell, tell_bare = p["tell", "clawmcp"], p["tell", "bare"]
    print(f"gateway p50 ratio to mcp-proxy {ours[0] / proxy[0]:.2f} (goal: ≤ 1.0)", end="")
    print(f", to bare {ours[0] / bare[0]:.2f}")
    print(f"tell p50 ratio to bare {tell[0] / tell_bare[0]:.2f} (goal: ≤ 1.5)")
    for figure, name, baseline, said, goal in [
        ("gateway", "gateway tool call", "mcp-proxy", "mcp-proxy", "ratio ≤ 1.0"),
        ("tell", "tell", "bare", "bare SDK server", "ratio ≤ 1.5"),
    ]:
        ours_, base = p[figure, "clawmcp"], p[figure, baseline]
        record(f"{name} p50 (baseline: {said})", ours_[0], base[0], "ms", goal)
        record(f"{name} p99 (baseline: {said})", ours_[1], base[1], "ms")
        for n in CLIENTS:
            clients = f"{n} client{'s' * (n > 1)}"
            record(
                f"{figure} calls/s, {clients} (baseline: {said})",
                rate[figure, "clawmcp", n],
                rate[figure, baseline, n],
                "calls/s",
            )
    record("ask p50 (scripted model)", p["ask", "clawmcp"][0], None, "ms")
    record("ask p99 (scripted model)", p["ask", "clawmcp"][1], None, "ms")


def main(calls: int) -> None:
    proxy = mcp_proxy()
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        folder = Path(tmp)
        port = {name: free_port() for name in ("clawmcp", "mcp-proxy", "bare")}
        manifest = folder / "m.yaml"
        manifest.write_text(MANIFEST.format(port=port["clawmcp"], data=folder / "data"))
        flags = ["--host=127.0.0.1", f"--port={port['mcp-proxy']}", "--log-level=WARNING"]
        commands = {
            "clawmcp": [sys.executable, "-m", "clawmcp", "serve", str(manifest)],
            "mcp-proxy": [str(proxy), *flags, "--", *UPSTREAM],
            "bare": [sys.executable, str(BENCH / "_bare_server.py"), str(port["bare"])],
        }
        servers = {}
        for name, command in commands.items():
            proc = start(command, folder / f"{name}.log")
            stack.callback(stop, proc)
            base = f"http://127.0.0.1:{port[name]}"
            mcp, ready = (
                (f"{base}/claws/c/mcp", f"{base}/readyz") if name == "clawmcp" else (f"{base}/mcp",) * 2
            )
            servers[name] = (mcp, ready, proc)
        try:
            anyio.run(measure, servers, calls)
        except BaseException as e:
            for name in servers:
                print(f"--- {name}'s log:\n{(folder / f'{name}.log').read_text()[-3000:]}", file=sys.stderr)
            while isinstance(e, BaseExceptionGroup):  # each open session wraps the error once more
                e = e.exceptions[0]
            raise e from None


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 500)

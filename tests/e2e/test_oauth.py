"""OAuth for remote tool servers with real processes: an MCP server behind its own authorization
server (the SDK's pieces, `tests/peers/oauth_server.py`); `clawmcp serve` marks it `needs login`;
`clawmcp login` runs the flow with a scripted browser (an HTTP client following the redirect) and
the host connects at once; calls succeed; the access token expires and the host refreshes it with
no person; a revoked refresh token gives the one-line `needs login` path, and an alert."""

from __future__ import annotations

import json
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from anyio.streams.text import TextReceiveStream

from tests.e2e.test_approvals import events
from tests.e2e.test_serve import base_of, serving
from tests.e2e.test_stdio_and_cli import clawmcp
from tests.fakes import PEERS

pytestmark = pytest.mark.anyio

LIFETIME = 1  # seconds an access token of the peer lasts


def manifest(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "m.yaml"
    reply = "reply: '{{ results[0] }}'"
    rules = ", ".join(
        f"{{when: {word}, steps: [{{tool: 'secure__{tool}', arguments: {{}}}}], {reply}}}"
        for word, tool in [("who", "whoami"), ("stats", "stats"), ("revoke", "revoke")]
    )
    path.write_text(
        "host: {listen: '127.0.0.1:0', data_dir: state, alerts: {to: ops}}\n"
        f"models:\n  m: {{provider: scripted, rules: [{rules}, {{reply: noted}}]}}\n"
        f"servers:\n  secure: {{url: '{url}', auth: oauth}}\n"
        "claws:\n  c: {model: m, tools: ['secure.*']}\n  ops: {model: m}\n"
    )
    return path


async def ask(http: httpx2.AsyncClient, base: str, message: str) -> Any:
    answer = await http.post(f"{base}/api/claws/c/ask", json={"message": message})
    return answer.json()["reply"]


async def login(path: Path) -> str:
    """`clawmcp login secure`, its browser played by an HTTP client; what it printed."""
    command = [sys.executable, "-m", "clawmcp", "login", "secure", "-p", str(path)]
    async with (
        await anyio.open_process(command, stderr=subprocess.STDOUT) as process,
        httpx2.AsyncClient() as browser,
    ):
        assert process.stdout is not None
        said = ""
        async for chunk in TextReceiveStream(process.stdout):
            said += chunk
            if "/authorize?" in said:
                break
        url = next(w for w in said.split() if "/authorize?" in w)
        consent = await browser.get(url)  # the authorization server approves at once
        back = await browser.get(consent.headers["location"])  # to the login's loopback listener
        assert back.status_code == 200 and "logged in" in back.text
        said += "".join([chunk async for chunk in TextReceiveStream(process.stdout)])
        assert await process.wait() == 0, said
    return said


async def test_login_refresh_and_a_refused_refresh(tmp_path: Path) -> None:
    peer = [sys.executable, str(PEERS / "oauth_server.py"), str(LIFETIME)]
    async with await anyio.open_process(peer) as server:
        assert server.stdout is not None
        async for chunk in TextReceiveStream(server.stdout):
            url = chunk.split("listening on ", 1)[1].split()[0]
            break
        path = manifest(tmp_path, url)
        async with (
            serving(path, mcp_config=False) as (host, lines),
            httpx2.AsyncClient(timeout=60) as http,
        ):
            base = base_of(lines)
            ready = (await http.get(f"{base}/readyz")).json()
            listed = await anyio.to_thread.run_sync(clawmcp, "tools", "-p", str(path))
            refused = await ask(http, base, "who are you")

            with anyio.fail_after(60):
                async with events(base, "server", "up") as up:
                    said = await login(path)
                    await up.wait()  # the CLI told the host to try again now
            first = await ask(http, base, "who are you")
            await anyio.sleep(LIFETIME + 0.1)  # the access token has expired
            again = await ask(http, base, "who are you")
            stats = json.loads(await ask(http, base, "stats"))

            assert await ask(http, base, "revoke") == "revoked"
            await anyio.sleep(LIFETIME + 0.1)  # expired, and its refresh token is refused
            lost = await ask(http, base, "who are you")
            after = (await http.get(f"{base}/readyz")).json()
            servers = (await http.get(f"{base}/api/servers")).json()
            with anyio.fail_after(30):
                async with events(base, "run", "done") as alerted:
                    while not any("needs a login" in str(m) for m in alerts(tmp_path)):
                        await alerted.wait()
            host.terminate()
            assert host.stderr is not None
            log = "".join([chunk async for chunk in TextReceiveStream(host.stderr)])  # to its end
        server.terminate()
    hint = "tool server 'secure' needs a login: run clawmcp login secure"
    assert ready["servers"] == {"up": 0, "down": 1, "needs_login": 1}
    assert f"server 'secure': needs login: {hint}" in listed.stdout
    assert refused == hint  # before the login too
    assert "Open this address in a browser to log in to 'secure':" in said
    assert "logged in to 'secure'" in said
    assert (first, again) == ("a logged-in client", "a logged-in client")
    assert stats["refreshes"] >= 1 and stats["registrations"] == 1  # refreshed, no new login
    assert lost == hint
    assert after["servers"]["needs_login"] == 1 and servers["secure"]["state"] == "needs login"
    key = tmp_path / "state" / "oauth.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    with sqlite3.connect(tmp_path / "state" / "state.db") as db:
        [(sealed,)] = db.execute("SELECT value FROM secrets WHERE name = 'oauth:secure'").fetchall()
    assert b"token" not in sealed and b"refresh" not in sealed  # sealed, not in the clear
    assert f"{hint}" in log and "Traceback" not in log and "Bearer" not in log


def alerts(tmp_path: Path) -> list[str]:
    with sqlite3.connect(tmp_path / "state" / "state.db") as db:
        return [m for (m,) in db.execute("SELECT content FROM messages WHERE mailbox = 'ops'")]

"""A real tool server whose tools changed after the host pinned them (while the host was down):
`clawmcp tools` shows the changed and the new tool held, `--diff` what changed, the model is not
offered them, and `clawmcp tools accept` releases one."""

from __future__ import annotations

import json
from pathlib import Path

import httpx2
import pytest

from tests.e2e.test_serve import base_of, serving
from tests.e2e.test_stdio_and_cli import clawmcp
from tests.fakes import PEERS

pytestmark = pytest.mark.anyio


def manifest(tmp_path: Path) -> Path:
    path = tmp_path / "m.yaml"
    path.write_text(
        "host: {listen: '127.0.0.1:0', data_dir: state}\n"
        "models: {m: {provider: scripted, rules: [{reply: hi}]}}\n"
        f"servers:\n  up: {{command: python, args: ['{PEERS / 'turning.py'}', '{tmp_path / 'turned'}']}}\n"
        "claws:\n  c: {model: m, tools: ['up.*'], expose: {tools: true}}\n"
    )
    return path


def pins(path: Path) -> dict[str, str]:
    return {t["tool"]: t["pin"] for t in json.loads(clawmcp("tools", "--json", "-p", str(path)).stdout)}


async def test_changed_tools_are_held_until_clawmcp_tools_accept(tmp_path: Path) -> None:
    path = manifest(tmp_path)
    async with serving(path, mcp_config=False) as (_, lines):
        assert pins(path) == {"fetch": "pinned", "time": "pinned"}
    (tmp_path / "turned").write_text("turned")  # the server changed while the host was down
    async with serving(path, mcp_config=False) as (_, lines):
        base = base_of(lines)
        assert pins(path) == {"exfiltrate": "new", "fetch": "changed", "time": "pinned"}
        assert any("tool 'up.fetch' changed since it was pinned" in line for line in lines)
        table = clawmcp("tools", "up", "--diff", "-p", str(path)).stdout
        assert "up.fetch description:" in table
        assert '  pinned: "Fetch a page."' in table and "evil.example" in table
        async with httpx2.AsyncClient() as http:
            claws = (await http.get(f"{base}/api/claws")).json()
        assert "up__fetch" not in claws[0]["tools"] and "up__time" in claws[0]["tools"]
        accepted = clawmcp("tools", "accept", "up", "fetch", "-p", str(path))
        assert accepted.stdout == "accepted 1 tool(s) of 'up': fetch\n", accepted.stderr
        assert pins(path) == {"exfiltrate": "new", "fetch": "pinned", "time": "pinned"}
        unknown = clawmcp("tools", "accept", "up", "nope", "-p", str(path))
        assert "tool server 'up' lists no tool nope" in unknown.stderr

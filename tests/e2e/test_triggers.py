"""Webhooks with a real `clawmcp serve`: a GitHub-format delivery (signed here) is refused with a
wrong signature and leaves nothing in `state.db`; a good one answered 202 survives a SIGKILL
right after the answer, and its run ends once the host is back."""

from __future__ import annotations

import json
import os
from pathlib import Path

import anyio
import httpx2
import pytest

from tests.e2e.test_handles import release, stored
from tests.e2e.test_serve import base_of, serving
from tests.fakes import PEERS
from tests.test_triggers import SECRET, github

pytestmark = pytest.mark.anyio


def manifest(tmp_path: Path) -> Path:
    fifo = tmp_path / "gate"
    os.mkfifo(fifo)
    path = tmp_path / "m.yaml"
    path.write_text(
        "host: {listen: '127.0.0.1:0', data_dir: state}\n"
        "models:\n  m: {provider: scripted, rules: [{when: GitHub, steps: [{tool: gate__hold,"
        " arguments: {}}], reply: 'triaged: {{ results[0] }}'}]}\n"
        f"servers:\n  gate: {{command: python, args: ['{PEERS / 'gate.py'}', '{fifo}']}}\n"
        "claws:\n  triage:\n    model: m\n    tools: ['gate.*']\n    triggers:\n"
        "      - name: github\n        webhook: {secret: '${HOOK_SECRET}', signature: github}\n"
        "        prompt: 'GitHub says {{ body }}'\n"
    )
    return path


async def test_a_delivery_answered_202_survives_a_sigkill(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    path = manifest(tmp_path)
    body = b'{"zen": "Keep it logically awesome."}'
    async with serving(path, mcp_config=False) as (process, lines), httpx2.AsyncClient(timeout=30) as http:
        url = f"{base_of(lines)}/hooks/triage/github"
        wrong = await http.post(url, content=body, headers=github(b"another body", "d-1"))
        assert wrong.status_code == 401
        assert stored(tmp_path, "SELECT count(*) FROM messages") == [(0,)]

        accepted = await http.post(url, content=body, headers=github(body, "d-1"))
        assert accepted.status_code == 202, accepted.text
        process.kill()  # right after the answer
        await process.wait()
    message_id = accepted.json()["message_id"]
    [(content, thread, kind)] = stored(tmp_path, "SELECT content, thread, kind FROM messages")
    assert (thread, kind) == ("hook:github", "fire")
    assert json.loads(str(content))["prompt"] == f"GitHub says {body.decode()}"
    assert all(line.count(body.decode()) == 0 for line in lines)  # the body is never logged

    async with serving(path, mcp_config=False) as (_, lines), httpx2.AsyncClient(timeout=60) as http:
        base = base_of(lines)
        again = await http.post(f"{base}/hooks/triage/github", content=body, headers=github(body, "d-1"))
        assert again.json() == {"message_id": message_id, "duplicate": True}  # GitHub's redelivery
        await release(tmp_path, "released")
        with anyio.fail_after(60):
            result = (await http.get(f"{base}/api/messages/{message_id}", params={"wait": 50})).json()
    assert (result["state"], result["reply"]) == ("done", "triaged: released")
    runs = stored(tmp_path, f"SELECT trigger, state FROM runs WHERE message_id = {message_id}")
    assert ("webhook", "done") in runs and runs.count(("webhook", "done")) == 1

"""What a host shows of itself: `/metrics`, the activity log (`/api/events`), the dashboard's data,
and the token checks in front of them; on a real host over real HTTP."""

from __future__ import annotations

import json
import re
from pathlib import Path

import anyio
import httpx2
import pytest
from prometheus_client.parser import text_string_to_metric_families

from clawmcp.host import Host
from tests.e2e.test_web import MANIFEST, TOKEN_A, TOKEN_ALL, host_and_url, host_on_http

pytestmark = pytest.mark.anyio


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a Prometheus text exposition, by name and labels."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def labels(**values: str) -> frozenset[tuple[str, str]]:
    return frozenset(values.items())


async def until(host: Host, kind: str) -> None:
    """Wait for the next event of a kind (the metrics have counted it by then)."""
    with host.events.subscribe() as live, anyio.fail_after(10):
        async for event in live:
            if event.kind == kind:
                return


async def test_metrics_parse_and_move_when_a_run_happens(tmp_path: Path) -> None:
    async with host_and_url(tmp_path) as (host, base), httpx2.AsyncClient(base_url=base) as http:
        before = samples((await http.get("/metrics")).text)
        asked = await http.post("/api/claws/scout/ask", json={"message": "what time is it?"})
        assert asked.json()["state"] == "done"
        async with anyio.create_task_group() as tg:
            tg.start_soon(until, host, "delivery")
            await anyio.wait_all_tasks_blocked()
            told = await http.post("/api/claws/editor/tell", json={"message": "later"})
            assert told.status_code == 200
        response = await http.get("/metrics")
        after = samples(response.text)
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    scout, tool = labels(claw="scout"), labels(claw="scout", tool="time.get_current_time")
    assert ("clawmcp_runs_total", labels(claw="scout", outcome="done")) not in before
    assert after[("clawmcp_runs_total", labels(claw="scout", outcome="done"))] == 1
    assert after[("clawmcp_run_duration_seconds_count", scout)] == 1
    assert after[("clawmcp_run_duration_seconds_bucket", scout | {("le", "+Inf")})] == 1
    assert after[("clawmcp_tool_calls_total", tool | {("outcome", "ok")})] == 1
    assert after[("clawmcp_tool_call_duration_seconds_count", tool)] == 1
    assert 0 < after[("clawmcp_tool_call_duration_seconds_sum", tool)] < 10
    assert after[("clawmcp_messages_total", labels(claw="editor", kind="message"))] == 1
    assert after[("clawmcp_mailbox_depth", labels(claw="editor"))] == 0
    assert after[("clawmcp_dead_letters", labels(claw="scout"))] == 0
    assert after[("clawmcp_tool_server_up", labels(server="time"))] == 1
    assert after[("clawmcp_tool_server_reconnects_total", labels(server="time"))] == 0


async def test_schedule_lateness_is_a_histogram(tmp_path: Path) -> None:
    manifest = MANIFEST.replace(
        "    expose: {tools: true}",
        "    expose: {tools: true}\n    schedules: [{name: tick, every: 1s, prompt: hi}]",
    )
    async with host_and_url(tmp_path, manifest=manifest) as (host, base):
        await until(host, "fire")
        async with httpx2.AsyncClient(base_url=base) as http:
            found = samples((await http.get("/metrics")).text)
    assert found[("clawmcp_schedule_lateness_seconds_count", labels(claw="scout"))] >= 1


async def test_the_activity_log_lists_and_follows_what_happens(tmp_path: Path) -> None:
    async with host_on_http(tmp_path) as base, httpx2.AsyncClient(base_url=base) as http:
        await http.post("/api/claws/scout/ask", json={"message": "what time is it?"})
        seen: list[dict[str, object]] = []
        async with http.stream("GET", "/api/events?follow=1&claw=editor&limit=5") as stream:
            await http.post("/api/claws/editor/tell", json={"message": "hello there"})
            with anyio.fail_after(10):
                async for text in stream.aiter_lines():
                    if text.startswith("data:"):
                        seen.append(json.loads(text[5:]))
                        if seen[-1]["kind"] == "delivery":
                            break
        listed = (await http.get("/api/events?claw=scout")).json()
        bad = await http.get("/api/events?claw=ghost")
        worse = await http.get("/api/events?limit=many")
    assert [(e["kind"], e["claw"]) for e in seen] == [
        ("message", "editor"),
        ("run", "editor"),
        ("model", "editor"),
        ("run", "editor"),
        ("delivery", "editor"),
    ]
    assert "message 2 from outside (thread default): hello there" in seen[0]["line"]  # type: ignore[operator]
    assert "run 2 done in" in seen[3]["line"]  # type: ignore[operator]
    assert [e["kind"] for e in listed] == ["run", "model", "tool", "model", "run"]
    assert listed[2]["data"]["tool"] == "time.get_current_time" and listed[2]["data"]["outcome"] == "ok"
    assert (bad.status_code, bad.json()["error"]) == (404, "no Claw 'ghost' (Claws: editor, scout)")
    assert worse.status_code == 400


async def test_a_process_claws_events_reach_the_hosts_log(tmp_path: Path) -> None:
    manifest = MANIFEST.replace(
        "    model: canned\n    tools:", "    model: canned\n    isolation: process\n    tools:", 1
    )
    async with (
        host_and_url(tmp_path, manifest=manifest) as (_, base),
        httpx2.AsyncClient(base_url=base) as http,
    ):
        asked = await http.post("/api/claws/scout/ask", json={"message": "what time is it?"})
        assert asked.json()["state"] == "done"
        listed = (await http.get("/api/events?claw=scout")).json()
        text = (await http.get("/metrics")).text
    assert [e["kind"] for e in listed] == ["run", "model", "tool", "model", "run"]
    assert samples(text)[("clawmcp_runs_total", labels(claw="scout", outcome="done"))] == 1


async def test_the_dashboard_needs_a_token_and_shows_what_it_reaches(tmp_path: Path) -> None:
    a, every = f"{{name: a, token: {TOKEN_A}, claws: [scout]}}", f"{{name: all, token: {TOKEN_ALL}}}"
    tokens = f", auth: {{tokens: [{a}, {every}]}}"
    async with host_on_http(tmp_path, tokens) as base, httpx2.AsyncClient(base_url=base) as http:
        bearer = {"authorization": f"Bearer {TOKEN_ALL}"}
        await http.post("/api/claws/scout/ask", json={"message": "what time is it?"}, headers=bearer)
        await http.post("/api/claws/editor/ask", json={"message": "hi"}, headers=bearer)
        refused = await http.get("/")
        assert (refused.status_code, refused.json()["error"]) == (
            401,
            "a valid bearer token is needed; a browser opens /?token=TOKEN once",
        )
        assert (await http.get("/?token=wrong-token-0000000000")).status_code == 401
        assert (await http.get("/metrics")).status_code == 401

        login = await http.get(f"/?token={TOKEN_A}")  # sets the cookie and takes the token out of the address
        assert (login.status_code, login.headers["location"]) == (303, "/")
        cookie = login.headers["set-cookie"]
        assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
        page = await http.get("/")
        assert page.status_code == 200 and "<title>clawmcp</title>" in page.text
        assert "script-src 'sha256-" in page.headers["content-security-policy"]
        assert "http" not in page.text  # nothing fetched from elsewhere

        shown = (await http.get("/api/dashboard")).json()
        assert [c["claw"] for c in shown["claws"]] == ["scout"]
        assert [r["claw"] for r in shown["runs"]] == ["scout"]
        [run] = shown["runs"]
        assert [s["kind"] for s in run["steps"]] == ["model", "tool_call", "tool_result", "model"]
        assert run["steps"][2]["data"]["duration"] > 0
        assert shown["servers"]["time"]["state"] == "up"
        metrics = (await http.get("/metrics")).text
        assert 'claw="scout"' in metrics and 'claw="editor"' not in metrics
        assert (await http.get("/api/events?claw=editor")).status_code == 403
        # The cookie stands for the token on reads only: a POST still needs the bearer header...
        assert (await http.post("/api/claws/scout/ask", json={"message": "hi"})).status_code == 401
        # ...or the dashboard page's own token beside it, which only a page of this origin can read
        [token] = re.findall(r'<meta name="clawmcp-page" content="([^"]+)">', page.text)
        with_page = await http.post("/api/dead/999/retry", headers={"x-clawmcp-page": token})
        assert (with_page.status_code, with_page.json()["error"]) == (404, "no dead letter 999 to retry")
        wrong = await http.post("/api/dead/999/retry", headers={"x-clawmcp-page": token[:-1] + "x"})
        assert wrong.status_code == 401

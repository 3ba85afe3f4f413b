"""What a person running `clawmcp serve` sees: the dashboard in headless Chromium (Debian's
chromium and chromium-driver, which scripts/test installs), and `clawmcp logs -f`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import anyio
import anyio.to_thread
import httpx2
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.wait import WebDriverWait

from tests.e2e.test_approvals import manifest as approvals_manifest
from tests.e2e.test_approvals import recorded
from tests.e2e.test_serve import base_of, serving

ROOT = Path(__file__).parents[2]
ARTIFACTS = Path(os.environ.get("CLAWMCP_ARTIFACTS", ROOT / "test-artifacts"))
"""Where tests leave what a person may want to look at (the dashboard's screenshot)."""
CHROMIUM_FLAGS = [  # no sandbox as root; no calls to Google's hosts, which this network refuses
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1100",
]

pytestmark = pytest.mark.anyio


def demo(tmp_path: Path) -> Path:
    """manifests/demo.yaml on a port of its own (0: the host takes a free one) and its own data_dir."""
    text = (ROOT / "manifests" / "demo.yaml").read_text()
    text = text.replace("127.0.0.1:8765", "127.0.0.1:0").replace("../.clawmcp/demo", str(tmp_path / "data"))
    path = tmp_path / "demo.yaml"
    path.write_text(text)
    return path


async def clawmcp(*args: str) -> str:
    done = await anyio.run_process([sys.executable, "-m", "clawmcp", *args])
    return done.stdout.decode()


def browser() -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))


def screenshot(page: webdriver.Chrome) -> bool:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return page.save_screenshot(str(ARTIFACTS / "dashboard.png"))


async def shows(page: webdriver.Chrome, check: Callable[[webdriver.Chrome], bool]) -> None:
    """Wait until the page passes `check` (the browser is asked in a thread: its client blocks).
    An element the page redrew while it was read is read again."""
    wait = WebDriverWait(page, 20, poll_frequency=0.1, ignored_exceptions=[StaleElementReferenceException])
    await anyio.to_thread.run_sync(lambda: wait.until(check))


def run_shown(run: int, tool: str) -> Callable[[webdriver.Chrome], bool]:
    def check(page: webdriver.Chrome) -> bool:
        found = page.find_elements(By.CSS_SELECTOR, f'[data-run="{run}"]')
        return (
            bool(found)
            and " done " in found[0].text
            and f"{tool}" in found[0].text
            and " ok " in found[0].text
        )

    return check


async def test_the_dashboard_shows_claws_runs_and_tool_calls_and_updates_without_a_reload(
    tmp_path: Path,
) -> None:
    path = demo(tmp_path)
    async with serving(path, mcp_config=False) as (_, started):
        await clawmcp("ask", "scout", "what time is it?", "-p", str(path))
        page = await anyio.to_thread.run_sync(browser)
        try:
            await anyio.to_thread.run_sync(page.get, f"{base_of(started)}/")

            def claws_shown(p: webdriver.Chrome) -> bool:
                rows = p.find_elements(By.CSS_SELECTOR, "#claws tbody tr")
                return [r.get_attribute("data-claw") for r in rows] == ["editor", "scout"]

            await shows(page, claws_shown)
            await shows(page, run_shown(1, "time__get_current_time"))

            def scout_shown(p: webdriver.Chrome) -> bool:
                scout = p.find_element(By.CSS_SELECTOR, '#claws tr[data-claw="scout"]').text
                return "idle" in scout and "canned" in scout and "#1 done" in scout

            await shows(page, scout_shown)
            await shows(
                page,
                lambda p: p.find_element(By.CSS_SELECTOR, '#servers tr[data-server="time"]').text.startswith(
                    "time up"
                ),
            )
            page.execute_script("window.notReloaded = true")
            await shows(page, lambda p: p.find_element(By.ID, "live").text == "live")

            await clawmcp(
                "ask", "scout", "relay the build is green", "-p", str(path)
            )  # run 2, and editor's run 3
            await shows(page, run_shown(2, "claw__send"))
            await shows(page, lambda p: "scout → editor" in p.find_element(By.ID, "messages").text)
            await shows(page, lambda p: "run 3 done" in p.find_element(By.ID, "activity").text)
            assert page.execute_script("return window.notReloaded") is True  # the same page all along
            assert await anyio.to_thread.run_sync(screenshot, page)
            errors = [e for e in page.get_log("browser") if e["level"] == "SEVERE"]  # type: ignore[no-untyped-call]
            assert errors == []  # no script error, nothing refused by the page's CSP
        finally:
            await anyio.to_thread.run_sync(page.quit)


async def test_logs_follow_shows_a_run_while_it_happens_and_the_host_logs_json(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    path = tmp_path / "m.yaml"
    path.write_text(
        "host: {listen: '127.0.0.1:0', data_dir: state}\n"
        "models: {m: {provider: scripted, rules: [{steps: [{tool: tools__gate}],"
        " reply: 'through: {{ results[0] }}'}]}}\n"
        f"tools: {{gate: {{command: [cat, '{gate}'], timeout: 60s}}}}\n"
        "claws: {a: {model: m, tools: ['tools.gate']}, b: {model: m}}\n"
    )
    command = [sys.executable, "-m", "clawmcp", "serve", str(path), "--log-format", "json"]
    async with (
        serving(path, mcp_config=False, command=command) as (_, stderr),
        await anyio.open_process(
            [sys.executable, "-m", "clawmcp", "logs", "-f", "a", "-p", str(path)], stderr=subprocess.DEVNULL
        ) as logs,
    ):
        assert logs.stdout is not None
        lines: list[str] = []
        reading = BufferedByteReceiveStream(logs.stdout)

        async def until(text: str) -> None:
            with anyio.fail_after(20):
                while not any(text in line for line in lines):  # whole lines, however they arrive
                    lines.append((await reading.receive_until(b"\n", 1_000_000)).decode())

        told = await clawmcp("tell", "a", "go", "-p", str(path))
        await until("run 1 model turn 1: calls tools__gate")
        async with httpx2.AsyncClient() as http:  # the run is still going on: it waits at the gate
            [claw] = [c for c in (await http.get(f"{base_of(stderr)}/api/claws")).json() if c["claw"] == "a"]
        assert (claw["state"], claw["last_runs"][0]["state"]) == ("running", "running")

        def open_gate() -> None:
            gate.write_text("open")

        await anyio.to_thread.run_sync(open_gate)
        await until("run 1 done")
        logs.terminate()
    shown = [line.split("  ", 2)[1:] for line in lines]
    assert shown[:6] == [
        ["a", f"message {told.strip()} from outside (thread default): go"],
        ["a", "run 1 started (message, thread default): go"],
        ["a", "run 1 model turn 1: calls tools__gate"],
        ["a", shown[3][1]],
        ["a", "run 1 model turn 2: replies: through: open"],
        ["a", shown[5][1]],
    ]
    assert shown[3][1].startswith("tool tools.gate ok (") and shown[3][1].endswith(" ms, run 1)")
    assert shown[5][1].startswith("run 1 done in ") and shown[5][1].endswith(" s: through: open")
    logged = [json.loads(line) for line in stderr]
    listen = logged[-1]["listen"]
    assert logged[-1]["message"] == f"listening on http://{listen} (Claws: a, b)"
    assert logged[-1]["level"] == "info" and listen.startswith("127.0.0.1:") and listen != "127.0.0.1:0"


async def test_a_person_approves_a_waiting_call_with_a_click(tmp_path: Path) -> None:
    path = approvals_manifest(tmp_path)
    async with serving(path, mcp_config=False) as (_, started):
        await clawmcp("tell", "c", "record minutes", "-p", str(path))
        page = await anyio.to_thread.run_sync(browser)
        try:
            await anyio.to_thread.run_sync(page.get, f"{base_of(started)}/")
            row = '#approvals tr[data-approval="1"]'
            await shows(page, lambda p: '{"n":"minutes"}' in p.find_element(By.CSS_SELECTOR, row).text)

            def approve(p: webdriver.Chrome) -> bool:  # the page may redraw the row meanwhile
                buttons = p.find_elements(By.CSS_SELECTOR, f"{row} button")
                assert [b.text for b in buttons] == ["Approve", "Deny"]
                buttons[0].click()
                return True

            await shows(page, approve)
            await shows(page, run_shown(1, "rec__record"))
            await shows(page, lambda p: p.find_elements(By.CSS_SELECTOR, row) == [])
        finally:
            await anyio.to_thread.run_sync(page.quit)
    assert recorded(tmp_path) == ["minutes"]

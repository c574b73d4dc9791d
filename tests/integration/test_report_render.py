"""The report renders in headless Chromium with no console errors and no network load.

Drives Debian's ``chromium`` over the DevTools protocol (aiohttp's websocket
client): console calls, exceptions, log entries (CSP violations land there) and
every request the page makes are collected while it loads. Skipped where
Chromium is not installed.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from chaos.report import render_report
from chaos.testing.synthetic_run import SyntheticFault, SyntheticRun, write_synthetic_run

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")


@dataclass
class PageLog:
    """What the page reported while loading."""

    problems: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    screenshot: bytes = b""
    body_text: str = ""


def _start_chromium(profile: Path) -> tuple[subprocess.Popen[bytes], int]:
    assert CHROMIUM is not None
    proc = subprocess.Popen(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1280,2400",
            f"--user-data-dir={profile}",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    port_file = profile / "DevToolsActivePort"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if port_file.exists() and port_file.read_text().strip():
            return proc, int(port_file.read_text().splitlines()[0])
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    _stop(proc)
    pytest.fail("chromium did not open its DevTools port within 20 s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


async def _load(port: int, url: str) -> PageLog:
    log = PageLog()
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{port}/json/list") as resp:
            targets = await resp.json()
        page = next(t for t in targets if t["type"] == "page")
        async with http.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            ids = iter(range(1, 1_000_000))
            replies: dict[int, dict[str, Any]] = {}
            loaded = asyncio.Event()

            async def call(method: str, **params: Any) -> dict[str, Any]:
                i = next(ids)
                await ws.send_str(json.dumps({"id": i, "method": method, "params": params}))
                while i not in replies:
                    await asyncio.sleep(0.01)
                return replies.pop(i)

            async def reader() -> None:
                async for msg in ws:
                    data = json.loads(msg.data)
                    if "id" in data:
                        replies[data["id"]] = data.get("result", {})
                        continue
                    method, params = data.get("method"), data.get("params", {})
                    if method == "Runtime.consoleAPICalled" and params["type"] in (
                        "error",
                        "warning",
                        "assert",
                    ):
                        log.problems.append(f"console.{params['type']}: {params['args']}")
                    elif method == "Runtime.exceptionThrown":
                        log.problems.append(f"exception: {params['exceptionDetails']}")
                    elif method == "Log.entryAdded" and params["entry"]["level"] in (
                        "error",
                        "warning",
                    ):
                        log.problems.append(f"log: {params['entry']['text']}")
                    elif method == "Network.requestWillBeSent":
                        log.requests.append(params["request"]["url"])
                    elif method == "Page.loadEventFired":
                        loaded.set()

            task = asyncio.create_task(reader())
            try:
                for domain in ("Runtime", "Log", "Network", "Page"):
                    await call(f"{domain}.enable")
                await call("Page.navigate", url=url)
                await asyncio.wait_for(loaded.wait(), timeout=20)
                await asyncio.sleep(0.5)  # late console messages
                shot = await call("Page.captureScreenshot", format="png")
                log.screenshot = base64.b64decode(shot["data"])
                text = await call(
                    "Runtime.evaluate",
                    expression="document.body.innerText",
                    returnByValue=True,
                )
                log.body_text = str(text["result"]["value"])
            finally:
                task.cancel()
    return log


def test_report_renders_without_console_errors(tmp_path: Path) -> None:
    faults = (
        SyntheticFault("checkout-slow", "latency"),
        SyntheticFault("payments-crash", "crash", pods_hit=2),
    )
    spec = SyntheticRun(
        description='<script>alert(1)</script> game day\'s "test"',
        setups=("sidecar", "mesh", "ambient"),
        recovery_s={"sidecar": 2.0, "mesh": 0.6, "ambient": 1.2},
        faults=faults,
    )
    run = write_synthetic_run(tmp_path / "run", spec)
    report = render_report([run], tmp_path / "report.html")
    proc, port = _start_chromium(tmp_path / "profile")
    try:
        log = asyncio.run(asyncio.wait_for(_load(port, report.as_uri()), timeout=60))
    finally:
        _stop(proc)
    (tmp_path / "screenshot.png").write_bytes(log.screenshot)
    assert log.problems == []
    assert log.requests and all(u.startswith(("file:", "data:")) for u in log.requests)
    assert log.screenshot.startswith(b"\x89PNG")
    # the description is shown as text, not run
    assert '<script>alert(1)</script> game day\'s "test"' in log.body_text
    # 3 repetitions a setup cannot decide the comparison: the page says so (undecided)
    assert "checkout-slow" in log.body_text and "undecided" in log.body_text

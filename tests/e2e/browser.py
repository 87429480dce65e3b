"""Headless Chromium as an offline user's browser: every name resolves nowhere and every
non-loopback request goes to a dead proxy, and the net log tells which requests the page made."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class PageLoad:
    dom: str
    screenshot: Path
    requests: list[str]  # URLs the page itself asked for (not the browser's own background)


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI"):
            raise AssertionError("chromium is not installed (.ci/run installs it)")
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    return found


def _flags(work: Path, name: str) -> list[str]:
    profile = work / f"chromium-{name}"
    profile.mkdir(parents=True, exist_ok=True)
    return ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={profile}", "--window-size=1200,1400",
            "--virtual-time-budget=15000",
            # Offline: no name resolves, and anything not on loopback goes to a closed port.
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            "--proxy-server=http://127.0.0.1:9"]


def page_requests(netlog: Path, origin: str) -> list[str]:
    """URLs the page at `origin` asked for (its main frame, and requests it initiated), from
    Chromium's --log-net-log JSON. The browser's own services (autofill, updates) are left out:
    they are not the page's doing."""
    data = json.loads(netlog.read_text())
    start = data["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    site = origin.rsplit(":", 1)[0]  # the isolation key names the site, without the port
    urls = []
    for event in data["events"]:
        params = event.get("params") or {}
        if event["type"] != start:
            continue
        mine = str(params.get("network_isolation_key", "")).startswith(site) and (
            params.get("request_type") == "main frame" or params.get("initiator") == origin)
        if mine:
            urls.append(str(params["url"]))
    return urls


def load(url: str, work: Path, name: str) -> PageLoad:
    """Open `url` offline: its rendered DOM, a screenshot, and the requests it made."""
    exe = chromium()
    env = {**os.environ, "HOME": str(work)}
    dom = subprocess.run([exe, *_flags(work, name + "-dom"), "--dump-dom", url],
                         capture_output=True, text=True, timeout=180, env=env).stdout
    shot, netlog = work / f"{name}.png", work / f"{name}-netlog.json"
    subprocess.run([exe, *_flags(work, name + "-shot"), f"--screenshot={shot}",
                    f"--log-net-log={netlog}", url],
                   capture_output=True, timeout=180, env=env)
    origin = url.split("/", 3)
    return PageLoad(dom, shot, page_requests(netlog, "/".join(origin[:3])))

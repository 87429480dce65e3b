"""Canaries as a user runs them: `canary = true` on a folder source, `freshrag watch` rewrites
the canary and finds it through search (a latency in /metrics), `freshrag serve` hides it from
searches and counts, and says /ready is degraded, naming the source, once the watcher stops."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.test_metrics import Samples, get, parse
from tests.e2e.userpath import Project, free_port, user_env, wait_until
from tests.flows.prefect_server import prefect_server

ROOT = Path(__file__).resolve().parents[2]

CONFIG = ('[[sources]]\nname = "docs"\ntype = "folder"\npath = "docs"\ninclude = ["*.md"]\n'
          'canary = true\ncanary_interval = 1\ncanary_late_after = 8\n')
LATENCY = "freshrag_canary_latency_seconds_count"


@pytest.mark.slow
def test_canary_latency_in_metrics_hidden_from_search_and_late_when_the_watcher_stops(
        project: Project) -> None:
    project.write_config(CONFIG)
    (project.docs / "a.md").write_text("# Travel\n\nThe travel policy covers trains.\n")
    port = free_port()
    watch = project.start("watch", "--record", "off", "--metrics-port", str(port))
    _, base = project.serve()
    watch.wait_for_log("; ready", 180)

    def scrape() -> Samples:
        return parse(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text)

    # the canary is found through search again and again (not only the first write)
    def found_thrice() -> Samples | None:
        got = scrape()
        return got if get(got, LATENCY, source="docs") >= 3 else None

    samples = wait_until(found_thrice, "three canaries found", 120, 0.2)
    assert get(samples, "freshrag_canary_latency_seconds_sum", source="docs") > 0
    assert get(samples, "freshrag_canary_last_success_timestamp_seconds", source="docs") > 0
    assert get(samples, "freshrag_canary_late", source="docs") == 0
    # ... and not timed as a user's change: nothing was changed
    assert not any(n.startswith("freshrag_change_to_searchable_seconds_count") and v
                   for (n, _), v in samples.items())
    assert (project.docs / ".freshrag-canary" / "canary.txt").read_text().startswith(
        "freshrag canary ")

    http = httpx.Client(base_url=base, timeout=30)
    ready = wait_until(lambda: (r := http.get("/ready").json())["checks"].get("canary:docs")
                       == "ok" and r, "/ready: canary ok")
    assert ready["ready"] is True and ready["degraded"] is False, ready
    row = http.get("/status").json()["sources"][0]
    assert (row["documents"], row["canary"]["indexed"]) == (1, True), row  # apart from a.md
    assert row["canary"]["last_latency_s"] > 0 and row["canary"]["late"] is False, row
    # a user's search never shows the canary, even one for its own words ...
    for q in ("freshrag canary", "travel"):
        hits = http.get("/search", params={"q": q, "k": 5}).json()["hits"]
        assert hits and {h["doc_key"] for h in hits} == {"a.md"}, (q, hits)
    # ... unless it asks for the canary's folder
    asked = http.get("/search", params={"q": "canary", "doc_key_prefix": ".freshrag-canary/"})
    assert [h["doc_key"] for h in asked.json()["hits"]] == [".freshrag-canary/canary.txt"]

    assert watch.stop() == 0
    late = wait_until(lambda: (r := http.get("/ready")).json()["degraded"] and r,
                      "/ready degraded after the watcher stopped", 60, 0.5)
    body = late.json()
    assert late.status_code == 200 and body["ready"] is True, body  # search still answers
    assert body["checks"]["canary:docs"].startswith("late: last found "), body
    assert "the watcher stopped" in body["checks"]["canary:docs"], body
    strict = http.get("/ready", params={"strict": "true"})
    assert strict.status_code == 503 and strict.json()["ready"] is False, strict.text
    served = parse(http.get("/metrics").text)
    assert get(served, "freshrag_canary_late", source="docs") == 1
    status = project.run("status")
    assert status.returncode == 0 and "canary: late: " in status.stdout, status.stdout


def test_canary_config_errors_are_one_line_exit_2(project: Project) -> None:
    project.write_config('[[sources]]\nname = "docs"\ntype = "folder"\npath = "docs"\n'
                         'canary = true\ncanary_interval = 0\n')
    done = project.run("status")
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"freshrag: {project.config}: sources.docs.canary_interval: Input should be greater "
        "than or equal to 0.5"], done.stderr
    project.write_config('[[sources]]\nname = "docs"\ntype = "folder"\npath = "docs"\n'
                         'canary = true\ncanary_interval = 10\ncanary_late_after = 5\n')
    done = project.run("status")
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        "freshrag: sources.docs.canary_late_after: must be longer than canary_interval (10 s)"
    ], done.stderr


class _Hook(BaseHTTPRequestHandler):
    got: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        _Hook.got.append(json.loads(body or b"{}"))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.mark.slow
def test_a_late_canary_reaches_a_notification_through_the_shipped_automation(
        project: Project, tmp_path: Path) -> None:
    hook = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    project.write_config(CONFIG.replace("canary_late_after = 8", "canary_late_after = 2"))
    (project.docs / "a.md").write_text("# A\n\nA document.\n")
    (project.docs / ".freshrag-canary").write_text("a file where the canary's folder goes\n")
    try:
        with prefect_server(tmp_path) as (_, env):
            project.env["PREFECT_API_URL"] = env["PREFECT_API_URL"]
            made = subprocess.run(
                [sys.executable, "-c", BLOCK, f"http://127.0.0.1:{hook.server_port}/"],
                env=user_env(project.env), capture_output=True, text=True, timeout=120)
            assert made.returncode == 0, made.stderr
            created = subprocess.run(
                [sys.executable, str(ROOT / "deployments" / "canary_automation.py"), "--block",
                 "custom-webhook/ops"], cwd=project.elsewhere, env=user_env(project.env),
                capture_output=True, text=True, timeout=120)
            assert created.returncode == 0, created.stderr
            assert created.stdout.count("created automation") == 2, created.stdout
            watch = project.start("watch", "--record", "event")
            watch.wait_for_log("docs: canary late", 240)
            note = wait_until(lambda: next((n for n in _Hook.got if "late on docs" in
                                            n.get("text", "")), None),
                              "the notification of the late canary", 120, 0.5)
            assert "not found through search for over 2.0 s" in note["text"], note
            assert watch.stop() == 0
    finally:
        hook.shutdown()


BLOCK = """
import sys
from prefect.blocks.notifications import CustomWebhookNotificationBlock
CustomWebhookNotificationBlock(name="ops", url=sys.argv[1],
                               json_data={"text": "{{subject}}: {{body}}"}).save("ops")
"""

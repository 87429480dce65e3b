"""Operations with a real `prefect server`: a late canary becomes a notification through the
shipped automations, and `freshrag watch --mode events` follows a table's change stream (its
positions advance once the served deployment's runs indexed them)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_canary import CONFIG
from tests.e2e.test_capture import seed
from tests.e2e.test_sql_live import Api, execute, project_config, table_source
from tests.e2e.userpath import Project, user_env, wait_until
from tests.flows.prefect_server import prefect_server

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def prefect_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with prefect_server(tmp_path_factory.mktemp("prefect")) as (_, env):
        yield env["PREFECT_API_URL"]


class _Hook(BaseHTTPRequestHandler):
    got: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        _Hook.got.append(json.loads(body or b"{}"))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_a_late_canary_reaches_a_notification_through_the_shipped_automation(
        project: Project, prefect_url: str) -> None:
    hook = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    project.write_config(CONFIG.replace("canary_late_after = 8", "canary_late_after = 2"))
    (project.docs / "a.md").write_text("# A\n\nA document.\n")
    (project.docs / ".freshrag-canary").write_text("a file where the canary's folder goes\n")
    try:
        if True:
            project.env["PREFECT_API_URL"] = prefect_url
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


def test_events_mode_follows_a_changelog_table_through_served_runs(
        project: Project, prefect_url: str) -> None:
    project.env["PREFECT_API_URL"] = prefect_url
    db = project.root / "app.db"
    url = f"sqlite:///{db}"
    seed(url, "TIMESTAMP")
    # poll_interval = 3600: a change can only arrive through the changelog
    project_config(project, table_source("notes", "sqlite:///app.db", "notes",
                                         capture="changelog", poll_interval=3600))
    installed = project.run("sql", "capture-install", "notes")
    assert installed.returncode == 0, installed.stderr
    served = project.spawn([sys.executable, str(ROOT / "deployments" / "serve.py"),
                            "--config", str(project.config)], "serve-py")
    served.wait_for_log("; ready", 300)
    watch = project.start("watch", "--mode", "events")
    watch.wait_for_log("notes: following changelog changes", 240)
    _, base = project.serve()
    api = Api(base)
    wait_until(lambda: api.keys("notes", "betalogin") == {"2"}, "the start-up rescan indexed "
               "by a served run", 240, 0.5)
    execute(url, "UPDATE notes SET body = 'The omicronupdate is here.' WHERE id = 1")
    wait_until(lambda: api.keys("notes", "omicronupdate") == {"1"}, "the UPDATE searchable",
               120, 0.5)
    execute(url, "DELETE FROM notes WHERE id = 2")
    wait_until(lambda: not api.keys("notes", "betalogin"), "the DELETE gone", 120, 0.5)

    def trimmed() -> bool:  # a position is committed once a run covering it is indexed
        with sqlite3.connect(db) as conn:
            return conn.execute("SELECT count(*) FROM freshrag_changelog_notes").fetchone()[0] \
                == 0
    wait_until(trimmed, "the changelog trimmed after the runs indexed it", 120, 0.5)
    assert watch.stop() == 0, watch.log()[-3000:]
    assert "Traceback" not in watch.log(), watch.log()[-3000:]

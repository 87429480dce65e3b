"""Canaries as a user runs them: `canary = true` on a folder source, `freshrag watch` rewrites
the canary and finds it through search (a latency in /metrics), `freshrag serve` hides it from
searches and counts, and says /ready is degraded, naming the source, once the watcher stops."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.test_metrics import Samples, get, parse
from tests.e2e.userpath import Project, free_port, wait_until

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


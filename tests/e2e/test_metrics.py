"""`/metrics` through the installed command: `freshrag up` and `freshrag watch --metrics-port`
count the changes a user makes, by op, and the requests the API answered."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.userpath import Project, free_port, wait_until

CONFIG = '[[sources]]\nname = "docs"\ntype = "folder"\npath = "docs"\n'
CHANGES = "freshrag_change_to_searchable_seconds_count"
HTTP = "freshrag_http_request_duration_seconds_count"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {(s.name, frozenset(s.labels.items())): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def get(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def changes(samples: Samples) -> dict[str, float]:
    return {op: get(samples, CHANGES, source="docs", op=op)
            for op in ("create", "update", "delete")}


def until_changes(scrape: Callable[[], Samples], want: dict[str, int]) -> Samples:
    """Scrape until the histogram shows `want` (it must never overshoot on the way)."""
    def reached() -> Samples | None:
        samples = scrape()
        got = changes(samples)
        assert all(got[op] <= n for op, n in want.items()), (got, want)
        return samples if got == want else None
    result: Samples = wait_until(reached, f"change counts {want}", 90, 0.2)
    return result


@pytest.mark.slow
def test_up_metrics_count_each_change_by_op_and_each_request(project: Project) -> None:
    project.write_config(CONFIG)
    (project.docs / "old.md").write_text("# Old\n\nThere before the watcher started.\n")
    port = free_port()
    bg = project.start("up", "--port", str(port), "--record", "off")
    bg.wait_for_log("; ready", 180)
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: _answers(base), "the API to answer", 120, 0.2)
    scrapes = 0

    def scrape() -> Samples:
        nonlocal scrapes
        r = httpx.get(f"{base}/metrics", timeout=10)
        scrapes += 1
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        return parse(r.text)

    start = scrape()
    # the start-up reconcile indexed old.md: counted as a document, not as a change
    assert get(start, "freshrag_documents_total", source="docs", outcome="added") == 1
    assert changes(start) == {"create": 0, "update": 0, "delete": 0}
    for name in ("a", "b", "c"):
        (project.docs / f"{name}.md").write_text(f"# {name}\n\nDocument {name}, first save.\n")
    until_changes(scrape, {"create": 3, "update": 0, "delete": 0})
    (project.docs / "a.md").write_text("# a\n\nDocument a, edited: a new paragraph.\n")
    until_changes(scrape, {"create": 3, "update": 1, "delete": 0})
    (project.docs / "b.md").unlink()
    until_changes(scrape, {"create": 3, "update": 1, "delete": 1})

    for _ in range(2):
        assert httpx.get(f"{base}/search", params={"q": "edited"}, timeout=30).status_code == 200
    assert httpx.get(f"{base}/documents/docs/nope.md", timeout=10).status_code == 404
    made = scrapes
    final = scrape()
    assert get(final, HTTP, route="/search", method="GET", status="200") == 2
    assert get(final, HTTP, route="/documents/{source}/{key:path}", method="GET",
               status="404") == 1
    assert get(final, HTTP, route="/metrics", method="GET", status="200") == made
    assert not any("nope.md" in dict(labels).get("route", "") for _, labels in final)
    assert get(final, "freshrag_documents_total", source="docs", outcome="added") == 4
    assert get(final, "freshrag_documents_total", source="docs", outcome="deleted") == 1
    assert get(final, "freshrag_chunks_total", source="docs", kind="embedded") >= 5
    assert get(final, "freshrag_last_sync_success_timestamp_seconds", source="docs") > 0
    assert ("freshrag_pending_changes", frozenset({("source", "docs")})) in final
    assert get(final, "freshrag_lag_ms", source="docs") == 0  # nothing pending
    assert bg.stop() == 0


def _answers(base: str) -> bool:
    try:
        return httpx.get(f"{base}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.slow
def test_watch_metrics_port_serves_the_watchers_figures(project: Project) -> None:
    project.write_config(CONFIG)
    port = free_port()
    bg = project.start("watch", "--record", "off", "--metrics-port", str(port))
    bg.wait_for_log("; ready", 180)

    def scrape() -> Samples:
        return parse(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text)

    (project.docs / "new.md").write_text("# New\n\nSaved while watched.\n")
    samples = until_changes(scrape, {"create": 1, "update": 0, "delete": 0})
    assert get(samples, "freshrag_pending_changes", source="docs") == 0
    assert ("freshrag_lag_ms", frozenset({("source", "docs")})) in samples
    assert not any(name.startswith("freshrag_http_") for name, _ in samples)  # no API here
    assert bg.stop() == 0


@pytest.mark.slow
def test_serve_metrics_need_the_api_key_like_status(project: Project) -> None:
    project.write_config(CONFIG)
    (project.docs / "a.md").write_text("# A\n\nIndexed by a sync before serve.\n")
    assert project.run("sync").returncode == 0
    project.env["FRESHRAG_API_KEY"] = "s3cret"
    _, base = project.serve()
    assert httpx.get(f"{base}/metrics", timeout=10).status_code == 401
    r = httpx.get(f"{base}/metrics", headers={"Authorization": "Bearer s3cret"}, timeout=10)
    assert r.status_code == 200
    samples = parse(r.text)
    assert get(samples, HTTP, route="/metrics", method="GET", status="401") == 1
    assert get(samples, "freshrag_lag_ms", source="docs") == 0
    assert changes(samples) == {"create": 0, "update": 0, "delete": 0}  # serve syncs nothing

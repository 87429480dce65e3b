"""`freshrag serve`'s pages work offline: /docs, /redoc and the search page load every asset
from the app itself, render in a real browser that cannot reach anything but loopback, and the
API docs list the endpoints README documents."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from tests.e2e import browser
from tests.e2e.userpath import Project

README = Path(__file__).resolve().parents[2] / "README.md"
KEY = "docs-test-key"


def readme_endpoints() -> list[tuple[str, str]]:
    """(method, path) of each row of README's endpoint table: | `POST /search` | ... |"""
    rows = re.findall(r"^\| `(GET|POST|PUT|DELETE) (/[^`?]*)[^`]*` \|", README.read_text(),
                      re.M)
    return [(m, p) for m, p in rows]


@pytest.mark.slow
def test_docs_and_search_page_work_offline(project: Project, tmp_path: Path) -> None:
    (project.docs / "travel.md").write_text("# Travel\n\nHotel costs are refunded per night.\n")
    project.write_config('[[sources]]\nname = "docs"\ntype = "folder"\npath = "docs"\n')
    assert project.run("sync").returncode == 0
    project.env["FRESHRAG_API_KEY"] = KEY  # the pages must load without it
    _, base = project.serve()

    spec = httpx.get(f"{base}/openapi.json", timeout=10)
    assert spec.status_code == 200, "openapi.json needs no key"
    paths = spec.json()["paths"]
    documented = readme_endpoints()
    assert len(documented) >= 5, "README's endpoint table was not found"
    for method, path in documented:
        assert path in paths and method.lower() in paths[path], f"{method} {path} not in /openapi"
    assert httpx.get(f"{base}/status", timeout=10).status_code == 401  # the key is on
    # ReDoc's bundle loads its logo from a CDN whatever the options, so it is not served.
    assert httpx.get(f"{base}/redoc", timeout=10).status_code == 404

    for page in ("/docs", "/"):
        check_page(base, page, tmp_path, [p for _, p in documented] if page == "/docs" else [])


def check_page(base: str, page: str, work: Path, must_render: list[str]) -> None:
    html = httpx.get(base + page, timeout=10)
    assert html.status_code == 200, f"{page} needs no key"
    external = [u for u in re.findall(r"""(?:src|href)=["']?([^"' >]+)""", html.text)
                if re.match(r"(https?:)?//", u)]
    assert not external, f"{page} loads assets from elsewhere: {external}"

    got = browser.load(base + page, work, page.strip("/") or "search-page")
    print(f"screenshot: {got.screenshot}")
    assert got.screenshot.stat().st_size > 0
    assert got.requests, f"the net log shows no request of {page}"
    left = [u for u in got.requests if not u.startswith(base)]
    assert not left, f"{page} sent requests off the machine: {left}"
    if page == "/":
        assert 'id="q"' in got.dom and "API docs" in got.dom
        return
    # Swagger UI renders the operations only when its JS ran and fetched the schema.
    assert f"{base}/openapi.json" in got.requests
    for path in must_render:
        assert path in got.dom, f"{page} did not render the operation {path}"

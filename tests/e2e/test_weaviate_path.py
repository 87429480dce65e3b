"""The installed `freshrag` command against the standalone Weaviate fake run as a server would
be (`python -m tests.fakes.weaviate_server`, QUERY_MAXIMUM_RESULTS 500, API key on)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import weaviate
from weaviate.classes.init import Auth

from tests.e2e.userpath import Project, free_port, user_env, wait_until

ROOT = Path(__file__).resolve().parents[2]
KEY = "e2e-weaviate-key"
pytestmark = pytest.mark.slow


@dataclass
class Server:
    proc: subprocess.Popen[str]
    port: int
    grpc_port: int

    def count(self, collection: str) -> int:
        """Objects in a collection, asked of the server with a client of our own."""
        with weaviate.connect_to_local("127.0.0.1", self.port, self.grpc_port,
                                       auth_credentials=Auth.api_key(KEY)) as client:
            if not client.collections.exists(collection):
                return 0
            return sum(1 for _ in client.collections.get(collection).iterator(cache_size=500))


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    port, grpc_port = free_port(), free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.weaviate_server", "--port", str(port),
         "--grpc-port", str(grpc_port), "--query-maximum-results", "500", "--api-key", KEY],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env=user_env())
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # one line once both ports answer
        assert "ready" in line, line
        yield Server(proc, port, grpc_port)
    finally:
        proc.terminate()
        proc.wait(30)


def configure(project: Project, server: Server, collection: str, **index: Any) -> None:
    keys = {"url": f"weaviate://127.0.0.1:{server.port}", "grpc_port": server.grpc_port,
            "api_key": KEY, "collection": collection, "query_maximum_results": 500, **index}
    lines = [f"{k} = {v!r}" if isinstance(v, str) else f"{k} = {v}" for k, v in keys.items()]
    project.write_config("\n".join([
        "[index]", *lines, "",
        # small chunks: 1,200 of them embed in about a minute on a shared CPU
        "[chunk]", "min_tokens = 4", "target_tokens = 16", "max_tokens = 32", "",
        "[[sources]]", 'name = "docs"', 'type = "folder"', 'path = "./docs"', ""]).replace(
        "'", '"'))


def big_document(n: int, changed: int | None = None) -> str:
    words = "river stone cloud ember maple harbor violet copper lantern meadow orchard".split()
    out = ["# Big document", ""]
    for i in range(n):
        text = " ".join(words[(i + j) % len(words)] for j in range(6))
        code = f"edited{i}x" if i == changed else f"code{i}x"
        out += [f"## Part {i}", "", f"Codeword {code} {text}.", ""]
    return "\n".join(out)


def ok(done: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr[-3000:]}"
    return done


def top_key(project: Project, query: str) -> str | None:
    hits = project.json("search", query, "-k", "3")
    return hits[0]["doc_key"] if hits else None


def test_a_document_over_the_servers_limit_syncs_edits_and_deletes(
        project: Project, server: Server) -> None:
    configure(project, server, "BigDoc")
    (project.docs / "big.md").write_text(big_document(1_200), encoding="utf-8")
    first = project.json("sync")
    assert first["documents"]["added"] == 1 and first["errors"] == [], first
    chunks = first["chunks"]["written"]
    assert chunks >= 1_100  # well past QUERY_MAXIMUM_RESULTS = 500
    assert server.count("BigDoc") == chunks
    assert top_key(project, "code617x") == "big.md"

    (project.docs / "big.md").write_text(big_document(1_200, changed=617), encoding="utf-8")
    edit = project.json("sync")
    assert edit["documents"]["updated"] == 1 and edit["errors"] == [], edit
    assert edit["chunks"]["embedded"] <= 2
    assert server.count("BigDoc") == chunks
    assert top_key(project, "edited617x") == "big.md"
    ok(project.run("verify"))

    (project.docs / "big.md").unlink()
    gone = project.json("sync")
    assert gone["documents"]["deleted"] == 1 and gone["chunks"]["deleted"] == chunks, gone
    assert server.count("BigDoc") == 0
    ok(project.run("verify"))


def test_keys_that_differ_by_whitespace_stay_apart(project: Project, server: Server) -> None:
    # Weaviate's FIELD equality trims surrounding whitespace: to the server these three keys
    # are one term.
    configure(project, server, "Twins")
    plain, trailing, leading = (project.docs / n for n in ("x.md", "x.md ", " x.md"))
    plain.write_text("# Plain\n\nThe plain file talks about the walrus.\n", encoding="utf-8")
    trailing.write_text("# Trailing\n\nThis file talks about the pelican.\n", encoding="utf-8")
    leading.write_text("# Leading\n\nThis one talks about the heron.\n", encoding="utf-8")
    assert project.json("sync")["documents"]["added"] == 3
    before = server.count("Twins")

    plain.write_text("# Plain\n\nThe plain file now talks about the narwhal.\n", encoding="utf-8")
    edit = project.json("sync")
    assert edit["documents"]["updated"] == 1 and edit["chunks"]["deleted"] == 1, edit
    assert server.count("Twins") == before
    assert top_key(project, "pelican") == "x.md "
    assert top_key(project, "heron") == " x.md"
    assert top_key(project, "narwhal") == "x.md"
    ok(project.run("verify"))

    plain.unlink()
    gone = project.json("sync")
    assert gone["documents"]["deleted"] == 1 and gone["chunks"]["deleted"] == 1, gone
    assert top_key(project, "pelican") == "x.md "
    assert top_key(project, "heron") == " x.md"
    assert server.count("Twins") == before - 1
    ok(project.run("verify"))


def one_line_exit_2(done: subprocess.CompletedProcess[str], setting: str) -> None:
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert len(lines) == 1 and setting in lines[0], done.stderr
    assert "retrying" not in done.stderr and "Traceback" not in done.stderr


def test_a_collection_name_the_server_refuses_is_a_config_error(
        project: Project, server: Server) -> None:
    configure(project, server, "my-chunks")
    (project.docs / "a.md").write_text("# A\n\nText.\n", encoding="utf-8")
    for command in (("sync",), ("search", "text"), ("status",), ("verify",)):
        one_line_exit_2(project.run(*command), "index.collection")


def test_a_wrong_api_key_is_a_config_error(project: Project, server: Server) -> None:
    configure(project, server, "WrongKey", api_key="not-the-key")
    (project.docs / "a.md").write_text("# A\n\nText.\n", encoding="utf-8")
    one_line_exit_2(project.run("sync"), "index.api_key")
    one_line_exit_2(project.run("search", "text"), "index.api_key")
    watch = project.run("watch", "--record", "off", timeout=300)  # stops: retrying cannot help
    said = [line for line in watch.stderr.splitlines() if line.startswith("freshrag:")]
    assert watch.returncode == 2 and len(said) == 1, watch.stderr[-2000:]
    assert "index.api_key" in said[0] and "Traceback" not in watch.stderr
    ok(project.run("sync", env={"FRESHRAG_INDEX__API_KEY": KEY}))
    wait_until(lambda: server.count("WrongKey") == 1, "the document written with the right key")

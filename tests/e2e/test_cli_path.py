"""The command line as a new user meets it: a config in its own folder, commands run from
elsewhere, code and text files indexed, unknown types skipped, bad input one line (exit 2)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from urllib.parse import quote

import httpx
import pytest

from freshrag import __version__
from tests.e2e.userpath import Project, free_port

CONFIG = """\
home = "state"

[[sources]]
name = "docs"
type = "folder"
path = "docs"

[[sources]]
name = "crm"
type = "sql"
url = "sqlite:///crm.db"
table = "tickets"
key = "id"
text = "{body}"
cursor = "updated_at"
"""
LATIN1_NAME = b"caf\xe9-menu.md"  # a file name that is not valid UTF-8
LATIN1_KEY = "caf%E9-menu.md"


def write_project(project: Project) -> None:
    project.write_config(CONFIG)
    docs = project.docs
    (docs / "guide.md").write_text("# Guide\n\nThe ospreys nest by the lake.\n")
    (docs / "tool.py").write_text('def count_pelicans(flock):\n    """Pelicanometer."""\n'
                                  "    return len(flock)\n")
    (docs / "README.rst").write_text("Heronry\n=======\n\nThe heronry census runs in May.\n")
    (docs / "data.xyz").write_bytes(b"\x00\x01 not a document freshrag knows")
    with open(os.path.join(os.fsencode(docs), LATIN1_NAME), "wb") as fh:
        fh.write(b"# Menu\n\nThe cafeteria serves quokkaburgers on Fridays.\n")
    con = sqlite3.connect(project.root / "crm.db")
    con.execute("CREATE TABLE tickets (id INTEGER PRIMARY KEY, body TEXT, updated_at REAL)")
    con.execute("INSERT INTO tickets VALUES (1, 'The walrus printer jams daily.', 1.0)")
    con.commit()
    con.close()


def keys_found(project: Project, query: str, *args: str) -> list[str]:
    hits = project.json("search", query, "--mode", "keyword", *args)
    return [h["doc_key"] for h in hits]


@pytest.mark.slow
def test_a_project_driven_from_elsewhere(project: Project) -> None:
    write_project(project)
    report = project.json("sync")
    assert report["documents"]["failed"] == 0, report["errors"]
    assert report["documents"]["added"] == 5  # 4 files + 1 row
    assert report["documents"]["skipped"] == 1
    assert report["skipped"] == [{"source": "docs", "key": "data.xyz",
                                  "reason": "unsupported file type .xyz"}]
    # the state lives where the config says, relative to the config's folder
    assert (project.root / "state" / "ledger.db").is_file()
    assert not any(project.elsewhere.iterdir()), list(project.elsewhere.iterdir())
    assert not (project.root / ".freshrag").exists()

    assert keys_found(project, "count_pelicans") == ["tool.py"]
    assert keys_found(project, "heronry") == ["README.rst"]
    assert keys_found(project, "quokkaburgers") == [LATIN1_KEY]
    assert keys_found(project, "walrus", "--source", "crm") == ["1"]

    rows = {r["source"]: r for r in project.json("status")}
    assert rows["docs"]["documents"] == 4 and rows["crm"]["documents"] == 1
    assert rows["docs"]["skipped"] == [{"key": "data.xyz",
                                        "reason": "unsupported file type .xyz"}]
    assert rows["docs"]["errors"] == []
    text = project.run("status")
    assert text.returncode == 0 and "skipped: data.xyz: unsupported file type .xyz" in text.stdout
    # the option before the command means the same
    before = project.run("--config", str(project.config), "status", "--json", with_config=False)
    assert before.returncode == 0 and '"documents": 4' in before.stdout

    # the API serves the escaped key (its '%' escaped once more in the URL)
    _, base = project.serve()
    url = f"{base}/documents/docs/{quote(LATIN1_KEY)}"
    got = httpx.get(url, timeout=30)
    assert got.status_code == 200, got.text
    assert "quokkaburgers" in got.json()["chunks"][0]["text"]
    project.stop_all()

    # deleting the file removes it
    os.unlink(os.path.join(os.fsencode(project.docs), LATIN1_NAME))
    again = project.json("sync")
    assert again["documents"]["deleted"] == 1 and again["documents"]["failed"] == 0
    assert keys_found(project, "quokkaburgers") == []
    assert not any(project.elsewhere.iterdir())


def one_line_exit_2(done: subprocess.CompletedProcess[str], *words: str) -> str:
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    for word in words:
        assert word in lines[0], (word, lines[0])
    return str(lines[0])


def test_bad_input_is_one_line_and_exit_2(project: Project) -> None:
    project.write_config('[[sources]]\nname = "docs"\ntype = "folders"\npath = "docs"\n')
    for args in (("sync",), ("status",), ("search", "x"), ("verify",)):
        line = one_line_exit_2(project.run(*args), "sources.docs.type",
                               "unknown source type 'folders' (known: folder, sql)")
        assert line.startswith("freshrag: ")

    project.write_config('[[sources]]\nname = "docs"\ntype = "folder"\npath = "docs"\n')
    one_line_exit_2(project.run("search", "x", "--source", "nosuch"), "--source",
                    "'nosuch'", "known: docs")
    one_line_exit_2(project.run("search", "x", "--mode", "fuzzy"), "--mode", "'fuzzy'")
    one_line_exit_2(project.run("search", "x", "-k", "0"), "-k")
    one_line_exit_2(project.run("search", "   "), "query is empty")
    one_line_exit_2(project.run("search"), "query")
    one_line_exit_2(project.run("sync", "--bogus"), "--bogus")
    one_line_exit_2(project.run("nosuch", with_config=False), "nosuch")

    project.write_config('[[sources]]\nname = "docs"\ntype = "folder"\npaht = "docs"\n')
    one_line_exit_2(project.run("status"), "sources.docs.path")  # a typo'd key, for every command

    project.write_config('[[sources]]\nname = "docs"\ntype = "folder"\npath = "docs"\n')
    (project.elsewhere / "afile").write_text("")
    one_line_exit_2(project.run("status", "--home", "afile"), "home:", "not a folder")
    (project.elsewhere / "afile").unlink()
    project.write_config('ledger_url = "nosuchdb://x"\n')
    one_line_exit_2(project.run("status"), "ledger_url:", "nosuchdb")
    # a server that is down is not the user's typo: exit 1, still one line
    for text, word in (('ledger_url = "postgresql+psycopg://u@127.0.0.1:1/x"\n',
                        "ledger unavailable"),
                       ('[index]\nurl = "weaviate://127.0.0.1:1"\n', "index unavailable")):
        project.write_config(text)
        down = project.run("status")
        assert down.returncode == 1 and len(down.stderr.strip().splitlines()) == 1, down.stderr
        assert word in down.stderr

    project.write_config('home = \n')
    one_line_exit_2(project.run("status"), "not valid TOML", "line 1")
    project.config.write_bytes(b'home = "caf\xe9"\n')
    one_line_exit_2(project.run("status"), "not valid UTF-8")
    project.config.unlink()
    project.config.mkdir()
    one_line_exit_2(project.run("status"), "is a folder")
    one_line_exit_2(project.run("status", "--config", "nowhere.toml", with_config=False),
                    "nowhere.toml", "not found")


def test_home_and_version(project: Project) -> None:
    done = project.run("--version", with_config=False)
    assert done.returncode == 0 and done.stdout.strip() == f"freshrag {__version__}"

    # no `home` in the file: the state goes beside the file, never into the cwd
    project.write_config('[[sources]]\nname = "docs"\ntype = "folder"\npath = "docs"\n')
    after = project.run("status", "--json")
    assert after.returncode == 0, after.stderr
    assert (project.root / ".freshrag" / "ledger.db").is_file()
    before = project.run("--config", str(project.config), "status", "--json", with_config=False)
    def same(out: str) -> list[dict[str, object]]:  # lag is measured anew by each run
        return [{k: v for k, v in row.items() if k != "freshness"} for row in json.loads(out)]
    assert same(before.stdout) == same(after.stdout)
    assert not any(project.elsewhere.iterdir())

    # --home and FRESHRAG_HOME are paths a shell user typed: from the current folder
    assert project.run("status", "--home", "h1").returncode == 0
    assert project.run("--home", "h2", "status").returncode == 0
    assert project.run("status", env={"FRESHRAG_HOME": "h3"}).returncode == 0
    assert {p.name for p in project.elsewhere.iterdir()} == {"h1", "h2", "h3"}

    # relative SQLite ledger and embedded index URLs in the file: from the file's folder
    project.write_config('ledger_url = "sqlite:///db/ledger.db"\n[index]\n'
                         'url = "lancedb://db/index"\n'
                         '[[sources]]\nname = "docs"\ntype = "folder"\npath = "docs"\n')
    assert project.run("status").returncode == 0
    assert (project.root / "db" / "ledger.db").is_file()
    assert {p.name for p in project.elsewhere.iterdir()} == {"h1", "h2", "h3"}

    # the home inside the folder it indexes, and hidden files: neither documents nor skipped
    project.write_config('home = "docs/state"\n'
                         '[[sources]]\nname = "docs"\ntype = "folder"\npath = "docs"\n')
    (project.docs / ".notes.xyz").write_text("hidden")
    (project.docs / ".cache").mkdir()
    (project.docs / ".cache" / "blob.bin").write_bytes(b"\x00")
    assert project.run("status").returncode == 0  # creates docs/state/ledger.db
    report = project.json("sync")
    assert (project.docs / "state" / "ledger.db").is_file()
    assert report["documents"] == {**report["documents"], "added": 0, "failed": 0, "skipped": 0}
    assert report["skipped"] == [] and report["errors"] == []


@pytest.mark.slow
def test_a_model_that_cannot_load_is_one_line_and_exit_2(project: Project) -> None:
    (project.docs / "a.md").write_text("# A\n\nSome text.\n")
    project.write_config('[model]\nname = "no-such-model"\n'
                         '[[sources]]\nname = "docs"\ntype = "folder"\npath = "docs"\n')
    one_line_exit_2(project.run("sync"), "model.name", "no-such-model")
    one_line_exit_2(project.run("search", "x"), "model.name", "no-such-model")
    one_line_exit_2(project.run("serve", "--port", str(free_port())), "model.name")
    one_line_exit_2(project.run("watch", "--record", "off"), "model.name", "no-such-model")
    one_line_exit_2(project.run("up", "--no-api", "--record", "off"), "model.name")

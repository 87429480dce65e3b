"""README.md as a script: its shell blocks, their markers, and the project a reader builds from
its config examples (a docs folder, and each SQL source as a table in a fresh database)."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
SHELL = {"sh", "bash", "shell", "console"}
# `<!-- readme: not run (needs a Docker engine) -->` on the line before a block. Kinds:
#   not run (REASON)  - cannot run here; listed by the test with the reason
#   synopsis          - a usage summary: each command and option it names must exist (--help)
#   until stopped     - each command runs until stopped: started, must stay up, then SIGTERM
MARKER = re.compile(r"<!--\s*readme:\s*(.*?)\s*-->")
# Paths only a checkout has: a block naming one runs from the repository root.
REPO_PATHS = re.compile(r"(^|[\s=/(])(\.venv/|scripts/|deployments/|examples/|tests/|bench/|"
                        r"\.ci/|docker-compose|docker compose|-m bench)")
SERVE_URL = re.compile(r"\b(localhost|127\.0\.0\.1):8000\b")


@dataclass
class Block:
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    marker: str  # "" when unmarked
    sample: str = ""  # a ```json block right after it: what its last command prints

    @property
    def id(self) -> str:
        return f"L{self.line}-{self.lang}"

    @property
    def kind(self) -> str:
        m = self.marker.lower()
        if m.startswith("not run"):
            return "not run"
        if m.startswith("synopsis"):
            return "synopsis"
        if m.startswith("until stopped"):
            return "until stopped"
        return "run" if not m else "unknown marker"

    @property
    def in_repo(self) -> bool:
        return bool(REPO_PATHS.search(self.text))

    @property
    def needs_serve(self) -> bool:
        """It talks to `freshrag serve` at its default address (outside comments)."""
        return any(SERVE_URL.search(c) for c, _ in self.commands())

    def commands(self) -> list[tuple[str, str]]:
        """(command, sample output) pairs. A console block's commands follow `$ `; any other
        shell block is one command per line, `\\` continuations joined, comments dropped."""
        out: list[tuple[str, str]] = []
        lines = self.text.splitlines()
        if self.lang == "console":
            for line in lines:
                if line.startswith("$ "):
                    out.append((line[2:], ""))
                elif out and out[-1][0].endswith("\\"):
                    out[-1] = (out[-1][0][:-1] + "\n" + line, "")
                elif out:
                    out[-1] = (out[-1][0], (out[-1][1] + "\n" + line).strip("\n"))
            return out
        cmd = ""
        for line in lines:
            cmd += line
            if cmd.endswith("\\"):
                cmd = cmd[:-1] + "\n"
                continue
            cmd = re.sub(r"\s+#[^'\"]*$", "", cmd)  # a trailing comment
            if cmd.strip() and not cmd.lstrip().startswith("#"):
                out.append((cmd, ""))
            cmd = ""
        return out


def blocks(text: str | None = None) -> list[Block]:
    """Every fenced block of README whose language is a shell, with the marker before it."""
    lines = (README.read_text(encoding="utf-8") if text is None else text).splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        fence = re.match(r"^```\s*([\w-]*)", lines[i])
        if not fence:
            i += 1
            continue
        lang, start = fence.group(1).lower(), i
        i += 1
        body = []
        while i < len(lines) and not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        i += 1
        if lang not in SHELL:
            continue
        before = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        m = MARKER.search(before)
        after = next((j for j in range(i, len(lines)) if lines[j].strip()), len(lines))
        sample = []
        if after < len(lines) and lines[after].startswith("```json"):
            j = after + 1
            while j < len(lines) and not lines[j].startswith("```"):
                sample.append(lines[j])
                j += 1
        found.append(Block(start + 1, lang, "\n".join(body), m.group(1) if m else "",
                           "\n".join(sample)))
    return found


def toml_blocks(text: str | None = None) -> list[str]:
    src = README.read_text(encoding="utf-8") if text is None else text
    return re.findall(r"^```toml\n(.*?)^```", src, re.M | re.S)


def synopsis_entries(line: str) -> list[tuple[list[str], list[str]]]:
    """For one synopsis line, the commands it names (alternatives `a|b` expanded) and the
    options each must accept: `freshrag sql notify-install|notify-uninstall SOURCE` →
    ([freshrag sql notify-install], []), ([freshrag sql notify-uninstall], [])."""
    line = line.split("  #", 1)[0].strip()
    words = line.split()
    prog: list[str] = []
    for w in words:
        if w.startswith(("-", "[", "<", '"', "'")) or w.isupper() or w[:1].isupper():
            break
        prog.append(w)
    options = sorted(set(re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)", line)))
    alternatives: list[list[str]] = [[]]
    for w in prog:
        alternatives = [a + [alt] for a in alternatives for alt in w.split("|")]
    return [(a, options) for a in alternatives]


def project_config(db_url: str | None) -> tuple[str, list[dict[str, Any]]]:
    """A freshrag.toml made of README's config examples: the first full example (with its
    folder source), then every other example that adds a source. SQL sources get `db_url`
    (or are left out without one). Returns the text and the SQL sources' settings."""
    parts: list[str] = []
    sql: list[dict[str, Any]] = []
    for block in toml_blocks():
        data = tomllib.loads(block)
        if "sources" not in data:
            continue
        kinds = {s.get("type") for s in data["sources"]}
        if "sql" in kinds:
            if db_url is None or any("table" not in x for x in data["sources"]):
                continue  # no database here, or a query source: no table to make for it
            block = re.sub(r'^url = "[^"]*"', f'url = "{db_url}"', block, flags=re.M)
            sql.extend(s for s in tomllib.loads(block)["sources"] if s.get("type") == "sql")
        elif parts and set(data) != {"sources"}:
            continue  # a second full config would clash with the first
        parts.append(block)
    return "\n".join(parts), sql


def table_ddl(source: dict[str, Any]) -> list[str]:
    """CREATE TABLE and a few rows for a README SQL source, from the columns it names."""
    table = source["table"]
    keys = source["key"] if isinstance(source["key"], list) else [source["key"]]
    text_cols = re.findall(r"\{(\w+)", source["text"])
    cols = {k: "integer" for k in keys}
    cols.update({c: "text" for c in text_cols + list(source.get("metadata", []))})
    if source.get("cursor"):
        cols[source["cursor"]] = "timestamptz NOT NULL DEFAULT clock_timestamp()"
    if source.get("deleted"):
        cols[source["deleted"]] = "timestamptz"
    ddl = [f"CREATE TABLE {table} (" + ", ".join(f"{c} {t}" for c, t in cols.items())
           + f", PRIMARY KEY ({', '.join(keys)}))"]
    filled = keys + text_cols + list(source.get("metadata", []))
    for n in range(1, 4):
        values = [str(n) if c in keys else f"'{c} {n}: travel reimbursement of hotel costs'"
                  for c in filled]
        ddl.append(f"INSERT INTO {table} ({', '.join(filled)}) VALUES ({', '.join(values)})")
    return ddl

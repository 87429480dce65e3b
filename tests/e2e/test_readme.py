"""README is executable: every shell block in README.md runs as a reader would run it.

Blocks run with the installed command first on PATH, from the repository root when they name
a checkout's paths (`.venv/`, `scripts/`, ...; with FRESHRAG_HOME in a temp folder so the
checkout is not written), else from a project folder built from README's own config examples:
`freshrag.toml` made of them, `docs/` a copy of examples/docs, each SQL source a table in a
fresh Postgres database, and one `freshrag sync` done. A block that talks to
`localhost:8000` gets a `freshrag serve` of that project (on a free port, put in its place),
stopped after it. curl runs with `--fail-with-body` (from a .curlrc), so an HTTP error fails
the block. A ```json block right after a block is its sample output: the real output must be
JSON with the same top-level keys. Markers (`<!-- readme: ... -->` on the line before a block)
are described in tests/e2e/readme.py; an unmarked block that fails fails its test.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import readme
from tests.e2e.readme import REPO, SERVE_URL, Block
from tests.e2e.userpath import BIN, Background, Project, user_env

BLOCKS = readme.blocks()
# Blocks that fail today because of a product defect someone is fixing: (text in the block,
# the defect). Such a block is an expected failure (xfail) while the defect lasts, and passes
# once it is fixed; then drop its entry.
# (text in a block, why it fails today): such a block xfails until the product is fixed.
KNOWN_DEFECTS: list[tuple[str, str]] = []
STAY_UP_S = 20.0  # an "until stopped" command must still be running after this long
STOP_S = 120.0  # ... and exit within this long of SIGTERM


@dataclass
class Scene:
    root: Path  # the project folder: freshrag.toml, docs/
    env: dict[str, str]
    repo_env: dict[str, str]
    tmp: Path


def _postgres() -> Iterator[str | None]:
    from tests.pg import fresh_postgres_database

    gen = fresh_postgres_database()
    try:
        url = next(gen)
    except pytest.skip.Exception:
        yield None  # not CI and no Postgres: the SQL examples are left out
        return
    try:
        yield url
    finally:
        gen.close()


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    import sqlalchemy as sa

    tmp = tmp_path_factory.mktemp("readme")
    root = tmp / "project"
    shutil.copytree(REPO / "examples" / "docs", root / "docs")
    (tmp / "curl").mkdir()
    (tmp / "curl" / ".curlrc").write_text("fail-with-body\n")
    env = user_env({"PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
                    "PREFECT_HOME": str(tmp / "prefect-home"), "CURL_HOME": str(tmp / "curl")})
    repo_env = {**env, "FRESHRAG_HOME": str(tmp / "repo-home")}
    for db_url in _postgres():
        config, tables = readme.project_config(db_url)
        (root / "freshrag.toml").write_text(config)
        if db_url is not None:
            db = sa.create_engine(db_url)
            with db.begin() as conn:
                for source in tables:
                    for statement in readme.table_ddl(source):
                        conn.execute(sa.text(statement))
            db.dispose()
        done = subprocess.run(["freshrag", "sync"], cwd=root, env=env, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, f"the README project's first sync failed:\n{done.stderr}"
        yield Scene(root, env, repo_env, tmp)


def test_every_block_is_known() -> None:
    """README has shell blocks, each runnable or marked with a kind the test knows; the ones
    that are not run are listed here with their reasons."""
    assert len(BLOCKS) >= 5, "README's shell blocks were not found"
    unknown = [f"README.md:{b.line}: {b.marker!r}" for b in BLOCKS if b.kind == "unknown marker"]
    assert not unknown, f"unknown markers: {unknown}"
    not_run = [b for b in BLOCKS if b.kind == "not run"]
    for b in not_run:
        assert "(" in b.marker, f"README.md:{b.line}: say why it is not run: {b.marker!r}"
        print(f"not run: README.md:{b.line}: {b.marker}: {b.text.splitlines()[0]}")


def test_parser_reads_console_and_continuations() -> None:
    text = ("<!-- readme: not run (needs a Docker engine) -->\n```bash\ndocker compose up\n```\n"
            "```console\n$ freshrag status --json\n{\"a\": 1}\n$ echo a \\\n  b\n```\n"
            "```sh\ncurl -s localhost:8000/x \\\n  -d '{}'   # a comment\n```\n"
            "```json\n{\"hits\": []}\n```\n")
    docker, console, curl = readme.blocks(text)
    assert docker.kind == "not run" and docker.in_repo
    assert console.commands() == [("freshrag status --json", '{"a": 1}'), ("echo a \n  b", "")]
    assert curl.needs_serve and curl.sample == '{"hits": []}'
    assert curl.commands() == [("curl -s localhost:8000/x \n  -d '{}'", "")]


def _known_defect(block: Block) -> str | None:
    return next((why for text, why in KNOWN_DEFECTS if text in block.text), None)


def _fail(block: Block, what: str) -> None:
    why = _known_defect(block)
    if why:
        pytest.xfail(why)
    pytest.fail(f"README.md:{block.line}: {what}")


def _same_shape(sample: str, output: str) -> str | None:
    """None when `output` is JSON with the sample's top-level keys, else what is wrong."""
    try:
        want: Any = json.loads(sample)
    except json.JSONDecodeError:
        return None  # an illustrative sample ("..."), nothing to compare
    try:
        got: Any = json.loads(output)
    except json.JSONDecodeError:
        return f"output is not JSON: {output[-2000:]!r}"
    if isinstance(want, dict) and (not isinstance(got, dict) or not set(want) <= set(got)):
        return f"output {output[-2000:]!r} lacks the keys of README's sample {sorted(want)}"
    return None


def _serve(scene: Scene) -> tuple[Background, str]:
    """`freshrag serve` of the README project, on a free port; returns it and its address."""
    project = Project(scene.root, scene.root, env={k: scene.env[k] for k in ("PREFECT_HOME",)})
    server, base = project.serve()
    return server, base.split("//", 1)[1]


def _stop(proc: subprocess.Popen[bytes]) -> int:
    """SIGTERM to the command (as `kill PID`, `docker stop` do), then whatever it left in its
    process group is killed."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    return proc.returncode


def _run(block: Block, scene: Scene) -> None:
    """The block's commands in order, as typed into one terminal: an `export`/`cd` line holds
    for the commands after it, a command ending in `&` runs in the background (the next one
    starts once it printed its first line) until the block is done. Output goes to files, so a
    background job never holds a pipe the test waits on."""
    cwd, env = (REPO, scene.repo_env) if block.in_repo else (scene.root, scene.env)
    server = None
    background: list[subprocess.Popen[bytes]] = []
    prelude: list[str] = []
    try:
        if block.needs_serve:
            server, address = _serve(scene)
        commands = block.commands() if block.lang == "console" else [(block.text, "")]
        for n, (command, sample) in enumerate(commands):
            if server is not None:
                command = SERVE_URL.sub(address, command)
            if command.rstrip().endswith("&"):
                background.append(_background(block, scene, n, prelude, command, cwd, env))
                continue
            out, err = (scene.tmp / f"run-{block.line}-{n}.{ext}" for ext in ("out", "err"))
            with out.open("wb") as o, err.open("wb") as e:
                code = subprocess.run(["bash", "-e", "-o", "pipefail", "-c",
                                       "\n".join([*prelude, command])], cwd=cwd, env=env,
                                      stdout=o, stderr=e, start_new_session=True,
                                      timeout=900).returncode
            stdout, stderr = out.read_text(errors="replace"), err.read_text(errors="replace")
            if code != 0:
                _fail(block, f"`{command}` exited {code}\nstdout: "
                      f"{stdout[-3000:]}\nstderr: {stderr[-3000:]}")
            last = n == len(commands) - 1
            wrong = _same_shape(sample or (block.sample if last else ""), stdout)
            if wrong:
                _fail(block, f"`{command}`: {wrong}")
            if command.lstrip().startswith(("export ", "cd ")):
                prelude.append(command)
    finally:
        for proc in background:
            _stop(proc)
        if server is not None:
            server.stop()


def _background(block: Block, scene: Scene, n: int, prelude: list[str], command: str,
                cwd: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    log = scene.tmp / f"bg-{block.line}-{n}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(["bash", "-c", "\n".join([*prelude, command.rstrip()[:-1]])],
                                cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    deadline = time.monotonic() + 120
    while log.stat().st_size == 0:
        if proc.poll() is not None or time.monotonic() > deadline:
            _stop(proc)
            _fail(block, f"`{command}` did not start: {log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.1)
    return proc


def _until_stopped(block: Block, scene: Scene) -> None:
    """Each command is started, must still be running after STAY_UP_S, and must exit 0 on
    SIGTERM (README: it finishes the batch in hand and exits 0). The command is `exec`ed, so
    the signal reaches it, not a shell."""
    cwd, env = (REPO, scene.repo_env) if block.in_repo else (scene.root, scene.env)
    for n, (command, _) in enumerate(block.commands()):
        log = scene.tmp / f"stopped-{block.line}-{n}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=cwd, env=env,
                                    stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        try:
            deadline = time.monotonic() + STAY_UP_S
            while time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.2)
            if proc.poll() is not None:
                _fail(block, f"`{command}` exited {proc.returncode} by itself:\n"
                      f"{log.read_text()[-3000:]}")
        finally:
            code = _stop(proc)
        if code != 0:
            _fail(block, f"`{command}` exited {code} on SIGTERM:\n{log.read_text()[-3000:]}")


def _synopsis(block: Block, scene: Scene) -> None:
    """Each command a synopsis names answers --help, and lists every option the line shows."""
    cwd, env = (REPO, scene.repo_env) if block.in_repo else (scene.root, scene.env)
    checked = 0
    for line, _ in block.commands():
        for program, options in readme.synopsis_entries(line):
            done = subprocess.run([*program, "--help"], cwd=cwd, env={**env, "COLUMNS": "200"},
                                  capture_output=True, text=True, timeout=120)
            if done.returncode != 0:
                _fail(block, f"`{' '.join(program)} --help` exited {done.returncode}: "
                      f"{done.stderr[-2000:]}")
            missing = [o for o in options if o not in done.stdout]
            if missing:
                _fail(block, f"`{line.strip()}`: {' '.join(program)} has no {missing}")
            checked += 1
    assert checked, f"README.md:{block.line}: the synopsis names no command"


@pytest.mark.slow
@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_readme_block(block: Block, scene: Scene) -> None:
    if block.kind == "not run":
        pytest.skip(f"README.md:{block.line} is marked {block.marker}")
    {"run": _run, "synopsis": _synopsis, "until stopped": _until_stopped,
     }[block.kind](block, scene)

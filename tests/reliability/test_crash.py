"""kill -9 at random points of `freshrag sync` and `freshrag watch`, restart, and converge:
verify ok, nothing missing, no duplicates, search finds the current text."""

from __future__ import annotations

import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from freshrag.engine import Engine
from freshrag.ledger import Ledger, intents, locks
from freshrag.model import Mode
from tests import samples
from tests.conftest import folder_settings
from tests.corpus import markdown_doc
from tests.reliability.conftest import cli, cli_argv, cli_env, verify_json, write
from tests.sql.conftest import FakeEmbedder

KILLS = 56


class Corpus:
    """A folder of varied documents, each with one codeword that search must find."""

    def __init__(self, root: Path, rng: random.Random):
        self.root, self.rng, self.n = root, rng, 0

    def files(self) -> list[Path]:
        return sorted(p for p in self.root.rglob("*") if p.is_file())

    def new_text(self) -> str:
        self.n += 1
        word = f"cw{self.n}x{self.rng.randrange(10**6)}"
        return markdown_doc(self.rng.randrange(10**6), sections=self.rng.randint(1, 4),
                            paragraphs=2, words=50) + f"\nThe codeword is {word}.\n"

    def create(self) -> None:
        folder = self.rng.choice(["", "a/", "b/", "a/c/"])
        kind = self.rng.choice(["md", "md", "txt", "html", "docx"])
        path = self.root / f"{folder}f{self.n}.{kind}"
        text = self.new_text()
        if kind == "html":
            write(path, "<h1>Page</h1>" + "".join(f"<p>{p}</p>" for p in text.split("\n\n")))
        elif kind == "docx":
            write(path, samples.docx_bytes("Doc", text.split("\n\n")))
        else:
            write(path, text)

    def mutate(self) -> None:
        files = self.files()
        if len(files) < 8:
            return self.create()
        op = self.rng.choice(["create", "edit", "append", "rename", "move", "delete", "copy",
                              "revert", "touch"])
        path = self.rng.choice(files)
        if op == "create":
            self.create()
        elif op in ("edit", "revert") and path.suffix in (".md", ".txt"):
            old = path.read_text()
            path.write_text(self.new_text())
            if op == "revert":  # the old bytes come back after the new ones were (maybe) written
                self.pending_revert = (path, old)
        elif op == "append" and path.suffix in (".md", ".txt"):
            with path.open("a") as fh:
                fh.write(f"\nAppended line {self.new_text()[-40:]}\n")
        elif op == "rename":
            path.rename(path.with_name("r" + path.name))
        elif op == "move" and (self.root / "a").is_dir():
            target = self.root / f"m{self.n}"
            self.n += 1
            shutil.move(str(self.root / "a"), str(target))
        elif op == "delete":
            path.unlink()
        elif op == "copy":
            shutil.copy(path, path.with_name("copy" + path.name))
        elif op == "touch":
            path.touch()
        return None

    def apply_revert(self) -> None:
        pending = getattr(self, "pending_revert", None)
        if pending and pending[0].exists():
            pending[0].write_text(pending[1])
        self.pending_revert = None

    def codewords(self) -> dict[str, str]:
        out = {}
        for path in self.files():
            if path.suffix in (".md", ".txt"):
                text = path.read_text()
                if "The codeword is " in text:
                    out[str(path.relative_to(self.root))] = text.rsplit(
                        "The codeword is ", 1)[1].split(".")[0]
        return out


def count(ledger: Ledger, table: object) -> int:
    with ledger.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def writing(ledger_db: Path) -> bool:
    """The sync has begun an index write it has not committed yet."""
    if not ledger_db.exists():
        return False
    ledger = Ledger(f"sqlite:///{ledger_db}")
    try:
        return count(ledger, intents) > 0
    except Exception:  # tables not created yet
        return False
    finally:
        ledger.close()


def wait_for_write(proc: subprocess.Popen[bytes], ledger_db: Path, bound: float) -> None:
    deadline = time.time() + bound
    while proc.poll() is None and time.time() < deadline and not writing(ledger_db):
        time.sleep(0.01)


def assert_converged(tmp_path: Path, root: Path, home: Path, corpus: Corpus,
                     rng: random.Random) -> None:
    done = cli("sync", "--folder", str(root), "--home", str(home), "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    result = verify_json(home, root)
    assert result["ok"], result
    engine = Engine(folder_settings(home, root), embedder=FakeEmbedder())
    try:
        present = {str(p.relative_to(root)) for p in corpus.files()}
        assert set(engine.index.documents("docs")) == present
        words = corpus.codewords()
        for key in rng.sample(sorted(words), min(4, len(words))):
            hits = engine.search(words[key], k=20, mode=Mode.keyword)  # copies share a word
            assert key in {h.doc_key for h in hits if words[key] in h.text}, (key, words[key])
    finally:
        engine.close()


@pytest.mark.slow
def test_kill_loop_sync_and_watch(tmp_path: Path) -> None:
    rng = random.Random(20240607)
    root, home = tmp_path / "docs", tmp_path / "home"
    corpus = Corpus(root, rng)
    for _ in range(30):
        corpus.create()
    env = cli_env(FRESHRAG_TEST_BATCH_DOCS="3")
    sync_argv = cli_argv("sync", "--folder", str(root), "--home", str(home), "--wait", "120")
    watch_argv = cli_argv("watch", "--folder", str(root), "--home", str(home), "--record", "off",
                          "--quiet-ms", "20", "--max-delay-ms", "200")
    started = time.time()
    ran = subprocess.run(sync_argv, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    full = time.time() - started
    shutil.rmtree(home)  # that was only to measure: start from nothing, under fire
    ledger_db = home / "ledger.db"
    kills = mid_write = rounds = 0
    while kills < KILLS:
        rounds += 1
        for _ in range(rng.randint(1, 5)):
            corpus.mutate()
        for _ in range(rng.randint(1, 3)):
            watch = rng.random() < 0.25
            proc = subprocess.Popen(watch_argv if watch else sync_argv, cwd=tmp_path, env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if watch:  # let it start, then change files under it
                time.sleep(rng.uniform(0.5, full))
                for _ in range(rng.randint(1, 4)):
                    corpus.mutate()
                    time.sleep(rng.uniform(0, 0.3))
            if not watch and rng.random() < 0.5:  # aim: kill inside a write
                wait_for_write(proc, ledger_db, full * 2)
                delay = rng.uniform(0, 0.02)
            else:  # anywhere: start-up, scan, parse, embed, write, commit, optimize
                delay = rng.uniform(0.2, full * 1.1)
            try:
                proc.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                kills += 1
                mid_write += writing(ledger_db)
            corpus.apply_revert()
        if rounds % 3 == 0:
            assert_converged(tmp_path, root, home, corpus, rng)
    assert_converged(tmp_path, root, home, corpus, rng)
    ledger = Ledger(f"sqlite:///{ledger_db}")
    assert count(ledger, intents) == 0 and count(ledger, locks) == 0
    ledger.close()
    print(f"kill loop: {kills} kills in {rounds} rounds, {mid_write} left an interrupted write; "
          f"full sync {full:.1f} s, total {time.time() - started:.0f} s")
    assert mid_write >= 5  # the kills did land inside index writes


@pytest.mark.slow
def test_kill_during_a_real_model_sync(tmp_path: Path) -> None:
    """The real model and parser: killed once it has begun writing, the next sync converges."""
    from tests.integration.test_pipeline import mixed_corpus

    root, home = tmp_path / "docs", tmp_path / "home"
    mixed_corpus(root)
    proc = subprocess.Popen(cli_argv("sync", "--folder", str(root), "--home", str(home),
                                     real_model=True), cwd=tmp_path, env=cli_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ledger_db = home / "ledger.db"
    wait_for_write(proc, ledger_db, 600)
    seen = writing(ledger_db)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert seen, "the sync ended before it wrote anything"
    (root / "notes/n03.md").write_text("# Moved on\n\nThe albatross ledger replaced note three.\n")
    again = cli("sync", "--folder", str(root), "--home", str(home), "--json", cwd=tmp_path,
                real_model=True)
    assert again.returncode == 0, again.stderr
    assert verify_json(home, root, real_model=True)["ok"]
    found = cli("search", "albatross ledger", "--home", str(home), "--json", "-k", "1",
                cwd=tmp_path, real_model=True)
    assert '"doc_key": "notes/n03.md"' in found.stdout

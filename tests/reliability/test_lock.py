"""The per-source writer lock: one sync at a time, a crashed holder never blocks for long."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from sqlalchemy import insert, select

from freshrag.ledger import Ledger, locks
from freshrag.lock import LeaseLock, LockLost, SourceBusy, held
from tests.corpus import markdown_doc
from tests.reliability.conftest import cli, cli_argv, cli_env, verify_json, write


def ledger_at(tmp_path: Path) -> Ledger:
    return Ledger(f"sqlite:///{tmp_path / 'home' / 'ledger.db'}")


def plant(ledger: Ledger, holder: dict[str, object], expires_in: float) -> None:
    now = time.time()
    with ledger.engine.begin() as conn:
        conn.execute(insert(locks).values(name="docs", holder=json.dumps(holder), token="t0",
                                          acquired_at=now, expires_at=now + expires_in))


def test_second_holder_waits_then_fails_with_who_holds_it(tmp_path: Path) -> None:
    ledger = ledger_at(tmp_path)
    busy = pytest.raises(SourceBusy, match=r"being synced by pid \d+ on .*waited 0\.3 s")
    with held(ledger, "docs"), busy:
        LeaseLock(ledger, "docs", wait_s=0.3, poll_s=0.05).acquire()
    with held(ledger, "docs", wait_s=0):  # released: free again
        pass
    ledger.close()


def test_dead_holder_on_this_host_is_taken_over_at_once(tmp_path: Path) -> None:
    ledger = ledger_at(tmp_path)
    proc = subprocess.Popen(["true"])
    proc.wait()  # a pid that no longer runs
    plant(ledger, {"host": socket.gethostname(), "pid": proc.pid, "start": None}, 3600)
    with held(ledger, "docs", wait_s=0) as lock, ledger.engine.connect() as conn:
        assert conn.execute(select(locks.c.token)).scalar_one() == lock.token
    ledger.close()


def test_holder_on_another_host_is_trusted_until_its_lease_expires(tmp_path: Path) -> None:
    ledger = ledger_at(tmp_path)
    plant(ledger, {"host": "elsewhere", "pid": 1}, 0.5)
    with pytest.raises(SourceBusy, match="on elsewhere"):
        LeaseLock(ledger, "docs", wait_s=0).acquire()
    with held(ledger, "docs", wait_s=10, poll_s=0.05):
        pass
    ledger.close()


def test_heartbeat_renews_and_a_lost_lease_stops_writes(tmp_path: Path) -> None:
    ledger = ledger_at(tmp_path)
    lock = LeaseLock(ledger, "docs", lease_s=0.3).acquire()
    time.sleep(0.5)  # longer than the lease: only the heartbeat keeps it
    with pytest.raises(SourceBusy):
        LeaseLock(ledger, "docs", wait_s=0).acquire()
    with ledger.engine.begin() as conn:  # someone else takes it over
        conn.execute(locks.update().values(token="other"))
    deadline = time.time() + 10
    while lock.lost is None and time.time() < deadline:
        time.sleep(0.05)
    with pytest.raises(LockLost, match="taken over"):
        lock.check()
    lock.release()
    ledger.close()


def test_two_sync_processes_never_interleave(tmp_path: Path) -> None:
    root, home = tmp_path / "docs", tmp_path / "home"
    for i in range(40):
        write(root / f"d{i:02d}.md", markdown_doc(i, sections=3, paragraphs=2, words=60))
    argv = cli_argv("sync", "--folder", str(root), "--home", str(home), "--json", "--wait",
                    "300")
    procs = [subprocess.Popen(argv, cwd=tmp_path, env=cli_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    reports = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        reports.append(json.loads(out))
    added = sorted(r["documents"]["added"] for r in reports)
    assert added == [0, 40]  # one did all the work, the other found nothing left to do
    assert min(r["chunks"]["written"] for r in reports) == 0
    assert verify_json(home, root)["ok"]


def test_a_busy_source_exits_1_and_a_killed_holder_frees_it(tmp_path: Path) -> None:
    root, home = tmp_path / "docs", tmp_path / "home"
    for i in range(60):
        write(root / f"d{i:02d}.md", markdown_doc(i, sections=3, paragraphs=2, words=60))
    ledger = ledger_at(tmp_path)
    with held(ledger, "docs"):
        busy = cli("sync", "--folder", str(root), "--home", str(home), "--wait", "0",
                   cwd=tmp_path)
        assert busy.returncode == 1
        assert "source 'docs' is being synced by pid" in busy.stderr
    holder = subprocess.Popen(cli_argv("sync", "--folder", str(root), "--home", str(home)),
                              cwd=tmp_path, env=cli_env(), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:  # wait until it holds the lock, then kill it
        with ledger.engine.connect() as conn:
            if conn.execute(select(locks.c.holder)).first() is not None:
                break
        time.sleep(0.05)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    after = cli("sync", "--folder", str(root), "--home", str(home), "--wait", "0", cwd=tmp_path)
    assert after.returncode == 0, after.stderr
    assert verify_json(home, root)["ok"]
    ledger.close()


@pytest.mark.postgres
def test_lock_and_intents_on_postgres() -> None:
    from tests.pg import fresh_postgres_database

    for url in fresh_postgres_database():
        ledger = Ledger(url)
        with held(ledger, "docs"), pytest.raises(SourceBusy):
            LeaseLock(ledger, "docs", wait_s=0).acquire()
        plant(ledger, {"host": "elsewhere", "pid": 1}, -1)  # expired
        with held(ledger, "docs", wait_s=0):
            pass
        ledger.mark_intents("docs", ["a", "b", "a"])
        ledger.mark_intents("docs", ["a"])
        assert sorted(ledger.intents("docs")) == ["a", "b"]
        ledger.cache_vectors("m", {"x": [0.5]})
        ledger.close()

"""The sync flow on a Postgres table: every full run reconciles hard deletes, and a missing
notify trigger is a warning in the run's log naming the command that installs it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from flows import sync as sync_mod
from tests.pg import fresh_postgres_database


@pytest.fixture
def pg_url() -> Iterator[str]:
    yield from fresh_postgres_database()


def _logs() -> list[str]:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return [log.message for log in client.read_logs(limit=200)]


def test_full_runs_reconcile_and_warn_about_a_missing_trigger(
        prefect_harness: None, pg_url: str, tmp_path: Path) -> None:
    db = sa.create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with db.connect() as c:
        c.execute(sa.text("CREATE TABLE tickets (id int PRIMARY KEY, body text, "
                          "updated_at timestamptz NOT NULL DEFAULT clock_timestamp())"))
        c.execute(sa.text("INSERT INTO tickets (id, body) VALUES (1, 'one'), (2, 'two')"))
    config = tmp_path / "freshrag.toml"
    config.write_text(f'home = "{tmp_path / "home"}"\n[[sources]]\nname = "tickets"\n'
                      f'type = "sql"\nurl = "{pg_url}"\ntable = "tickets"\nkey = "id"\n'
                      'text = "{body}"\ncursor = "updated_at"\nnotify = true\n')
    assert sync_mod.sync("tickets", config=str(config))["documents"]["added"] == 2
    with db.connect() as c:
        c.execute(sa.text("DELETE FROM tickets WHERE id = 2"))
    out = sync_mod.sync("tickets", config=str(config))  # well within reconcile_every
    assert out["documents"]["deleted"] == 1 and out["documents"]["unchanged"] == 1
    warned = [m for m in _logs() if "notify trigger" in m]
    assert warned and "freshrag sql notify-install tickets" in warned[0]
    db.dispose()

"""A fresh Postgres database per test on the machine's server (fails in CI when it is down)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text

PG_ADMIN = os.environ.get("FRESHRAG_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def fresh_postgres_database() -> Iterator[str]:
    base = PG_ADMIN.rsplit("/", 1)[0]
    try:
        admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        if os.environ.get("CI"):
            pytest.fail(f"Postgres at {PG_ADMIN} is not reachable in CI: {exc}")
        pytest.skip(f"Postgres at {PG_ADMIN} is not reachable: {exc}")
    name = f"freshrag_t_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{base}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

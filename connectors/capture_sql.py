"""The SQL each change-capture mode creates and drops, per engine (see connectors.capture)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import make_url

from connectors.sql_options import SqlOptions, display_url


@dataclass(frozen=True)
class CapturePlan:
    """What one source's change capture creates in its database, and how to remove it.

    `probe` is a query returning (name, body) rows of what is in place; it is current when
    every name in `expect` is there with that body (None: any body). `require` are
    (query, wanted value, what is wrong otherwise) checks of the server's configuration."""

    source: str
    mode: str
    backend: str
    url: str  # password hidden
    table: str  # quoted
    summary: list[str]
    install: list[str]
    uninstall: list[str]
    probe: str | None = None
    expect: dict[str, str | None] = field(default_factory=dict)
    require: list[tuple[str, str, str]] = field(default_factory=list)
    changelog: str | None = None  # the changelog table (quoted), mode changelog
    slot: str | None = None  # the replication slot, mode logical
    channel: str | None = None  # the LISTEN channel, mode notify


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9_]+", "_", name.lower()).strip("_") or "source"


def quote(backend: str, name: str) -> str:
    if backend in ("mysql", "mariadb"):
        return "`" + name.replace("`", "``") + "`"
    return '"' + name.replace('"', '""') + '"'


def _split(opts: SqlOptions, backend: str) -> tuple[str, str, str]:
    """(schema prefix with its dot or '', quoted table, bare table name)."""
    schema, _, table = (opts.table or "").rpartition(".")
    prefix = f"{quote(backend, schema)}." if schema else ""
    return prefix, prefix + quote(backend, table), table


def key_sql(backend: str, rec: str, key: list[str]) -> str:
    """The doc key of OLD/NEW in SQL, encoded exactly like connectors.sql_util.encode_key for
    integer, text and uuid key columns."""
    if backend == "postgresql":
        texts = [f"{rec}.{quote(backend, k)}::text" for k in key]
    elif backend == "sqlite":
        texts = [f"CAST({rec}.{quote(backend, k)} AS TEXT)" for k in key]
    else:
        texts = [f"CAST({rec}.{quote(backend, k)} AS CHAR)" for k in key]
    if len(texts) == 1:
        return texts[0]
    parts = [f"replace(replace({t}, '%', '%25'), '/', '%2F')" for t in texts]
    if backend in ("mysql", "mariadb"):
        return "CONCAT(" + ", '/', ".join(parts) + ")"
    return " || '/' || ".join(parts)


def _pg_trigger_probe(table: str, triggers: list[str]) -> str:
    names = ", ".join(f"'{t}'" for t in triggers)
    return ("SELECT t.tgname, p.prosrc FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid "
            f"WHERE t.tgrelid = '{table}'::regclass AND t.tgname IN ({names})")


def notify_plan(name: str, opts: SqlOptions) -> CapturePlan:
    """Postgres: a row trigger that pg_notify's each changed key on the source's channel."""
    b = "postgresql"
    prefix, qtable, _ = _split(opts, b)
    s = slug(name)
    channel = opts.notify_channel or f"freshrag_{s}"[:63]
    trigger = f"freshrag_notify_{s}"[:63]
    function = prefix + quote(b, trigger)
    old, new = key_sql(b, "OLD", opts.key), key_sql(b, "NEW", opts.key)
    body = (f"\nBEGIN\n"
            f"  IF TG_OP IN ('UPDATE', 'DELETE') THEN PERFORM pg_notify('{channel}', {old}); "
            f"END IF;\n"
            f"  IF TG_OP IN ('INSERT', 'UPDATE') THEN PERFORM pg_notify('{channel}', {new}); "
            f"END IF;\n"
            f"  RETURN NULL;\n"
            f"END ")
    install = [
        f"CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS "
        f"$fr${body}$fr$",
        f"DROP TRIGGER IF EXISTS {quote(b, trigger)} ON {qtable}",
        f"CREATE TRIGGER {quote(b, trigger)} AFTER INSERT OR UPDATE OR DELETE ON {qtable} "
        f"FOR EACH ROW EXECUTE FUNCTION {function}()",
    ]
    uninstall = [f"DROP TRIGGER IF EXISTS {quote(b, trigger)} ON {qtable}",
                 f"DROP FUNCTION IF EXISTS {function}()"]
    summary = [f"trigger {trigger} on {qtable} (AFTER INSERT OR UPDATE OR DELETE, per row)",
               f"function {function}() sending each changed row's key on channel {channel!r}"]
    return CapturePlan(name, "notify", b, display_url(opts.url), qtable, summary, install,
                       uninstall, _pg_trigger_probe(qtable, [trigger]), {trigger: body},
                       channel=channel)


def changelog_plan(name: str, opts: SqlOptions) -> CapturePlan:
    """Any engine: row triggers append (doc_key, op) to a freshrag-owned table with a growing
    seq; the watcher reads the table and deletes the rows it has indexed."""
    b = make_url(opts.url).get_backend_name()
    prefix, qtable, _ = _split(opts, b)
    s = slug(name)
    log_name = f"freshrag_changelog_{s}"[:63]
    log_table = prefix + quote(b, log_name)
    old, new = key_sql(b, "OLD", opts.key), key_sql(b, "NEW", opts.key)
    cols = "(doc_key, op)"
    summary = [f"table {log_table} (seq, doc_key, op): one row per changed row of {qtable}"]
    if b == "postgresql":
        trigger = f"freshrag_changelog_{s}"[:63]
        function = prefix + quote(b, trigger)
        body = (f"\nBEGIN\n"
                f"  IF TG_OP IN ('UPDATE', 'DELETE') THEN INSERT INTO {log_table} {cols} "
                f"VALUES ({old}, left(TG_OP, 1)); END IF;\n"
                f"  IF TG_OP IN ('INSERT', 'UPDATE') THEN INSERT INTO {log_table} {cols} "
                f"VALUES ({new}, left(TG_OP, 1)); END IF;\n"
                f"  RETURN NULL;\n"
                f"END ")
        install = [
            f"CREATE TABLE IF NOT EXISTS {log_table} (seq bigserial PRIMARY KEY, doc_key text "
            f"NOT NULL, op char(1) NOT NULL, at timestamptz NOT NULL DEFAULT now())",
            f"CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS "
            f"$fr${body}$fr$",
            f"DROP TRIGGER IF EXISTS {quote(b, trigger)} ON {qtable}",
            f"CREATE TRIGGER {quote(b, trigger)} AFTER INSERT OR UPDATE OR DELETE ON {qtable} "
            f"FOR EACH ROW EXECUTE FUNCTION {function}()",
        ]
        uninstall = [f"DROP TRIGGER IF EXISTS {quote(b, trigger)} ON {qtable}",
                     f"DROP FUNCTION IF EXISTS {function}()", f"DROP TABLE IF EXISTS {log_table}"]
        probe = (_pg_trigger_probe(qtable, [trigger]) + " UNION ALL SELECT 'table', '' WHERE "
                 f"to_regclass('{log_table}') IS NOT NULL")
        summary.append(f"trigger {trigger} on {qtable} running function {function}()")
        return CapturePlan(name, "changelog", b, display_url(opts.url), qtable, summary,
                           install, uninstall, probe, {trigger: body, "table": None},
                           changelog=log_table)
    names = {op: f"freshrag_cl_{s}_{op.lower()}"[:63] for op in ("I", "U", "D")}
    if b == "sqlite":
        create = (f"CREATE TABLE IF NOT EXISTS {log_table} (seq INTEGER PRIMARY KEY "
                  f"AUTOINCREMENT, doc_key TEXT NOT NULL, op TEXT NOT NULL, at REAL NOT NULL "
                  f"DEFAULT ((julianday('now') - 2440587.5) * 86400.0))")
        bodies = {"I": f"INSERT INTO {log_table} {cols} VALUES ({new}, 'I');",
                  "U": f"INSERT INTO {log_table} {cols} VALUES ({old}, 'U'), ({new}, 'U');",
                  "D": f"INSERT INTO {log_table} {cols} VALUES ({old}, 'D');"}
        triggers = {op: f"CREATE TRIGGER {quote(b, n)} AFTER {_EVENT[op]} ON {qtable} "
                        f"FOR EACH ROW BEGIN {bodies[op]} END" for op, n in names.items()}
        expect: dict[str, str | None] = {n: triggers[op] for op, n in names.items()}
        probe = ("SELECT name, sql FROM sqlite_master WHERE name IN ("
                 + ", ".join(f"'{n}'" for n in [*names.values(), log_name]) + ")")
    else:
        create = (f"CREATE TABLE IF NOT EXISTS {log_table} (seq BIGINT NOT NULL AUTO_INCREMENT "
                  f"PRIMARY KEY, doc_key VARCHAR(768) NOT NULL, op CHAR(1) NOT NULL, "
                  f"at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6))")
        bodies = {"I": f"INSERT INTO {log_table} {cols} VALUES ({new}, 'I')",
                  "U": f"INSERT INTO {log_table} {cols} VALUES ({old}, 'U'), ({new}, 'U')",
                  "D": f"INSERT INTO {log_table} {cols} VALUES ({old}, 'D')"}
        triggers = {op: f"CREATE TRIGGER {quote(b, n)} AFTER {_EVENT[op]} ON {qtable} "
                        f"FOR EACH ROW {bodies[op]}" for op, n in names.items()}
        expect = {n: bodies[op] for op, n in names.items()}
        probe = ("SELECT TRIGGER_NAME, ACTION_STATEMENT FROM information_schema.TRIGGERS WHERE "
                 "TRIGGER_SCHEMA = DATABASE() AND TRIGGER_NAME IN ("
                 + ", ".join(f"'{n}'" for n in names.values()) + ") UNION ALL SELECT "
                 "TABLE_NAME, NULL FROM information_schema.TABLES WHERE TABLE_SCHEMA = "
                 f"DATABASE() AND TABLE_NAME = '{log_name}'")
    expect[log_name] = None
    install = [create]
    for op, n in names.items():
        install += [f"DROP TRIGGER IF EXISTS {quote(b, n)}", triggers[op]]
    uninstall = [f"DROP TRIGGER IF EXISTS {quote(b, n)}" for n in names.values()]
    uninstall.append(f"DROP TABLE IF EXISTS {log_table}")
    summary.append(f"triggers {', '.join(names.values())} on {qtable} (AFTER INSERT, UPDATE, "
                   "DELETE; per row)")
    return CapturePlan(name, "changelog", b, display_url(opts.url), qtable, summary, install,
                       uninstall, probe, expect, changelog=log_table)


_EVENT = {"I": "INSERT", "U": "UPDATE", "D": "DELETE"}


def logical_plan(name: str, opts: SqlOptions) -> CapturePlan:
    """Postgres: a logical replication slot (test_decoding) read with the SQL slot functions."""
    b = "postgresql"
    _, qtable, _ = _split(opts, b)
    slot = f"freshrag_{slug(name)}"[:63]
    exists = f"SELECT 1 FROM pg_replication_slots WHERE slot_name = '{slot}'"
    install = [f"SELECT pg_create_logical_replication_slot('{slot}', 'test_decoding') "
               f"WHERE NOT EXISTS ({exists})"]
    uninstall = [f"SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                 f"WHERE slot_name = '{slot}'"]
    summary = [f"logical replication slot {slot} (plugin test_decoding) for changes of "
               f"{qtable}; it retains WAL until freshrag has indexed it"]
    probe = f"SELECT slot_name, plugin FROM pg_replication_slots WHERE slot_name = '{slot}'"
    require = [("SHOW wal_level", "logical", "needs wal_level = logical in postgresql.conf "
                "(and a restart)")]
    return CapturePlan(name, "logical", b, display_url(opts.url), qtable, summary, install,
                       uninstall, probe, {slot: "test_decoding"}, require, slot=slot)


def binlog_plan(name: str, opts: SqlOptions) -> CapturePlan:
    """MySQL/MariaDB: nothing is created; the server must write a ROW binlog."""
    b = make_url(opts.url).get_backend_name()
    _, qtable, _ = _split(opts, b)
    summary = [f"nothing in the database: the watcher reads the ROW binlog for {qtable} as a "
               "replica would (the role needs REPLICATION SLAVE and REPLICATION CLIENT)"]
    require = [("SELECT @@log_bin", "1", "needs the binary log on (log_bin)"),
               ("SELECT @@binlog_format", "ROW", "needs binlog_format = ROW")]
    return CapturePlan(name, "binlog", b, display_url(opts.url), qtable, summary, [], [],
                       require=require)


def build(name: str, opts: SqlOptions, mode: str) -> CapturePlan:
    builders: dict[str, Any] = {"notify": notify_plan, "changelog": changelog_plan,
                                "logical": logical_plan, "binlog": binlog_plan}
    plan: CapturePlan = builders[mode](name, opts)
    return plan

"""Render a bench result as the README's Performance table (regenerated, never typed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

START, END = "<!-- bench:start -->", "<!-- bench:end -->"
TARGETS = {"edit": 2, "insert_top": 2, "append": 2, "delete_paragraph": 2, "rename": 0,
           "touch": 0, "copy": 0, "insert_top_long": 2}


def _ok(good: bool) -> str:
    return "met" if good else "**missed**"


def render_table(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [f"Measured {m['date']} on {m['cores']} cores ({m['cpu']}), Python {m['python']}, "
             f"model {m['model']}, {m['backend']}; `python -m bench"
             f"{' --quick' if r.get('mode') == 'quick' else ''}`.", "",
             "| figure | measured | target | |", "|---|---|---|---|"]
    if "throughput" in r:
        t = r["throughput"]
        lines.append(f"| bulk throughput vs raw `model.encode` ({t['chunks']} chunks) | "
                     f"{t['engine_chunks_per_s']} vs {t['raw_chunks_per_s']} chunks/s = "
                     f"**{t['ratio']}** | ≥ 0.85 | {_ok(t['ratio'] >= 0.85)} |")
        b = t["breakdown_s"]
        lines.append("| where the engine's time goes (s) | "
                     + ", ".join(f"{k} {v}" for k, v in b.items()) + " | | |")
    if "reembed" in r:
        peers = r.get("peers_reembed", {})
        for case, n in r["reembed"].items():
            others = ", ".join(f"{name} {v.get(case, '–')}" for name, v in peers.items()
                               if isinstance(v, dict) and "error" not in v)
            lines.append(f"| chunks re-embedded: {case} | **{n}** ({others}) | "
                         f"≤ {TARGETS[case]} | {_ok(n <= TARGETS[case])} |")
    for key, label, target in (("freshness_file_s", "file save → searchable", 1.0),
                               ("freshness_delete_s", "file delete → gone", 1.0),
                               ("freshness_pg_notify_s", "Postgres UPDATE (notify) → searchable",
                                0.5),
                               ("freshness_pg_delete_s", "Postgres hard DELETE (notify) → gone",
                                1.0),
                               ("freshness_pg_poll_s", "Postgres UPDATE (poll only) → searchable",
                                None),
                               ("freshness_binlog_update_s",
                                "MariaDB UPDATE (binlog) → searchable", 1.0),
                               ("freshness_binlog_delete_s", "MariaDB hard DELETE (binlog) → gone",
                                1.0),
                               ("freshness_changelog_update_s",
                                "SQLite UPDATE (changelog) → searchable", 1.0),
                               ("freshness_changelog_delete_s",
                                "SQLite hard DELETE (changelog) → gone", 1.0),
                               ("freshness_logical_update_s",
                                "Postgres UPDATE (logical slot) → searchable", 1.0),
                               ("freshness_logical_delete_s",
                                "Postgres hard DELETE (logical slot) → gone", 1.0)):
        if isinstance(r.get(key), dict) and "p50" in r[key]:
            f = r[key]
            lines.append(f"| {label} (n={f['n']}) | p50 {f['p50']:.3f} s, p95 {f['p95']:.3f} s, "
                         f"max {f['max']:.3f} s | "
                         + (f"p95 ≤ {target} s | {_ok(f['p95'] <= target)} |" if target
                            else "as is | |"))
    if "rescan" in r:
        s = r["rescan"]
        lines.append(f"| no-change rescan of {s['files']} files vs `find -printf` | "
                     f"{s['sync_s']} s vs {s['find_s']} s = **{s['ratio']}×** | ≤ 5× | "
                     f"{_ok(s['ratio'] <= 5)} |")
    if "api" in r:
        a = r["api"]
        lines.append(f"| API, {a['chunks']} chunks, {a['clients']} clients, {a['seconds']} s | "
                     f"{a['qps']} q/s, p50 {a['p50_ms']} ms, p99 **{a['p99_ms']} ms** "
                     f"(in-process p50 {a['direct_p50_ms']} ms) | p99 ≤ 100 ms | "
                     f"{_ok(a['p99_ms'] <= 100)} |")
    if "memory" in r and "idle_mb" in r["memory"]:
        mm = r["memory"]
        lines.append(f"| watcher peak RSS: idle / {mm['burst']}-file burst | "
                     f"{mm['idle_mb']} MB / {mm['burst_mb']} MB | | |")
    return "\n".join(lines)


def update_readme(path: Path, result: dict[str, Any]) -> None:
    text = path.read_text()
    table = f"{START}\n{render_table(result)}\n{END}"
    if START in text and END in text:
        head, rest = text.split(START, 1)
        text = head + table + rest.split(END, 1)[1]
    else:
        text = text.rstrip() + "\n\n## Performance\n\n" + table + "\n"
    path.write_text(text)

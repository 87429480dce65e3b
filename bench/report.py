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
             f"model {m['model']}{f' ({e})' if (e := m.get('embedding')) else ''}, "
             f"{m['backend']}; `python -m bench"
             f"{' --quick' if r.get('mode') == 'quick' else ''}`."
             + "".join(f" Re-measured since, with `--only {' '.join(a['parts'])}"
                       f"{' --quick' if a.get('mode') == 'quick' else ''}`: {a['date']} on "
                       f"{a['cpu']} ({a.get('embedding', '?')})."
                       for a in r.get("remeasured", [])), "",
             "| figure | measured | target | |", "|---|---|---|---|"]
    if "throughput" in r:
        t = r["throughput"]
        cold = (f", incl. {t['startup_s']} s cold start" if "startup_s" in t else "")
        lines.append(f"| bulk throughput: `freshrag sync` vs raw `model.encode` in the bench "
                     f"({t['chunks']} chunks{cold}) | "
                     f"{t['engine_chunks_per_s']} vs {t['raw_chunks_per_s']} chunks/s = "
                     f"**{t['ratio']}**"
                     + (f" ({t['ratio_warm']} without the cold start)" if "ratio_warm" in t
                        else "")
                     + f" | ≥ 0.85 | {_ok(t['ratio'] >= 0.85)} |")
        if "breakdown_s" in t:
            lines.append("| where the engine's time goes (s) | "
                         + ", ".join(f"{k} {v}" for k, v in t["breakdown_s"].items()) + " | | |")
    b = r.get("backfill")
    if isinstance(b, dict) and "ratio" in b:
        one, two = b["workers_1"], b["workers_2"]
        lines.append(f"| backfill `sync --workers 1` vs `--workers 2` ({two['chunks']} chunks, "
                     f"{b['cpus']} CPUs, load {b['load_before']}→{b['load_after']}) | "
                     f"{one['chunks_per_s']} vs {two['chunks_per_s']} chunks/s = "
                     f"**{b['ratio']}** (whole command {b['ratio_wall']}) | ≤ CPUs | |")
        for name, what in (("cluster_2", "two `dask worker`s"),
                           ("cluster_2_gpu", "two `dask worker`s, one declaring GPU=1 (a CPU)")):
            if name in b:
                lines.append(f"| backfill `sync --cluster` on {what} vs `--workers 2` | "
                             f"{b[name]['chunks_per_s']} vs {two['chunks_per_s']} chunks/s = "
                             f"**{b[name + '_ratio']}** (whole command "
                             f"{b[name + '_ratio_wall']}) | | |")
    if "reembed" in r:
        peers = r.get("peers_reembed", {})
        for case, n in r["reembed"].items():
            others = ", ".join(f"{name} {v.get(case, '–')}" for name, v in peers.items()
                               if isinstance(v, dict) and "error" not in v)
            peer_note = f" (peers in the bench: {others})" if others else ""
            lines.append(f"| chunks re-embedded by `freshrag sync`: {case} | **{n}**{peer_note} | "
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
    ev = r.get("freshness_events_s")
    if isinstance(ev, dict) and "p50" in ev:
        lines.append(f"| file save → searchable, events mode through `prefect server` + "
                     f"`deployments/serve.py` (n={ev['n']}) | p50 {ev['p50']:.3f} s, p95 "
                     f"{ev['p95']:.3f} s, max {ev['max']:.3f} s; model reloads "
                     f"{ev.get('model_reloads', '–')} | p95 ≤ 3.0 s | {_ok(ev['p95'] <= 3.0)} |")
    fs = r.get("first_save_after_ready_s")
    if isinstance(fs, dict) and "p50" in fs:
        lines.append(f"| first save after `freshrag watch` says ready (n={fs['n']} starts) | "
                     f"p50 {fs['p50']:.3f} s, max {fs['max']:.3f} s (start → ready p50 "
                     f"{fs['start_to_ready_p50_s']} s) | ≤ 1.0 s | {_ok(fs['max'] <= 1.0)} |")
    if "rescan" in r:
        s = r["rescan"]
        lines.append(f"| no-change `freshrag sync` of {s['files']} files vs `find -printf` | "
                     f"{s['sync_s']} s vs {s['find_s']} s = **{s['ratio']}×** | ≤ 5× | "
                     f"{_ok(s['ratio'] <= 5)} |")
    if "api" in r and "exact" in r["api"]:
        lines += _api_rows(r["api"])
    lines += _permission_rows(r)
    if "corpora" in r.get("quality", {}):
        lines += _quality_rows(r["quality"])
    if "memory" in r and "idle_mb" in r["memory"]:
        lines += _memory_rows(r["memory"])
    return "\n".join(lines)


def _memory_rows(mm: dict[str, Any]) -> list[str]:
    rows = [f"| `freshrag watch` RSS: idle / {mm['burst']}-file burst peak | "
            f"{mm['idle_mb']} MB / {mm['burst_mb']} MB | | |"]
    if "idle_tree_mb" not in mm:
        return rows
    kids = ", ".join(f"{k} {v} MB" for k, v in mm.get("idle_children_mb", {}).items())
    tree = (f"{mm['idle_tree_mb']} MB" + (f" ({kids})" if kids else "")
            + f" / {mm['burst_tree_mb']} MB")
    if "after_burst_tree_mb" in mm:
        tree += f"; idle after the burst {mm['after_burst_tree_mb']} MB"
    if "released_tree_mb" not in mm:
        rows.append(f"| `freshrag watch` + children RSS (no Prefect API): idle / burst peak | "
                    f"{tree} | idle ≤ 400 MB | {_ok(mm['idle_tree_mb'] <= 400)} |")
    else:
        rows.append(f"| `freshrag watch` + children RSS (no Prefect API): idle, still warm / "
                    f"burst peak | {tree} | | |")
        worst = max(mm["released_tree_mb"], mm["after_burst_released_tree_mb"])
        rows.append(
            f"| `freshrag watch` + children RSS idle past `--release-after` (parse worker "
            f"stopped, model unloaded): before / after the burst | {mm['released_tree_mb']} MB "
            f"/ {mm['after_burst_released_tree_mb']} MB; the next change indexed in "
            f"{mm['change_after_release_s']} s (warm: {mm['change_warm_s']} s) | idle ≤ 400 MB "
            f"| {_ok(worst <= 400)} |")
    share = mm.get("embedder_mb")
    if isinstance(share, dict) and "loaded_mb" in share:
        rows.append(f"| of which the embedder (harness: the model alone in a process): loaded "
                    f"/ burst peak / after | {share['loaded_mb']} / {share['burst_peak_mb']} / "
                    f"{share['after_burst_mb']} MB | | |")
    return rows


def _permission_rows(r: dict[str, Any]) -> list[str]:
    out = []
    for key, label in (("revoke_chmod_s", "`chmod o-r` → hidden from a client (watch)"),
                       ("revoke_pg_readers_s",
                        "Postgres UPDATE of the readers column (notify) → hidden (watch)")):
        f = r.get(key)
        if isinstance(f, dict) and "p50" in f:
            out.append(f"| {label} (n={f['n']}) | p50 {f['p50']:.3f} s, p95 {f['p95']:.3f} s, "
                       f"max {f['max']:.3f} s | p95 ≤ 1.0 s | {_ok(f['p95'] <= 1.0)} |")
    fc = r.get("filter_cost")
    if isinstance(fc, dict) and "hybrid" in fc:
        sides = "; ".join(f"{m} {fc[m]['unfiltered_p50_ms']} vs {fc[m]['filtered_p50_ms']} ms "
                          f"(**{fc[m]['ratio_p50']}×**)" for m in ("hybrid", "vector", "keyword"))
        out.append(f"| `freshrag serve` /search p50, admin vs a client's readers filter, "
                   f"{fc['chunks']} chunks (prefilled by the bench) | {sides} | as is | |")
    return out


def _api_rows(a: dict[str, Any]) -> list[str]:
    """/search at 1 and 16 clients, exact then ANN, hybrid then vector, with the server's CPU
    per query and the ANN's recall beside it."""
    ann, rec = a["ann"], a["recall_at_10"]
    rows = []
    ann_label = (f"ANN {ann['index_type']} nprobes {ann['nprobes']}"
                 + (f", refine {ann['refine_factor']}" if "refine_factor" in ann else ""))
    for label, key in (("exact", "exact"), (ann_label, "ann_served")):
        by_mode = a[key] if "hybrid" in a[key] else {"hybrid": a[key]}  # older results
        for mode, runs in by_mode.items():
            one, many = runs["1"], runs["16"]
            good = many["p99_ms"] <= 100 and (key == "exact" or rec[mode] >= 0.95)
            recall = f"; recall@10 vs exact: {rec[mode]}" if key != "exact" else ""
            cpu = (f", server CPU {many['cpu_ms_per_query']} ms/query"
                   if "cpu_ms_per_query" in many else "")
            rows.append(
                f"| `freshrag serve` /search ({mode}), {a['chunks']} chunks (harness-filled: "
                f"vectors sampled around {a['seeds']} real embeddings), {a['queries']} FAQ "
                f"questions, {label} | 1 client p50 {one['p50_ms']} / p99 {one['p99_ms']} ms; "
                f"16 clients p50 {many['p50_ms']} / p99 **{many['p99_ms']} ms**, "
                f"{many['qps']} q/s (in the server at 16: embed p50 {many['embed_p50_ms']} ms, "
                f"index p50 {many['index_p50_ms']} / p99 {many['index_p99_ms']} ms{cpu})"
                f"{recall} | p99 ≤ 100 ms at 16, recall@10 ≥ 0.95 | {_ok(good)} |")
    return rows


def _quality_rows(q: dict[str, Any]) -> list[str]:
    lines = []
    corpora = q["corpora"].items()
    for name, c in corpora:
        ret = c["retrieval"]
        best_single = max(ret["vector"]["recall@5"], ret["keyword"]["recall@5"])
        sides = ", ".join(f"{m} {ret[m]['recall@5']} / {ret[m]['mrr@10']}"
                          for m in ("hybrid", "vector", "keyword"))
        lines.append(
            f"| retrieval, {name}: {c['questions']} FAQ questions over {c['pages']} pages, "
            f"recall@5 / MRR@10 | {sides} | hybrid recall@5 ≥ best single side | "
            f"{_ok(ret['hybrid']['recall@5'] >= best_single)} |")
    for name, c in corpora:
        if "vs_torch" not in c:
            continue
        ours, torch = c["retrieval"], c["vs_torch"]
        delta = max(abs(ours[m]["recall@5"] - torch[m]["recall@5"]) for m in ("hybrid", "vector"))
        pairs = ", ".join(f"{m} {ours[m]['recall@5']} vs {torch[m]['recall@5']}"
                          for m in ("hybrid", "vector", "keyword"))
        lines.append(
            f"| retrieval, {name}: the default embedding backend vs torch (each its own home), "
            f"recall@5 | {pairs} | within 0.01 | {_ok(delta <= 0.01)} |")
    for name, c in corpora:
        lines += [
            f"| chunks, {name}: per MB of HTML, median size vs target (words × 1.3) | "
            f"{c['chunks_per_mb']} per MB ({c['chunks']} chunks), median {c['median_words']} "
            f"words = **{c['median_vs_target']:.0%}** of {q['target_tokens']} | ≥ 60 % | "
            f"{_ok(c['median_vs_target'] >= 0.6)} |",
            f"| chunks under 20 words, {name} | **{c['under_20_words']:.1%}** | < 10 % | "
            f"{_ok(c['under_20_words'] < 0.1)} |",
            f"| navigation chunks, titles with ¶, {name} | **{c['navigation_chunks']}**, "
            f"{c['titles_with_pilcrow']} | 0 | "
            f"{_ok(c['navigation_chunks'] == 0 and c['titles_with_pilcrow'] == 0)} |"]
    return [
        *lines,
        "| chunks re-embedded per edit (quality run) | "
        + ", ".join(f"{c} {n}" for c, n in q["reembed"].items())
        + " | ≤ 2, rename/touch/copy 0 | "
        + _ok(all(n <= TARGETS[c] for c, n in q["reembed"].items())) + " |",
        f"| unique token + common words (30 notes), hybrid | first: "
        f"**{'yes' if q['unique_token_first'] else 'no'}** | first | "
        f"{_ok(q['unique_token_first'])} |",
    ]


def update_readme(path: Path, result: dict[str, Any]) -> None:
    text = path.read_text()
    table = f"{START}\n{render_table(result)}\n{END}"
    if START in text and END in text:
        head, rest = text.split(START, 1)
        text = head + table + rest.split(END, 1)[1]
    else:
        text = text.rstrip() + "\n\n## Performance\n\n" + table + "\n"
    path.write_text(text)

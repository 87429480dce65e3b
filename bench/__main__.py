"""`python -m bench [--quick] [--json PATH] [--readme]`: run every benchmark side by side.

Every freshrag figure drives the installed `freshrag` command (sync --json, watch, serve);
what the bench does itself (raw model.encode, the peers, a prefilled index) is labelled."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from bench import (
    api_load,
    backends,
    backfill,
    canary,
    first_save,
    freshness,
    freshness_events,
    memory,
    peers,
    permissions,
    quality,
    reembed,
    rescan,
    throughput,
)
from bench.common import machine
from bench.report import render_table, update_readme
from freshrag.embed import SentenceTransformerEmbedder

REPO = Path(__file__).resolve().parents[1]
SIZES = {  # quick keeps the whole run under ~3 minutes on 2 cores
    "quick": {"docs": 20, "api_chunks": 20_000, "api_seconds": 8, "trials": 20,
              "burst": 300, "rescan_files": 2_000, "backend_pages": 40},
    "full": {"docs": 120, "api_chunks": 100_000, "api_seconds": 20, "trials": 50,
             "burst": 1000, "rescan_files": 10_000, "backend_pages": 0},
}


def guarded(fn: Any, *args: Any) -> dict[str, Any]:
    """A part's result, or its error: one failing part does not lose the others' figures."""
    try:
        out: dict[str, Any] = fn(*args)
        return out
    except Exception as exc:
        print(f"   failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return {"error": f"{type(exc).__name__}: {exc}"}


def merge_partial(earlier: dict[str, Any], result: dict[str, Any], parts: list[str]
                  ) -> dict[str, Any]:
    """A partial run updates the figures it measured and keeps the others; the table's header
    keeps the full run's machine and lists each re-measure with its own (a later re-measure of
    the same parts replaces the earlier one)."""
    again = {**result["machine"], "parts": parts, "mode": result["mode"]}
    return {**earlier, **result, "machine": earlier.get("machine", result["machine"]),
            "mode": earlier.get("mode", result["mode"]),
            "remeasured": [*(r for r in earlier.get("remeasured", [])
                             if not set(r["parts"]) <= set(parts)), again]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, ~3 minutes")
    parser.add_argument("--json", type=Path, help="write the results here as one JSON object")
    parser.add_argument("--readme", action="store_true",
                        help="regenerate README's Performance table from this run")
    parser.add_argument("--only", nargs="*", help="run only these parts")
    args = parser.parse_args(argv)
    size = SIZES["quick" if args.quick else "full"]
    embedder = SentenceTransformerEmbedder()
    embedder.embed(["warm up"])
    result: dict[str, Any] = {"machine": machine(embedder),
                              "mode": "quick" if args.quick else "full"}

    def part(name: str) -> bool:
        wanted = not args.only or name in args.only
        if wanted:
            print(f"== {name}", file=sys.stderr, flush=True)
        return wanted

    started = time.time()
    if part("throughput"):
        result["throughput"] = throughput.run(embedder, size["docs"])
        result["throughput_ratio"] = result["throughput"]["ratio"]
    if part("backfill"):  # sync --workers 1 vs 2: bounded by the CPU count and the load
        result["backfill"] = guarded(backfill.run, size["docs"])
    if part("reembed"):
        ours = reembed.freshrag_counts()
        result["reembed"] = ours["cases"]
        result["peers_reembed"] = peers.run_all()
    if part("freshness"):
        result.update(freshness.run(size["trials"], embedder))
    if part("freshness_events"):  # a real prefect server + the served deployments
        try:
            result.update(freshness_events.run(max(5, size["trials"] // 4)))
        except Exception as exc:  # reported in the JSON, the other figures still run
            result["freshness_events_s"] = {"error": f"{type(exc).__name__}: {exc}"}
    if part("first_save"):  # a fresh watcher per trial: its ready line, then one save
        try:
            result.update(first_save.run(3))
        except Exception as exc:
            result["first_save_after_ready_s"] = {"error": f"{type(exc).__name__}: {exc}"}
    if part("canary"):  # `freshrag watch` with canary = true, read from its /metrics
        result["canary"] = guarded(canary.run, size["trials"])
        c = result["canary"].get("canary_latency_s") or {}
        if c:
            print(f"   canary write-to-searchable p50 {c['p50']:.3f} s, p95 {c['p95']:.3f} s "
                  f"(n={c['n']}); user saves' change-to-searchable mean "
                  f"{result['canary']['user_change_to_searchable_mean_s'] or 0:.3f} s; load "
                  f"{result['canary']['loadavg_1m']}", file=sys.stderr, flush=True)
    if part("rescan"):
        result["rescan"] = rescan.run(size["rescan_files"])
        result["rescan_ratio"] = result["rescan"]["ratio"]
    if part("api"):
        result["api"] = guarded(api_load.run, embedder, size["api_chunks"], size["api_seconds"])
    if part("permissions"):  # watch + serve with [[api.clients]]; a prefilled index
        result.update(guarded(permissions.run, embedder, max(5, size["trials"] // 2),
                              size["api_chunks"]))
    if part("memory"):
        result["memory"] = guarded(memory.run, size["burst"])
    if part("quality"):
        result["quality"] = guarded(quality.run)
    if part("backends"):  # torch vs onnx fp32 vs onnx int8, side by side
        result["backends"] = guarded(backends.run, size["burst"] // 3,
                                     backends.PYTHON, size["backend_pages"])
    result["seconds"] = round(time.time() - started, 1)

    if args.only and args.json and args.json.exists():
        result = merge_partial(json.loads(args.json.read_text()), result, args.only)
    print(render_table(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if args.readme:
        update_readme(REPO / "README.md", result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

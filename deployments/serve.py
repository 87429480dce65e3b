"""Serve every source's sync deployment (schedule + event trigger) from one long-lived process
whose engine is built and warmed once, so each triggered run finds the model loaded."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere: `python deployments/serve.py`
    sys.path.insert(0, str(ROOT))

from flows.sync import slug, sync  # noqa: E402
from flows.watch import CHANGED  # noqa: E402
from freshrag.config import ConfigError, Settings, load_settings  # noqa: E402

RECONCILE_EVERY_S = 3600
log = logging.getLogger("freshrag.serve")


def deployment_name(source: str) -> str:
    """`serve-<source>`: distinct from prefect.yaml's `sync-<source>` (run by workers), so a
    runner of one never picks up the other's runs."""
    return f"serve-{slug(source)}"


def _paths(config: str | None, home: str | None) -> dict[str, Any]:
    return {**({"config": config} if config else {}), **({"home": home} if home else {})}


def trigger_parameters(source: str, config: str | None = None,
                       home: str | None = None) -> dict[str, Any]:
    """Flow parameters for an event trigger. Single-expression templates are rendered through
    `tojson`, so they must evaluate to JSON values: the keys list (or null for a rescan) and the
    float watermark are; never template an object such as `event.id` without `| string`."""
    return {"source": source, "keys": "{{ event.payload['keys'] }}",
            "observed_at": "{{ event.payload['observed_at'] }}", **_paths(config, home)}


def deployments(settings: Settings, config: str | None = None, home: str | None = None,
                reconcile_every: float = RECONCILE_EVERY_S) -> list[Any]:
    """Per source: `serve-<source>`, reconciled on an interval and run on each
    `freshrag.source.changed` event for it, never two runs at once (ENQUEUE the next)."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
    from prefect.events import DeploymentEventTrigger

    out = []
    for src in settings.sources:
        trigger = DeploymentEventTrigger(
            name=f"freshrag {src.name} changed (served)", expect={CHANGED},
            match={"prefect.resource.id": f"freshrag.source.{src.name}"},
            parameters=trigger_parameters(src.name, config, home))
        out.append(sync.to_deployment(
            name=deployment_name(src.name), parameters={"source": src.name,
                                                        **_paths(config, home)},
            interval=reconcile_every, triggers=[trigger],
            tags=["freshrag", f"source:{src.name}", "served"],
            concurrency_limit=ConcurrencyLimitConfig(
                limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE),
            description=f"Keep the index true to source {src.name} (served by "
                        "deployments/serve.py with a warm engine)."))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", "-c", help="freshrag.toml (default: FRESHRAG_CONFIG or ./)")
    parser.add_argument("--home", help="freshrag home (default: the config's)")
    parser.add_argument("--reconcile-every", type=float, default=RECONCILE_EVERY_S,
                        help="seconds between scheduled full reconciles (default 3600)")
    parser.add_argument("--limit", type=int, default=4, help="flow runs at once (all sources)")
    args = parser.parse_args(argv)
    from freshrag.cli import LOG_DATEFMT, LOG_FORMAT

    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, datefmt=LOG_DATEFMT)
    for name in ("freshrag.serve", "freshrag.watch"):
        logging.getLogger(name).setLevel(logging.INFO)
    config = str(Path(args.config).resolve()) if args.config else None
    home = str(Path(args.home).resolve()) if args.home else None
    try:
        settings = load_settings(Path(config) if config else None, Path(home) if home else None)
    except ConfigError as exc:
        parser.exit(2, f"freshrag: {exc}\n")
    if not settings.sources:
        parser.error("no [[sources]] configured")
    from flows.engines import close_all, engine_for
    from flows.runner import WarmRunner
    from flows.warm import warm

    engine, _ = engine_for(config, home)
    names = [s.name for s in settings.sources]
    log.info("warmed the model, index and parser in %.1f s", warm(engine, names))
    runner = WarmRunner(sync, deployments(settings, config, home, args.reconcile_every),
                        limit=args.limit)
    runner.register()

    def stop(signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: finishing the runs in flight, then exiting", signum)
        runner.stop()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop)
    log.info("serving %s (%d flow run(s) at once); ready",
             ", ".join(deployment_name(n) for n in names), args.limit)
    try:
        runner.run()
    finally:
        close_all()


if __name__ == "__main__":
    main()

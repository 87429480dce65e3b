"""Serve every source's sync deployment (schedule + event trigger) in one process, for a laptop."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere: `python deployments/serve.py`
    sys.path.insert(0, str(ROOT))

from flows.sync import slug, sync  # noqa: E402
from flows.watch import CHANGED  # noqa: E402
from freshrag.config import Settings, load_settings  # noqa: E402

RECONCILE_EVERY_S = 3600


def trigger_parameters(source: str, config: str | None = None) -> dict[str, Any]:
    """Flow parameters for an event trigger. Single-expression templates are rendered through
    `tojson`, so they must evaluate to JSON values: the keys list (or null for a rescan) and the
    float watermark are; never template an object such as `event.id` without `| string`."""
    params: dict[str, Any] = {"source": source, "keys": "{{ event.payload['keys'] }}",
                              "observed_at": "{{ event.payload['observed_at'] }}"}
    if config:
        params["config"] = config
    return params


def deployments(settings: Settings, config: str | None = None,
                reconcile_every: float = RECONCILE_EVERY_S) -> list[Any]:
    """Per source: `sync-<source>`, reconciled on an interval and run on each
    `freshrag.source.changed` event for it, never two runs at once (ENQUEUE the next)."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
    from prefect.events import DeploymentEventTrigger

    out = []
    for src in settings.sources:
        params: dict[str, Any] = {"source": src.name}
        if config:
            params["config"] = config
        trigger = DeploymentEventTrigger(
            name=f"freshrag {src.name} changed", expect={CHANGED},
            match={"prefect.resource.id": f"freshrag.source.{src.name}"},
            parameters=trigger_parameters(src.name, config))
        out.append(sync.to_deployment(
            name=f"sync-{slug(src.name)}", parameters=params, interval=reconcile_every,
            triggers=[trigger], tags=["freshrag", f"source:{src.name}"],
            concurrency_limit=ConcurrencyLimitConfig(
                limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE),
            description=f"Keep the index true to source {src.name}."))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", "-c", help="freshrag.toml (default: FRESHRAG_CONFIG or ./)")
    parser.add_argument("--reconcile-every", type=float, default=RECONCILE_EVERY_S,
                        help="seconds between scheduled full reconciles (default 3600)")
    parser.add_argument("--limit", type=int, default=4, help="flow runs at once (all sources)")
    args = parser.parse_args(argv)
    config = str(Path(args.config).resolve()) if args.config else None
    settings = load_settings(Path(config) if config else None)
    if not settings.sources:
        parser.error("no [[sources]] configured")
    from prefect import serve

    serve(*deployments(settings, config, args.reconcile_every), limit=args.limit)


if __name__ == "__main__":
    main()

"""Create the canary automations (canary-automations.yaml) on the Prefect server, sending
through a notification block named TYPE/NAME: `python deployments/canary_automation.py
--block slack-webhook/ops` (`--print` writes the filled file instead of creating it)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

FILE = Path(__file__).resolve().parent / "canary-automations.yaml"
PLACEHOLDER = "00000000-0000-0000-0000-000000000000"


def automations(block_id: str, path: Path = FILE) -> list[Any]:
    """The file's automations, validated by Prefect's own schema, sending through `block_id`."""
    import yaml
    from prefect.events.schemas.automations import AutomationCore

    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    for item in data["automations"]:
        for action in item["actions"]:
            if action.get("block_document_id") == PLACEHOLDER:
                action["block_document_id"] = block_id
    return [AutomationCore.model_validate(item) for item in data["automations"]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--block", required=True, help="notification block, TYPE/NAME")
    parser.add_argument("--print", action="store_true", help="print the filled file instead")
    args = parser.parse_args(argv)
    block_type, _, name = args.block.partition("/")
    if not name:
        print(f"canary_automation: --block {args.block!r}: write it as TYPE/NAME, e.g. "
              "slack-webhook/ops", file=sys.stderr)
        return 2
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            block = client.read_block_document_by_name(name, block_type)
        except ObjectNotFound:
            print(f"canary_automation: no notification block {args.block!r} on the Prefect "
                  "server (create it in the UI or with `prefect block create`)", file=sys.stderr)
            return 2
        made = automations(str(block.id))
        if args.print:
            import yaml

            print(yaml.safe_dump({"automations": [a.model_dump(mode="json") for a in made]},
                                 sort_keys=False))
            return 0
        for automation in made:
            print(f"created automation {automation.name!r}: {client.create_automation(automation)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

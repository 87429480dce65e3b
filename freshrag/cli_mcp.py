"""`freshrag mcp`: a Model Context Protocol server over stdio, for agents, on `freshrag serve`."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from freshrag.cli_common import ConfigOpt, _die, settings_for

UrlOpt = Annotated[str | None, typer.Option(
    "--url", envvar="FRESHRAG_URL",
    help="The running `freshrag serve` (default: http://127.0.0.1:8000).")]
KeyOpt = Annotated[str | None, typer.Option(
    "--api-key", help="Its API key (default: FRESHRAG_API_KEY, else the config's api_key).")]


def mcp(url: UrlOpt = None, api_key: KeyOpt = None, config: ConfigOpt = None) -> None:
    """Serve MCP over stdio: tools `search` and `get_document`, answered by `freshrag serve`."""
    try:
        from freshrag.integrations.mcp import build
    except ImportError as exc:
        _die(f"freshrag mcp needs the MCP package ({exc.name} is missing): "
             "pip install 'freshrag[mcp]'")
    if api_key is None:  # the key `freshrag serve` of this config requires
        key = os.environ.get("FRESHRAG_API_KEY") or settings_for(config, None).api_key
    else:
        key = api_key
    build(url or "http://127.0.0.1:8000", key).run("stdio")


def register(app: typer.Typer) -> None:
    app.command()(mcp)

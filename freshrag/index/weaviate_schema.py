"""Weaviate collection schema, compatibility check, connection URL parsing and object mapping."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from freshrag.index import IndexMisconfigured
from freshrag.model import EVERYONE, Hit, Record

VECTOR = "default"  # the one named vector of the collection: we bring it (vectorizer none)


@dataclass(frozen=True)
class Prop:
    name: str
    data_type: str  # weaviate.classes.config.DataType value
    tokenization: str | None = None  # None for non-text types
    filterable: bool = False
    searchable: bool = False
    range_filters: bool = False


# Deliberate index flags: BM25 only on `text`; exact-match (FIELD) filters on identity columns;
# range filters on the timestamps; no inverted index at all on what is only ever returned.
PROPS: tuple[Prop, ...] = (
    Prop("text", "text", "word", searchable=True),
    Prop("source", "text", "field", filterable=True),
    Prop("doc_key", "text", "field", filterable=True),
    Prop("chunk_hash", "text", "field", filterable=True),
    Prop("ordinal", "int"),
    Prop("title", "text", "word"),
    Prop("location", "text", "field"),
    Prop("page", "int"),
    Prop("source_modified_at", "number", filterable=True, range_filters=True),
    Prop("indexed_at", "number", filterable=True, range_filters=True),
    # The metadata dict, exactly, as canonical JSON: returned, never searched or filtered.
    Prop("metadata_json", "text", "field"),
    # One "key=<canonical JSON value>" entry per metadata key: the equality filter's target.
    Prop("metadata_kv", "text[]", "field", filterable=True),
    # Principals who may read the chunk, exactly (FIELD): searches filter it with ContainsAny.
    Prop("readers", "text[]", "field", filterable=True),
)
RETURN_PROPS = [p.name for p in PROPS if p.name != "metadata_kv"]


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def metadata_terms(metadata: dict[str, Any]) -> list[str]:
    """`{"team": "ops", "n": 3}` -> `['n=3', 'team="ops"']`: exact-match filter terms."""
    return sorted(f"{key}={canonical(value)}" for key, value in metadata.items())


def properties(record: Record) -> dict[str, Any]:
    props: dict[str, Any] = {
        "text": record.text, "source": record.source, "doc_key": record.doc_key,
        "chunk_hash": record.chunk_hash, "ordinal": record.ordinal, "title": record.title,
        "location": record.location, "source_modified_at": float(record.source_modified_at),
        "indexed_at": float(record.indexed_at), **metadata_properties(record.metadata),
        "readers": list(record.readers),
    }
    if record.page is not None:
        props["page"] = record.page
    return props


def metadata_properties(metadata: dict[str, Any]) -> dict[str, Any]:
    return {"metadata_json": canonical(metadata), "metadata_kv": metadata_terms(metadata)}


def to_hit(uuid: Any, props: dict[str, Any], score: float) -> Hit:
    page = props.get("page")
    return Hit(
        text=props.get("text") or "", score=float(score), source=props.get("source") or "",
        doc_key=props.get("doc_key") or "", location=props.get("location") or "",
        title=props.get("title") or "", page=int(page) if page is not None else None,
        metadata=json.loads(props.get("metadata_json") or "{}"),
        source_modified_at=float(props.get("source_modified_at") or 0.0),
        indexed_at=float(props.get("indexed_at") or 0.0), id=str(uuid),
        chunk_hash=props.get("chunk_hash") or "", ordinal=int(props.get("ordinal") or 0),
        readers=list(props.get("readers") or []),
    )


def readers_filter(principals: frozenset[str]) -> Any:
    """Objects one of `principals` (or everyone) may read, as a server-side filter."""
    from weaviate.classes.query import Filter

    return Filter.by_property("readers").contains_any(sorted(principals | {EVERYONE}))


def add_readers(col: Any, page: int) -> Any:
    """A collection written before readers were captured: add the property and give every
    object `everyone` (what it was then); a sync re-writes real readers as metadata. Returns
    the collection's config as it is now."""
    from weaviate.exceptions import UnexpectedStatusCodeError

    try:
        col.config.add_property(property_configs({"readers"})[0])
    except UnexpectedStatusCodeError as exc:
        if "already in use" not in str(exc):  # another worker added it first: fine
            raise
    for obj in col.iterator(return_properties=["readers"], cache_size=page):
        if not obj.properties.get("readers"):
            col.data.update(uuid=obj.uuid, properties={"readers": [EVERYONE]})
    return col.config.get()


def property_configs(names: set[str] | None = None) -> list[Any]:
    from weaviate.classes.config import DataType, Property, Tokenization

    return [Property(name=p.name, data_type=DataType(p.data_type),
                     tokenization=Tokenization(p.tokenization) if p.tokenization else None,
                     index_filterable=p.filterable, index_searchable=p.searchable,
                     index_range_filters=p.range_filters, skip_vectorization=True)
            for p in PROPS if names is None or p.name in names]


def schema_problems(config: Any) -> list[str]:
    """What makes an existing collection unusable for freshrag (empty when it fits)."""
    problems = []
    mt = getattr(config, "multi_tenancy_config", None)
    if mt is not None and getattr(mt, "enabled", False):
        problems.append("multi-tenancy is enabled (freshrag sends no tenant)")
    have = {p.name: p for p in config.properties}
    for want in PROPS:
        got = have.get(want.name)
        if got is None:
            problems.append(f"property {want.name!r} is missing")
            continue
        data_type = getattr(got.data_type, "value", got.data_type)
        if data_type != want.data_type:
            problems.append(f"property {want.name!r} is {data_type}, expected {want.data_type}")
        tok = getattr(got.tokenization, "value", got.tokenization)
        if want.tokenization and tok != want.tokenization:
            problems.append(f"property {want.name!r} has tokenization {tok}, "
                            f"expected {want.tokenization}")
        if want.filterable and not got.index_filterable:
            problems.append(f"property {want.name!r} is not filterable")
        if want.searchable and not got.index_searchable:
            problems.append(f"property {want.name!r} is not searchable")
    vectors = config.vector_config or {}
    if VECTOR not in vectors:
        problems.append(f"named vector {VECTOR!r} is missing (found: {sorted(vectors) or 'none'})")
    else:
        vectorizer = getattr(vectors[VECTOR].vectorizer.vectorizer, "value",
                             vectors[VECTOR].vectorizer.vectorizer)
        if vectorizer != "none":
            problems.append(f"named vector {VECTOR!r} has vectorizer {vectorizer}, expected none")
        distance = getattr(vectors[VECTOR].vector_index_config, "distance_metric", None)
        distance = getattr(distance, "value", distance)
        if distance not in (None, "cosine"):
            problems.append(f"named vector {VECTOR!r} uses distance {distance}, expected cosine")
    return problems


@dataclass(frozen=True)
class Endpoint:
    http_host: str
    http_port: int
    secure: bool
    grpc_host: str
    grpc_port: int
    cloud: bool


def parse_url(url: str, grpc_port: int) -> Endpoint:
    """`weaviate://host:8080` and `http://host:8080` are plain; `https://` is TLS on REST and gRPC.
    A Weaviate Cloud host (`*.weaviate.cloud`, `*.weaviate.network`) uses its `grpc-` twin."""
    parts = urlsplit(url)
    if parts.scheme not in ("weaviate", "http", "https") or not parts.hostname:
        raise IndexMisconfigured(f"index.url {url!r}: expected weaviate://host:port or "
                                 "http(s)://host[:port]")
    secure = parts.scheme == "https"
    host = parts.hostname
    try:
        port = parts.port or (443 if secure else 8080)
    except ValueError as exc:
        raise IndexMisconfigured(f"index.url {url!r}: {exc}") from exc
    cloud = secure and host.endswith((".weaviate.cloud", ".weaviate.network"))
    if cloud:
        return Endpoint(host, 443, True, f"grpc-{host}", 443, True)
    return Endpoint(host, port, secure, host, grpc_port, secure)

"""TEST DOUBLE: the rules of a real Weaviate 1.36.2 that the fake enforces, each one beside the
server file:line it copies (weaviate/weaviate at tag v1.36.2, see
../shared/research/weaviate-fidelity.md)."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from typing import Any


@dataclass
class Limits:
    """The server settings a test may change (small limits make big-data rules cheap to hit)."""

    # QUERY_MAXIMUM_RESULTS: usecases/config/environment.go:655-664, default 10,000 (:1447)
    query_maximum_results: int = 10_000
    # QUERY_HYBRID_MAXIMUM_RESULTS: environment.go:666-674, default 100 (:1448)
    hybrid_maximum_results: int = 100
    # QUERY_DEFAULTS_LIMIT: environment.go:618-629, default 10 (config_handler.go:382)
    default_limit: int = 10
    # AUTOSCHEMA_ENABLED: the server's default is true (environment.go:743-747); the fake's
    # default is what docker-compose.yml runs: false.
    autoschema: bool = False
    # AUTHENTICATION_APIKEY_ALLOWED_KEYS (environment.go:290-300); empty: anonymous access on.
    api_key: str = ""


class Refused(Exception):
    """A request the server refuses; the message is the server's own text."""


# Pagination ---------------------------------------------------------------------------------------
def check_total_limit(offset: int, limit: int, limits: Limits) -> int:
    """adapters/repos/db/search.go:455-468 (`getTotalLimit`, reached from SparseObjectSearch
    :93 and VectorSearch :159): offset + limit (0 = the default limit) may not exceed
    QUERY_MAXIMUM_RESULTS. Cursor reads (`after`) go through the same check."""
    limit = limit or limits.default_limit
    if offset + limit > limits.query_maximum_results:
        raise Refused(
            "explorer: list class: search: invalid pagination params: query maximum results "
            f"exceeded: the total limit calculated from the provided offset '{offset}' and limit "
            f"'{limit}' exceeds the configured value for QUERY_MAXIMUM_RESULTS "
            f"'{limits.query_maximum_results}'. If you've supplied a negative offset or limit, "
            "this may be an underflow error")
    return limit


def delete_cap(matches: int, limits: Limits) -> int:
    """adapters/repos/db/batch.go:191-235: a batch delete finds every match, deletes at most
    QUERY_MAXIMUM_RESULTS of them and reports `Matches` = all of them, uncapped."""
    return min(matches, limits.query_maximum_results)


def hybrid_pool(limit: int, limits: Limits) -> int:
    """usecases/traverser/explorer_hybrid.go:212-224: each hybrid side fetches
    max(QUERY_HYBRID_MAXIMUM_RESULTS, limit) candidates at offset 0; fusion normalises over
    that pool only (usecases/traverser/hybrid/hybrid_fusion.go:93-175)."""
    return max(limits.hybrid_maximum_results, limit)


# Tokenization -------------------------------------------------------------------------------------
def field_terms(value: str) -> list[str]:
    """entities/tokenizer/tokenizer.go:202-211 (`tokenizeField`): the whole value, leading and
    trailing Unicode whitespace trimmed. Applied when indexing (adapters/repos/db/inverted/
    analyzer.go:78-82) and to filter values (adapters/repos/db/inverted/searcher.go:649-653), so
    `"a.md"` and `"a.md "` are one term."""
    return [value.strip()]


def word_terms(value: str) -> list[str]:
    """tokenizer.go:235-245 (`tokenizeWord`): split on every rune that is neither
    unicode.IsLetter nor unicode.IsNumber (categories L* and N*), lower-cased."""
    out, cur = [], []
    for ch in value:
        if unicodedata.category(ch)[0] in "LN":
            cur.append(ch)
        elif cur:
            out.append("".join(cur).lower())
            cur = []
    if cur:
        out.append("".join(cur).lower())
    return out


# adapters/repos/db/inverted/stopwords/presets.go:20-24: the `en` preset, the default of
# invertedIndexConfig.stopwords (usecases/schema/class.go defaults).
STOPWORDS_EN = frozenset((
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for",
    "if", "in", "into", "is", "it", "no", "not", "of", "on", "or", "such", "that",
    "the", "their", "then", "there", "these", "they", "this", "to", "was", "will",
    "with",
))


def bm25_query_terms(query: str) -> Counter[str]:
    """adapters/repos/db/inverted/bm25_searcher.go:160-170,366-389: the query is word-tokenized,
    repeated terms counted (a duplicate boost) and English stopwords removed."""
    return Counter(t for t in word_terms(query) if t not in STOPWORDS_EN)


def terms(prop: dict[str, Any] | None, value: Any, *, filter_value: bool = False) -> list[Any]:
    """What the inverted index holds for a property value (or a filter value is turned into):
    text by its tokenization; other types as they are. A `word` filter drops stopwords
    (searcher.go:666-670)."""
    if prop is None or prop["dataType"][0] not in ("text", "text[]") or value is None:
        return [] if value is None else [value]
    values = value if isinstance(value, list) else [value]
    tok = prop.get("tokenization") or "word"
    out: list[Any] = []
    for v in values:
        got = field_terms(str(v)) if tok == "field" else word_terms(str(v))
        if filter_value and tok == "word":
            got = [t for t in got if t not in STOPWORDS_EN]
        out += got
    return out


# Schema -----------------------------------------------------------------------------------------
CLASS_NAME = re.compile(r"^[A-Z][_0-9A-Za-z]{0,254}$")  # entities/schema/validation.go:31


def class_name(name: str) -> str:
    """usecases/schema/class.go:53,65,110 upper-case the first letter of a class name; then
    entities/schema/validation.go:82-96 validates it (class.go:773); a failure is a 422."""
    name = name[:1].upper() + name[1:]
    if len(name) > 255:
        raise Refused(f"'{name}' is not a valid class name. Name should not be longer than "
                      "255 characters")
    if not CLASS_NAME.match(name):
        raise Refused(f"'{name}' is not a valid class name")
    return name


def check_filterable(prop: dict[str, Any] | None, name: str) -> None:
    """adapters/repos/db/inverted/searcher.go:433-438,522-527 (non-text) and :658-664 (text):
    filtering needs an inverted index on the property (filterable, or for text searchable,
    or range); entities/inverted/errors.go:37-43 is the message. `_id` is always indexed."""
    if name == "_id" or prop is None:
        return
    text = prop["dataType"][0] in ("text", "text[]")
    if prop.get("indexFilterable") or prop.get("indexRangeFilters") or (
            text and prop.get("indexSearchable")):
        return
    raise Refused(f"Filtering by property '{name}' requires inverted index. Is `indexFilterable`"
                  f" option of property '{name}' enabled? Set it to `true` or leave empty")


def check_searchable(prop: dict[str, Any] | None, name: str) -> None:
    """adapters/repos/db/inverted/bm25_searcher.go:92-95: BM25 on a property that is not
    searchable is an error (entities/inverted/errors.go:40-42)."""
    if prop is not None and prop.get("indexSearchable"):
        return
    raise Refused(f"Searching by property '{name}' requires inverted index. Is `indexSearchable`"
                  f" option of property '{name}' enabled? Set it to `true` or leave empty")


def check_tenant(schema: dict[str, Any], tenant: str) -> None:
    """adapters/repos/db/multitenancy/validator.go:120-124: a multi-tenant class refuses every
    request that names no tenant (the fake serves no tenants at all)."""
    if (schema.get("multiTenancyConfig") or {}).get("enabled"):
        if not tenant:
            raise Refused(f"class {schema['class']} has multi-tenancy enabled, but request was "
                          "without tenant")
        raise Refused(f"fake Weaviate: tenant {tenant!r} not served")


def inferred_property(name: str, value: Any) -> dict[str, Any]:
    """usecases/objects/auto_schema.go:217-250: auto-schema infers text (word tokenization,
    filterable and searchable) for strings, number for every JSON number (so ints become
    number), text[] for string lists."""
    if isinstance(value, list):
        dtype = "text[]" if all(isinstance(v, str) for v in value) else "number[]"
    elif isinstance(value, bool):
        dtype = "boolean"
    elif isinstance(value, (int, float)):
        dtype = "number"
    else:
        dtype = "text"
    prop: dict[str, Any] = {"name": name, "dataType": [dtype], "indexFilterable": True,
                            "indexSearchable": dtype.startswith("text"),
                            "indexRangeFilters": False}
    if dtype.startswith("text"):
        prop["tokenization"] = "word"
    return prop


# Auth ------------------------------------------------------------------------------------------
def check_api_key(authorization: str | None, limits: Limits) -> None:
    """adapters/handlers/grpc/v1/auth/auth.go:40-70 and usecases/auth/authentication/apikey/
    wrapper.go:45-69: with API-key auth on and anonymous access off, a request without
    `Bearer <allowed key>` is refused (gRPC: Unauthenticated, adapters/handlers/grpc/
    server.go:159-166; REST: 401)."""
    if not limits.api_key:
        return
    if not authorization or not authorization.startswith("Bearer "):
        raise Refused("unauthorized: anonymous access not enabled, please provide an auth scheme "
                      "such as OIDC or API key")
    if authorization[len("Bearer "):] != limits.api_key:
        raise Refused("unauthorized: invalid api key")

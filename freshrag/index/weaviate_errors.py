"""Weaviate client errors sorted into outages (IndexUnavailable, retried) and rejections that
only a configuration change fixes (IndexMisconfigured, never retried), each naming its setting."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from freshrag.index import IndexMisconfigured, IndexUnavailable

# Server texts that mean "fix the configuration", with the setting that fixes it. Sources
# (Weaviate v1.36.2): adapters/repos/db/search.go:463-466, entities/schema/validation.go:92-93,
# adapters/repos/db/multitenancy/validator.go:121-123, entities/inverted/errors.go:37-43.
PERMANENT_TEXTS = (
    ("query maximum results exceeded", "index.query_maximum_results",
     "set index.query_maximum_results to the server's QUERY_MAXIMUM_RESULTS"),
    ("is not a valid class name", "index.collection",
     "use a name that starts with a letter and holds only letters, digits and '_'"),
    ("multi-tenancy enabled", "index.collection",
     "the collection is multi-tenant; freshrag needs a collection without multi-tenancy"),
    ("requires inverted index", "index.collection",
     "the collection lacks an index freshrag needs; use another index.collection"),
)
# Texts that mean the collection vanished under a cached handle (deleted by someone): transient,
# the handle is dropped and the next attempt re-opens (and re-creates) it.
VANISHED_TEXTS = ("could not find class", "not present in schema")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        yield cur
        cur = cur.__cause__ or cur.__context__


def _grpc_code(exc: BaseException) -> str | None:
    import grpc

    for e in _chain(exc):
        if isinstance(e, grpc.RpcError) and callable(getattr(e, "code", None)):
            code = e.code()
            return str(getattr(code, "name", code))
    return None


def _http_status(exc: BaseException) -> int | None:
    from weaviate.exceptions import ResponseCannotBeDecodedError, UnexpectedStatusCodeError

    for e in _chain(exc):
        if isinstance(e, UnexpectedStatusCodeError | ResponseCannotBeDecodedError):
            return int(e.status_code)
    return None


def vanished(exc: BaseException) -> bool:
    text = str(exc)
    return any(t in text for t in VANISHED_TEXTS)


def classify(exc: BaseException, url: str, what: str) -> IndexUnavailable | IndexMisconfigured:
    """The error to raise for a client error `exc` met while doing `what` on Weaviate at `url`."""
    from weaviate.exceptions import AuthenticationFailedError, InsufficientPermissionsError

    text = str(exc)
    where = f"Weaviate at {url}: {what}"
    grpc_code = _grpc_code(exc)
    status = None if grpc_code else _http_status(exc)
    auth = (isinstance(exc, AuthenticationFailedError | InsufficientPermissionsError)
            or grpc_code in ("UNAUTHENTICATED", "PERMISSION_DENIED") or status in (401, 403))
    if auth:
        return IndexMisconfigured(
            f"{where} was refused (authentication): set index.api_key "
            f"(FRESHRAG_INDEX__API_KEY) to a key the server allows: {text}")
    for needle, setting, hint in PERMANENT_TEXTS:
        if needle in text:
            return IndexMisconfigured(f"{where} was refused: {hint} ({setting}): {text}")
    if vanished(exc):
        return IndexUnavailable(f"{where} failed: the collection is gone: {text}")
    if (status is not None and 400 <= status < 500 and status not in (404, 408, 429)) or (
            grpc_code == "INVALID_ARGUMENT"):
        return IndexMisconfigured(f"{where} was refused ({status or grpc_code}): check "
                                  f"index.collection and index.url: {text}")
    return IndexUnavailable(f"{where} failed: {text}")


def errors_caught() -> tuple[type[BaseException], ...]:
    """The exception types the client raises for anything that went wrong on the wire."""
    import grpc
    import httpx
    from weaviate.exceptions import WeaviateBaseError

    return (WeaviateBaseError, httpx.HTTPError, grpc.RpcError, OSError)


def message_of(error: Any) -> str:
    return str(getattr(error, "message", error))

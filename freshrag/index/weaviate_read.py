"""Reading one document's objects from Weaviate whatever its size: no offset paging, an exact
re-check of `source` and `doc_key` on what the server returns."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from freshrag.model import chunk_id

HEX = "0123456789abcdef"  # chunk hashes are hex sha256: the alphabet of the read partitions
HASH_LEN = 64
Fetch = Callable[[Any, list[str], int], list[Any]]  # (filter, properties, limit) -> objects


def doc_filter(source: str, doc_key: str) -> Any:
    from weaviate.classes.query import Filter

    return (Filter.by_property("source").equal(source)
            & Filter.by_property("doc_key").equal(doc_key))


def read_document(fetch: Fetch, source: str, doc_key: str, props: list[str], page: int,
                  id_chunk: int, allowed: Any = None) -> list[Any]:
    """Every object of one document, compared exactly on `source` and `doc_key`.

    Weaviate refuses a read whose offset + limit exceeds QUERY_MAXIMUM_RESULTS, so there is no
    offset paging: the document's objects are read in partitions by `chunk_hash` prefix
    (`like "3f*"` on a FIELD property), every read at offset 0 with `limit = page` (at most
    the server's limit). A read that comes back full is split into its 16 sub-prefixes, so a
    document of any size is read in about 1 + 16^d requests for size ~ page * 16^(d-1).
    A single chunk hash repeated more than a page's worth of times in one document (only
    possible for identical chunks) is read by its deterministic ids instead.

    The server's FIELD equality trims surrounding whitespace (`"x.md "` matches `"x.md"`), so
    what it returns is re-checked exactly here: a document never sees another one's chunks.
    `allowed` (a readers filter) goes with every read: only the chunks it admits are read."""
    want = list(dict.fromkeys([*props, "source", "doc_key", "chunk_hash"]))
    doc = doc_filter(source, doc_key)
    if allowed is not None:
        doc = doc & allowed
    objs = _partition(fetch, doc, source, doc_key, "", want, page, id_chunk)
    return [o for o in objs if o.properties.get("source") == source
            and o.properties.get("doc_key") == doc_key]


def _partition(fetch: Fetch, doc: Any, source: str, doc_key: str, prefix: str,
               props: list[str], page: int, id_chunk: int) -> list[Any]:
    from weaviate.classes.query import Filter

    where = doc & Filter.by_property("chunk_hash").like(prefix + "*") if prefix else doc
    objs = fetch(where, props, page)
    if len(objs) < page:
        return objs
    if len(prefix) >= HASH_LEN:
        return _copies(fetch, doc, source, doc_key, prefix, props, id_chunk)
    return [o for c in HEX
            for o in _partition(fetch, doc, source, doc_key, prefix + c, props, page, id_chunk)]


def _copies(fetch: Fetch, doc: Any, source: str, doc_key: str, chunk_hash: str,
            props: list[str], id_chunk: int) -> list[Any]:
    """The copies of one chunk hash in a document, by their ids chunk_id(source, key, hash, n)
    for n = 0, 1, ... until a run of ids finds none. (Objects of that hash under ids the
    engine did not make are not found here; `freshrag verify` reports such ids.)"""
    from weaviate.classes.query import Filter

    out: list[Any] = []
    start = 0
    while True:
        ids = [chunk_id(source, doc_key, chunk_hash, n) for n in range(start, start + id_chunk)]
        got = fetch(doc & Filter.by_id().contains_any(ids), props, id_chunk)
        if not got:
            return out
        out += got
        start += id_chunk

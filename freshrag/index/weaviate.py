"""The Weaviate index (weaviate-client v4): one collection per deployment, we bring the vectors."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from freshrag.index import IndexMisconfigured, IndexUnavailable
from freshrag.index.fusion import KEYWORD_DEPTH, MOST_TERMS, fuse_union, keyword_ceiling, pool_size
from freshrag.index.weaviate_errors import classify, errors_caught, message_of, vanished
from freshrag.index.weaviate_read import read_document
from freshrag.index.weaviate_schema import (
    RETURN_PROPS,
    VECTOR,
    add_readers,
    metadata_properties,
    metadata_terms,
    parse_url,
    properties,
    property_configs,
    readers_filter,
    schema_problems,
    to_hit,
)
from freshrag.model import Filters, Hit, Mode, Record, SourceStats

log = logging.getLogger("freshrag.index.weaviate")
BATCH_SIZE = 100  # objects per gRPC BatchObjects request
ID_CHUNK = 500  # ids per `id IN (...)` filter (fewer when the server's limit is lower)
PAGE = 1000  # objects per read request (fewer when the server's limit is lower)
WRITE_ATTEMPTS = 3  # tries of the objects a batch reported as failed before giving up


class WeaviateIndex:
    """The `Index` Protocol on a Weaviate collection; connects on first use."""

    def __init__(self, url: str, dim: int | None = None, collection: str = "FreshragChunk",
                 api_key: str = "", grpc_port: int = 50051, timeout_s: float = 30.0,
                 query_maximum_results: int = 10_000):
        self.url = url
        self.endpoint = parse_url(url, grpc_port)
        self.dim = dim or 0
        self.collection_name = collection
        self.api_key = api_key
        self.timeout_s = timeout_s
        # Weaviate refuses a read whose offset + limit exceeds QUERY_MAXIMUM_RESULTS and deletes
        # at most that many objects per batch delete: no request here asks for more.
        self.maximum = max(1, query_maximum_results)
        self.page = min(PAGE, self.maximum)
        self.id_chunk = min(ID_CHUNK, self.maximum)
        self._client: Any = None
        self._collection: Any = None
        self._lock = threading.Lock()

    # connection -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """Turn the client's errors into IndexUnavailable (an outage: retried) or
        IndexMisconfigured (a rejection only a setting fixes: never retried)."""
        try:
            yield
        except (IndexUnavailable, IndexMisconfigured):
            raise
        except errors_caught() as exc:
            if vanished(exc):  # the collection was deleted: re-open it on the next attempt
                self._collection = None
            raise classify(exc, self.url, what) from exc

    def _connect(self) -> Any:
        import weaviate
        from weaviate.classes.init import AdditionalConfig, Auth, Timeout

        ep = self.endpoint
        auth = Auth.api_key(self.api_key) if self.api_key else None
        config = AdditionalConfig(timeout=Timeout(init=min(self.timeout_s, 10.0),
                                                  query=self.timeout_s, insert=self.timeout_s))
        if ep.cloud:
            if auth is None:
                raise IndexMisconfigured(f"index.url {self.url!r}: Weaviate Cloud needs "
                                         "index.api_key (or FRESHRAG_INDEX__API_KEY)")
            return weaviate.connect_to_weaviate_cloud(f"https://{ep.http_host}",
                                                      auth_credentials=auth,
                                                      additional_config=config)
        return weaviate.connect_to_custom(ep.http_host, ep.http_port, ep.secure, ep.grpc_host,
                                          ep.grpc_port, ep.secure, auth_credentials=auth,
                                          additional_config=config)

    def _col(self) -> Any:
        """The collection handle: connect, create the schema if missing, check it if present."""
        if self._collection is not None:
            return self._collection
        with self._lock, self._errors("connect"):
            if self._collection is not None:
                return self._collection
            if self._client is None:
                self._client = self._connect()
            client = self._client
            if not client.collections.exists(self.collection_name):
                self._create(client)
            col = client.collections.get(self.collection_name)
            config = col.config.get()  # full: it holds multi-tenancy
            if not any(p.name == "readers" for p in config.properties):
                config = add_readers(col, self.page)
            problems = schema_problems(config)
            if problems:
                raise IndexMisconfigured(
                    f"Weaviate at {self.url}: collection {self.collection_name!r} exists with an "
                    f"incompatible schema: {'; '.join(problems)}. Use another index.collection "
                    "or delete the collection; freshrag never recreates it on its own")
            self._check_dim(col, self.dim)
            self._collection = col
            return col

    def _create(self, client: Any) -> None:
        from weaviate.classes.config import Configure, VectorDistances
        from weaviate.exceptions import UnexpectedStatusCodeError

        try:
            client.collections.create(
                self.collection_name, properties=property_configs(),
                vector_config=Configure.Vectors.self_provided(
                    name=VECTOR, vector_index_config=Configure.VectorIndex.hnsw(
                        distance_metric=VectorDistances.COSINE)))
            log.info("created Weaviate collection %s at %s", self.collection_name, self.url)
        except UnexpectedStatusCodeError as exc:
            if "already exists" not in str(exc):  # another worker won the race: fine
                raise

    def _check_dim(self, col: Any, dim: int) -> None:
        res = col.query.fetch_objects(limit=1, include_vector=True, return_properties=[])
        if not res.objects:
            return
        vec = res.objects[0].vector
        held = len(vec.get(VECTOR, []) if isinstance(vec, dict) else vec)
        if dim and held != dim:
            raise IndexUnavailable(
                f"Weaviate at {self.url}: vectors have {dim} dimensions but collection "
                f"{self.collection_name!r} holds {held}; a different model needs another "
                "index.collection")
        self.dim = held

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                with contextlib.suppress(Exception):
                    self._client.close()
            self._client = self._collection = None

    # writing ----------------------------------------------------------------------------------
    def upsert(self, records: Sequence[Record]) -> None:
        if not records:
            return
        from weaviate.classes.data import DataObject
        from weaviate.exceptions import WeaviateInsertManyAllFailedError

        dim = len(records[0].vector)
        bad = [r.id for r in records if len(r.vector) != dim]
        if bad or (self.dim and dim != self.dim):
            raise IndexUnavailable(
                f"Weaviate at {self.url}: vectors have {dim} dimensions but collection "
                f"{self.collection_name!r} holds {self.dim or dim} (objects {bad[:5]})")
        col = self._col()
        if not self.dim:
            self.dim = dim
        for i in range(0, len(records), BATCH_SIZE):
            pending = list(records[i:i + BATCH_SIZE])
            errors: dict[str, str] = {}
            for attempt in range(1, WRITE_ATTEMPTS + 1):
                objs = [DataObject(uuid=r.id, properties=properties(r),
                                   vector={VECTOR: list(r.vector)}) for r in pending]
                with self._errors(f"writing {len(objs)} objects"):
                    try:
                        res = col.data.insert_many(objs)
                        errors = {pending[n].id: message_of(e) for n, e in res.errors.items()}
                    except WeaviateInsertManyAllFailedError as exc:
                        errors = {r.id: str(exc) for r in pending}
                if not errors:
                    break
                if any(vanished(Exception(m)) for m in errors.values()):
                    self._collection = None  # deleted under us: the engine's retry re-opens it
                    raise IndexUnavailable(f"Weaviate at {self.url}: collection "
                                           f"{self.collection_name!r} is gone: "
                                           f"{next(iter(errors.values()))}")
                log.warning("Weaviate at %s: %d of %d objects failed (attempt %d of %d): %s",
                            self.url, len(errors), len(pending), attempt, WRITE_ATTEMPTS,
                            next(iter(errors.values())))
                pending = [r for r in pending if r.id in errors]
            if errors:
                named = ", ".join(f"{i}: {m}" for i, m in list(errors.items())[:5])
                more = f" and {len(errors) - 5} more" if len(errors) > 5 else ""
                what = f"writing {len(errors)} objects ({WRITE_ATTEMPTS} attempts)"
                refused = classify(Exception(f"{named}{more}"), self.url, what)
                if isinstance(refused, IndexMisconfigured):  # e.g. a multi-tenant collection
                    raise refused
                raise IndexUnavailable(f"Weaviate at {self.url}: {len(errors)} objects were not "
                                       f"written after {WRITE_ATTEMPTS} attempts: {named}{more}")

    def _delete_where(self, where: Any, what: str) -> int:
        """One filter's objects deleted; the server deletes at most QUERY_MAXIMUM_RESULTS per
        call but reports every match, so repeat until a call deletes all it matched."""
        total = 0
        while True:
            with self._errors(what):
                res = self._col().data.delete_many(where=where)
            if res.failed:
                raise IndexUnavailable(f"Weaviate at {self.url}: {what}: {res.failed} of "
                                       f"{res.matches} objects were not deleted")
            total += int(res.successful)
            if not 0 < res.successful < res.matches:
                return total

    def delete(self, ids: Sequence[str]) -> None:
        self._delete_ids(ids)

    def _delete_ids(self, ids: Sequence[str]) -> int:
        from weaviate.classes.query import Filter

        done = 0
        for i in range(0, len(ids), self.id_chunk):
            part = list(ids[i:i + self.id_chunk])
            done += self._delete_where(Filter.by_id().contains_any(part),
                                       f"deleting {len(part)} ids")
        return done

    def delete_document(self, source: str, doc_key: str) -> int:
        """By id, never by filter: FIELD equality trims whitespace on the server, so a filter on
        `doc_key == "x.md"` would also delete the chunks of `"x.md "`."""
        return self._delete_ids(list(self.ids_for(source, doc_key)))

    def update_metadata(self, ids: Sequence[str], metadata: dict[str, Any],
                        source_modified_at: float, readers: Sequence[str] | None = None
                        ) -> None:
        """PATCH each object's metadata properties; its vector is neither sent nor touched."""
        from weaviate.exceptions import UnexpectedStatusCodeError

        if not ids:
            return
        col = self._col()
        props = {**metadata_properties(metadata), "source_modified_at": float(source_modified_at)}
        if readers is not None:
            props["readers"] = list(readers)
        for uuid in ids:
            with self._errors(f"updating metadata of {uuid}"):
                try:
                    col.data.update(uuid=uuid, properties=props)
                except UnexpectedStatusCodeError as exc:
                    if exc.status_code != 404:  # unknown ids are ignored, like delete()
                        raise

    # reading ----------------------------------------------------------------------------------
    def _fetch(self, where: Any, props: list[str], limit: int, vector: bool = False
               ) -> list[Any]:
        """One read of at most `limit` objects, at offset 0 (never past the server's limit)."""
        col = self._col()
        with self._errors("reading objects"):
            res = col.query.fetch_objects(filters=where, limit=limit, return_properties=props,
                                          include_vector=[VECTOR] if vector else False)
        return list(res.objects)

    def _document(self, source: str, doc_key: str, props: list[str],
                  principals: frozenset[str] | None = None) -> list[Any]:
        """Every object of one document, compared exactly (see weaviate_read); with principals,
        only those they may read (the filter goes with every read)."""
        allowed = readers_filter(principals) if principals is not None else None
        return read_document(self._fetch, source, doc_key, props, self.page, self.id_chunk,
                             allowed)

    def _scan(self, props: list[str]) -> Iterator[Any]:
        """Every object of the collection (cursor over ids: no limit, no filter)."""
        col = self._col()
        with self._errors("scanning the collection"):
            yield from col.iterator(return_properties=props, cache_size=self.page)

    def ids_for(self, source: str, doc_key: str) -> dict[str, str]:
        objs = self._document(source, doc_key, ["chunk_hash"])
        return {str(o.uuid): o.properties.get("chunk_hash") or "" for o in objs}

    def vectors(self, ids: Sequence[str]) -> dict[str, list[float]]:
        from weaviate.classes.query import Filter

        out: dict[str, list[float]] = {}
        for i in range(0, len(ids), self.id_chunk):
            part = list(ids[i:i + self.id_chunk])
            for o in self._fetch(Filter.by_id().contains_any(part), [], len(part), vector=True):
                vec = o.vector.get(VECTOR) if isinstance(o.vector, dict) else o.vector
                if vec is not None:
                    out[str(o.uuid)] = [float(x) for x in vec]
        return out

    def get_document(self, source: str, doc_key: str,
                     filters: Filters | None = None) -> list[Hit]:
        objs = self._document(source, doc_key, RETURN_PROPS,
                              filters.principals if filters is not None else None)
        return sorted((to_hit(o.uuid, o.properties, 0.0) for o in objs), key=lambda h: h.ordinal)

    def documents(self, source: str) -> dict[str, int]:
        counts: dict[str, int] = {}
        for o in self._scan(["source", "doc_key"]):
            if o.properties.get("source") == source:
                key = o.properties.get("doc_key") or ""
                counts[key] = counts.get(key, 0) + 1
        return counts

    def stats(self) -> dict[str, SourceStats]:
        out: dict[str, SourceStats] = {}
        docs: dict[str, set[str]] = {}
        for o in self._scan(["source", "doc_key"]):
            source = o.properties.get("source") or ""
            out.setdefault(source, SourceStats()).chunks += 1
            docs.setdefault(source, set()).add(o.properties.get("doc_key") or "")
        for source, keys in docs.items():
            out[source].documents = len(keys)
        return out

    # search -----------------------------------------------------------------------------------
    @staticmethod
    def _where(filters: Filters | None) -> Any:
        from weaviate.classes.query import Filter

        if filters is None:
            return None
        parts = []
        if filters.source:
            parts.append(Filter.by_property("source").equal(filters.source))
        if filters.doc_key_prefix:
            # `like` has no escape: `*` and `?` in the prefix widen the match, _matches narrows.
            parts.append(Filter.by_property("doc_key").like(filters.doc_key_prefix + "*"))
        if filters.metadata:
            parts.append(Filter.by_property("metadata_kv").contains_all(
                metadata_terms(filters.metadata)))
        if filters.principals is not None:
            parts.append(readers_filter(filters.principals))
        return Filter.all_of(parts) if len(parts) > 1 else (parts[0] if parts else None)

    @staticmethod
    def _matches(hit: Hit, filters: Filters | None) -> bool:
        if filters is None:
            return True
        if filters.source and hit.source != filters.source:
            return False
        if filters.doc_key_prefix and not hit.doc_key.startswith(filters.doc_key_prefix):
            return False
        return all(hit.metadata.get(k) == v for k, v in filters.metadata.items())

    def _near(self, col: Any, vec: list[float], limit: int, where: Any,
              filters: Filters | None) -> list[Hit]:
        from weaviate.classes.query import MetadataQuery

        with self._errors("vector search"):
            res = col.query.near_vector(vec, target_vector=VECTOR, limit=limit, filters=where,
                                        return_properties=RETURN_PROPS,
                                        return_metadata=MetadataQuery(distance=True))
        # Cosine distance d in [0, 2]: similarity 1 - d, as the embedded index reports.
        hits = [to_hit(o.uuid, o.properties, 1.0 - (o.metadata.distance or 0.0))
                for o in res.objects]
        return [h for h in hits if self._matches(h, filters)]

    def _bm25(self, col: Any, text: str, limit: int, where: Any) -> list[Hit]:
        """BM25 hits as the server returns them (the caller re-checks the filters)."""
        from weaviate.classes.query import MetadataQuery

        with self._errors("keyword search"):
            res = col.query.bm25(text, query_properties=["text"], limit=limit, filters=where,
                                 return_properties=RETURN_PROPS,
                                 return_metadata=MetadataQuery(score=True))
        return [to_hit(o.uuid, o.properties, o.metadata.score or 0.0) for o in res.objects]

    def _hybrid(self, col: Any, text: str, vec: list[float], fetch: int, alpha: float,
                where: Any, filters: Filters | None) -> list[Hit]:
        """The embedded index's hybrid (freshrag/index/fusion.py): a near_vector pool, a deeper
        bm25 list, stored vectors for keyword-only candidates, both scores for every candidate.
        Every request stays within QUERY_MAXIMUM_RESULTS, the deeper list capped if need be."""
        pool = min(pool_size(fetch), self.maximum)
        by_vector = self._near(col, vec, pool, where, filters)
        deep: list[Hit] = []
        full, ceiling = False, 0.0
        if text.strip():
            depth = min(KEYWORD_DEPTH * pool, self.maximum)
            raw = self._bm25(col, text, depth, where)
            full = len(raw) >= depth  # more keyword hits may lie past its end
            deep = [h for h in raw if self._matches(h, filters)]
            # the server's best for each term alone (the filters narrow, never raise it)
            ceiling = keyword_ceiling(text, lambda term: next(
                (h.score for h in self._bm25(col, term, 1, where)), 0.0), MOST_TERMS,
                raw[0].score if raw else None)
        return fuse_union(by_vector, deep, pool, vec, self.vectors, alpha, ceiling,
                          deep_full=full)

    def search(self, text: str, vector: Sequence[float] | None, k: int,
               mode: Mode = Mode.hybrid, alpha: float = 0.5,
               filters: Filters | None = None) -> list[Hit]:
        if k <= 0:
            return []
        if mode is not Mode.keyword and vector is None:
            raise ValueError(f"{mode.value} search needs a query vector")
        if mode is Mode.keyword and not text.strip():
            return []
        col = self._col()
        where = self._where(filters)
        fetch = k * 4 if filters and (filters.doc_key_prefix or filters.metadata) else k
        fetch = min(fetch, self.maximum)
        vec = [float(x) for x in vector] if vector is not None else []
        if mode is Mode.keyword:
            hits = [h for h in self._bm25(col, text, fetch, where) if self._matches(h, filters)]
        elif mode is Mode.vector:
            hits = self._near(col, vec, fetch, where, filters)
        else:
            hits = self._hybrid(col, text, vec, fetch, alpha, where, filters)
        return hits[:k]

    def optimize(self) -> None:
        """Weaviate compacts and maintains its indexes by itself."""

"""TEST DOUBLE: the gRPC side of the Weaviate fake (Search, BatchObjects, BatchDelete), with the
server's rules from weaviate_rules applied where the server applies them."""

from __future__ import annotations

import struct
import uuid as uuidlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import grpc
from weaviate.proto.v1 import (
    base_pb2,
    batch_delete_pb2,
    batch_pb2,
    properties_pb2,
    search_get_pb2,
    weaviate_pb2_grpc,
)

from tests.fakes.weaviate_rules import (
    Refused,
    check_api_key,
    check_tenant,
    check_total_limit,
    delete_cap,
    hybrid_pool,
    inferred_property,
)
from tests.fakes.weaviate_store import Collection, Obj, with_defaults

if TYPE_CHECKING:
    from tests.fakes.weaviate_fake import FakeWeaviate


def floats(data: bytes) -> list[float]:
    return list(struct.unpack(f"<{len(data) // 4}f", data))


def pack(vec: list[float]) -> bytes:
    return struct.pack(f"<{len(vec)}f", *vec)


@dataclass
class Faults:
    """Failures to inject: per-object batch errors, whole-request gRPC errors."""

    object_errors: dict[str, int] = field(default_factory=dict)  # uuid -> times to fail
    grpc_errors: int = 0  # the next N gRPC calls fail with `grpc_status`
    # UNAVAILABLE is retried by the client itself with 1 s, 2 s, 4 s ... backoff (slow tests)
    grpc_status: grpc.StatusCode = grpc.StatusCode.INTERNAL


def _value(v: Any, dtype: str) -> properties_pb2.Value:
    if v is None:
        return properties_pb2.Value(null_value=0)
    if dtype == "int":
        return properties_pb2.Value(int_value=int(v))
    if dtype == "number":
        return properties_pb2.Value(number_value=float(v))
    if dtype == "boolean":
        return properties_pb2.Value(bool_value=bool(v))
    if dtype == "text[]":
        return properties_pb2.Value(
            list_value=properties_pb2.ListValue(text_values=properties_pb2.TextValues(values=v)))
    return properties_pb2.Value(text_value=str(v))


def _props_in(obj: Any) -> dict[str, Any]:
    """BatchObject.Properties -> plain dict (Struct scalars and typed arrays)."""
    p = obj.properties
    out: dict[str, Any] = {}
    for key, val in p.non_ref_properties.fields.items():
        kind = val.WhichOneof("kind")
        out[key] = None if kind == "null_value" else getattr(val, kind)
    for arr in (*p.text_array_properties, *p.int_array_properties,
                *p.boolean_array_properties):
        out[arr.prop_name] = list(arr.values)
    for arr in p.number_array_properties:
        out[arr.prop_name] = floats(arr.values_bytes) if arr.values_bytes else list(arr.values)
    for name in p.empty_list_props:
        out[name] = []
    return out


def coerce(props: dict[str, Any], types: dict[str, str]) -> dict[str, Any]:
    """Struct numbers arrive as floats: an integral float is accepted for an int property
    (usecases/objects/validation/properties_validation.go:419-444) and stored as an int."""
    return {k: int(v) if types.get(k) == "int" and isinstance(v, float) else v
            for k, v in props.items()}


class Servicer(weaviate_pb2_grpc.WeaviateServicer):
    """Subclass of the client's own generated servicer: Search, BatchObjects, BatchDelete."""

    def __init__(self, fake: FakeWeaviate):
        self.fake = fake

    @contextmanager
    def _call(self, name: str, request: Any, context: Any) -> Iterator[None]:
        """Log, authenticate, inject faults; a Refused becomes the status the server sends: a
        plain Go error is UNKNOWN (adapters/handlers/grpc/v1/service.go returns it as is)."""
        self.fake.calls.append((name, request))
        faults = self.fake.faults
        if faults.grpc_errors > 0:
            faults.grpc_errors -= 1
            context.abort(faults.grpc_status, "fake: injected outage")
        md = dict(context.invocation_metadata())
        try:
            check_api_key(md.get("authorization"), self.fake.limits)
        except Refused as exc:  # adapters/handlers/grpc/server.go:159-166
            context.abort(grpc.StatusCode.UNAUTHENTICATED, f"extract auth: {exc}")
        try:
            with self.fake.store.lock:
                yield
        except Refused as exc:
            context.abort(grpc.StatusCode.UNKNOWN, str(exc))

    def _collection(self, name: str, tenant: str = "") -> Collection:
        """adapters/handlers/grpc/v1/service.go:323-327,359-361: an unknown class is an error."""
        try:
            col = self.fake.store.get(name)
        except KeyError:
            raise Refused(f"could not find class {name} in schema") from None
        check_tenant(col.schema, tenant)
        return col

    def BatchObjects(self, request: Any, context: Any) -> Any:  # noqa: N802
        errors = []
        with self._call("BatchObjects", request, context):
            for index, obj in enumerate(request.objects):
                problem = self._put(obj)
                if problem:  # adapters/handlers/grpc/v1/batch/handler.go:95-128: per object
                    errors.append(batch_pb2.BatchObjectsReply.BatchError(index=index,
                                                                         error=problem))
        return batch_pb2.BatchObjectsReply(took=0.001, errors=errors)

    def _put(self, obj: Any) -> str | None:
        props = _props_in(obj)
        try:
            col = self.fake.store.get(obj.collection)
        except KeyError:
            if not self.fake.limits.autoschema:  # usecases/objects/batch_add.go:196-198
                return f"class '{obj.collection}' not present in schema"
            # batch/parse.go:46-57, usecases/objects/auto_schema.go:116-131: created on write
            col = self.fake.store.create(with_defaults({
                "class": obj.collection, "vectorizer": "none",
                "properties": [inferred_property(k, v) for k, v in props.items()]}))
        try:
            check_tenant(col.schema, obj.tenant)
        except Refused as exc:
            return str(exc)
        faults = self.fake.faults.object_errors
        if faults.get(obj.uuid, 0) > 0:
            faults[obj.uuid] -= 1
            return "fake: injected object failure"
        vectors = {v.name or "default": floats(v.vector_bytes) for v in obj.vectors}
        if obj.vector_bytes:
            vectors["default"] = floats(obj.vector_bytes)
        problem = self._dim_problem(col, vectors)
        if problem:
            return problem
        col.objects[obj.uuid] = Obj(obj.uuid, coerce(props, col.types()), vectors)
        return None

    @staticmethod
    def _dim_problem(col: Collection, vectors: dict[str, list[float]]) -> str | None:
        for name, vec in vectors.items():
            held = next((len(o.vectors[name]) for o in col.objects.values()
                         if name in o.vectors), None)
            if held is not None and held != len(vec):
                return (f"insert to vector index: new node has a vector with length {len(vec)}."
                        f" Existing nodes have vectors with length {held}")
        return None

    def BatchDelete(self, request: Any, context: Any) -> Any:  # noqa: N802
        with self._call("BatchDelete", request, context):
            col = self._collection(request.collection, request.tenant)
            hits = col.select(request.filters)
            todo = hits[:delete_cap(len(hits), self.fake.limits)]
            if not request.dry_run:
                for o in todo:
                    del col.objects[o.id]
        return batch_delete_pb2.BatchDeleteReply(took=0.001, matches=len(hits),
                                                 successful=len(todo), failed=0)

    def Search(self, request: Any, context: Any) -> Any:  # noqa: N802
        with self._call("Search", request, context):
            col = self._collection(request.collection, request.tenant)
            limit = check_total_limit(request.offset, request.limit, self.fake.limits)
            ranked = self._rank(col, request, limit)
            ranked = ranked[request.offset:request.offset + limit]
            results = [self._result(col, request, o, dist, score) for o, dist, score in ranked]
        return search_get_pb2.SearchReply(took=0.001, results=results)

    def _rank(self, col: Collection, r: Any,
              limit: int) -> list[tuple[Obj, float | None, float | None]]:
        objs = col.select(r.filters if r.HasField("filters") else None)
        if r.after:  # adapters/repos/db/shard_read.go:597-637: by uuid, from `after`
            objs = [o for o in objs if o.id > r.after]
        if r.HasField("near_vector"):
            nv = r.near_vector
            target, vec = self._vector_of(nv)
            return [(o, d, None) for o, d in col.near(objs, target, vec)]
        if r.HasField("bm25_search"):
            b = r.bm25_search
            return [(o, None, s) for o, s in col.bm25(objs, b.query, list(b.properties))]
        if r.HasField("hybrid_search"):
            h = r.hybrid_search
            alpha = h.alpha_param if h.HasField("alpha_param") else h.alpha
            pool = hybrid_pool(limit, self.fake.limits)
            check_total_limit(0, pool, self.fake.limits)  # each side is a search of its own
            target, vec = self._vector_of(h.near_vector if h.HasField("near_vector") else h)
            # usecases/traverser/explorer_hybrid.go:238-241,251,349: alpha 1 runs no keyword
            # search, alpha 0 no vector search.
            near = col.near(objs, target, vec)[:pool] if alpha > 0 else []
            kw = (col.bm25(objs, h.query, list(h.properties))[:pool]
                  if alpha < 1 and h.query else [])
            return self._fuse(near, kw, alpha)
        return [(o, None, None) for o in objs]

    @staticmethod
    def _vector_of(msg: Any) -> tuple[str, list[float]]:
        targets = list(msg.targets.target_vectors) if msg.HasField("targets") else []
        target = (targets or list(msg.target_vectors) or ["default"])[0]
        for v in msg.vectors:
            return v.name or target, floats(v.vector_bytes)
        return target, floats(msg.vector_bytes)

    @staticmethod
    def _fuse(vec: list[tuple[Obj, float]], kw: list[tuple[Obj, float]],
              alpha: float) -> list[tuple[Obj, float | None, float | None]]:
        """relativeScore (usecases/traverser/hybrid/hybrid_fusion.go:93-175): min-max normalise
        each candidate set (vector score = 1 - distance; all equal: the weight itself), then
        alpha * vector + (1 - alpha) * bm25."""
        def norm(pairs: list[tuple[Obj, float]], weight: float) -> dict[str, float]:
            if not pairs:
                return {}
            vals = [s for _, s in pairs]
            lo, hi = min(vals), max(vals)
            return {o.id: weight if hi == lo else weight * (s - lo) / (hi - lo) for o, s in pairs}

        v = norm([(o, 1.0 - d) for o, d in vec], alpha)
        k = norm(kw, 1 - alpha)
        by_id = {o.id: o for o, _ in [*vec, *kw]}
        scored = [(v.get(i, 0.0) + k.get(i, 0.0), i) for i in by_id]
        scored.sort(key=lambda pair: (-pair[0], pair[1]))
        return [(by_id[i], None, s) for s, i in scored]

    @staticmethod
    def _result(col: Collection, r: Any, o: Obj, dist: float | None,
                score: float | None) -> Any:
        types = col.types()
        pr = r.properties
        names = (list(types) if pr.return_all_nonref_properties
                 else list(pr.non_ref_properties)) if r.HasField("properties") else list(types)
        props = properties_pb2.Properties(fields={n: _value(o.props.get(n), types.get(n, "text"))
                                                  for n in names})
        md = search_get_pb2.MetadataResult(id=o.id, id_as_bytes=uuidlib.UUID(o.id).bytes)
        if r.metadata.vector and "default" in o.vectors:
            md.vector_bytes = pack(o.vectors["default"])
        for name in r.metadata.vectors:
            if name in o.vectors:
                md.vectors.append(base_pb2.Vectors(
                    name=name, vector_bytes=pack(o.vectors[name]),
                    type=base_pb2.Vectors.VECTOR_TYPE_SINGLE_FP32))
        if dist is not None and r.metadata.distance:
            md.distance, md.distance_present = dist, True
        if score is not None and r.metadata.score:
            md.score, md.score_present = score, True
        return search_get_pb2.SearchResult(
            properties=search_get_pb2.PropertiesResult(non_ref_props=props), metadata=md)


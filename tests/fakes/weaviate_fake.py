"""TEST DOUBLE: a loopback Weaviate (REST via pytest-httpserver, gRPC via grpc.server).

It serves what freshrag's adapter uses of weaviate-client v4 and records every request, so
tests can assert on the wire (batch sizes, filters, properties, vectors). Not a Weaviate.
"""

from __future__ import annotations

import json
import re
import socket
import struct
import uuid as uuidlib
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from pytest_httpserver import HTTPServer
from weaviate.proto.v1 import (
    base_pb2,
    batch_delete_pb2,
    batch_pb2,
    health_weaviate_pb2,
    properties_pb2,
    search_get_pb2,
    weaviate_pb2_grpc,
)
from werkzeug import Request, Response

from tests.fakes.weaviate_store import Collection, Obj, Store, with_defaults

VERSION = "1.36.2"  # the version docker-compose.yml pins
MAX_RESULTS = 10_000  # QUERY_MAXIMUM_RESULTS


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


# gRPC ---------------------------------------------------------------------------------------------
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


def _coerce(props: dict[str, Any], types: dict[str, str]) -> dict[str, Any]:
    """Struct numbers arrive as floats: store ints as ints, like the server's typed storage."""
    return {k: int(v) if types.get(k) == "int" and isinstance(v, float) else v
            for k, v in props.items()}


class Servicer(weaviate_pb2_grpc.WeaviateServicer):
    """Subclass of the client's own generated servicer: Search, BatchObjects, BatchDelete."""

    def __init__(self, fake: FakeWeaviate):
        self.fake = fake

    def _enter(self, name: str, request: Any, context: Any) -> None:
        self.fake.calls.append((name, request))
        faults = self.fake.faults
        if faults.grpc_errors > 0:
            faults.grpc_errors -= 1
            context.abort(faults.grpc_status, "fake: injected outage")

    def _collection(self, name: str, context: Any) -> Collection:
        try:
            return self.fake.store.get(name)
        except KeyError:
            context.abort(grpc.StatusCode.NOT_FOUND, f"class {name!r} not found")
            raise

    def BatchObjects(self, request: Any, context: Any) -> Any:  # noqa: N802
        self._enter("BatchObjects", request, context)
        errors = []
        with self.fake.store.lock:
            for index, obj in enumerate(request.objects):
                col = self._collection(obj.collection, context)
                faults = self.fake.faults.object_errors
                if faults.get(obj.uuid, 0) > 0:
                    faults[obj.uuid] -= 1
                    errors.append(batch_pb2.BatchObjectsReply.BatchError(
                        index=index, error="fake: injected object failure"))
                    continue
                vectors = {v.name or "default": floats(v.vector_bytes) for v in obj.vectors}
                if obj.vector_bytes:
                    vectors["default"] = floats(obj.vector_bytes)
                problem = self._dim_problem(col, vectors)
                if problem:
                    errors.append(batch_pb2.BatchObjectsReply.BatchError(index=index,
                                                                         error=problem))
                    continue
                col.objects[obj.uuid] = Obj(obj.uuid, _coerce(_props_in(obj), col.types()),
                                            vectors)
        return batch_pb2.BatchObjectsReply(took=0.001, errors=errors)

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
        self._enter("BatchDelete", request, context)
        with self.fake.store.lock:
            col = self._collection(request.collection, context)
            hits = col.select(request.filters)[:MAX_RESULTS]
            if not request.dry_run:
                for o in hits:
                    del col.objects[o.id]
        return batch_delete_pb2.BatchDeleteReply(took=0.001, matches=len(hits),
                                                 successful=len(hits), failed=0)

    def Search(self, request: Any, context: Any) -> Any:  # noqa: N802
        self._enter("Search", request, context)
        with self.fake.store.lock:
            col = self._collection(request.collection, context)
            ranked = self._rank(col, request)
        limit = request.limit or 10
        ranked = ranked[request.offset:request.offset + limit]
        return search_get_pb2.SearchReply(took=0.001, results=[
            self._result(col, request, o, dist, score) for o, dist, score in ranked])

    def _rank(self, col: Collection, r: Any) -> list[tuple[Obj, float | None, float | None]]:
        objs = col.select(r.filters if r.HasField("filters") else None)
        if r.after:
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
            target, vec = self._vector_of(h.near_vector if h.HasField("near_vector") else h)
            return self._fuse(col.near(objs, target, vec),
                              col.bm25(objs, h.query, list(h.properties)) if h.query else [],
                              alpha)
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
        """relativeScore fusion: min-max normalise each list, alpha * vector + (1-alpha) * bm25."""
        def norm(pairs: list[tuple[Obj, float]], higher_better: bool) -> dict[str, float]:
            if not pairs:
                return {}
            vals = [s for _, s in pairs]
            lo, hi = min(vals), max(vals)
            span = hi - lo
            return {o.id: 1.0 if span == 0 else ((s - lo) if higher_better else (hi - s)) / span
                    for o, s in pairs}

        v, k = norm(vec, False), norm(kw, True)
        by_id = {o.id: o for o, _ in [*vec, *kw]}
        scored = [(alpha * v.get(i, 0.0) + (1 - alpha) * k.get(i, 0.0), i) for i in by_id]
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


# REST ---------------------------------------------------------------------------------------------
class FakeWeaviate:
    """Start with `FakeWeaviate().start()`; `url` and `grpc_port` are what the adapter needs."""

    def __init__(self) -> None:
        self.store = Store()
        self.faults = Faults()
        self.calls: list[tuple[str, Any]] = []  # gRPC (method, request message)
        self.http = HTTPServer(host="127.0.0.1", port=0, threaded=True)
        self.grpc_port = free_port()
        self.server: Any = None

    @property
    def url(self) -> str:
        return f"weaviate://127.0.0.1:{self.http.port}"

    def start(self) -> FakeWeaviate:
        h = self.http
        h.expect_request("/v1/meta").respond_with_json(
            {"version": VERSION, "modules": {}, "hostname": "http://[::]:8080",
             "grpcMaxMessageSize": 104858000})
        h.expect_request("/v1/.well-known/ready").respond_with_data("")
        h.expect_request("/v1/.well-known/live").respond_with_data("")
        h.expect_request("/v1/.well-known/openid-configuration").respond_with_data(
            "", status=404)
        h.expect_request("/v1/schema", method="POST").respond_with_handler(self._create)
        h.expect_request("/v1/schema", method="GET").respond_with_handler(self._schema)
        h.expect_request(re.compile(r"^/v1/schema/[^/]+$")).respond_with_handler(self._class)
        h.expect_request(re.compile(r"^/v1/objects/[^/]+/[^/]+$"),
                         method="PATCH").respond_with_handler(self._patch)
        h.start()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        weaviate_pb2_grpc.add_WeaviateServicer_to_server(Servicer(self), self.server)
        health = grpc.unary_unary_rpc_method_handler(
            lambda req, ctx: health_weaviate_pb2.WeaviateHealthCheckResponse(
                status=health_weaviate_pb2.WeaviateHealthCheckResponse.SERVING),
            request_deserializer=health_weaviate_pb2.WeaviateHealthCheckRequest.FromString,
            response_serializer=health_weaviate_pb2.WeaviateHealthCheckResponse.SerializeToString)
        self.server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("grpc.health.v1.Health", {"Check": health}),))
        self.server.add_insecure_port(f"127.0.0.1:{self.grpc_port}")
        self.server.start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop(grace=None)
        if self.http.is_running():
            self.http.clear()
            self.http.stop()

    # request log helpers ------------------------------------------------------------------------
    def grpc_calls(self, name: str) -> list[Any]:
        return [req for method, req in self.calls if method == name]

    def rest_calls(self, method: str, prefix: str) -> list[Request]:
        return [req for req, _ in self.http.log
                if req.method == method and req.path.startswith(prefix)]

    def objects(self, collection: str = "FreshragChunk") -> dict[str, Obj]:
        with self.store.lock:
            return dict(self.store.get(collection).objects)

    # REST handlers ------------------------------------------------------------------------------
    def _create(self, request: Request) -> Response:
        cls = json.loads(request.data)
        with self.store.lock:
            try:
                self.store.get(cls["class"])
            except KeyError:
                self.store.collections[cls["class"]] = Collection(with_defaults(cls))
                return Response(json.dumps(self.store.get(cls["class"]).schema), 200,
                                content_type="application/json")
        return self._error(422, f"class name {cls['class']!r} already exists")

    def _schema(self, request: Request) -> Response:
        with self.store.lock:
            classes = [c.schema for c in self.store.collections.values()]
        return Response(json.dumps({"classes": classes}), 200, content_type="application/json")

    def _class(self, request: Request) -> Response:
        name = request.path.rsplit("/", 1)[1]
        with self.store.lock:
            try:
                col = self.store.get(name)
            except KeyError:
                return Response("", 404)
            if request.method == "DELETE":
                self.store.collections = {k: v for k, v in self.store.collections.items()
                                          if v is not col}
                return Response("", 200)
            return Response(json.dumps(col.schema), 200, content_type="application/json")

    def _patch(self, request: Request) -> Response:
        _, _, _, name, uuid = request.path.split("/")
        body = json.loads(request.data)
        with self.store.lock:
            try:
                col = self.store.get(name)
                obj = col.objects[uuid]
            except KeyError:
                return Response("", 404)
            obj.props.update(_coerce(body.get("properties", {}), col.types()))
            if body.get("vectors") or body.get("vector"):
                obj.vectors.update(body.get("vectors") or {"default": body["vector"]})
        return Response("", 204)

    @staticmethod
    def _error(status: int, message: str) -> Response:
        return Response(json.dumps({"error": [{"message": message}]}), status,
                        content_type="application/json")

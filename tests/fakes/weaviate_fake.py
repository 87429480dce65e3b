"""TEST DOUBLE: a loopback Weaviate (REST via pytest-httpserver, gRPC via grpc.server).

It serves what freshrag's adapter uses of weaviate-client v4, records every request so tests
can assert on the wire (batch sizes, filters, properties, vectors), and enforces the server
rules of weaviate_rules (limits, tokenization, index flags, names, auth, tenants). Not a
Weaviate. `python -m tests.fakes.weaviate_server` runs it on its own.
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Callable
from concurrent import futures
from typing import Any

import grpc
from pytest_httpserver import HTTPServer
from weaviate.proto.v1 import health_weaviate_pb2, weaviate_pb2_grpc
from werkzeug import Request, Response

from tests.fakes.weaviate_grpc import Faults, Servicer, coerce, floats, pack
from tests.fakes.weaviate_rules import Limits, Refused, check_api_key, class_name
from tests.fakes.weaviate_store import Obj, Store, with_defaults

__all__ = ["FakeWeaviate", "Faults", "Limits", "floats", "free_port", "pack"]
VERSION = "1.36.2"  # the version docker-compose.yml pins
Handler = Callable[[Request], Response]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# REST ---------------------------------------------------------------------------------------------
class FakeWeaviate:
    """Start with `FakeWeaviate().start()`; `url` and `grpc_port` are what the adapter needs."""

    def __init__(self, limits: Limits | None = None, port: int = 0, grpc_port: int = 0,
                 host: str = "127.0.0.1") -> None:
        self.store = Store()
        self.faults = Faults()
        self.limits = limits or Limits()
        self.calls: list[tuple[str, Any]] = []  # gRPC (method, request message)
        self.host = host
        self.http = HTTPServer(host=host, port=port, threaded=True)
        self.grpc_port = grpc_port or free_port()
        self.server: Any = None

    @property
    def url(self) -> str:
        return f"weaviate://{self.host}:{self.http.port}"

    def start(self) -> FakeWeaviate:
        h = self.http
        # /v1/.well-known/* answer without a key (the client probes them before it has one)
        h.expect_request("/v1/.well-known/ready").respond_with_data("")
        h.expect_request("/v1/.well-known/live").respond_with_data("")
        h.expect_request("/v1/.well-known/openid-configuration").respond_with_data(
            "", status=404)
        h.expect_request("/v1/meta").respond_with_handler(self._auth(self._meta))
        h.expect_request("/v1/schema", method="POST").respond_with_handler(
            self._auth(self._create))
        h.expect_request("/v1/schema", method="GET").respond_with_handler(
            self._auth(self._schema))
        h.expect_request(re.compile(r"^/v1/schema/[^/]+/properties$"),
                         method="POST").respond_with_handler(self._auth(self._add_property))
        h.expect_request(re.compile(r"^/v1/schema/[^/]+$")).respond_with_handler(
            self._auth(self._class))
        h.expect_request(re.compile(r"^/v1/objects/[^/]+/[^/]+$"),
                         method="PATCH").respond_with_handler(self._auth(self._patch))
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
        self.server.add_insecure_port(f"{self.host}:{self.grpc_port}")
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
    def _auth(self, handler: Handler) -> Handler:
        """weaviate_rules.check_api_key on every REST call but /v1/.well-known/*: a 401."""
        def wrapped(request: Request) -> Response:
            try:
                check_api_key(request.headers.get("Authorization"), self.limits)
            except Refused as exc:
                return Response(json.dumps({"code": 401, "message": str(exc)}), 401,
                                content_type="application/json")
            return handler(request)
        return wrapped

    def _meta(self, request: Request) -> Response:
        return Response(json.dumps({"version": VERSION, "modules": {},
                                    "hostname": "http://[::]:8080",
                                    "grpcMaxMessageSize": 104858000}), 200,
                        content_type="application/json")

    def _create(self, request: Request) -> Response:
        cls = json.loads(request.data)
        try:
            cls["class"] = class_name(cls.get("class") or "")
        except Refused as exc:  # usecases/schema/class.go:773: 422
            return self._error(422, str(exc))
        with self.store.lock:
            similar = self.store.similar(cls["class"])
            if similar is None:
                col = self.store.create(with_defaults(cls))
                return Response(json.dumps(col.schema), 200, content_type="application/json")
        if similar == cls["class"]:  # cluster/schema/manager.go:124,136
            return self._error(422, f"class name {cls['class']} already exists")
        return self._error(422, f"class name {cls['class']!r} already exists: found similar "
                                f"class {similar!r}")

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

    def _add_property(self, request: Request) -> Response:
        """usecases/schema/property.go:34-80 and class.go:1026-1028 (handlers_schema.go:200-213:
        a 422): a property is added to an existing class, unless its name (case-insensitively)
        is in use. Objects written before have no value for it."""
        name = request.path.split("/")[3]
        prop = json.loads(request.data)
        prop["name"] = prop["name"][:1].lower() + prop["name"][1:]
        with self.store.lock:
            try:
                col = self.store.get(name)
            except KeyError:
                return self._error(404, f"class {name!r} not found")
            props = col.schema.setdefault("properties", [])
            if any(p["name"].lower() == prop["name"].lower() for p in props):
                return self._error(422, f"class {col.schema['class']!r}: conflict for property "
                                        f"{prop['name']!r}: already in use or provided "
                                        "multiple times")
            props.append(with_defaults({"properties": [prop]})["properties"][0])
        return Response(json.dumps(prop), 200, content_type="application/json")

    def _patch(self, request: Request) -> Response:
        _, _, _, name, uuid = request.path.split("/")
        body = json.loads(request.data)
        with self.store.lock:
            try:
                col = self.store.get(name)
                obj = col.objects[uuid]
            except KeyError:
                return Response("", 404)
            obj.props.update(coerce(body.get("properties", {}), col.types()))
            if body.get("vectors") or body.get("vector"):
                obj.vectors.update(body.get("vectors") or {"default": body["vector"]})
        return Response("", 204)

    @staticmethod
    def _error(status: int, message: str) -> Response:
        return Response(json.dumps({"error": [{"message": message}]}), status,
                        content_type="application/json")

"""Error responses: 422 naming the field, 413 for big bodies, 503 for a down index, no traces."""

from __future__ import annotations

import json
import logging

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from freshrag.embed import EmbedError
from freshrag.index import IndexMisconfigured, IndexUnavailable

log = logging.getLogger("freshrag.api")


def _field_errors(exc: RequestValidationError) -> list[dict[str, str]]:
    out = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ())]
        where = loc[0] if loc else "request"
        name = ".".join(loc[1:]) or where
        msg = str(err.get("msg", "invalid"))
        if err.get("type") == "json_invalid":
            msg = "body is not valid JSON"
        out.append({"field": name, "location": where, "message": msg})
    return out


async def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = _field_errors(exc)
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5]) or "invalid request"
    # The input is not echoed back: it may be a megabyte of query text.
    return JSONResponse({"detail": detail, "errors": errors}, status_code=422)


async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.warning("%s %s: %s", request.method, request.url.path, exc)
    what = "embedding model" if isinstance(exc, EmbedError) else "index"
    return JSONResponse({"detail": f"{what} unavailable, try again later"}, status_code=503,
                        headers={"Retry-After": "5"})


async def _misconfigured(request: Request, exc: Exception) -> JSONResponse:
    log.error("%s %s: %s", request.method, request.url.path, exc)
    return JSONResponse({"detail": "index misconfigured (the server log names the setting)"},
                        status_code=503)


async def _internal(request: Request, exc: Exception) -> JSONResponse:
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"detail": "internal server error (logged on the server)"},
                        status_code=500)


def install_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(IndexUnavailable, _unavailable)
    app.add_exception_handler(IndexMisconfigured, _misconfigured)
    app.add_exception_handler(EmbedError, _unavailable)
    app.add_exception_handler(Exception, _internal)


class _TooLarge(HTTPException):
    """Raised while the body streams in; FastAPI turns it into the 413 response."""


class BodyLimit:
    """Answer 413 to a body over `max_bytes`, declared (Content-Length) or streamed (chunked)."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def _reject(self, send: Send) -> None:
        body = json.dumps({"detail": f"request body over {self.max_bytes} bytes"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > self.max_bytes
            except ValueError:
                too_big = False
            if too_big:
                await self._reject(send)
                return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge(413, f"request body over {self.max_bytes} bytes")
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._reject(send)

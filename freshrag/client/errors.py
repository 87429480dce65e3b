"""What the server said, as exceptions: one class per status the API documents."""

from __future__ import annotations

from typing import Any

import httpx

from freshrag.api.schemas import SourceFreshness


class FreshragError(Exception):
    """A request freshrag refused or could not answer; `str()` is the status and the server's
    own `detail`."""

    def __init__(self, message: str, status: int | None = None, detail: str = "",
                 body: Any = None):
        super().__init__(message)
        self.status = status
        self.detail = detail
        self.body = body


class Unreachable(FreshragError):
    """No HTTP answer at all: connection refused, DNS, timeout."""


class Unauthorized(FreshragError):
    """401: the API key is missing or wrong."""


class NotFound(FreshragError):
    """404: an unknown source (in `filters.source` or the path) or document."""


class TooLarge(FreshragError):
    """413: the request body is over the server's limit."""


class InvalidRequest(FreshragError):
    """422: `errors` names each bad field (`field`, `location`, `message`)."""

    @property
    def errors(self) -> list[dict[str, str]]:
        body = self.body if isinstance(self.body, dict) else {}
        return list(body.get("errors") or [])


class Unavailable(FreshragError):
    """503: the index or the model is down (or the server is starting); `retry_after` in s."""

    retry_after: float | None = None


class StaleIndex(Unavailable):
    """503 for a freshness demand (`max_lag_ms`, `min_watermark`) the index did not meet in
    the server's wait bound: `freshness` per source, `lag_ms` the worst, `waited_ms`."""

    @property
    def freshness(self) -> dict[str, SourceFreshness]:
        raw = self.body.get("freshness", {}) if isinstance(self.body, dict) else {}
        return {name: SourceFreshness.model_validate(f) for name, f in raw.items()}

    @property
    def waited_ms(self) -> float | None:
        return self.body.get("waited_ms") if isinstance(self.body, dict) else None

    @property
    def lag_ms(self) -> float | None:
        """The largest known lag of the sources behind (None when none is known)."""
        lags = [f.lag_ms for f in self.freshness.values() if f.lag_ms is not None]
        return max(lags) if lags else None


class ServerError(FreshragError):
    """500 or any other status the API does not document."""


_BY_STATUS: dict[int, type[FreshragError]] = {
    401: Unauthorized, 404: NotFound, 413: TooLarge, 422: InvalidRequest, 503: Unavailable}


def error_for(response: httpx.Response) -> FreshragError:
    """The exception for a non-2xx answer, with the server's `detail` in its message."""
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("detail"), str):
        detail = body["detail"]
    else:
        detail = " ".join(response.text.split())[:500] or "(no body)"
    cls = _BY_STATUS.get(response.status_code, ServerError)
    if cls is Unavailable and isinstance(body, dict) and "freshness" in body:
        cls = StaleIndex
    request = response.request
    message = (f"{response.status_code} {response.reason_phrase or 'error'} from "
               f"{request.method} {request.url.path}: {detail}")
    err = cls(message, response.status_code, detail, body)
    if isinstance(err, Unavailable):
        try:
            err.retry_after = float(response.headers.get("retry-after", ""))
        except ValueError:
            err.retry_after = None
    return err


def unreachable(base_url: str, exc: httpx.TransportError) -> Unreachable:
    what = type(exc).__name__
    return Unreachable(f"cannot reach freshrag at {base_url}: {what}: {exc}" if str(exc)
                       else f"cannot reach freshrag at {base_url}: {what}")

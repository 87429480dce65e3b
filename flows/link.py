"""Is the Prefect API there? A cheap probe with backoff, and one warning per outage."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger("freshrag.watch")
PROBE_TIMEOUT_S = 2.0


def api_url() -> str | None:
    """PREFECT_API_URL as Prefect resolves it; None means ephemeral mode."""
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    return str(url).rstrip("/") if url else None


def probe(url: str | None) -> str | None:
    """None when the API answers /health; else the reason. Ephemeral mode (no URL) cannot be
    probed without starting its server, so it counts as reachable: the attempt tells."""
    if url is None:
        return None
    import httpx

    try:
        resp = httpx.get(f"{url}/health", timeout=PROBE_TIMEOUT_S)
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return None if resp.status_code == 200 else f"/health answered {resp.status_code}"


class Link:
    """The state of our connection to Prefect: `ready()` says whether to try now (probing when
    a retry is due), `failed()` records an outage (backoff 1, 2, 4 ... 30 s; warns once per
    outage), `ok()` its end (one line saying recording resumed)."""

    def __init__(self, what: str, impact: str = "indexing goes on",
                 min_s: float = 1.0, max_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic,
                 probe_fn: Callable[[str | None], str | None] = probe):
        self.what = what  # what stops while Prefect is away ("recording", "announcing")
        self.impact = impact  # what the user should know meanwhile
        self.min_s, self.max_s, self.clock, self.probe_fn = min_s, max_s, clock, probe_fn
        self.up: bool | None = None  # None until the first contact
        self.delay = min_s
        self.next_try = 0.0
        self.outages = 0

    @property
    def url(self) -> str:
        return api_url() or "the ephemeral Prefect server"

    def wait_s(self) -> float:
        """Seconds until the next attempt is due (0: now)."""
        return 0.0 if self.up is not False else max(0.0, self.next_try - self.clock())

    def ready(self) -> bool:
        """True when Prefect answers now (a retry is due and the probe succeeds)."""
        if self.wait_s() > 0:
            return False
        reason = self.probe_fn(api_url())
        if reason is not None:
            self.failed(reason)
            return False
        return True

    def failed(self, reason: str) -> None:
        if self.up is not False:
            self.outages += 1
            log.warning("Prefect unreachable at %s (%s): %s paused, %s; retrying with backoff",
                        self.url, reason, self.what, self.impact)
            self.delay = self.min_s
        else:
            self.delay = min(self.max_s, self.delay * 2)
        self.up = False
        self.next_try = self.clock() + self.delay

    def ok(self) -> None:
        if self.up is False:
            log.warning("Prefect reachable again at %s: %s resumed", self.url, self.what)
        self.up, self.delay = True, self.min_s


def drain_prefect(timeout_s: float = 5.0) -> None:
    """Give Prefect's background senders (events, API logs) a bounded time to flush. At
    interpreter exit Prefect waits for them without a bound, and a sender retrying against a
    server that went away can hold a stopping watcher for minutes; the CLI exits right after."""
    import sys

    if "prefect" not in sys.modules:
        return
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for service in (EventsWorker, APILogWorker):
        try:
            service.drain_all(timeout=timeout_s)
        except Exception as exc:  # noqa: BLE001 - best effort at exit
            log.debug("draining %s: %s", service.__name__, exc)

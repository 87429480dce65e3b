"""Who is calling: an API key names a client, a client (or its gateway header) names principals."""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass, replace
from typing import Any

from fastapi import HTTPException

from freshrag.api.schemas import SourceFreshness
from freshrag.config import Settings
from freshrag.config_api import ClientConfig, check_principal, client_keys
from freshrag.model import EVERYONE, Filters, Hit

log = logging.getLogger("freshrag.api")

MAX_HEADER_PRINCIPALS = 100
UNAUTHORIZED = "missing or wrong API key: send 'Authorization: Bearer <key>' or 'X-API-Key'"


@dataclass(frozen=True)
class Caller:
    """The caller of one request. `principals` None: an admin, nothing is filtered."""

    name: str
    admin: bool
    principals: frozenset[str] | None

    def filters(self, filters: Filters | None) -> Filters | None:
        """The caller's filters with its principals added (an admin's are left as they are)."""
        if self.admin:
            return filters
        return replace(filters or Filters(), principals=self.principals)

    def may_read(self, hit: Hit) -> bool:
        if self.principals is None:
            return True
        return EVERYONE in hit.readers or not self.principals.isdisjoint(hit.readers)

    def guard(self, hits: list[Hit], where: str) -> list[Hit]:
        """Belt and braces: the index enforces readers in its query, so this drops nothing;
        if it ever does, the index has a bug, and the log says so."""
        kept = [h for h in hits if self.may_read(h)]
        if len(kept) != len(hits):
            log.error("%s: the index returned %d chunk(s) the caller %r may not read; dropped",
                      where, len(hits) - len(kept), self.name)
        return kept

    def freshness(self, f: SourceFreshness) -> SourceFreshness:
        """Freshness as this caller may see it: admins everything, others watermark and lag
        without counts (pending, failed) or capture positions."""
        if self.admin:
            return f
        return f.model_copy(update={"pending": None, "failed": None, "capture": None})


def _digest(key: str) -> bytes:
    # Compared as digests: equal lengths, so the comparison's time tells nothing of the key's.
    return hashlib.sha256(key.encode()).digest()


def _uses_permissions(settings: Settings) -> bool:
    return any(str(s.options().get("permissions", "none")) != "none" for s in settings.sources)


class Authenticator:
    """Built once per app from settings; `caller()` runs on every protected request."""

    def __init__(self, settings: Settings):
        self.clients: list[tuple[ClientConfig, bytes]] = [
            (c, _digest(key)) for c, key in client_keys(settings)]
        self.header = settings.api.trusted_principal_header
        # No key and no client: an open server. Its anonymous caller is an admin unless a
        # source captures readers; then it sees only what `everyone` may read (fail closed).
        self.anonymous = Caller("anonymous", admin=not _uses_permissions(settings),
                                principals=None if not _uses_permissions(settings)
                                else frozenset())

    @property
    def open(self) -> bool:
        return not self.clients

    def _match(self, given: str) -> ClientConfig | None:
        want = _digest(given)
        found: ClientConfig | None = None
        for client, digest in self.clients:  # every client, no early exit
            if hmac.compare_digest(want, digest):
                found = client
        return found

    def caller(self, given: list[str], headers: Any) -> Caller:
        """The caller for the credentials `given` (Bearer, X-API-Key): every one must name the
        same client. 401 otherwise."""
        if self.open:
            return self.anonymous
        matched = [self._match(g) for g in given]
        first = matched[0] if matched else None
        if first is None or any(m is not first for m in matched):
            raise HTTPException(401, UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"})
        if first.gateway and self.header and headers.get(self.header) is not None:
            return Caller(f"{first.name} for {self.header}", admin=False,
                          principals=self._from_header(headers.get(self.header)))
        if first.admin:
            return Caller(first.name, admin=True, principals=None)
        return Caller(first.name, admin=False, principals=frozenset(first.principals))

    def _from_header(self, value: str) -> frozenset[str]:
        parts = [p.strip() for p in value.split(",") if p.strip()]
        if len(parts) > MAX_HEADER_PRINCIPALS:
            raise HTTPException(400, f"{self.header}: more than {MAX_HEADER_PRINCIPALS} "
                                     "principals")
        try:
            return frozenset(check_principal(p) for p in parts)
        except ValueError as exc:
            raise HTTPException(400, f"{self.header}: {exc}") from None

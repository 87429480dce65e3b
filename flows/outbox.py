"""Events mode's outbox: changed keys wait here until Prefect has confirmed their events.

In events mode the events are the work (deployment triggers turn them into sync runs), so a
change is never dropped while Prefect is away: keys are held per source, merged, and sent when
it answers again; a source holding more than `max_keys` collapses to one "rescan" (keys=None),
which covers every key of it, so memory stays bounded and nothing is lost. The watcher does not
apply changes itself in events mode (it has no engine or model there, and the runs on workers own
the index): while Prefect is down the index waits, and the watcher says so once per outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from typing import Any

from flows.batching import Batch
from flows.link import Link

log = logging.getLogger("freshrag.watch")
MAX_KEYS = 50_000  # per source; beyond this the held keys collapse to one rescan
KEYS_PER_EVENT = 1000  # well under Prefect's maximum event size
RECHECK_S = 2.0  # how often to look again for a deployment trigger that is not there yet


class Outbox:
    """Holds changed keys per source and sends them as `freshrag.source.changed` events from a
    thread of its own; a send counts only once the server confirmed it (a websocket ping)."""

    def __init__(self, max_keys: int = MAX_KEYS):
        self.max_keys = max_keys
        self.link = Link("announcing changes",
                         impact="changes are held by the watcher until it is back and nothing "
                                "is indexed meanwhile")
        self._held: dict[str, dict[str, None] | None] = {}  # None: rescan the source
        self._cut: dict[str, float] = {}
        self._cond = threading.Condition()
        self._closing = False
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: Any = None
        self.sent = 0  # events confirmed (tests read it)
        self._triggered: set[str] = set()  # sources an automation was seen listening for
        self._told: set[str] = set()

    def add(self, batch: Batch) -> None:
        with self._cond:
            self._merge(batch.source, None if batch.keys is None else dict.fromkeys(batch.keys),
                        batch.cut)
            self._cond.notify_all()

    def _merge(self, source: str, keys: dict[str, None] | None, cut: float) -> None:
        held = self._held.get(source, {}) if source in self._held else {}
        if keys is None or held is None:
            self._held[source] = None
        else:
            held.update(keys)
            if len(held) > self.max_keys:
                log.warning("%s: %d changed keys held while Prefect is unreachable; holding one "
                            "rescan of the source instead (covers them all)", source, len(held))
                self._held[source] = None
            else:
                self._held[source] = held
        self._cut[source] = max(cut, self._cut.get(source, 0.0))

    def held(self) -> int:
        """Sources with changes not yet confirmed by Prefect."""
        with self._cond:
            return len(self._held)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="freshrag-outbox", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 10.0) -> None:
        """Send what is held if Prefect answers within `timeout` s; say what could not be."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))
        with self._cond:
            for source, keys in self._held.items():
                why = ("Prefect unreachable at exit" if self.link.up is False else
                       "no deployment trigger listened for it" if source not in self._triggered
                       else "timed out at exit")
                log.error("%s: %s not announced (%s); the next start of the watcher, or the "
                          "deployment's scheduled reconcile, picks them up", source,
                          "a rescan" if keys is None else f"{len(keys)} changed key(s)", why)
        if self._loop is not None and not self._loop.is_running():
            self._loop.run_until_complete(self._drop_client())
            self._loop.close()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._held and not self._closing:
                    self._cond.wait()
                if not self._held:
                    return
                if self._closing and self.link.up is False and self.link.wait_s() > 0:
                    return
            if not self.link.ready():
                with self._cond:
                    if not self._closing:
                        self._cond.wait(max(0.05, self.link.wait_s()))
                continue
            with self._cond:
                taken, cuts = self._held, self._cut
                self._held, self._cut = {}, {}
            waiting: list[str] = []
            try:
                waiting = self._untriggered(list(taken))
                with self._cond:  # no deployment would run these yet: keep them held
                    for source in waiting:
                        self._merge(source, taken.pop(source), cuts.get(source, 0.0))
                if taken:
                    self._send(taken, cuts)
            except Exception as exc:  # noqa: BLE001 - keep every key for the next attempt
                with self._cond:
                    for source, keys in taken.items():
                        self._merge(source, keys, cuts.get(source, 0.0))
                self.link.failed(f"{type(exc).__name__}: {exc}"[:300])
                continue
            self.link.ok()
            if waiting:
                with self._cond:
                    if self._closing:
                        return  # close() reports what stays held
                    self._cond.wait(RECHECK_S)

    def _untriggered(self, sources: list[str]) -> list[str]:
        """Sources no enabled automation listens for yet (no serve.py or deployment running):
        an event sent now would start nothing, so their changes stay held (said once)."""
        todo = [s for s in sources if s not in self._triggered]
        if not todo:
            return []
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            specs = [a.trigger.model_dump_json() for a in client.read_automations() if a.enabled]
        waiting = []
        for source in todo:
            if any(f'"freshrag.source.{source}"' in spec for spec in specs):
                self._triggered.add(source)
                if source in self._told:
                    log.warning("%s: a deployment trigger is listening now; sending the held "
                                "changes", source)
            else:
                waiting.append(source)
                if source not in self._told:
                    self._told.add(source)
                    log.warning("%s: no Prefect deployment trigger listens for "
                                "freshrag.source.%s yet (start deployments/serve.py or deploy "
                                "deployments/prefect.yaml); holding its changes until one does",
                                source, source)
        return waiting

    def _send(self, taken: dict[str, dict[str, None] | None], cuts: dict[str, float]) -> None:
        from prefect.events import Event

        from flows.watch import CHANGED, resource

        events = []
        for source, keys in taken.items():
            key_list = None if keys is None else list(keys)
            parts: list[list[str] | None] = [None] if key_list is None else [
                key_list[i:i + KEYS_PER_EVENT] for i in range(0, len(key_list), KEYS_PER_EVENT)]
            events += [Event(event=CHANGED, resource=resource(source),
                             payload={"keys": part, "observed_at": cuts.get(source)})
                       for part in parts]
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        self._loop.run_until_complete(self._emit(events))
        self.sent += len(events)
        for source, keys in taken.items():
            log.info("%s: announced %s", source,
                     "rescan" if keys is None else f"{len(keys)} key(s)")

    async def _emit(self, events: list[Any]) -> None:
        from prefect.events.clients import get_events_client

        try:
            if self._client is None:
                client = get_events_client(reconnection_attempts=2)
                await client.__aenter__()
                self._client = client
            for event in events:
                await self._client.emit(event)
            confirm = getattr(self._client, "_force_checkpoint", None)
            if confirm is not None:  # a ping answered: the server has read every event sent
                await confirm()
        except BaseException:
            await self._drop_client()
            raise

    async def _drop_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):  # a dead connection may not close cleanly
                await client.__aexit__(None, None, None)

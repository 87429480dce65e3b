"""Serve deployments from one long-lived process that runs their flow runs in-process, so every
run uses the process's warm engine (model loaded once) instead of a fresh interpreter per run.

Prefect's own `serve()` starts each flow run in a new process, which reloads the embedding model
(~15 s per run here). This runner registers the same kind of deployments (schedules, event
triggers, ENQUEUE concurrency), polls the server for their scheduled runs, claims each one by
proposing Pending (the server refuses a run whose deployment slot is taken, or one another
runner claimed), and runs it with `prefect.flow_engine.run_flow` in a thread of this process.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

log = logging.getLogger("freshrag.serve")
POLL_S = 0.25


class WarmRunner:
    """Runs the flow runs of `deployments` (RunnerDeployments of one flow) in this process."""

    def __init__(self, flow: Any, deployments: list[Any], limit: int = 4, poll_s: float = POLL_S):
        self.flow, self.deployments = flow, deployments
        self.limit, self.poll_s = limit, poll_s
        self.ids: list[UUID] = []
        self._running: dict[UUID, Future[None]] = {}
        self._stop = threading.Event()
        self.finished = 0

    def register(self) -> list[UUID]:
        """Create or update each deployment (with its triggers and schedule) on the server."""
        self.ids = [UUID(str(d.apply())) for d in self.deployments]
        return self.ids

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        """Poll and run until stop(); runs in flight are finished before returning."""
        from prefect.client.orchestration import get_client

        if not self.ids:
            self.register()
        with ThreadPoolExecutor(self.limit, thread_name_prefix="freshrag-run") as pool, \
                get_client(sync_client=True) as client:
            while not self._stop.is_set():
                try:
                    self._poll(client, pool)
                except Exception as exc:  # noqa: BLE001 - the server restarting: poll again
                    log.warning("polling for flow runs failed: %s; retrying", exc)
                    self._stop.wait(min(10.0, self.poll_s * 10))
                self._stop.wait(self.poll_s)

    def _poll(self, client: Any, pool: ThreadPoolExecutor) -> None:
        from prefect.exceptions import Abort
        from prefect.states import Pending
        from prefect.utilities.engine import propose_state_sync

        for run_id, fut in list(self._running.items()):
            if fut.done():
                del self._running[run_id]
        free = self.limit - len(self._running)
        if free <= 0:
            return
        runs = client.get_scheduled_flow_runs_for_deployments(
            deployment_ids=self.ids, scheduled_before=datetime.now(UTC), limit=free)
        for flow_run in runs:
            if flow_run.id in self._running:
                continue
            try:
                state = propose_state_sync(client, Pending(), flow_run_id=flow_run.id)
            except Abort:
                continue  # another runner claimed it
            if not state.is_pending():
                continue  # AwaitingConcurrencySlot: the source's run in flight goes first
            self._running[flow_run.id] = pool.submit(self._execute, flow_run)

    def _execute(self, flow_run: Any) -> None:
        from prefect.flow_engine import run_flow

        started = time.perf_counter()
        try:
            run_flow(self.flow, flow_run=flow_run, parameters=dict(flow_run.parameters),
                     return_type="state")
        except BaseException as exc:  # noqa: BLE001 - the run's state says it; keep serving
            log.error("flow run %s crashed: %s", flow_run.name, exc)
        finally:
            self.finished += 1
            log.info("flow run %s done in %.2f s", flow_run.name, time.perf_counter() - started)

"""A Dask cluster a user started (`dask scheduler`, `dask worker`): checked before a backfill."""

from __future__ import annotations

import contextlib
import hashlib
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from distributed import Client
from distributed.diagnostics.plugin import WorkerPlugin

from flows import backfill
from flows.backfill import BackfillError
from freshrag.embed import vectors_for
from freshrag.model import SyncReport

WORKER_WAIT_S = 20.0  # a scheduler with no worker yet: how long the command waits for one
CODE = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]  # as loaded (see backfill)
PROBE_S = 180.0  # the workers' check (imports, the engine built) answers within this
PLUGIN = "freshrag-prefect-api"
GPU_CHECK_S = 10.0  # a range waiting for its embedding checks this often that a GPU remains
GPU = "GPU"  # the Dask resource a worker declares (`dask worker --resources GPU=1`)


def identity(config: str | None, home: str | None, source: str) -> dict[str, Any]:
    """What every process of one backfill must agree on, read from its own view of the config:
    the same ledger, index, model, chunking and source (device and batch size may differ)."""
    from sqlalchemy.engine import make_url

    from flows.engines import settings_of

    s = settings_of(config, home)
    return {"ledger_url": make_url(s.ledger()).render_as_string(hide_password=True),
            "index": s.index.model_dump(mode="json"),
            "model": s.model.model_dump(mode="json", include={"name", "backend", "precision"}),
            "chunk": s.chunk.model_dump(mode="json"),
            f"source {source}": s.source(source).model_dump(mode="json")}


def code() -> str:
    """The backfill's code as this process loaded it."""
    return f"{backfill.CODE}-{CODE}"


def _embedded_index(url: str) -> bool:
    return not url or url.startswith(("lancedb://", "file://"))


def probe(config: str | None, home: str | None, source: str, want: dict[str, Any],
          driver_host: str, driver_code: str) -> str | None:
    """Run on each worker: None when it can run this backfill's ranges, else why not."""
    from flows.engines import engine_for
    from freshrag.config import ConfigError

    if code() != driver_code:
        return (f"runs other freshrag code than this command ({code()} vs {driver_code}); "
                "restart the workers (and scheduler) after installing or changing freshrag")
    if config and not Path(config).is_file():
        return (f"does not find the config file {config}; start the workers where it is "
                "at the same path")
    try:
        mine = identity(config, home, source)
    except ConfigError as exc:
        return f"cannot load the config ({exc})"
    for key, value in want.items():
        if mine[key] != value:
            return (f"reads a config that differs from this command's in {key}; give every "
                    "worker the same config file")
    host = socket.gethostname()
    if host != driver_host:
        if mine["ledger_url"].startswith("sqlite"):
            return (f"runs on host {host} and the ledger is a SQLite file on {driver_host}, "
                    "which only processes of one machine may share: set ledger_url to a "
                    "Postgres database every host reaches (and use a shared index, Weaviate)")
        if _embedded_index(str(mine["index"].get("url") or "")):
            return (f"runs on host {host} and the index is embedded (LanceDB under home) on "
                    f"{driver_host}: set index.url to a Weaviate every host reaches")
    try:  # not under the engine's lock: a range of another backfill may hold it for long
        engine, _ = engine_for(config, home)  # built once: its ranges use it
        engine.source(source)
        engine.ledger.fingerprints(source)
    except Exception as exc:  # noqa: BLE001 - the ledger or source out of its reach
        return f"cannot open the ledger or source {source!r} ({_reason(exc)})"
    return None


def reaches(api_url: str) -> str | None:
    """Run on each worker: None when it reaches the Prefect API at `api_url`, else why not."""
    import httpx

    try:
        httpx.get(f"{api_url.rstrip('/')}/health", timeout=5.0).raise_for_status()
    except Exception as exc:  # noqa: BLE001 - any failure to reach it is the same answer
        return (f"cannot reach the Prefect API at {api_url} ({_reason(exc)}); set "
                "PREFECT_API_URL to a server both this command and the workers reach")
    return None


async def off_loop(fn: Any, *args: Any) -> Any:
    """fn(*args) off the worker's event loop (which must keep answering the scheduler)."""
    import asyncio

    return await asyncio.to_thread(fn, *args)


def _reason(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__


def _worker_problem(result: Any) -> str | None:
    """A probe's answer; an exception from the worker (it could not even load the probe)."""
    if result is None or isinstance(result, str):
        return result
    text = _reason(result) if isinstance(result, BaseException) else repr(result)
    if "No module named" in text or "ModuleNotFoundError" in text:
        return (f"cannot import freshrag ({text}); start it from the Python environment "
                "freshrag is installed in (pip install 'freshrag[dask]')")
    return f"failed the check ({text})"


class PrefectApi(WorkerPlugin):
    """A Dask worker plugin: this worker's Prefect events go to `url`. A long-lived worker
    otherwise sends every run's task-run events to the first Prefect server it met (Prefect
    keys its one events client per process by client type, not by API URL)."""

    name = PLUGIN

    def __init__(self, url: str):
        self.url = url

    def setup(self, worker: Any = None) -> None:
        from prefect.events.clients import PrefectEventsClient
        from prefect.events.worker import EventsWorker, emit_events_to_cloud
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings({PREFECT_API_URL: self.url}):
            cloud = emit_events_to_cloud()  # Prefect Cloud's client is keyed by URL already
        EventsWorker.set_client_override(None if cloud else PrefectEventsClient, api_url=self.url)

    def teardown(self, worker: Any = None) -> None:
        from prefect.events.worker import EventsWorker

        EventsWorker.set_client_override(None)


@contextlib.contextmanager
def connected(address: str) -> Iterator[Client]:
    """A client of the scheduler at `address` once it has a worker; BackfillError (one line)
    when no scheduler answers or no worker joins it."""
    where = f"--cluster {address}"
    try:
        client = Client(address, timeout=10, set_as_default=False)
    except (OSError, TimeoutError, ValueError, TypeError) as exc:
        raise BackfillError(f"{where}: no Dask scheduler answers there ({_reason(exc)})") from exc
    try:
        try:
            client.wait_for_workers(1, timeout=WORKER_WAIT_S)
        except TimeoutError as exc:
            raise BackfillError(f"{where}: the scheduler has no workers (waited "
                                f"{WORKER_WAIT_S:.0f} s); start some with `dask worker "
                                f"{address}`") from exc
        yield client
    finally:
        with contextlib.suppress(Exception):
            client.close(timeout=10)


def checked(client: Client, address: str, config: str | None, home: str | None,
            source: str) -> list[str]:
    """Check that the scheduler and every worker can run the backfill's ranges
    (BackfillError, one line naming the worker, when one cannot); returns the addresses of
    the workers that declare a GPU."""
    where = f"--cluster {address}"
    try:
        theirs = _within(PROBE_S, client.run_on_scheduler, code)
    except Exception as exc:  # noqa: BLE001 - it could not even load the check
        raise BackfillError(f"{where}: the scheduler {_worker_problem(exc)}") from exc
    if theirs is not None and theirs != code():
        raise BackfillError(f"{where}: the scheduler runs other freshrag code than this command "
                            "(it keeps the tasks' code it loaded first); restart it and the "
                            "workers after installing or changing freshrag")
    _ask(client, where, probe, config, home, source, identity(config, home, source),
         socket.gethostname(), code())
    return gpu_workers(client)


@contextlib.contextmanager
def reporting_to(client: Client, address: str, api_url: str) -> Iterator[None]:
    """Point the workers' Prefect events at `api_url` for the backfill's length, once each
    reaches it (BackfillError, one line, when one does not)."""
    _ask(client, f"--cluster {address}", reaches, api_url)
    client.register_plugin(PrefectApi(api_url), name=PLUGIN)
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            client.unregister_worker_plugin(PLUGIN)


def _ask(client: Client, where: str, check: Any, *args: Any) -> None:
    """Run `check` on every worker; BackfillError naming the first that answers a problem."""
    answers = _within(PROBE_S, client.run, off_loop, check, *args, on_error="return")
    if answers is None:
        raise BackfillError(f"{where}: the workers did not answer a check in "
                            f"{PROBE_S:.0f} s (busy or stuck? their logs say)")
    bad = {w: p for w, p in ((w, _worker_problem(r)) for w, r in answers.items()) if p}
    if bad:
        worker, problem = sorted(bad.items())[0]
        more = f" ({len(bad) - 1} other worker(s) too)" if len(bad) > 1 else ""
        raise BackfillError(f"{where}: worker {worker} {problem}{more}")


def _within(seconds: float, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """fn(...) in a daemon thread (Client.run has no timeout of its own); None when it takes
    longer than `seconds`, which the command does not wait out."""
    box: list[Any] = []

    def call() -> None:
        try:
            box.append(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            box.append(exc)
    thread = threading.Thread(target=call, daemon=True, name="freshrag-cluster-check")
    thread.start()
    thread.join(seconds)
    if not box:
        return None
    if isinstance(box[0], BaseException):
        raise box[0]
    return box[0]


def gpu_workers(client: Client) -> list[str]:
    workers = client.scheduler_info(n_workers=-1)["workers"]
    return sorted(w for w, info in workers.items() if info.get("resources", {}).get(GPU))


# a GPU worker embeds for the others ------------------------------------------------------------
_EMBED = threading.Lock()


def embed_here(config: str | None, home: str | None, texts: dict[str, str]) -> tuple[str, int]:
    """On a GPU worker: embed `texts` (chunk hash -> text) with this worker's engine (its
    model.device, "auto": CUDA when present) into the ledger's vector cache; returns this
    worker's name and how many it embedded."""
    from distributed import get_worker

    from flows.engines import engine_for

    engine, _ = engine_for(config, home)  # not its lock: a range here may hold it, waiting
    with _EMBED:
        report = SyncReport()
        vectors_for(engine.embedder, engine.ledger, texts, report)
    me = get_worker()
    return f"{me.name} ({me.address})", report.embedded


def embed_remote(config: str | None, home: str | None, texts: dict[str, str],
                 label: str) -> tuple[str, int] | None:
    """From a range's worker: have a GPU worker embed `texts`; None when the cluster has no
    GPU worker (any more), and the range embeds them itself."""
    from distributed import worker_client

    with worker_client() as client:  # secedes: this worker runs other tasks meanwhile
        if not gpu_workers(client):
            return None
        fut = client.submit(embed_here, config, home, texts, resources={GPU: 1}, pure=False,
                            priority=10,  # before the ranges queued on the GPU worker
                            key=f"freshrag-embed-{label.replace('/', '-of-')}-{uuid.uuid4()}")
        while True:
            try:
                result: tuple[str, int] = fut.result(timeout=GPU_CHECK_S)
                return result
            except TimeoutError:
                if not gpu_workers(client):  # it would wait for a GPU worker forever
                    fut.cancel()
                    return None

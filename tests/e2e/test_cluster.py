"""`freshrag sync --cluster ADDRESS` on a scheduler and workers started with Dask's own commands
(`dask scheduler`, `dask worker`, from the venv, without PREFECT_API_URL): the index a plain sync
gives; a worker declaring `GPU=1` embeds every range (this machine has no GPU: a CPU worker
declaring one stands in, which proves the routing, not CUDA); the sync deployment's `cluster`
parameter through a real `prefect server`, its range task runs recorded there; and a worker
that lacks what it needs refused in one line, exit 2."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_backfill import CONFIG, QUERIES, _doc, _ids
from tests.e2e.test_weaviate_path import KEY, Server, server  # noqa: F401 - a fixture
from tests.e2e.userpath import (
    BIN,
    Background,
    Project,
    free_port,
    make_project,
    user_env,
    wait_until,
)
from tests.flows.prefect_server import prefect_server
from tests.pg import fresh_postgres_database

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
DASK = BIN / "dask"
N_DOCS = 24
# a worker whose Python cannot import freshrag (another environment): the imports blocked
NO_FRESHRAG = """import sys
for name in ("freshrag", "flows", "connectors"):
    sys.modules[name] = None
from distributed.cli.dask_worker import main
sys.argv[0] = "dask worker"
main()
"""


@dataclass
class Cluster:
    address: str
    workers: dict[str, Background]


def scheduler(project: Project, name: str) -> str:
    port = free_port()
    bg = project.spawn([str(DASK), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                        "--dashboard-address", ":0"], name)
    bg.wait_for_log("Scheduler at:", 120)
    return f"tcp://127.0.0.1:{port}"


def worker(project: Project, address: str, name: str, *extra: str,
           argv: list[str] | None = None) -> Background:
    bg = project.spawn([*(argv or [str(DASK), "worker"]), address, "--nthreads", "1",
                        "--name", name, *extra], f"worker-{name}")
    bg.wait_for_log("Registered to:", 180)
    return bg


def n_workers(address: str) -> int:
    from distributed import Client

    with Client(address, timeout=10, set_as_default=False) as client:
        return len(client.scheduler_info(n_workers=-1)["workers"])


@pytest.fixture(scope="module")
def synced(tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[Project, Cluster, dict[str, Any], dict[str, int]]]:
    """One folder synced plainly into `plain/` and with `--cluster` into `clustered/`, on a
    cluster of one CPU worker and one worker declaring a GPU, neither told of any Prefect
    server (the command starts its temporary one)."""
    gen = make_project(tmp_path_factory.mktemp("cluster"))
    project = next(gen)
    project.write_config(CONFIG)
    for n in range(N_DOCS):
        (project.docs / f"doc{n:02d}.md").write_text(_doc(n, 2), encoding="utf-8")
    address = scheduler(project, "scheduler")
    cluster = Cluster(address, {"cpu": worker(project, address, "cpu"),
                                "gpu": worker(project, address, "gpu", "--resources", "GPU=1")})
    done = project.run("sync", "--home", str(project.root / "plain"))
    assert done.returncode == 0, done.stderr[-3000:]
    offsets = {name: len(bg.log()) for name, bg in cluster.workers.items()}
    done = project.run("sync", "--cluster", address, "--json",
                       "--home", str(project.root / "clustered"))
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    yield project, cluster, report, offsets
    gen.close()


def test_cluster_sync_gives_the_plain_index(
        synced: tuple[Project, Cluster, dict[str, Any], dict[str, int]]) -> None:
    project, _, report, _ = synced
    plain, clustered = project.root / "plain", project.root / "clustered"
    assert report["documents"]["added"] == N_DOCS, report
    done = project.run("verify", "--home", str(clustered))
    assert done.returncode == 0 and done.stdout.startswith("ok"), done.stdout + done.stderr
    assert _ids(clustered) == _ids(plain) and len(_ids(plain)) == N_DOCS
    for query, mode, k in QUERIES:
        hits = [sorted(project.json("search", query, "-k", k, "--mode", mode, "--home", str(home)),
                       key=lambda h: (-round(h["score"], 4), h["doc_key"], h["text"]))
                for home in (plain, clustered)]
        assert hits[0] and [(h["doc_key"], h["text"]) for h in hits[0]] == \
            [(h["doc_key"], h["text"]) for h in hits[1]], query
        assert [h["score"] for h in hits[0]] == pytest.approx([h["score"] for h in hits[1]],
                                                              abs=1e-4)


def test_the_gpu_worker_embeds_for_the_others(
        synced: tuple[Project, Cluster, dict[str, Any], dict[str, int]]) -> None:
    """Ranges ran on both workers; every chunk was embedded by the worker named `gpu` (each
    range's task run logs which worker embedded it, as that worker names itself)."""
    _, cluster, report, offsets = synced
    logs = {name: bg.log()[offsets[name]:] for name, bg in cluster.workers.items()}
    ranges = {name: set(re.findall(r"Task run 'range (\d+)/\d+ of docs' - Finished in state "
                                   r"Completed", log)) for name, log in logs.items()}
    assert ranges["cpu"] and ranges["gpu"], ranges  # both parsed and wrote ranges
    embedded = [(int(n), who) for log in logs.values()
                for n, who in re.findall(r"(\d+) chunk\(s\) embedded on GPU worker (\S+)", log)]
    assert {who for _, who in embedded} == {"gpu"}, embedded
    assert sum(n for n, _ in embedded) == report["chunks"]["embedded"] > 0, (embedded, report)

    def loaded(dask_worker: Any) -> tuple[str, list[bool]]:  # sent by value to each worker
        from flows import engines

        return dask_worker.name, [getattr(e.embedder, "loaded", None) for (_, home), (e, _) in
                                  engines._engines.items() if home.endswith("clustered")]
    from distributed import Client

    with Client(cluster.address, timeout=10, set_as_default=False) as client:
        models = dict(client.run(loaded).values())
    assert models == {"cpu": [False], "gpu": [True]}, models  # the CPU worker never loaded it


def test_the_sync_deployment_records_its_range_task_runs_on_its_server(
        synced: tuple[Project, Cluster, dict[str, Any], dict[str, int]],
        tmp_path: Path) -> None:
    """`prefect deployment run freshrag-sync/serve-docs -p cluster=ADDRESS` on a real server:
    the workers (which reported the fixture's sync to that command's temporary server) record
    each range task run on this one; a cluster address where nothing answers fails the run
    with the command's one line."""
    project, cluster, _, _ = synced
    home = project.root / "deployed"
    with prefect_server(tmp_path) as (_, server_env):
        url = server_env["PREFECT_API_URL"]
        env = {"PREFECT_API_URL": url}
        served = project.spawn([sys.executable, str(ROOT / "deployments" / "serve.py"),
                                "--config", str(project.config), "--home", str(home)],
                               "serve-py", env=env)
        served.wait_for_log("; ready", 300)

        def deployment_run(address: str) -> Any:
            started = subprocess.run(
                [str(BIN / "prefect"), "deployment", "run", "freshrag-sync/serve-docs",
                 "-p", f"cluster={address}"], cwd=project.elsewhere, env=user_env(
                    {**project.env, **env}), capture_output=True, text=True, timeout=120)
            assert started.returncode == 0, started.stdout + started.stderr
            run_id = re.search(r"UUID: ([0-9a-f-]{36})", started.stdout)
            assert run_id, started.stdout

            def finished() -> Any:
                run = _call(url, lambda c: c.read_flow_run(run_id.group(1)))
                return run if run.state and run.state.is_final() else None
            return wait_until(finished, "the deployment's run to finish", 600, 1)
        run = deployment_run(cluster.address)
        assert run.state.is_completed(), (run.state, served.log()[-4000:])
        time.sleep(3)  # the workers' last events are sent in the background
        runs = _call(url, lambda c: c.read_task_runs())
        names = {r.name: r.state.type.value for r in runs if r.name.startswith("range ")}
        nowhere = f"tcp://127.0.0.1:{free_port()}"
        failed = deployment_run(nowhere)  # the command's one line is the failed run's message
        served.stop()
    assert failed.state.is_failed() and f"--cluster {nowhere}: no Dask scheduler answers" in \
        (failed.state.message or ""), failed.state
    assert names and set(names.values()) == {"COMPLETED"}, names
    total = {int(n.split("/")[1].split()[0]) for n in names}
    assert len(total) == 1 and len(names) == total.pop(), sorted(names)  # every range
    done = project.run("verify", "--home", str(home))
    assert done.returncode == 0 and done.stdout.startswith("ok"), done.stdout + done.stderr
    assert _ids(home) == _ids(project.root / "plain")


def _call(url: str, fn: Any) -> Any:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: url}), get_client(sync_client=True) as client:
        return fn(client)


def _one_line(done: subprocess.CompletedProcess[str], *words: str) -> None:
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and "Traceback" not in done.stderr, \
        (done.returncode, done.stderr[-3000:])
    for word in words:
        assert word in lines[0], lines[0]


def _unshare_works() -> bool:
    return subprocess.run(["unshare", "--uts", "--mount", "true"],
                          capture_output=True).returncode == 0


def test_workers_that_lack_what_they_need_are_one_line_and_exit_2(
        synced: tuple[Project, Cluster, dict[str, Any], dict[str, int]]) -> None:
    """On a scheduler of their own: no worker; a worker that cannot import freshrag; a worker
    on another host (its own hostname, in a UTS namespace) with the SQLite ledger; one that
    does not see the config file (a tmpfs over the project folder, in a mount namespace). And
    a backfill whose cluster loses its last worker stops (exit 1, one line) instead of
    waiting."""
    project, _, _, _ = synced
    address = scheduler(project, "scheduler-bare")
    home = str(project.root / "refused")

    def refused(*words: str) -> None:
        _one_line(project.run("sync", "--cluster", address, "--home", home), address, *words)

    def alone(bg: Background) -> None:
        bg.stop()
        wait_until(lambda: n_workers(address) == 0, "the worker to leave the scheduler", 60)

    refused("has no workers", f"dask worker {address}")
    bare = worker(project, address, "no-freshrag", "--no-nanny",
                  argv=[sys.executable, "-c", NO_FRESHRAG])
    refused("worker tcp://", "cannot import freshrag", "pip install 'freshrag[dask]'")
    alone(bare)
    # the cluster loses its last worker mid-backfill: the command stops, it does not wait
    only = worker(project, address, "only")
    lost = project.start("sync", "--cluster", address, "--home", str(project.root / "lost"),
                         name="lost")
    lost.wait_for_log("range(s)", 300)
    alone(only)
    assert lost.proc.wait(300) == 1, lost.log()[-3000:]
    assert "Traceback" not in lost.log() and lost.log().rstrip().endswith(
        f"the Dask cluster at {address} has had no worker for 60 s; the ranges written are "
        "kept, the next sync does the rest"), lost.log()[-3000:]
    if not _unshare_works():
        pytest.skip("needs `unshare --uts --mount` (root) to stand a worker on another host")
    dask = f"exec {DASK} worker"
    remote = worker(project, address, "remote", argv=[
        "unshare", "--uts", "sh", "-c", f"hostname other-host && {dask} \"$@\"", "sh"])
    refused("runs on host other-host", "SQLite", "ledger_url")
    alone(remote)
    hidden = worker(project, address, "hidden", argv=[
        "unshare", "--uts", "--mount", "--propagation", "private", "sh", "-c",
        f"hostname other-host && mount -t tmpfs none {project.root} && {dask} \"$@\"", "sh"])
    refused("does not find the config file", str(project.config))
    alone(hidden)
    assert not (project.root / "refused").exists()  # refused before anything was written


def test_a_worker_on_another_host_shares_a_postgres_ledger_and_weaviate(
        synced: tuple[Project, Cluster, dict[str, Any], dict[str, int]],
        server: Server) -> None:  # noqa: F811 - the imported fixture
    """What the SQLite refusal asks for: `ledger_url` on Postgres and the index on a Weaviate
    (our loopback fake), with every range run by a worker on another host (its own hostname, in
    a UTS namespace): accepted, and `freshrag verify` finds the index whole."""
    if not _unshare_works():
        pytest.skip("needs `unshare --uts` (root) to stand a worker on another host")
    project, _, _, _ = synced
    db = fresh_postgres_database()
    ledger_url = next(db)
    try:
        config = project.root / "shared" / "freshrag.toml"
        config.parent.mkdir()
        config.write_text(
            f'home = "{project.root / "shared" / "home"}"\nledger_url = "{ledger_url}"\n'
            f'[index]\nurl = "weaviate://127.0.0.1:{server.port}"\n'
            f'grpc_port = {server.grpc_port}\napi_key = "{KEY}"\ncollection = "Shared"\n'
            f'query_maximum_results = 500\n\n[[sources]]\nname = "docs"\ntype = "folder"\n'
            f'path = "{project.docs}"\n', encoding="utf-8")
        address = scheduler(project, "scheduler-shared")
        worker(project, address, "remote-pg", argv=[
            "unshare", "--uts", "sh", "-c", f"hostname other-host && exec {DASK} worker \"$@\"",
            "sh"])
        done = project.run("sync", "--cluster", address, "--json", "--config", str(config),
                           with_config=False)
        assert done.returncode == 0, done.stderr[-3000:]
        assert json.loads(done.stdout)["documents"]["added"] == N_DOCS, done.stdout
        done = project.run("verify", "--config", str(config), with_config=False)
        assert done.returncode == 0 and done.stdout.startswith("ok"), done.stdout + done.stderr
        assert server.count("Shared") == sum(len(v) for v in _ids(project.root / "plain").values())
    finally:
        db.close()

"""`freshrag sync --workers N | --cluster ADDRESS`: a source's full sync fanned out on Dask."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from freshrag.cli_common import _die
from freshrag.config import DEFAULT_CONFIG, Settings
from freshrag.model import SyncReport

WorkersOpt = Annotated[int | None, typer.Option(
    "--workers", min=1, help="Backfill: cut a full sync into key ranges run by N worker "
    "processes of a local Dask cluster (Prefect tasks; needs the dask extra).")]
ClusterOpt = Annotated[str | None, typer.Option(
    "--cluster", help="Backfill on the Dask scheduler at ADDRESS (tcp://host:8786) instead "
    "of a local cluster: workers started with `dask worker ADDRESS`; one started with "
    "`--resources GPU=1` embeds for the others.")]


def backfill(settings: Settings, names: list[str], workers: int | None, cluster: str | None,
             config: Path | None, folder: Path | None) -> SyncReport:
    """Backfill each source in turn; a bad --cluster or missing extra is one line, exit 2."""
    if folder is not None:
        _die("--workers/--cluster need a config file (the workers read it), not --folder")
    try:
        import distributed  # noqa: F401
        import prefect_dask  # noqa: F401

        from flows.backfill import BackfillError, run
    except ImportError as exc:
        _die(f"--workers/--cluster need the dask extra: pip install 'freshrag[dask]' ({exc})")
    path = config or (Path(DEFAULT_CONFIG) if Path(DEFAULT_CONFIG).is_file() else None)
    total = SyncReport()
    for name in names:
        try:
            total.merge(run(name, workers, cluster, str(path.resolve()) if path else None,
                            str(Path(settings.home).resolve())))
        except BackfillError as exc:
            _die(str(exc), 2 if cluster and "--cluster" in str(exc) else 1)
        except KeyboardInterrupt:  # the cluster and Prefect's server are already shut down
            _die(f"backfill of {name!r} interrupted; the ranges written are kept, the next "
                 "sync does the rest", 130)
    return total

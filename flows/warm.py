"""Warm what a change's hot path needs before a process says it is ready: the embedding model,
the index, and the parse child with the partitioners of the file types the sources hold."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from pathlib import Path, PurePosixPath

from freshrag.engine import Engine
from freshrag.model import Fingerprint, Item
from freshrag.parse import ParseError

log = logging.getLogger("freshrag.watch")
MAX_WALK = 20_000  # entries looked at per folder to learn its file types
SAMPLE = b"Warm up.\n\nThe parser and its partitioner are loaded before the first change.\n"


def suffixes(engine: Engine, name: str) -> set[str]:
    """File types a source holds: from the ledger's keys and a bounded walk of its folder."""
    found = {PurePosixPath(k).suffix.lower() for k in engine.ledger.fingerprints(name)}
    root = getattr(engine.source(name), "root", None)
    if isinstance(root, Path):
        seen = 0
        for _dir, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            for f in files:
                if not f.startswith("."):
                    found.add(PurePosixPath(f).suffix.lower())
            seen += len(files) + len(dirs)
            if seen > MAX_WALK:
                break
    return {s for s in found if s}


def _parse_samples(engine: Engine, kinds: set[str], table: bool) -> None:
    """One tiny item per file type through the real parse child (which imports the type's
    partitioner); a sample a binary partitioner rejects still leaves it imported."""
    items = [Item(key=f"warm{s}", data=SAMPLE, fingerprint=Fingerprint(0, len(SAMPLE)),
                  modified_at=0.0, location="warm-up", filename=f"warm{s}") for s in sorted(kinds)]
    if table or not items:  # rows render their own text: only the child process to start
        items.append(Item(key="warm", data=b"", fingerprint=Fingerprint(0, 0), modified_at=0.0,
                          location="warm-up", text="warm up"))
    for item in items:
        with contextlib.suppress(ParseError):
            engine.parser.parse(item)


def warm(engine: Engine, names: list[str]) -> float:
    """Load the model, open the index and start the parser (in parallel); returns seconds."""
    started = time.perf_counter()
    kinds: set[str] = set()
    table = False
    for name in names:
        if isinstance(getattr(engine.source(name), "root", None), Path):
            kinds |= suffixes(engine, name)
        else:
            table = True
    failed: list[BaseException] = []

    def model_side() -> None:
        try:
            engine.embedder.embed(["warm up"])  # loads the model
            engine.embedder.count_tokens("warm up")
        except BaseException as exc:  # noqa: BLE001 - re-raised below, in the caller's thread
            failed.append(exc)

    # The parse child is started from the calling thread: it is bound to the thread that
    # spawned it (PR_SET_PDEATHSIG), so a helper thread's exit would kill it again.
    model = threading.Thread(target=model_side, name="freshrag-warm-model", daemon=True)
    model.start()
    try:
        _parse_samples(engine, kinds, table)
    except Exception as exc:  # noqa: BLE001 - warming the parser is an optimisation: say, go on
        log.warning("warming the parser failed (%s); the first change will be slower", exc)
    _ = engine.index
    model.join()
    if failed:
        raise failed[0]  # an unloadable model fails here, early, as it would on the first change
    return time.perf_counter() - started

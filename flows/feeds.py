"""Change feeds for the watcher: watchdog observers on folder sources, polling for the others."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

from flows.batching import Coalescer

log = logging.getLogger("freshrag.watch")
_IGNORED = {"opened", "closed_no_write"}


class _Handler(FileSystemEventHandler):
    """Turns watchdog events into source keys: a move is a delete of its source and an update
    of its destination (editors save by rename); a folder key stands for all under it.
    `folder_attrib`: a folder's attribute change (chmod, chown, ACL) is its own event, for a
    source whose readers depend on its folders."""

    def __init__(self, source: str, root: Path, home: Path | None, coalescer: Coalescer,
                 folder_attrib: bool = False):
        self.source, self.root, self.home, self.coalescer = source, str(root), home, coalescer
        self.folder_attrib = folder_attrib

    def key(self, path: str | bytes) -> str | None:
        p = os.fsdecode(path)
        if self.home is not None and (p == str(self.home) or p.startswith(f"{self.home}{os.sep}")):
            return None
        rel = os.path.relpath(p, self.root)
        if rel == "." or rel.startswith(".." + os.sep) or rel == "..":
            return None
        rel = rel.replace(os.sep, "/")
        if any(part.startswith(".") for part in rel.split("/")):
            return None  # hidden files and folders (editor temp files) are never documents
        from connectors.folder import key_of

        return key_of(rel)  # the scan's key: a name that is not UTF-8 is percent-escaped

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in _IGNORED:
            return
        if event.is_directory and event.event_type in ("modified", "attrib", "closed") and not (
                self.folder_attrib and event.event_type == "attrib"):
            return  # a folder's own mtime changes whenever a child does; the child is reported
        if event.is_directory and event.event_type == "attrib" and os.path.normpath(
                os.fsdecode(event.src_path)) == self.root:
            self.coalescer.rescan(self.source)  # the root's own permissions: every document
            return
        paths = [event.src_path]
        if event.event_type == "moved":
            paths.append(event.dest_path)
        keys = [k for k in map(self.key, paths) if k]
        if keys:
            self.coalescer.add(self.source, keys)


class FolderFeed:
    """One recursive watchdog observer on a folder source's root."""

    def __init__(self, source: str, root: Path, home: Path | None, coalescer: Coalescer,
                 folder_attrib: bool = False):
        self.source, self.root, self.home, self.coalescer = source, root, home, coalescer
        self.folder_attrib = folder_attrib
        self.observer: BaseObserver | None = None

    def start(self) -> None:
        observer = Observer()
        observer.schedule(_Handler(self.source, self.root, self.home, self.coalescer,
                                   self.folder_attrib), str(self.root), recursive=True)
        observer.daemon = True
        observer.start()
        self.observer = observer

    def healthy(self) -> bool:
        obs = self.observer
        return obs is not None and obs.is_alive() and all(e.is_alive() for e in obs.emitters)

    def restart(self) -> None:
        """After an observer error: new observer, and a rescan for what it may have missed."""
        log.warning("%s: folder observer stopped; restarting it and rescanning", self.source)
        self.stop()
        try:
            self.start()
        except OSError as exc:
            log.error("%s: cannot watch %s: %s (will retry)", self.source, self.root, exc)
        self.coalescer.rescan(self.source)

    def stop(self) -> None:
        if self.observer is not None:
            self.observer.stop()
            if self.observer.is_alive():
                self.observer.join(timeout=5)
            self.observer = None


class OverflowHook(logging.Handler):
    """watchdog rebuilds its inotify watches after a queue overflow but the events are lost:
    its warning is our cue to rescan every watched folder."""

    def __init__(self, on_overflow: Callable[[], None]):
        super().__init__(logging.WARNING)
        self.on_overflow = on_overflow

    def emit(self, record: logging.LogRecord) -> None:
        if "overflow" in record.getMessage().lower():
            self.on_overflow()

    def install(self) -> None:
        for name in ("watchdog.observers.inotify_c", "watchdog.observers.inotify"):
            logging.getLogger(name).addHandler(self)

    def uninstall(self) -> None:
        for name in ("watchdog.observers.inotify_c", "watchdog.observers.inotify"):
            logging.getLogger(name).removeHandler(self)

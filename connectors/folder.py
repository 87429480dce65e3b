"""The folder source: files under a root, detected by (mtime_ns, size, inode)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Mapping
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from connectors import SourceError
from freshrag.config import ConfigError
from freshrag.model import Candidate, Fingerprint, Item


class FolderOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: Path
    # fnmatch patterns on the path relative to the root; '*' also crosses folders.
    include: list[str] = ["*"]
    exclude: list[str] = []
    follow_symlinks: bool = False
    max_file_mb: float | None = Field(None, gt=0)


READ_ATTEMPTS = 3  # a file that changes while being read is read again, this many times
_KINDS = {stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a device",
          stat.S_IFBLK: "a device"}


class FileGone(SourceError):
    """The file was deleted between the scan and the read (the engine deletes it, no error)."""

    gone = True


def fingerprint_of(st: os.stat_result) -> Fingerprint:
    return Fingerprint(st.st_mtime_ns, st.st_size, st.st_ino)


def _same_version(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_mtime_ns, a.st_ctime_ns, a.st_size, a.st_ino) == (
        b.st_mtime_ns, b.st_ctime_ns, b.st_size, b.st_ino)


def read_all(fd: int, limit: int) -> bytes:
    """Up to `limit` bytes from an open file."""
    parts, size = [], 0
    while size < limit:
        part = os.read(fd, min(1 << 20, limit - size))
        if not part:
            break
        parts.append(part)
        size += len(part)
    return b"".join(parts)


class FolderSource:
    """A folder, scanned recursively; hidden entries and freshrag's home are skipped."""

    def __init__(self, config: Any, settings: Any):
        self.name: str = config.name
        opts = config.parse_options(FolderOptions)
        base = Path(getattr(settings, "base_dir", "."))
        root = opts.path if opts.path.is_absolute() else base / opts.path
        self.root = root.resolve()
        if not self.root.is_dir():
            raise ConfigError(f"sources.{self.name}.path: {self.root} is not a folder")
        self.opts = opts
        self.home = Path(settings.home).resolve()
        max_mb = opts.max_file_mb or settings.parse.max_file_mb
        self.max_bytes = int(max_mb * 1024 * 1024)

    # selection --------------------------------------------------------------------------------
    def wanted(self, rel: str) -> bool:
        parts = rel.split("/")
        if any(p.startswith(".") for p in parts):
            return False
        if any(fnmatchcase(rel, pat) for pat in self.opts.exclude):
            return False
        return any(fnmatchcase(rel, pat) for pat in self.opts.include)

    def _prune(self, path: str, rel: str) -> bool:
        if rel.rsplit("/", 1)[-1].startswith("."):
            return True
        if os.path.realpath(path) == str(self.home):
            return True
        return any(fnmatchcase(rel, pat) or fnmatchcase(rel + "/", pat)
                   for pat in self.opts.exclude)

    def _walk(self, top: str, rel: str, seen_dirs: set[tuple[int, int]]
              ) -> Iterator[tuple[str, os.stat_result | None, str | None]]:
        try:
            entries = list(os.scandir(top))
        except OSError as exc:
            yield rel or ".", None, f"cannot list folder: {exc.strerror}"
            return
        for entry in entries:
            child = f"{rel}/{entry.name}" if rel else entry.name
            try:
                st = entry.stat(follow_symlinks=self.opts.follow_symlinks)
            except OSError as exc:  # a dangling link, a file gone since listing
                if entry.is_symlink():
                    continue
                yield child, None, f"cannot stat: {exc.strerror}"
                continue
            if stat.S_ISDIR(st.st_mode):
                if self._prune(entry.path, child):
                    continue
                ident = (st.st_dev, st.st_ino)
                if ident in seen_dirs:  # a symlink loop
                    continue
                seen_dirs.add(ident)
                yield from self._walk(entry.path, child, seen_dirs)
            elif stat.S_ISREG(st.st_mode) and self.wanted(child):
                yield child, st, None
            elif stat.S_IFMT(st.st_mode) in _KINDS and self.wanted(child):
                yield child, None, f"not a regular file ({_KINDS[stat.S_IFMT(st.st_mode)]})"

    @staticmethod
    def _key_error(rel: str) -> str | None:
        try:
            rel.encode("utf-8")
        except UnicodeEncodeError:
            return "file name is not valid UTF-8"
        return None

    # Source protocol ----------------------------------------------------------------------------
    def scan(self, known: Mapping[str, Fingerprint]) -> Iterator[Candidate]:
        seen: set[str] = set()
        for rel, st, error in self._walk(str(self.root), "", set()):
            error = error or self._key_error(rel)
            if error:
                key = rel.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
                yield Candidate(key, None, error=error)
                continue
            assert st is not None
            seen.add(rel)
            fp = fingerprint_of(st)
            if known.get(rel) != fp:
                yield Candidate(rel, fp)
        for key in known:
            if key not in seen:
                yield Candidate(key, None)

    def candidates(self, keys: list[str]) -> Iterator[Candidate]:
        for key in dict.fromkeys(keys):
            path = self.root / key
            try:
                st = path.stat() if self.opts.follow_symlinks else path.lstat()
            except OSError:
                yield Candidate(key, None)
                continue
            if stat.S_ISDIR(st.st_mode):
                for rel, sub, error in self._walk(str(path), key, set()):
                    yield Candidate(rel, fingerprint_of(sub) if sub else None, error=error)
            elif stat.S_ISREG(st.st_mode) and self.wanted(key) and not self._outside(path):
                yield Candidate(key, fingerprint_of(st))
            else:
                yield Candidate(key, None)

    def _outside(self, path: Path) -> bool:
        """A path whose folders lead outside the root through a symlink (not followed)."""
        if self.opts.follow_symlinks:
            return False
        parent = os.path.realpath(path.parent)
        return parent != str(self.root) and not parent.startswith(str(self.root) + os.sep)

    def read(self, key: str) -> Item:
        """The file's bytes, as one version: the file is stat'ed before and after the read and
        read again if it changed meanwhile. Never blocks on a FIFO, never follows a symlink
        unless configured."""
        path = self.root / key
        if self._outside(path):
            raise SourceError("path leads outside the root through a symlink (follow_symlinks "
                              "is false)")
        flags = os.O_RDONLY | os.O_NONBLOCK | (0 if self.opts.follow_symlinks else os.O_NOFOLLOW)
        for _ in range(READ_ATTEMPTS):
            try:
                fd = os.open(path, flags)
            except FileNotFoundError as exc:
                raise FileGone("deleted before it could be read") from exc
            except OSError as exc:
                raise SourceError(f"cannot open: {exc.strerror}") from exc
            try:
                st, data, after = self._read_fd(fd)
            finally:
                os.close(fd)
            if _same_version(st, after) and len(data) == st.st_size:
                return Item(key=key, data=data, fingerprint=fingerprint_of(st),
                            modified_at=st.st_mtime_ns / 1e9, location=str(path),
                            filename=path.name)
        raise SourceError(f"file kept changing while being read ({READ_ATTEMPTS} attempts); "
                          "it is read again at the next sync")

    def _read_fd(self, fd: int) -> tuple[os.stat_result, bytes, os.stat_result]:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = _KINDS.get(stat.S_IFMT(st.st_mode), "a folder or special file")
            raise SourceError(f"not a regular file ({kind})")
        if st.st_size > self.max_bytes:
            raise SourceError(f"file is {st.st_size / 1048576:.1f} MB, over the "
                              f"{self.max_bytes / 1048576:.0f} MB limit (max_file_mb)")
        try:
            data = read_all(fd, self.max_bytes + 1)
        except OSError as exc:
            raise SourceError(f"cannot read: {exc.strerror}") from exc
        if len(data) > self.max_bytes:
            raise SourceError("file grew over the size limit while being read")
        return st, data, os.fstat(fd)

    def commit(self) -> None:
        """Folders have no cursor: the ledger's fingerprints are the state."""

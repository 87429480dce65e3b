"""The folder source: files under a root, detected by (mtime_ns, size, inode[, permissions])."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Mapping
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote_to_bytes

from pydantic import BaseModel, ConfigDict, Field

from connectors import SourceError
from connectors.permissions import Level, ReadersUnknown, level_of, perm_hash, posix_readers
from freshrag.config import ConfigError
from freshrag.model import EVERYONE, Candidate, Fingerprint, Item
from freshrag.parse import skip_reason


class FolderOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: Path
    # fnmatch patterns on the path relative to the root; '*' also crosses folders.
    include: list[str] = ["*"]
    exclude: list[str] = []
    follow_symlinks: bool = False
    max_file_mb: float | None = Field(None, gt=0)
    # "posix": readers from owners, modes and ACLs of each file and its folders; "none":
    # everyone may read everything
    permissions: Literal["none", "posix"] = "none"


Walked = tuple[str, os.stat_result | None, str | None, list[Level] | None]
READ_ATTEMPTS = 3  # a file that changes while being read is read again, this many times
_KINDS = {stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a device",
          stat.S_IFBLK: "a device"}


class FileGone(SourceError):
    """The file was deleted between the scan and the read (the engine deletes it, no error)."""

    gone = True


def key_of(rel: str) -> str:
    """The document key of a path relative to the root ('/'-separated, as os.fsdecode gives
    it): the name itself, with '%' written as %25 and each byte that is not valid UTF-8 as %XX.
    Lossless: `rel_of` maps every key back to its file."""
    text = os.fsencode(rel).decode("utf-8", "surrogateescape")
    return "".join("%25" if ch == "%" else f"%{ord(ch) - 0xDC00:02X}"
                   if "\udc80" <= ch <= "\udcff" else ch for ch in text)


def rel_of(key: str) -> str:
    """The relative path (os.fsdecode'd) a document key names: `key_of` undone."""
    return os.fsdecode(unquote_to_bytes(key))


def display_path(path: Path) -> str:
    """A path as text for a location: undecodable bytes shown as \\xNN."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def fingerprint_of(st: os.stat_result, levels: list[Level] | None = None) -> Fingerprint:
    return Fingerprint(st.st_mtime_ns, st.st_size, st.st_ino,
                       perm_hash(levels) if levels is not None else "")


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
        self.captures_readers = opts.permissions == "posix"

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

    def _levels(self, rel: str) -> list[Level] | None:
        """The permission steps from the root down to the folder `rel` ("" = the root itself);
        None when readers are not captured."""
        if self.opts.permissions != "posix":
            return None
        path, out = self.root, [level_of(self.root, self.root.stat())]
        for part in [p for p in rel.split("/") if p]:
            path = path / part
            out.append(level_of(path, path.stat()))
        return out

    def _walk(self, top: str, rel: str, seen_dirs: set[tuple[int, int]],
              levels: list[Level] | None = None) -> Iterator[Walked]:
        try:
            entries = list(os.scandir(top))
        except OSError as exc:
            yield rel or ".", None, f"cannot list folder: {exc.strerror}", None
            return
        for entry in entries:
            child = f"{rel}/{entry.name}" if rel else entry.name
            try:
                st = entry.stat(follow_symlinks=self.opts.follow_symlinks)
            except OSError as exc:  # a dangling link, a file gone since listing
                if entry.is_symlink():
                    continue
                yield child, None, f"cannot stat: {exc.strerror}", None
                continue
            here = None if levels is None else [*levels, level_of(entry.path, st)]
            if stat.S_ISDIR(st.st_mode):
                if self._prune(entry.path, child):
                    continue
                ident = (st.st_dev, st.st_ino)
                if ident in seen_dirs:  # a symlink loop
                    continue
                seen_dirs.add(ident)
                yield from self._walk(entry.path, child, seen_dirs, here)
            elif stat.S_ISREG(st.st_mode) and self.wanted(child):
                yield child, st, None, here
            elif stat.S_IFMT(st.st_mode) in _KINDS and self.wanted(child):
                kind = _KINDS[stat.S_IFMT(st.st_mode)]
                yield child, st, f"not a regular file ({kind})", here

    @staticmethod
    def _candidate(rel: str, st: os.stat_result | None, error: str | None,
                   levels: list[Level] | None = None) -> Candidate:
        """A walked entry as a candidate. `st` is set for files (regular or special); the
        parse stage says from the name which files are skipped, before any other check."""
        key = key_of(rel)
        if st is not None:
            skipped = skip_reason(key.rsplit("/", 1)[-1])
            if skipped is not None:
                return Candidate(key, None, skipped=skipped)
        if error is not None or st is None:
            return Candidate(key, None, error=error or "cannot stat")
        return Candidate(key, fingerprint_of(st, levels))

    # Source protocol ----------------------------------------------------------------------------
    def scan(self, known: Mapping[str, Fingerprint]) -> Iterator[Candidate]:
        seen: set[str] = set()
        for rel, st, error, levels in self._walk(str(self.root), "", set(), self._levels("")):
            cand = self._candidate(rel, st, error, levels)
            if cand.fingerprint is not None:
                seen.add(cand.key)
                if known.get(cand.key) == cand.fingerprint:
                    continue
            yield cand
        for key in known:
            if key not in seen:
                yield Candidate(key, None)

    def candidates(self, keys: list[str]) -> Iterator[Candidate]:
        for key in dict.fromkeys(keys):
            rel = rel_of(key)
            path = self.root / rel
            try:
                st = path.stat() if self.opts.follow_symlinks else path.lstat()
            except OSError:
                yield Candidate(key, None)
                continue
            try:
                parent = self._levels(rel.rpartition("/")[0])
            except OSError:  # a folder on the way went away meanwhile
                yield Candidate(key, None)
                continue
            if stat.S_ISDIR(st.st_mode):
                here = None if parent is None else [*parent, level_of(path, st)]
                for sub_rel, sub, error, levels in self._walk(str(path), rel, set(), here):
                    yield self._candidate(sub_rel, sub, error, levels)
            elif stat.S_ISREG(st.st_mode) and self.wanted(rel) and not self._outside(path):
                yield self._candidate(rel, st, None,
                                      None if parent is None else [*parent, level_of(path, st)])
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
        path = self.root / rel_of(key)
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
                levels, readers, why = self._readers(path, key, st)
                return Item(key=key, data=data, fingerprint=fingerprint_of(st, levels),
                            modified_at=st.st_mtime_ns / 1e9, location=display_path(path),
                            filename=key.rsplit("/", 1)[-1], readers=readers,
                            readers_error=why)
        raise SourceError(f"file kept changing while being read ({READ_ATTEMPTS} attempts); "
                          "it is read again at the next sync")

    def _readers(self, path: Path, key: str, st: os.stat_result
                 ) -> tuple[list[Level] | None, list[str], str | None]:
        """The file's permission steps, its readers, and why they are unknown (if they are)."""
        try:
            levels = self._levels(rel_of(key).rpartition("/")[0])
        except OSError as exc:
            return None, [], f"cannot stat a folder above it: {exc.strerror}"
        if levels is None:
            return None, [EVERYONE], None
        levels.append(level_of(path, st))
        try:
            return levels, posix_readers(levels), None
        except ReadersUnknown as exc:
            return levels, [], str(exc)

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

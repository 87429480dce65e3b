"""POSIX readers against the kernel's own access rule, and the watcher's attribute events."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from watchdog.events import DirAttribEvent, DirModifiedEvent, FileAttribEvent

from connectors.permissions import Acl, Level, parse_acl, posix_readers
from flows.batching import Coalescer
from flows.feeds import _Handler
from freshrag.model import EVERYONE

UIDS, GIDS = [5001, 5002, 5003], [6001, 6002, 6003]


def kernel_allows(lv: Level, uid: int, groups: set[int], bit: int) -> bool:
    """fs/namei.c acl_permission_check + fs/posix_acl.c posix_acl_permission, for a user who
    is not root: the first class that matches decides."""
    if uid == lv.uid:
        return bool((lv.mode >> 6) & bit)
    if lv.acl is None:
        if lv.gid in groups:
            return bool((lv.mode >> 3) & bit)
        return bool(lv.mode & bit)
    mask = 7 if lv.acl.mask is None else lv.acl.mask
    if uid in lv.acl.users:
        return bool(lv.acl.users[uid] & mask & bit)
    matched = [lv.acl.group_obj] if lv.gid in groups else []
    matched += [p for g, p in lv.acl.groups.items() if g in groups]
    if matched:
        return any(p & mask & bit for p in matched)
    return bool(lv.mode & bit)


perm = st.integers(0, 7)
acls = st.one_of(st.none(), st.builds(
    Acl, perm, st.one_of(st.none(), perm),
    st.dictionaries(st.sampled_from(UIDS), perm, max_size=2),
    st.dictionaries(st.sampled_from(GIDS), perm, max_size=2)))
levels = st.builds(Level, st.sampled_from(UIDS), st.sampled_from(GIDS),
                   st.integers(0, 0o777), acls)


@settings(max_examples=400, deadline=None)
@given(path=st.lists(levels, min_size=1, max_size=4), uid=st.sampled_from(UIDS),
       groups=st.sets(st.sampled_from(GIDS), max_size=3))
def test_no_reader_the_kernel_would_refuse(path: list[Level], uid: int,
                                           groups: set[int]) -> None:
    """Whatever the modes, owners and ACLs: a user whose principals meet the readers may
    really read the file (search on every folder, read on the file)."""
    readers = set(posix_readers(path))
    mine = {EVERYONE, f"uid:{uid}", *(f"gid:{g}" for g in groups)}
    if readers & mine:
        bits = [1] * (len(path) - 1) + [4]
        assert all(kernel_allows(lv, uid, groups, b) for lv, b in zip(path, bits, strict=True))


def test_the_owner_of_an_open_path_is_a_reader() -> None:
    """Not vacuous: the usual cases grant."""
    root = Level(0, 0, 0o755)
    assert posix_readers([root, Level(5001, 6001, 0o600)]) == ["uid:5001"]
    acl = Acl(group_obj=0, mask=4, users={5002: 6}, groups={6002: 4})
    readers = posix_readers([root, Level(5001, 6001, 0o640, acl)])
    assert readers == ["uid:5001", "uid:5002", "gid:6002"]  # 5002: rw & mask r


def test_parse_acl_reads_the_kernel_format() -> None:
    raw = bytes.fromhex("02000000" "0100 0600 ffffffff" "0200 0400 89130000"
                        "0400 0000 ffffffff" "0800 0500 71170000" "1000 0500 ffffffff"
                        "2000 0000 ffffffff".replace(" ", ""))
    assert parse_acl(raw) == Acl(group_obj=0, mask=5, users={5001: 4}, groups={6001: 5})


def test_folder_attribute_events_become_keys_only_when_readers_come_from_folders(
        tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    plain, perms = Coalescer(), Coalescer()
    for coalescer, attrib in ((plain, False), (perms, True)):
        handler = _Handler("docs", tmp_path, None, coalescer, folder_attrib=attrib)
        handler.on_any_event(DirAttribEvent(str(tmp_path / "sub")))
        handler.on_any_event(DirModifiedEvent(str(tmp_path / "sub")))  # a child's change
        handler.on_any_event(FileAttribEvent(str(tmp_path / "sub" / "a.md")))
    assert list(plain._pending["docs"].keys) == ["sub/a.md"]
    assert list(perms._pending["docs"].keys) == ["sub", "sub/a.md"]
    handler = _Handler("docs", tmp_path, None, perms, folder_attrib=True)
    handler.on_any_event(DirAttribEvent(str(tmp_path)))  # the root: every document
    assert perms._pending["docs"].rescan

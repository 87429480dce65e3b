"""Readers captured with the content: POSIX modes, owners and ACLs, or a table's readers column."""

from __future__ import annotations

import errno
import grp
import json
import os
import pwd
import re
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

from freshrag.model import EVERYONE, Item, content_hash

ACL_XATTR = "system.posix_acl_access"
# linux/posix_acl_xattr.h: a version word, then (tag u16, perm u16, id u32) entries
_ACL_VERSION = 2
_USER_OBJ, _USER, _GROUP_OBJ, _GROUP, _MASK, _OTHER = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
READ, SEARCH = 4, 1
PRINCIPAL_RE = re.compile(r"^[a-z][a-z0-9_-]*:[^\s,]+$")
NO_ACL = (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP)


class ReadersUnknown(Exception):
    """Who may read an item cannot be determined (it is indexed readable by nobody)."""


@dataclass(frozen=True)
class Acl:
    group_obj: int
    mask: int | None
    users: dict[int, int] = field(default_factory=dict)
    groups: dict[int, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Level:
    """What decides access at one step of a path: the source root, a folder, the file."""

    uid: int
    gid: int
    mode: int
    acl: Acl | None = None
    raw_acl: bytes = b""
    error: str | None = None  # the ACL could not be read or parsed


def parse_acl(raw: bytes) -> Acl:
    if len(raw) < 4 or (len(raw) - 4) % 8 or struct.unpack_from("<I", raw)[0] != _ACL_VERSION:
        raise ValueError("not a POSIX ACL")
    group_obj, mask = 0, None
    users: dict[int, int] = {}
    groups: dict[int, int] = {}
    for tag, perm, ident in struct.iter_unpack("<HHI", raw[4:]):
        if tag == _USER:
            users[ident] = perm
        elif tag == _GROUP:
            groups[ident] = perm
        elif tag == _GROUP_OBJ:
            group_obj = perm
        elif tag == _MASK:
            mask = perm
        elif tag not in (_USER_OBJ, _OTHER):
            raise ValueError(f"unknown ACL entry tag {tag:#x}")
    return Acl(group_obj, mask, users, groups)


def level_of(path: str | os.PathLike[str], st: os.stat_result) -> Level:
    """One path step's owner, group, mode and access ACL (where the filesystem has them)."""
    try:
        raw = os.getxattr(path, ACL_XATTR, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in NO_ACL:
            return Level(st.st_uid, st.st_gid, st.st_mode & 0o7777)
        return Level(st.st_uid, st.st_gid, st.st_mode & 0o7777,
                     error=f"cannot read the ACL of {os.fsdecode(path)}: {exc.strerror}")
    try:
        acl = parse_acl(raw)
    except ValueError as exc:
        return Level(st.st_uid, st.st_gid, st.st_mode & 0o7777, raw_acl=raw,
                     error=f"unreadable ACL on {os.fsdecode(path)}: {exc}")
    return Level(st.st_uid, st.st_gid, st.st_mode & 0o7777, acl, raw)


def perm_hash(levels: Sequence[Level]) -> str:
    """A short fingerprint of everything that decides who may read (a change = re-write)."""
    return content_hash(repr([(lv.uid, lv.gid, lv.mode, lv.raw_acl, lv.error)
                              for lv in levels]))[:16]


def _classes(lv: Level) -> tuple[int, int, int, dict[int, int], dict[int, int]]:
    """owner, other, owning group, named users, named groups: effective bits (mask applied)."""
    owner, other = (lv.mode >> 6) & 7, lv.mode & 7
    if lv.acl is None:
        return owner, other, (lv.mode >> 3) & 7, {}, {}
    mask = 7 if lv.acl.mask is None else lv.acl.mask
    return (owner, other, lv.acl.group_obj & mask,
            {u: p & mask for u, p in lv.acl.users.items()},
            {g: p & mask for g, p in lv.acl.groups.items()})


def _anyone(lv: Level, bit: int) -> bool:
    """Every user whatever their groups: every class grants."""
    owner, other, group_obj, users, groups = _classes(lv)
    return all(p & bit for p in (owner, other, group_obj, *users.values(), *groups.values()))


def _user(lv: Level, uid: int, bit: int) -> bool:
    """User `uid`, whose groups are unknown: as its owner or named entry says, else it must be
    granted whatever group it is in (every group entry) or none (other)."""
    owner, other, group_obj, users, groups = _classes(lv)
    if uid == lv.uid:
        return bool(owner & bit)
    if uid in users:
        return bool(users[uid] & bit)
    return all(p & bit for p in (other, group_obj, *groups.values()))


def _group(lv: Level, gid: int, bit: int) -> bool:
    """Every member of group `gid`: its entry grants, and so do the entries a member may match
    first (the owner, named users)."""
    owner, _, group_obj, users, groups = _classes(lv)
    entry = group_obj if gid == lv.gid else groups.get(gid)
    if entry is None:
        return _anyone(lv, bit)
    return all(p & bit for p in (entry, owner, *users.values()))


@lru_cache(maxsize=4096)
def user_principals(uid: int) -> tuple[str, ...]:
    try:
        return (f"user:{pwd.getpwuid(uid).pw_name}", f"uid:{uid}")
    except KeyError:  # an unknown uid is still a principal
        return (f"uid:{uid}",)


@lru_cache(maxsize=4096)
def group_principals(gid: int) -> tuple[str, ...]:
    try:
        return (f"group:{grp.getgrgid(gid).gr_name}", f"gid:{gid}")
    except KeyError:
        return (f"gid:{gid}",)


def posix_readers(levels: Sequence[Level]) -> list[str]:
    """Principals that may read the file at the end of `levels` (root first): each must be
    granted search (x) on every folder and read (r) on the file by itself. Conservative where
    group membership would decide: a user is never listed for access only a group gives.
    Raises ReadersUnknown for an unreadable ACL."""
    for lv in levels:
        if lv.error is not None:
            raise ReadersUnknown(lv.error)
    bits = [SEARCH] * (len(levels) - 1) + [READ]
    steps = list(zip(levels, bits, strict=True))
    if all(_anyone(lv, b) for lv, b in steps):
        return [EVERYONE]
    uids = {lv.uid for lv in levels} | {u for lv in levels if lv.acl for u in lv.acl.users}
    gids = {lv.gid for lv in levels} | {g for lv in levels if lv.acl for g in lv.acl.groups}
    out: list[str] = []
    for uid in sorted(uids):
        if all(_user(lv, uid, b) for lv, b in steps):
            out += user_principals(uid)
    for gid in sorted(gids):
        if all(_group(lv, gid, b) for lv, b in steps):
            out += group_principals(gid)
    return out


def parse_readers(value: Any, column: str) -> list[str]:
    """A readers column's value: an array, a JSON list, or comma-separated principals
    (`user:alice, group:support`). Raises ReadersUnknown for NULL or anything else."""
    if value is None:
        raise ReadersUnknown(f"readers column {column!r} is NULL")
    items: Iterable[Any]
    if isinstance(value, (list, tuple)):
        items = value
    elif isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                items = json.loads(text)
            except ValueError as exc:
                raise ReadersUnknown(f"readers column {column!r}: not a JSON list") from exc
            if not isinstance(items, list):
                raise ReadersUnknown(f"readers column {column!r}: not a JSON list")
        else:
            if text.startswith("{") and text.endswith("}"):  # a Postgres array as text
                text = text[1:-1]
            items = [p.strip().strip('"') for p in text.split(",")] if text else []
    else:
        raise ReadersUnknown(f"readers column {column!r}: a {type(value).__name__}, expected "
                             "principals")
    out = []
    for item in items:
        principal = item.strip() if isinstance(item, str) else item
        if principal != EVERYONE and not (isinstance(principal, str)
                                          and PRINCIPAL_RE.match(principal)):
            raise ReadersUnknown(f"readers column {column!r}: {str(item)[:40]!r} is not a "
                                 "principal (kind:name, or everyone)")
        out.append(principal)
    if not out:
        raise ReadersUnknown(f"readers column {column!r} names no reader")
    return sorted(set(out))


def with_readers(item: Item, value: Any, column: str) -> Item:
    """A table row's item with the readers its column names (none, reported, if it names
    nonsense); they are part of its fingerprint, so a readers-only UPDATE is seen."""
    try:
        readers, why = parse_readers(value, column), None
    except ReadersUnknown as exc:
        readers, why = [], str(exc)
    perm = content_hash(repr(readers if why is None else why))[:16]
    return replace(item, readers=readers, readers_error=why,
                   fingerprint=replace(item.fingerprint, perm=perm))

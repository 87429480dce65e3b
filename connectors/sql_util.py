"""Pure helpers of the SQL source: doc-key encoding, JSON-safe values, cursor state, keyset SQL."""

from __future__ import annotations

import base64
import json
import math
import time as _time
import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, false, or_, true
from sqlalchemy.sql.elements import ColumnElement

from freshrag.model import Fingerprint, Item, content_hash

# --- doc keys ---------------------------------------------------------------------------------
# One key column: the value's text as is ("42", "ab/c").  Several: each value's text with '%'
# and '/' percent-escaped, joined by '/' ("acme/42", "a%2Fb/7"). Stable and reversible.


def value_text(value: Any) -> str:
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    return str(value)


def encode_key(values: Sequence[Any]) -> str:
    if len(values) == 1:
        return value_text(values[0])
    return "/".join(value_text(v).replace("%", "%25").replace("/", "%2F") for v in values)


def split_key(key: str, parts: int) -> list[str]:
    if parts == 1:
        return [key]
    pieces = key.split("/")
    if len(pieces) != parts:
        raise ValueError(f"key {key!r} does not have {parts} parts")
    return [p.replace("%2F", "/").replace("%2f", "/").replace("%25", "%") for p in pieces]


def parse_value(text: str, kind: type | None) -> Any:
    """The typed value of one key part, for a column of Python type `kind` (None: as text)."""
    if kind is None or kind is str:
        return text
    if kind is bool:
        return text.lower() in ("1", "true", "t")
    if kind in (int, float, Decimal):
        return kind(text)
    if kind is uuid.UUID:
        return uuid.UUID(text)
    if kind is datetime:
        return datetime.fromisoformat(text)
    if kind is date:
        return date.fromisoformat(text)
    if kind is bytes:
        return bytes.fromhex(text)
    return text


def decode_key(key: str, kinds: Sequence[type | None]) -> tuple[Any, ...]:
    """Raises ValueError when `key` cannot be a key of this table."""
    parts = split_key(key, len(kinds))
    try:
        values = tuple(parse_value(p, k) for p, k in zip(parts, kinds, strict=True))
    except (ValueError, ArithmeticError) as exc:
        raise ValueError(f"key {key!r}: {exc}") from exc
    if encode_key(values) != key:  # "007" is not the integer key 7's document
        raise ValueError(f"key {key!r} is not in canonical form")
    return values


# --- rows -------------------------------------------------------------------------------------

def python_type(column: Any) -> type | None:
    try:
        kind: type = column.type.python_type
        return kind
    except (NotImplementedError, AttributeError):
        return None


def is_deleted(value: Any) -> bool:
    """Soft-delete semantics: NULL, false, 0, '', 'false', 'no' are live; anything else is not."""
    if value is None:
        return False
    if isinstance(value, str):
        return value.strip().lower() not in ("", "0", "false", "f", "no", "n")
    if isinstance(value, bool | int | float):
        return bool(value)
    return True  # a deleted_at timestamp


def _utf8_error(column: str, value: Any) -> tuple[Any, str | None]:
    """(text value, None) or (None, why the column's bytes are not UTF-8)."""
    if isinstance(value, bytes | bytearray | memoryview):
        try:
            return bytes(value).decode("utf-8"), None
        except UnicodeDecodeError as exc:
            return None, f"column {column}: not valid UTF-8 ({exc.reason} at byte {exc.start})"
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:  # SQLite text read with surrogateescape
            return None, f"column {column}: not valid UTF-8 text (at character {exc.start})"
    return value, None


def render_row(m: Any, key: str, opts: Any, fields: Sequence[str], location: str
               ) -> Item | str:
    """A row (mapping) as an Item with its rendered text, or the reason it cannot be indexed."""
    values: dict[str, Any] = {}
    for f in fields:
        v, error = _utf8_error(f, m[f])
        if error:
            return error
        values[f] = "" if v is None else v
    try:
        text = opts.text.format_map(values)
    except (KeyError, IndexError, ValueError, TypeError, AttributeError) as exc:
        return f"text template failed: {type(exc).__name__}: {exc}"
    if not text.strip():
        nulls = [f for f in fields if m[f] is None]
        return ("no text: " + (f"{', '.join(nulls)} {'is' if len(nulls) == 1 else 'are'} NULL"
                               if nulls else "the template renders blank"))
    data = text.encode("utf-8", "replace")
    if len(data) > opts.max_text_kb * 1024:
        return (f"text is {len(data) / 1024:.0f} KB, over the {opts.max_text_kb} KB limit "
                "(max_text_kb)")
    metadata = {c: json_safe(m[c]) for c in opts.metadata}
    cursor = m[opts.cursor]
    ts = timestamp_of(cursor)
    return Item(key=key, data=data, fingerprint=row_fingerprint(cursor, text, metadata),
                modified_at=ts if ts is not None else _time.time(), location=location,
                metadata=metadata, text=text, title=title_of(text))


def title_of(text: str, limit: int = 200) -> str:
    """A row's title: the first non-blank line of its rendered text, at most `limit` chars."""
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return line if len(line) <= limit else line[:limit - 1].rstrip() + "…"


# --- values -----------------------------------------------------------------------------------

def json_safe(value: Any) -> Any:
    """A column value as a JSON value (metadata properties must be filterable and portable)."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return "base64:" + base64.b64encode(raw).decode("ascii")
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [json_safe(v) for v in value]
    return str(value)


def timestamp_of(value: Any) -> float | None:
    """Unix seconds of a timestamp cursor value (naive timestamps are taken as UTC)."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.timestamp()
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp()
    return None


def cursor_ns(value: Any) -> int:
    ts = timestamp_of(value)
    if ts is not None:
        return int(ts * 1_000_000_000)
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | Decimal):
        return int(value) & 0x7FFF_FFFF_FFFF_FFFF
    if isinstance(value, float) and math.isfinite(value):
        return int(value * 1_000_000_000) & 0x7FFF_FFFF_FFFF_FFFF
    return 0


def row_fingerprint(cursor: Any, text: str, metadata: dict[str, Any]) -> Fingerprint:
    """Stable per row version: (cursor, text size, 60 bits of sha256(text + metadata))."""
    digest = content_hash(text + "\x1f" + json.dumps(metadata, sort_keys=True, default=str))
    return Fingerprint(cursor_ns(cursor), len(text.encode("utf-8")), int(digest[:15], 16))


# --- cursor state (JSON in the ledger's source state) ------------------------------------------

def dump_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"dt": value.isoformat()}
    if isinstance(value, date):
        return {"d": value.isoformat()}
    if isinstance(value, Decimal):
        return {"dec": str(value)}
    if isinstance(value, uuid.UUID):
        return {"uuid": str(value)}
    if isinstance(value, bytes | bytearray | memoryview):
        return {"hex": bytes(value).hex()}
    return value


def load_value(value: Any) -> Any:
    if isinstance(value, dict):
        if "dt" in value:
            return datetime.fromisoformat(value["dt"])
        if "d" in value:
            return date.fromisoformat(value["d"])
        if "dec" in value:
            return Decimal(value["dec"])
        if "uuid" in value:
            return uuid.UUID(value["uuid"])
        if "hex" in value:
            return bytes.fromhex(value["hex"])
    return value


def minus_overlap(value: Any, overlap: float) -> Any:
    """The cursor value `overlap` units earlier (seconds for timestamps); None: no overlap."""
    if not overlap:
        return None
    if isinstance(value, datetime):
        return value - timedelta(seconds=overlap)
    if isinstance(value, date):
        return value - timedelta(days=math.ceil(overlap / 86400))
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value - math.ceil(overlap)
    if isinstance(value, float):
        return value - overlap
    if isinstance(value, Decimal):
        return value - Decimal(str(overlap))
    return None  # text cursors have no "earlier by": keyset only


# --- keyset predicates (expanded, so every dialect and optimizer takes them) ---------------------

def tuple_gt(cols: Sequence[Any], vals: Sequence[Any], inclusive: bool = False
             ) -> ColumnElement[bool]:
    """(c1, c2, ...) > (v1, v2, ...), or >= when `inclusive`."""
    ors = []
    for i in range(len(cols)):
        eqs = [cols[j] == vals[j] for j in range(i)]
        ors.append(and_(*eqs, cols[i] > vals[i]))
    if inclusive:
        ors.append(and_(*(c == v for c, v in zip(cols, vals, strict=True))))
    return or_(*ors)


def tuple_lt(cols: Sequence[Any], vals: Sequence[Any]) -> ColumnElement[bool]:
    ors = []
    for i in range(len(cols)):
        eqs = [cols[j] == vals[j] for j in range(i)]
        ors.append(and_(*eqs, cols[i] < vals[i]))
    return or_(*ors)


def in_range(cols: Sequence[Any], lo: Sequence[Any] | None, hi: Sequence[Any] | None
             ) -> ColumnElement[bool]:
    """lo <= (cols) < hi, either bound open when None."""
    parts = []
    if lo is not None:
        parts.append(tuple_gt(cols, lo, inclusive=True))
    if hi is not None:
        parts.append(tuple_lt(cols, hi))
    return and_(*parts) if parts else true()


def keys_in(cols: Sequence[Any], keys: Sequence[Sequence[Any]]) -> ColumnElement[bool]:
    if not keys:
        return false()
    if len(cols) == 1:
        return cols[0].in_([k[0] for k in keys])  # type: ignore[no-any-return]
    return or_(*(and_(*(c == v for c, v in zip(cols, k, strict=True))) for k in keys))

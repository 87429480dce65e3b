"""Doc-key encoding of primary keys: stable, reversible, canonical."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.sql_util import decode_key, encode_key, json_safe


@given(st.lists(st.one_of(st.integers(), st.text(min_size=0)), min_size=1, max_size=3))
def test_keys_round_trip(values: list[object]) -> None:
    kinds = [type(v) for v in values]
    key = encode_key(values)
    assert decode_key(key, kinds) == tuple(values)


def test_encoding_is_readable() -> None:
    assert encode_key([42]) == "42"
    assert encode_key(["a/b"]) == "a/b"
    assert encode_key(["acme/eu", 7]) == "acme%2Feu/7"
    u = uuid.UUID(int=5)
    assert decode_key(str(u), [uuid.UUID]) == (u,)


@pytest.mark.parametrize("key", ["007", "x", "1/2", ""])
def test_non_canonical_keys_are_rejected(key: str) -> None:
    with pytest.raises(ValueError):
        decode_key(key, [int])


def test_json_safe_metadata() -> None:
    from datetime import date
    from decimal import Decimal

    assert json_safe({"d": date(2024, 1, 2), "n": Decimal("2.50"), "i": Decimal(3),
                      "b": b"\xff", "s": "ok"}) == {
        "d": "2024-01-02", "n": 2.5, "i": 3, "b": "base64:/w==", "s": "ok"}

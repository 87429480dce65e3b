"""The config's shared types: its errors and the name every source and API client has."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


def _check_name(value: str) -> str:
    if not NAME_RE.match(value):
        raise ValueError("must be letters, digits, '_', '.', '-'")
    return value


Name = Annotated[str, AfterValidator(_check_name)]  # a source's or an API client's name


class ConfigError(Exception):
    """Bad configuration; the message names the key. The CLI exits with code 2."""


class VectorsMismatch(ConfigError):
    """The index holds another model's vectors than the configured model makes."""

"""Opaque cursors of group pages: the order they belong to, the sort value and fingerprint of the
last group seen. A cursor from another ordering is refused rather than silently misread."""

from __future__ import annotations

import re

from app.core import cursors as opaque
from app.groups.model import GroupOrderField

_RE = re.compile(r"^g1:([A-Z_]+):(-?\d{1,19}):([A-Za-z0-9._:/@-]{1,128})$")


def encode(order: GroupOrderField, value: int, fingerprint: str) -> str:
    return opaque.encode(f"g1:{order.value}:{value}:{fingerprint}")


def decode(cursor: str, order: GroupOrderField) -> tuple[int, str]:
    raw = opaque.decode(cursor)
    match = _RE.match(raw)
    if not match:
        raise ValueError("Malformed cursor")
    if match.group(1) != order.value:
        raise ValueError("Cursor belongs to another orderBy")
    return int(match.group(2)), match.group(3)

"""Opaque cursors of group pages: the order they belong to, the sort value and fingerprint of the
last group seen. A cursor from another ordering is refused rather than silently misread."""

from __future__ import annotations

import base64
import binascii
import re

from app.groups.model import GroupOrderField

_RE = re.compile(r"^g1:([A-Z_]+):(-?\d{1,19}):([A-Za-z0-9._:/@-]{1,128})$")


def encode(order: GroupOrderField, value: int, fingerprint: str) -> str:
    raw = f"g1:{order.value}:{value}:{fingerprint}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode(cursor: str, order: GroupOrderField) -> tuple[int, str]:
    if not 0 < len(cursor) <= 256:
        raise ValueError("Malformed cursor")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValueError("Malformed cursor") from None
    match = _RE.match(raw)
    if not match:
        raise ValueError("Malformed cursor")
    if match.group(1) != order.value:
        raise ValueError("Cursor belongs to another orderBy")
    return int(match.group(2)), match.group(3)

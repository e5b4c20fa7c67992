"""Opaque page cursors.

A cursor names the last event of a page by its id. Ids are ULIDs whose time part is the event's
timestamp, so "after this id" is a stable position in timestamp order: events inserted later land
before or after it, never shift it, and a page never repeats or skips an event that already existed.
"""

from __future__ import annotations

import base64
import binascii
import re

_VERSION = "v1:"
_ID_RE = re.compile(r"^error-[0-9A-HJKMNP-TV-Z]{26}$")


def encode(event_id: str) -> str:
    return base64.urlsafe_b64encode((_VERSION + event_id).encode()).decode().rstrip("=")


def decode(cursor: str) -> str:
    """The event id inside a cursor; ValueError when it is not one of ours."""
    if not 0 < len(cursor) <= 128:
        raise ValueError("Malformed cursor")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValueError("Malformed cursor") from None
    event_id = raw.removeprefix(_VERSION)
    if not raw.startswith(_VERSION) or not _ID_RE.match(event_id):
        raise ValueError("Malformed cursor")
    return event_id

"""Opaque page cursors.

A cursor names the last event of a page by its id. Ids are ULIDs whose time part is the event's
timestamp, so "after this id" is a stable position in timestamp order: events inserted later land
before or after it, never shift it, and a page never repeats or skips an event that already existed.
"""

from __future__ import annotations

import re

from app.core import cursors as opaque

_VERSION = "v1:"
_ID_RE = re.compile(r"^error-[0-9A-HJKMNP-TV-Z]{26}$")


def encode(event_id: str) -> str:
    return opaque.encode(_VERSION + event_id)


def decode(cursor: str) -> str:
    """The event id inside a cursor; ValueError when it is not one of ours."""
    raw = opaque.decode(cursor, max_length=128)
    event_id = raw.removeprefix(_VERSION)
    if not raw.startswith(_VERSION) or not _ID_RE.match(event_id):
        raise ValueError("Malformed cursor")
    return event_id


def encode_position(seq: int) -> str:
    """A live-feed position: subscribe with `after` set to it to resume without gap or duplicate."""
    return opaque.encode_number("p1", seq)


def decode_position(position: str) -> int:
    return opaque.decode_number(position, "p1")

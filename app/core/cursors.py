"""The one cursor codec: opaque, URL-safe tokens for page cursors and live-feed positions.

A token is the unpadded URL-safe base64 of `<tag>:<parts>`. The tag names the kind of token and its
version (`v1` an event page, `g1` a group page, `p1` an event-feed position, `s1` a status position), so
that one kind is never read as another; each domain declares its own tag and the pattern of its parts.
Anything that is not a token of the expected kind raises ValueError with a message fit for a client.
"""

from __future__ import annotations

import base64
import binascii
import re

_MAX_TOKEN = 256
_POSITION_RE = re.compile(r"\d{1,18}")


def encode(tag: str, *parts: str | int) -> str:
    text = ":".join((tag, *map(str, parts)))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode(
    token: str, tag: str, pattern: re.Pattern[str], *, max_length: int = _MAX_TOKEN
) -> tuple[str, ...]:
    """The groups of `pattern` matched against the parts of a token of kind `tag`."""
    if not 0 < len(token) <= max_length:
        raise ValueError("Malformed cursor")
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValueError("Malformed cursor") from None
    prefix, _, rest = text.partition(":")
    match = pattern.fullmatch(rest) if prefix == tag else None
    if match is None:
        raise ValueError("Malformed cursor")
    return match.groups() or (match.group(0),)


def encode_position(tag: str, seq: int) -> str:
    """A position in a live feed: subscribe with `after` set to it to resume without gap or duplicate."""
    return encode(tag, seq)


def decode_position(token: str, tag: str) -> int:
    try:
        (digits,) = decode(token, tag, _POSITION_RE, max_length=64)
    except ValueError:
        raise ValueError("Malformed position") from None
    return int(digits)

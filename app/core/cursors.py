"""Opaque tokens (page cursors): URL-safe base64 of a short text, unpadded."""

from __future__ import annotations

import base64
import binascii


def encode(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode(token: str, max_length: int = 256) -> str:
    """The text inside `token`; ValueError("Malformed cursor") for anything that is not one."""
    if not 0 < len(token) <= max_length:
        raise ValueError("Malformed cursor")
    try:
        return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValueError("Malformed cursor") from None


def encode_number(tag: str, number: int) -> str:
    """A tagged position (`p1:42`): the tag keeps one kind of position from being read as another."""
    return encode(f"{tag}:{number}")


def decode_number(token: str, tag: str) -> int:
    """The number of a position made by `encode_number` with the same tag; ValueError otherwise."""
    text = decode(token, max_length=64)
    prefix, _, digits = text.partition(":")
    if prefix != tag or not (0 < len(digits) <= 18 and digits.isascii() and digits.isdigit()):
        raise ValueError("Malformed position")
    return int(digits)

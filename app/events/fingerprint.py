"""Fingerprints: events with the same fingerprint are the same problem.

With a reporter-supplied `code`, the code (plus `source`) is the problem's identity. Otherwise the message
is normalized so that volatile parts (UUIDs, e-mail addresses, quoted values, hex ids, numbers) do not
split one problem into many: "User 42 not found" and "User 7 not found" group together.
"""

from __future__ import annotations

import hashlib
import re

_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"),
        "<uuid>",
    ),
    (re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"), "<email>"),
    (re.compile(r"'[^'\n]*'|\"[^\"\n]*\""), "<str>"),
    # Hex ids: 0x-prefixed, or 6+ hex characters mixing digits and letters (so words stay words).
    (
        re.compile(r"\b0x[0-9a-fA-F]+\b|\b(?=[0-9a-fA-F]*\d)(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{6,}\b"),
        "<hex>",
    ),
    (re.compile(r"\d+(?:\.\d+)?"), "<num>"),
    (re.compile(r"\s+"), " "),
)


def normalize_message(message: str) -> str:
    text = message
    for pattern, replacement in _RULES:
        text = pattern.sub(replacement, text)
    return text.strip()


def fingerprint(message: str, code: str | None, source: str | None) -> str:
    basis = f"code:{code}" if code else f"message:{normalize_message(message)}"
    basis += f"\x1fsource:{source or ''}"
    return hashlib.sha256(basis.encode()).hexdigest()[:32]

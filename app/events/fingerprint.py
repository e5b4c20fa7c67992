"""Fingerprints: events with the same fingerprint are the same problem.

An event with an exception (SDK events) is identified by the exception's type and its in-app frames'
module (or file) and function, without line numbers: the same crash from two releases is one problem.
With a reporter-supplied `code`, the code (plus `source`) is the problem's identity. Otherwise the message
is normalized so that volatile parts (UUIDs, e-mail addresses, quoted values, hex ids, numbers) do not
split one problem into many: "User 42 not found" and "User 7 not found" group together.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

from app.events.model import ExceptionInfo

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


def _exception_basis(exceptions: Sequence[ExceptionInfo]) -> str | None:
    """Type plus in-app frames (all frames when none is marked in-app) of every exception in the chain."""
    parts: list[str] = []
    for exc in exceptions:
        frames = [f for f in exc.frames if f.in_app] or list(exc.frames)
        where = [f"{f.module or f.filename or '?'}:{f.function or '?'}" for f in frames]
        if exc.type is None and not where:
            continue
        parts.append(f"{exc.type or '?'}@{'>'.join(where)}")
    return "exception:" + "|".join(parts) if parts else None


def default_basis(
    message: str, code: str | None, source: str | None, exceptions: Sequence[ExceptionInfo] = ()
) -> str:
    basis = _exception_basis(exceptions) if exceptions else None
    if basis is None:
        basis = f"code:{code}" if code else f"message:{normalize_message(message)}"
    return basis + f"\x1fsource:{source or ''}"


def fingerprint(
    message: str, code: str | None, source: str | None, exceptions: Sequence[ExceptionInfo] = ()
) -> str:
    return hashlib.sha256(default_basis(message, code, source, exceptions).encode()).hexdigest()[:32]


def custom_fingerprint(parts: Sequence[str], default: str) -> str:
    """A Sentry `fingerprint` array; `{{ default }}` stands for the default grouping basis."""
    resolved = [default if p.replace(" ", "") == "{{default}}" else f"custom:{p}" for p in parts]
    return hashlib.sha256("\x1e".join(resolved).encode()).hexdigest()[:32]

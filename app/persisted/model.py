"""A persisted GraphQL document: the text and the id clients send instead of it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime


def sha256_hex(document: str) -> str:
    """The id Apollo's automatic persisted queries use: the SHA-256 of the document's UTF-8 text."""
    return hashlib.sha256(document.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class PersistedDocument:
    id: str  # lowercase hex SHA-256 for automatic persisted queries; any manifest id for trusted ones
    document: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class PersistedRequest:
    """What a request carried: `extensions.persistedQuery` and, perhaps, the document itself."""

    sha256_hash: str
    document: str | None

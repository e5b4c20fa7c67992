"""Rules for the `persistedQuery` request extension and for manifest files, checked at the edge."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.core.errors import ErrorCode, FieldProblem, InvalidRequest
from app.core.validation import app_error_from
from app.persisted.model import PersistedRequest

HASH_PATTERN = r"^[0-9a-fA-F]{64}$"


class PersistedQueryExtension(BaseModel):
    """`extensions.persistedQuery` as Apollo clients send it: `{"version": 1, "sha256Hash": "<hex>"}`."""

    model_config = ConfigDict(extra="ignore")
    version: int = Field(ge=1, le=1)
    sha256Hash: str = Field(pattern=HASH_PATTERN)  # the wire name


def persisted_request(extensions: dict[str, Any] | None, document: str | None) -> PersistedRequest | None:
    """The persisted-query part of a request, or None when it has none; INVALID_REQUEST (every
    problem in `details`) when the extension is malformed."""
    if not extensions or "persistedQuery" not in extensions:
        return None
    raw = extensions["persistedQuery"]
    try:
        ext = PersistedQueryExtension.model_validate(raw if isinstance(raw, dict) else {})
    except ValidationError as exc:
        raise app_error_from(exc, {}, ErrorCode.INVALID_REQUEST, prefix="extensions.persistedQuery") from None
    return PersistedRequest(ext.sha256Hash.lower(), document)


class ManifestError(ValueError):
    """A trusted-documents manifest that cannot be used (the settings report it at start-up)."""


def load_manifest(path: Path) -> dict[str, str]:
    """{id: document} from Apollo's persisted-query manifest (`{"format":
    "apollo-persisted-query-manifest", "version": 1, "operations": [{"id", "body", ...}]}`) or Relay's
    (`{"<id>": "<document>"}`)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ManifestError(f"{path}: {exc}") from None
    documents: dict[str, str] = {}
    if isinstance(data, dict) and data.get("format") == "apollo-persisted-query-manifest":
        if data.get("version") != 1 or not isinstance(data.get("operations"), list):
            raise ManifestError(f"{path}: an Apollo manifest of version 1 with an `operations` list expected")
        for index, operation in enumerate(data["operations"]):
            if not (
                isinstance(operation, dict)
                and isinstance(operation.get("id"), str)
                and isinstance(operation.get("body"), str)
            ):
                raise ManifestError(f"{path}: operations[{index}] needs a string `id` and `body`")
            documents[operation["id"].lower()] = operation["body"]
    elif isinstance(data, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        documents = {key.lower(): value for key, value in data.items()}
    else:
        raise ManifestError(
            f"{path}: neither an Apollo persisted-query manifest nor a Relay {{id: document}} map"
        )
    if not documents:
        raise ManifestError(f"{path}: no documents")
    return documents


def hash_mismatch() -> InvalidRequest:
    return InvalidRequest(
        "provided sha does not match query",
        details=[FieldProblem("extensions.persistedQuery.sha256Hash", "is not the SHA-256 of the query")],
    )

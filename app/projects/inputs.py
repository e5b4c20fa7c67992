"""The input rules of project operations, checked with pydantic at the edge."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from app.core.errors import ErrorCode
from app.core.validation import OrgId, app_error_from

MAX_NAME_CHARS = 64


class CreateProjectArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    org_id: OrgId = Field(alias="orgId")
    name: str = Field(min_length=1, max_length=MAX_NAME_CHARS)

    @field_validator("name")
    @classmethod
    def _printable(cls, value: str) -> str:
        if not value.strip() or not value.isprintable():
            raise ValueError(f"Project name must be 1 to {MAX_NAME_CHARS} printable characters, not blank")
        return value.strip()


def validate_create_project(raw: dict[str, Any]) -> CreateProjectArgs:
    try:
        return CreateProjectArgs.model_validate(raw)
    except ValidationError as exc:
        raise app_error_from(
            exc, {"orgId": ErrorCode.INVALID_REQUEST}, default=ErrorCode.VALIDATION_ERROR
        ) from None

"""Domain enums shared by several GraphQL modules, registered with Strawberry once.

`strawberry.enum` registers the domain's own class, so fields are annotated with the domain enum itself.
"""

from __future__ import annotations

import strawberry

from app.core.paging import SortOrder
from app.events.model import Severity

__all__ = ["Severity", "SortOrder"]

strawberry.enum(Severity, description="How bad an error is, LOW to CRITICAL.")
strawberry.enum(SortOrder, description="Order of events by timestamp.")

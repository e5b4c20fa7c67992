"""What every paginated list shares: the sort direction, the page-size rule, and a page of results."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Generic, TypeVar

T = TypeVar("T")

MAX_PAGE = 100
DEFAULT_PAGE = 20
PAGE_SIZE_RULE = f"Limit must be a positive number of at most {MAX_PAGE}"


class SortOrder(str, Enum):
    ASC = "ASC"
    DESC = "DESC"


def check_page_size(value: int) -> int:
    """`first` of any list: ValueError with the catalogued wording outside 1..MAX_PAGE."""
    if not 1 <= value <= MAX_PAGE:
        raise ValueError(PAGE_SIZE_RULE)
    return value


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    has_next_page: bool

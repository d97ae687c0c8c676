"""Cursor pages as OpenAI's list endpoints answer them: {object: "list", data, first_id, last_id,
has_more}. The openai client asks for the next page with after=<the last item's id> while has_more
is true."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

__all__ = ["PageError", "page"]

T = TypeVar("T")


class PageError(ValueError):
    """A bad paging parameter; `param` names it."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


def page(
    items: Sequence[T],
    query: Mapping[str, str],
    id_of: Callable[[T], str],
    public: Callable[[T], dict[str, Any]],
    max_limit: int,
) -> dict[str, Any]:
    """One page of `items` (already in the order asked for), after the item whose id is `after`."""
    try:
        limit = int(query.get("limit", str(max_limit)))
    except ValueError:
        raise PageError("limit", f"limit must be a whole number, got {query['limit']!r}") from None
    if not 1 <= limit <= max_limit:
        raise PageError("limit", f"limit must be between 1 and {max_limit}, got {limit}")
    start = 0
    after = query.get("after")
    if after:
        ids = [id_of(item) for item in items]
        if after not in ids:
            raise PageError("after", f"no object {after!r} to page after")
        start = ids.index(after) + 1
    chosen = items[start : start + limit]
    data = [public(item) for item in chosen]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": start + limit < len(items),
    }

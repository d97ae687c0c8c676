from __future__ import annotations

import pytest

from gateway.pages import PageError, page

ITEMS = [f"obj-{i}" for i in range(5)]


def one(query: dict[str, str], max_limit: int = 100) -> dict[str, object]:
    return page(ITEMS, query, lambda x: x, lambda x: {"id": x}, max_limit)


def test_pages_follow_the_last_id_until_has_more_is_false() -> None:
    seen: list[str] = []
    query: dict[str, str] = {"limit": "2"}
    while True:
        got = one(query)
        seen += [d["id"] for d in got["data"]]  # type: ignore[attr-defined]
        if not got["has_more"]:
            break
        query = {"limit": "2", "after": str(got["last_id"])}
    assert seen == ITEMS
    assert one({"limit": "2"})["first_id"] == "obj-0" and one({"after": "obj-4"})["data"] == []


@pytest.mark.parametrize(
    ("query", "param"), [({"limit": "0"}, "limit"), ({"limit": "x"}, "limit"), ({"after": "nope"}, "after")]
)
def test_bad_paging_parameters_are_named(query: dict[str, str], param: str) -> None:
    with pytest.raises(PageError) as caught:
        one(query, max_limit=3)
    assert caught.value.param == param
    with pytest.raises(PageError):
        one({"limit": "4"}, max_limit=3)

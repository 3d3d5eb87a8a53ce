"""``GET /v1/queues`` pages (API.md v1.2): ``limit``, ``after``, ``prefix``, ``next_after``; names
in byte order on both stores, the prefix taken literally, the cursor followed to the end."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.api.conftest import Server, problem

# Byte order, which neither a case-folding collation nor one that skips punctuation keeps:
# '-' < '.' < digits < upper case < '_' < lower case.
SUFFIXES = ["-1", ".1", "0", "A", "Z", "_", "a", "a-1", "a.1", "a1", "b"]


@pytest.fixture(scope="module")
def family(server_http: httpx.Client) -> list[str]:
    """Eleven queues under a prefix of their own, created out of order."""
    prefix = f"pages-{uuid.uuid4().hex[:8]}-"
    names = [prefix + suffix for suffix in SUFFIXES]
    for name in reversed(names):
        assert server_http.post("/v1/queues", json={"name": name}).status_code == 201
    return names


@pytest.fixture(scope="module")
def server_http(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30.0) as client:
        yield client


def pages(http: httpx.Client, prefix: str, limit: int) -> list[list[str]]:
    """Every page of ``prefix``'s queues, following ``next_after`` to the end."""
    found: list[list[str]] = []
    after: str | None = None
    while True:
        params: dict[str, str | int] = {"prefix": prefix, "limit": limit}
        if after is not None:
            params["after"] = after
        answer = http.get("/v1/queues", params=params)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        names = [q["name"] for q in body["queues"]]
        assert len(names) <= limit
        found.append(names)
        after = body["next_after"]
        if after is None:
            return found
        assert after == names[-1]  # the cursor is the last name returned
        assert len(found) < 20, "next_after never ends"


def test_pages_follow_byte_order_to_the_end(http: httpx.Client, family: list[str]) -> None:
    prefix = family[0][: -len(SUFFIXES[0])]
    expected = sorted(family)  # Python compares code points: bytes, for these names
    assert expected == family
    for limit in (1, 3, 4, 11, 1000):
        got = pages(http, prefix, limit)
        assert [n for page in got for n in page] == expected, limit
        assert all(len(page) == limit for page in got[:-1])
    # A page that holds exactly the rest says there is no more, not an empty page after it.
    assert pages(http, prefix, 11) == [expected]


def test_the_prefix_is_literal_and_after_need_not_name_a_queue(
    http: httpx.Client, family: list[str]
) -> None:
    prefix = family[0][: -len(SUFFIXES[0])]
    # '_' would match any one character in a LIKE pattern: here it is only itself.
    assert pages(http, prefix + "_", 10) == [[prefix + "_"]]
    assert pages(http, prefix + "a", 10) == [[prefix + s for s in ("a", "a-1", "a.1", "a1")]]
    assert pages(http, prefix + "nothing", 10) == [[]]
    # A cursor between names (or past all of them) continues from where it would sort.
    answer = http.get("/v1/queues", params={"prefix": prefix, "after": prefix + "B"}).json()
    assert [q["name"] for q in answer["queues"]] == [prefix + s for s in SUFFIXES[4:]]
    assert answer["next_after"] is None
    after_all = http.get("/v1/queues", params={"prefix": prefix, "after": prefix + "z"}).json()
    assert after_all == {"queues": [], "next_after": None}


def test_a_deleted_queue_leaves_the_pages(http: httpx.Client) -> None:
    prefix = f"gone-{uuid.uuid4().hex[:8]}-"
    for suffix in "abc":
        assert http.post("/v1/queues", json={"name": prefix + suffix}).status_code == 201
    assert http.delete(f"/v1/queues/{prefix}b").status_code == 204
    assert pages(http, prefix, 1) == [[prefix + "a"], [prefix + "c"]]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"limit": "0"}, "query.limit"),
        ({"limit": "1001"}, "query.limit"),
        ({"limit": "ten"}, "query.limit"),
        ({"after": "x" * 81}, "query.after"),
        ({"prefix": "x" * 81}, "query.prefix"),
    ],
)
def test_a_bad_page_query_is_a_422_naming_it(
    http: httpx.Client, query: dict[str, str], field: str
) -> None:
    body = problem(http.get("/v1/queues", params=query), 422)
    assert body["errors"][0]["field"] == field


def test_without_a_limit_a_page_holds_up_to_1000(http: httpx.Client, family: list[str]) -> None:
    body = http.get("/v1/queues").json()
    assert 11 <= len(body["queues"]) <= 1000
    names = [q["name"] for q in body["queues"]]
    assert names == sorted(names)
    assert body["next_after"] is None  # this module's broker holds fewer than 1000

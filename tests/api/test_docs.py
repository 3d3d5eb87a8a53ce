"""docs/api.md, the users' HTTP API reference, against the running server's OpenAPI document:
every route the server serves has a section there, and every route section names a route the
server serves."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Final

import httpx

API_DOC: Final = Path(__file__).parents[2] / "docs" / "api.md"
METHODS: Final = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
# A route heading: a Markdown heading naming "`METHOD /path`" in backticks.
_HEADING: Final = re.compile(r"^#{1,6}\s.*?`(" + "|".join(METHODS) + r") (/[^`\s]*)`", re.MULTILINE)


def _served(http: httpx.Client) -> set[tuple[str, str]]:
    response = http.get("/openapi.json")
    assert response.status_code == 200, response.text
    paths: dict[str, dict[str, object]] = response.json()["paths"]
    return {
        (method.upper(), path)
        for path, operations in paths.items()
        for method in operations
        if method.upper() in METHODS
    }


def _listing(routes: set[tuple[str, str]]) -> str:
    by_path = sorted(routes, key=lambda route: (route[1], route[0]))
    return "\n".join(f"  `{method} {path}`" for method, path in by_path)


def test_every_route_is_documented_and_every_documented_route_exists(http: httpx.Client) -> None:
    served = _served(http)
    assert served, "the OpenAPI document lists no routes"
    text = API_DOC.read_text(encoding="utf-8")
    headings = Counter((m[1], m[2]) for m in _HEADING.finditer(text))

    undocumented = {route for route in served if route not in headings}
    assert not undocumented, (
        f"{API_DOC} has no section for these routes of /openapi.json; add a heading such as"
        f" '### `GET /v1/queues/{{name}}`' for each:\n{_listing(undocumented)}"
    )
    not_served = set(headings) - served
    assert not not_served, (
        f"{API_DOC} has route headings for routes that /openapi.json does not list (a typo,"
        f" or a route that does not exist):\n{_listing(not_served)}"
    )
    repeated = {route for route, count in headings.items() if count > 1}
    assert not repeated, f"{API_DOC} documents these routes more than once:\n{_listing(repeated)}"

"""How the server serves the dashboard: one page for every /ui/ path, its assets from the
package, whether auth is on written into the page, and nothing of it in the API document."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import Server

UI: Path = Path(__file__).parents[2] / "api" / "ui"
PYPROJECT: Path = Path(__file__).parents[2] / "pyproject.toml"


def config_of(html: str) -> dict[str, object]:
    found = re.search(r'<script id="cairn-config" type="application/json">(.*?)</script>', html)
    assert found, "the page carries no configuration"
    parsed: dict[str, object] = json.loads(found[1])
    return parsed


@pytest.mark.parametrize(
    "path", ["/ui/", "/ui/queues/orders", "/ui/queues/orders/messages/0190abc", "/ui/events"]
)
def test_every_dashboard_path_is_the_same_page(server: Server, path: str) -> None:
    with httpx.Client(base_url=server.url) as http:
        answer = http.get(path)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in answer.headers["content-security-policy"]
    assert config_of(answer.text)["auth"] is False


def test_the_page_says_whether_auth_is_on(secure: Server) -> None:
    with httpx.Client(base_url=secure.url) as http:
        answer = http.get("/ui/")  # no token: the page itself is public, the data is not
    assert answer.status_code == 200
    assert config_of(answer.text)["auth"] is True


def test_ui_without_a_slash_redirects(server: Server) -> None:
    with httpx.Client(base_url=server.url) as http:
        answer = http.get("/ui")
    assert answer.status_code == 308
    assert answer.headers["location"].endswith("/ui/")


def test_assets_are_served_with_their_types(server: Server) -> None:
    with httpx.Client(base_url=server.url) as http:
        script = http.get("/ui/assets/main.js")
        chart = http.get("/ui/vendor/uplot/uPlot.iife.min.js")
        licence = http.get("/ui/vendor/uplot/LICENSE")
        missing = http.get("/ui/assets/nope.js")
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]
    assert chart.status_code == 200 and "uPlot" in chart.text
    assert licence.status_code == 200 and "MIT" in licence.text
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"


def test_the_dashboard_is_not_part_of_the_api_document(server: Server) -> None:
    with httpx.Client(base_url=server.url) as http:
        paths = http.get("/openapi.json").json()["paths"]
    assert not [path for path in paths if path.startswith("/ui")]


def test_every_static_file_ships_in_the_package() -> None:
    """A non-editable install must serve the dashboard: pyproject's package-data for api.ui
    covers every file of it that is not Python."""
    patterns = tomllib.loads(PYPROJECT.read_text())["tool"]["setuptools"]["package-data"]["api.ui"]
    files = [p.relative_to(UI).as_posix() for p in UI.rglob("*") if p.is_file()]
    static = [f for f in files if not f.endswith((".py", ".pyc")) and "__pycache__" not in f]
    assert "index.html" in static and "vendor/uplot/LICENSE" in static
    shipped = {p.relative_to(UI).as_posix() for pattern in patterns for p in UI.glob(pattern)}
    unshipped = sorted(set(static) - shipped)
    assert not unshipped, f"add these to [tool.setuptools.package-data] 'api.ui': {unshipped}"

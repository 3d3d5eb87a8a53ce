"""The dashboard in a real browser: Playwright driving the machine's own Chromium (Debian's
``chromium`` package, which ``scripts/test`` installs; Playwright never downloads a browser)
against real ``cairn serve`` processes.

Every page a test opens collects the browser console's errors and the page's uncaught
exceptions; a test fails if any appeared, unless it names the one it expects (a refused
token, see ``Dashboard.allow``).
"""

from __future__ import annotations

import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx
import jwt
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Error, Page, Playwright, sync_playwright

from tests.api.conftest import Server, make_server

CHROMIUM: Final = os.environ.get("CAIRN_TEST_CHROMIUM", "/usr/bin/chromium")
SECRET: Final = "dashboard-tests-secret-0123456789abcdef"
SCREENSHOTS: Final = Path(
    os.environ.get("CAIRN_UI_SCREENSHOTS", Path(__file__).parents[2] / "build" / "screenshots")
)
"""Where every run saves its screenshots (``build/`` is not tracked); the curated set in
``docs/screenshots/`` is made by pointing this there (docs/dashboard.md)."""
LIVE_MS: Final = 2000
"""API.md, "Dashboard": a change shows without reloading within 2 s."""

ZONE: Final = "Asia/Kolkata"
"""The browser's time zone in every test: not UTC, and half an hour off any whole-hour zone, so a
page that showed a time in the browser's zone instead of UTC (as the dashboard promises, and
says) would show it wrong."""

VIEWPORTS: Final = {
    "desktop": {"width": 1280, "height": 800},
    "phone": {"width": 390, "height": 844},
}


# Package scope, not session: while Playwright's sync API is running, its event loop is the
# main thread's running loop, and every pytest-asyncio test after tests/ui would fail with
# "Runner.run() cannot be called from a running event loop".
@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as running:
        yield running


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    if shutil.which(CHROMIUM) is None:
        reason = f"no Chromium at {CHROMIUM} (scripts/test installs Debian's chromium package)"
        if os.environ.get("CI"):
            pytest.fail(reason)  # CI must run these, never skip them
        pytest.skip(reason)
    launched = playwright.chromium.launch(executable_path=CHROMIUM)
    yield launched
    launched.close()


@pytest.fixture(scope="package")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A broker with authentication off (loopback only, as the contract allows). The tests
    sharing it create fewer queues than the overview shows on a page (100), so each queue a test
    creates is on the first page; a test that needs more queues starts a broker of its own."""
    running = make_server(tmp_path_factory.mktemp("ui")).start()
    yield running
    running.stop()


@pytest.fixture(scope="package")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A broker with authentication on."""
    running = make_server(tmp_path_factory.mktemp("ui-auth"), "--jwt-secret", SECRET).start()
    yield running
    running.stop()


def token(scope: str, *, secret: str = SECRET, ttl: int = 600) -> str:
    now = int(time.time())
    claims = {"sub": "ui-tests", "scope": scope, "iat": now, "nbf": now, "exp": now + ttl}
    return jwt.encode(claims, secret, algorithm="HS256")


def fresh(prefix: str = "q") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@dataclass
class Dashboard:
    """A browser tab on the dashboard of one server, with the API beside it."""

    page: Page
    server: Server
    api: httpx.Client
    size: str
    errors: list[str] = field(default_factory=list)
    allowed: list[re.Pattern[str]] = field(default_factory=list)

    def open(self, path: str = "/ui/") -> Page:
        self.page.goto(self.server.url + path)
        return self.page

    def allow(self, pattern: str) -> None:
        """A console error this test expects (API.md: a wrong token's refused request)."""
        self.allowed.append(re.compile(pattern))

    def unexpected(self) -> list[str]:
        return [e for e in self.errors if not any(p.search(e) for p in self.allowed)]

    def screenshot(self, name: str) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=SCREENSHOTS / f"{name}-{self.size}.png")

    # The API, for arranging what a page should show.
    def create(self, name: str | None = None, **settings: Any) -> str:
        name = name or fresh()
        answer = self.api.post("/v1/queues", json={"name": name, **settings})
        assert answer.status_code == 201, answer.text
        return name

    def publish(self, queue: str, body: Any = None, **fields: Any) -> str:
        payload = {"body": {"n": 1} if body is None else body, **fields}
        answer = self.api.post(f"/v1/queues/{queue}/messages", json=payload)
        assert answer.status_code == 201, answer.text
        message_id: str = answer.json()["id"]
        return message_id

    def receive(self, queue: str, count: int = 1) -> list[dict[str, Any]]:
        answer = self.api.post(f"/v1/queues/{queue}/receive", json={"max_messages": count})
        assert answer.status_code == 200, answer.text
        messages: list[dict[str, Any]] = answer.json()["messages"]
        return messages

    def get(self, path: str) -> Any:
        """A read that reflects every command answered so far (``min_position``: the head)."""
        head = self.api.get("/v1/projections").json()["head"]
        answer = self.api.get(path, params={"min_position": head})
        assert answer.status_code == 200, answer.text
        return answer.json()


@contextmanager
def open_tab(
    browser: Browser, server: Server, size: str, headers: dict[str, str]
) -> Iterator[Dashboard]:
    """A fresh browser context on ``server``'s dashboard; on leaving, no unexpected errors
    may have reached its console."""
    context = browser.new_context(viewport=VIEWPORTS[size], color_scheme="light", timezone_id=ZONE)
    page = context.new_page()
    page.set_default_timeout(5000)
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as api:
        tab = Dashboard(page, server, api, size)

        def on_console(message: ConsoleMessage) -> None:
            if message.type == "error":
                tab.errors.append(f"console: {message.text} ({message.location.get('url')})")

        def on_error(error: Error) -> None:
            tab.errors.append(f"page error: {error.message}")

        page.on("console", on_console)
        page.on("pageerror", on_error)
        try:
            yield tab
        finally:
            context.close()
        assert not tab.unexpected(), "errors in the browser console:\n" + "\n".join(
            tab.unexpected()
        )


@pytest.fixture(params=["desktop"])
def size(request: pytest.FixtureRequest) -> str:
    """The viewport; a test runs at both sizes with
    ``@pytest.mark.parametrize("size", ["desktop", "phone"], indirect=True)``."""
    value: str = request.param
    return value


@pytest.fixture
def ui(browser: Browser, server: Server, size: str) -> Iterator[Dashboard]:
    """A tab on the dashboard of a broker with authentication off."""
    with open_tab(browser, server, size, {}) as tab:
        yield tab


@pytest.fixture
def secure_ui(browser: Browser, secure: Server, size: str) -> Iterator[Dashboard]:
    """A tab on the dashboard of a broker with authentication on; its API client is admin."""
    admin = {"Authorization": f"Bearer {token('admin')}"}
    with open_tab(browser, secure, size, admin) as tab:
        yield tab

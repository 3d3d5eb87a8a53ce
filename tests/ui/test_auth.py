"""The dashboard with authentication on: a token prompt, sessionStorage only, and only what
the token may read or do."""

from __future__ import annotations

import uuid

import pytest
from playwright.sync_api import Browser, Page, Request, expect

from tests.ui.conftest import LIVE_MS, Dashboard, token


def sign_in(page: Page, value: str) -> None:
    page.get_by_label("Token").fill(value)
    page.get_by_role("button", name="Sign in").click()


@pytest.mark.parametrize("size", ["desktop", "phone"], indirect=True)
def test_the_page_asks_for_a_token_without_a_failing_request(secure_ui: Dashboard) -> None:
    queue = secure_ui.create()
    api_requests: list[str] = []

    def seen(request: Request) -> None:
        if "/v1/" in request.url:
            api_requests.append(request.url)

    secure_ui.page.on("request", seen)
    page = secure_ui.open("/ui/")
    expect(page.get_by_label("Token")).to_have_attribute("type", "password")
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    secure_ui.screenshot("signin")
    assert api_requests == []  # it knew auth was on from the page itself

    value = token("admin")
    sign_in(page, value)
    expect(page.get_by_role("link", name=queue, exact=True)).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('cairn.token')") == value
    assert page.evaluate("localStorage.length") == 0
    page.reload()  # the same tab keeps it
    expect(page.get_by_role("link", name=queue, exact=True)).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("Token")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('cairn.token')") is None


def test_another_tab_asks_again(secure_ui: Dashboard, browser: Browser) -> None:
    page = secure_ui.open("/ui/")
    sign_in(page, token("admin"))
    expect(page.get_by_role("heading", name="Queues")).to_be_visible()
    other = browser.new_context()
    try:
        tab = other.new_page()
        tab.goto(secure_ui.server.url + "/ui/")
        expect(tab.get_by_label("Token")).to_be_visible()
    finally:
        other.close()


def test_a_wrong_token_shows_an_alert_and_no_data(secure_ui: Dashboard) -> None:
    secure_ui.allow(r"status of 401")  # API.md: the refused request of a wrong token aside
    queue = secure_ui.create()
    page = secure_ui.open("/ui/")
    sign_in(page, token("admin", secret="not-the-servers-secret-0123456789abcdef"))
    expect(page.get_by_role("alert")).to_contain_text("refused")
    expect(page.get_by_role("table")).to_have_count(0)
    expect(page.get_by_text(queue)).to_have_count(0)
    assert page.evaluate("sessionStorage.getItem('cairn.token')") is None

    sign_in(page, "not a token at all")
    expect(page.get_by_role("alert")).to_contain_text("not a JWT")


def test_a_scoped_token_sees_only_its_queues(secure_ui: Dashboard) -> None:
    prefix = f"t{uuid.uuid4().hex[:6]}"
    mine, theirs = secure_ui.create(f"{prefix}.orders"), secure_ui.create(f"{prefix}-billing")
    secure_ui.publish(mine)
    page = secure_ui.open("/ui/")
    sign_in(page, token(f"read:{prefix}.*"))
    expect(page.get_by_role("link", name=mine, exact=True)).to_be_visible()
    expect(page.get_by_role("link", name=theirs, exact=True)).to_have_count(0)
    expect(page.locator("table.queues tbody tr")).to_have_count(1)

    hidden, shown = secure_ui.create(f"{prefix}-later"), secure_ui.create(f"{prefix}.later")
    expect(page.get_by_role("link", name=shown, exact=True)).to_be_visible(timeout=LIVE_MS)
    expect(page.get_by_role("link", name=hidden, exact=True)).to_have_count(0)

    page.get_by_role("link", name=mine, exact=True).click()
    expect(page.locator("table.messages tbody tr")).to_have_count(1)
    for button in ("Purge", "Redrive", "Delete queue"):
        expect(page.get_by_role("button", name=button)).to_have_count(0)

    page.get_by_role("link", name="Event log").click()
    rows = page.locator("table.events tbody tr")
    expect(rows.filter(has_text=mine).first).to_be_visible()
    expect(rows.filter(has_text=theirs)).to_have_count(0)


def test_the_manage_scope_shows_the_buttons(secure_ui: Dashboard) -> None:
    queue = secure_ui.create()
    page = secure_ui.open(f"/ui/queues/{queue}")
    sign_in(page, token(f"read:{queue} queues:manage"))
    for button in ("Purge", "Redrive", "Delete queue"):
        expect(page.get_by_role("button", name=button)).to_be_visible()


def test_a_token_that_may_read_no_queue_is_told_so(secure_ui: Dashboard) -> None:
    page = secure_ui.open("/ui/")
    sign_in(page, token("publish:orders.*"))
    expect(page.get_by_text("This token may not read any queue.")).to_be_visible()
    page.get_by_role("link", name="Event log").click()
    expect(page.get_by_text("This token may not read the event log.")).to_be_visible()

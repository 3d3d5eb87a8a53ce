"""/ui/: every live queue with its depths, live; the log head and the projections."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Browser, Locator, expect

from tests.api.conftest import make_server
from tests.ui.conftest import LIVE_MS, Dashboard, fresh, open_tab


def row(ui: Dashboard, queue: str) -> Locator:
    return ui.page.get_by_role("row").filter(
        has=ui.page.get_by_role("link", name=queue, exact=True)
    )


def cell(ui: Dashboard, queue: str, column: str) -> Locator:
    """The cell of ``queue``'s row under the column header named ``column``."""
    headers = ui.page.get_by_role("columnheader").all_inner_texts()
    return row(ui, queue).get_by_role("cell").nth(headers.index(column) - 1)


@pytest.mark.parametrize("size", ["desktop", "phone"], indirect=True)
def test_the_overview_shows_each_queue_as_the_api_does(ui: Dashboard) -> None:
    busy, quiet = ui.create(), ui.create()
    for n in range(3):
        ui.publish(busy, {"n": n})
    ui.publish(busy, delay_s=600)
    ui.receive(busy)
    page = ui.open("/ui/")
    for header in ("Queue", "Available", "In flight", "Delayed"):
        expect(page.get_by_role("columnheader", name=header, exact=True)).to_be_visible()
    expect(row(ui, busy)).to_be_visible()
    for queue in (busy, quiet):
        stats = ui.get(f"/v1/queues/{queue}")["stats"]
        expect(cell(ui, queue, "Available")).to_have_text(str(stats["available"]))
        expect(cell(ui, queue, "In flight")).to_have_text(str(stats["in_flight"]))
        expect(cell(ui, queue, "Delayed")).to_have_text(str(stats["delayed"]))
    expect(row(ui, busy).get_by_role("link", name=busy, exact=True)).to_have_attribute(
        "href", f"/ui/queues/{busy}"
    )
    # A sparkline of publishes and acks, from the analytics.
    expect(row(ui, busy).locator("td.spark canvas")).to_have_count(1)
    head = ui.get("/v1/projections")["head"]
    expect(page.get_by_text("Log head: position")).to_contain_text(f"{head:,}")
    expect(page.get_by_role("row", name="views")).to_be_visible()


@pytest.mark.parametrize("size", ["desktop", "phone"], indirect=True)
def test_columns_off_to_the_side_on_a_phone_say_so(ui: Dashboard, size: str) -> None:
    """A phone has room for the queue and its depths; the table's last two columns are off to
    the right, and a visible line says so (and which), until the table is scrolled there."""
    ui.create()
    page = ui.open("/ui/")
    hidden_columns = ("Oldest available", "Published / acked, 10 min")
    hint = page.get_by_text("Scroll the table sideways")
    table = page.locator(".scroll").filter(has=page.locator("table.queues"))
    expect(page.locator("table.queues tbody tr").first).to_be_visible()
    if size == "desktop":
        expect(hint).to_be_hidden()
        for column in hidden_columns:
            expect(page.get_by_role("columnheader", name=column)).to_be_in_viewport()
        return
    expect(hint).to_be_visible()
    expect(hint).to_contain_text("Oldest available")
    expect(hint).to_contain_text("Published / acked")
    for column in hidden_columns:
        expect(page.get_by_role("columnheader", name=column)).not_to_be_in_viewport(ratio=0.9)
    table.evaluate("el => el.scrollTo({ left: el.scrollWidth })")
    for column in hidden_columns:
        expect(page.get_by_role("columnheader", name=column)).to_be_in_viewport()
    expect(hint).to_be_hidden()


def test_a_new_queue_and_a_depth_change_show_within_two_seconds(ui: Dashboard) -> None:
    page = ui.open("/ui/")
    expect(page.get_by_text("Live", exact=True)).to_be_visible()
    queue = ui.create()
    expect(row(ui, queue)).to_be_visible(timeout=LIVE_MS)
    expect(cell(ui, queue, "Available")).to_have_text("0")
    ui.publish(queue)
    ui.publish(queue)
    expect(cell(ui, queue, "Available")).to_have_text("2", timeout=LIVE_MS)
    ui.receive(queue)
    expect(cell(ui, queue, "In flight")).to_have_text("1", timeout=LIVE_MS)
    expect(cell(ui, queue, "Available")).to_have_text("1", timeout=LIVE_MS)
    assert ui.api.delete(f"/v1/queues/{queue}").status_code == 204
    expect(row(ui, queue)).to_have_count(0, timeout=LIVE_MS)


def test_a_delay_that_ends_shows_though_it_appends_no_event(ui: Dashboard) -> None:
    queue = ui.create()
    page = ui.open("/ui/")
    expect(page.get_by_text("Live", exact=True)).to_be_visible()
    ui.publish(queue, delay_s=1)
    expect(cell(ui, queue, "Delayed")).to_have_text("1", timeout=LIVE_MS)
    expect(cell(ui, queue, "Available")).to_have_text("1", timeout=1000 + LIVE_MS)
    expect(cell(ui, queue, "Delayed")).to_have_text("0")


def test_a_queue_name_links_to_its_page_without_reloading(ui: Dashboard) -> None:
    queue = ui.create()
    page = ui.open("/ui/")
    page.evaluate("window.loadedOnce = true")
    page.get_by_role("link", name=queue, exact=True).click()
    expect(page).to_have_url(f"{ui.server.url}/ui/queues/{queue}")
    expect(page.get_by_role("heading", name=queue, level=1)).to_be_visible()
    assert page.evaluate("window.loadedOnce") is True  # routed in the page, not reloaded
    page.go_back()
    expect(page.get_by_role("heading", name="Queues", level=1)).to_be_visible()


def test_the_overview_reconnects_by_itself(browser: Browser, tmp_path: Path) -> None:
    """A broker restart drops the feed; the page reconnects, resumes after the last event it
    saw, and goes on updating, without a reload."""
    server = make_server(tmp_path, env={"CAIRN_SSE_RETRY_MS": "500"}).start()
    try:
        with open_tab(browser, server, "desktop", {}) as tab:
            # While the broker is down the browser reports its refused connections.
            tab.allow(r"net::ERR_")
            page = tab.open("/ui/")
            expect(page.get_by_text("Live", exact=True)).to_be_visible()
            server.stop()
            expect(page.get_by_text("Reconnecting…", exact=True)).to_be_visible()
            server.start()
            queue = tab.create()
            expect(row(tab, queue)).to_be_visible(timeout=10_000)
            tab.publish(queue)
            expect(cell(tab, queue, "Available")).to_have_text("1", timeout=LIVE_MS)
    finally:
        server.stop()


def test_the_overview_can_be_used_with_the_keyboard(ui: Dashboard) -> None:
    queue = ui.create(fresh("aaa"))
    page = ui.open("/ui/")
    expect(page.get_by_role("link", name=queue, exact=True)).to_be_visible()
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.keyboard.press("Enter")
    for _ in range(20):  # tab to the queue's link, then follow it
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent") == queue:
            break
    expect(page.get_by_role("link", name=queue, exact=True)).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name=queue, level=1)).to_be_visible()
    page.get_by_role("button", name="Purge").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("dialog")).to_be_visible()
    page.keyboard.press("Escape")  # cancels: nothing purged
    expect(page.get_by_role("dialog")).to_have_count(0)

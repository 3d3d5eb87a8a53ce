"""Every page of a broker with some history, at both sizes, photographed
(``build/screenshots/<page>-<size>.png`` on each run, or where ``CAIRN_UI_SCREENSHOTS`` says)
and checked for console errors like every other test. ``CAIRN_UI_TRAFFIC_S=120`` lets traffic
flow for two minutes first, so the charts show more than a moment."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, expect

from tests.api.conftest import Server, make_server
from tests.ui import showcase
from tests.ui.conftest import Dashboard, open_tab


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, showcase.Shop]]:
    running = make_server(tmp_path_factory.mktemp("shop")).start()
    with running.client() as http:
        shop = showcase.seed(http)
        showcase.traffic(http, float(os.environ.get("CAIRN_UI_TRAFFIC_S", "0")))
    yield running, shop
    running.stop()


@pytest.fixture
def page_tab(
    browser: Browser, shop: tuple[Server, showcase.Shop], size: str
) -> Iterator[Dashboard]:
    with open_tab(browser, shop[0], size, {}) as tab:
        yield tab


@pytest.mark.parametrize("size", ["desktop", "phone"], indirect=True)
def test_every_page_at_both_sizes(page_tab: Dashboard, shop: tuple[Server, showcase.Shop]) -> None:
    tab, story = page_tab, shop[1].story
    page = tab.open("/ui/")
    expect(page.get_by_role("link", name="orders", exact=True)).to_be_visible()
    expect(page.get_by_text("Live", exact=True)).to_be_visible()
    expect(page.locator("td.spark canvas")).to_have_count(5)
    tab.screenshot("overview")

    page.get_by_role("link", name="orders", exact=True).click()
    expect(page.get_by_role("heading", name="orders", level=1)).to_be_visible()
    expect(page.locator("table.messages tbody tr").first).to_be_visible()
    # The counts chart, and the dwell times: a chart, or with few buckets of acks a table.
    expect(page.locator("figure .uplot, figure table.dwell")).to_have_count(2)
    expect(page.locator("table.reasons tbody tr").first).to_be_visible()
    page.get_by_label("Window").select_option("15m")
    expect(page.get_by_text("In this window:")).to_contain_text("(10 s buckets)")
    tab.screenshot("queue")

    tab.open(f"/ui/queues/orders/messages/{story}")
    expect(page.locator("ol.timeline > li").nth(4)).to_be_visible()  # five events, or more
    tab.screenshot("message")

    page.get_by_role("link", name="Event log").click()
    expect(page.locator("table.events tbody tr").first).to_be_visible()
    tab.screenshot("events")

    tab.open("/ui/queues/orders-dlq")
    expect(page.locator("table.messages tbody tr").first).to_be_visible()
    tab.screenshot("dead-letters")

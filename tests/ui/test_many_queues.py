"""/ui/ with more queues than a page holds: the overview reads one page of the list at a time
(``GET /v1/queues?limit=&after=&prefix=``, API.md v1.2), turns pages with **Next page**, finds
queues with **Search queues** (by prefix), and keeps the rows it shows live."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from playwright.sync_api import Browser, Locator, expect

from tests.api.conftest import Server, make_server
from tests.ui.conftest import LIVE_MS, Dashboard, open_tab

QUEUES = 2500
PAGE = 100  # what the overview asks for (api/ui/assets/pages/overview.js)
NAMES = [f"many-{n:04d}" for n in range(QUEUES)]  # zero-padded: byte order is number order


@pytest.fixture(scope="module")
def crowded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A broker of its own holding 2,500 queues, made through the API."""
    running = make_server(tmp_path_factory.mktemp("crowded")).start()

    def create(names: list[str]) -> None:
        with httpx.Client(base_url=running.url, timeout=30) as http:
            for name in names:
                answer = http.post("/v1/queues", json={"name": name})
                assert answer.status_code == 201, answer.text

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(create, [NAMES[i::8] for i in range(8)]))
    yield running
    running.stop()


@pytest.fixture
def tab(browser: Browser, crowded: Server, size: str) -> Iterator[Dashboard]:
    with open_tab(browser, crowded, size, {}) as opened:
        yield opened


def names(rows: Locator) -> list[str]:
    return [text.strip() for text in rows.locator("th").all_inner_texts()]


def first_name(rows: Locator) -> Locator:
    return rows.first.locator("th")


def available(tab: Dashboard, queue: str) -> Locator:
    row = tab.page.locator("table.queues tbody tr").filter(
        has=tab.page.get_by_role("link", name=queue, exact=True)
    )
    return row.get_by_role("cell").first


@pytest.mark.parametrize("size", ["desktop", "phone"], indirect=True)
def test_the_overview_pages_searches_and_stays_live_with_many_queues(
    tab: Dashboard, size: str
) -> None:
    # The queues this test deletes may be deleted while the page reads their sparkline: the
    # page drops the row at the next refresh, and the browser logs that read's 404 all the same.
    tab.allow(rf"status of 404 .*/v1/queues/many-[0-9-]*-{size}/analytics")
    page = tab.open("/ui/")
    rows = page.locator("table.queues tbody tr")
    expect(rows).to_have_count(PAGE)  # one page, not all 2,500
    expect(page.get_by_text("Live", exact=True)).to_be_visible()
    assert names(rows) == NAMES[:PAGE]
    expect(page.get_by_role("button", name="Previous page")).to_be_disabled()

    page.get_by_role("button", name="Next page").click()
    expect(first_name(rows)).to_have_text(NAMES[PAGE])
    expect(page.get_by_text("Page 2", exact=True)).to_be_visible()
    assert names(rows) == NAMES[PAGE : 2 * PAGE]

    # Live, for the rows of the page shown: a depth changes, a queue that sorts into it appears.
    busy = NAMES[PAGE + 50 + (size == "phone")]
    tab.publish(busy)
    expect(available(tab, busy)).to_have_text("1", timeout=LIVE_MS)
    newcomer = tab.create(f"{busy}-{size}")
    expect(page.get_by_role("link", name=newcomer, exact=True)).to_be_visible(timeout=LIVE_MS)
    expect(rows).to_have_count(PAGE)  # still one page: the last row moved on to the next
    assert tab.api.delete(f"/v1/queues/{newcomer}").status_code == 204
    expect(page.get_by_role("link", name=newcomer, exact=True)).to_have_count(0, timeout=LIVE_MS)
    expect(rows.last.locator("th")).to_have_text(NAMES[2 * PAGE - 1], timeout=LIVE_MS)

    page.get_by_role("button", name="Previous page").click()
    expect(first_name(rows)).to_have_text(NAMES[0])

    # Search by prefix: the matches only, from the first page of them.
    search = page.get_by_label("Search queues")
    search.fill("many-249")
    expect(rows).to_have_count(10)
    assert names(rows) == NAMES[2490:2500]
    expect(page.get_by_role("button", name="Next page")).to_be_hidden()  # one page of matches
    tab.publish("many-2495")
    expect(available(tab, "many-2495")).to_have_text("1", timeout=LIVE_MS)
    found = tab.create(f"many-249-{size}")
    expect(page.get_by_role("link", name=found, exact=True)).to_be_visible(timeout=LIVE_MS)
    assert tab.api.delete(f"/v1/queues/{found}").status_code == 204
    expect(rows).to_have_count(10, timeout=LIVE_MS)
    search.fill("no-such-queue")
    expect(page.get_by_text("No queue's name starts with “no-such-queue”.")).to_be_visible()
    search.fill("")
    expect(rows).to_have_count(PAGE)
    expect(first_name(rows)).to_have_text(NAMES[0])

"""Every time the dashboard shows is in UTC and says so: the queue page, a message's facts and
timeline, the event log, and the charts' axes and legends. The browser runs in a zone that is
not UTC (conftest.ZONE), so a time shown in the browser's zone would be off by 5 h 30 min."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from playwright.sync_api import Page, expect

from tests.ui.conftest import Dashboard


def in_utc(iso: str) -> set[str]:
    """How the dashboard may show an API time: ``2026-12-07 15:10:07.855 UTC``, or to the
    second for a time that is one (an analytics bucket's start)."""
    moment = datetime.fromisoformat(iso).astimezone(UTC)
    second = f"{moment:%Y-%m-%d %H:%M:%S}"
    shown = {f"{second}.{moment.microsecond // 1000:03d} UTC"}
    return shown | {f"{second} UTC"} if moment.microsecond == 0 else shown


def check_times(page: Page, at_least: int) -> None:
    """Every <time> in the page shows its own ``datetime``, in UTC, named."""
    shown = page.locator("main time")
    expect(shown.nth(at_least - 1)).to_be_attached()
    for element in shown.all():
        iso = element.get_attribute("datetime")
        assert iso is not None
        assert element.inner_text() in in_utc(iso)


@pytest.mark.parametrize("size", ["desktop", "phone"], indirect=True)
def test_every_time_shown_is_utc_and_says_so(ui: Dashboard) -> None:
    queue = ui.create()
    message = ui.publish(queue, {"n": 1})
    [received] = ui.receive(queue)
    acked = ui.api.post(
        f"/v1/queues/{queue}/messages/{message}/ack", json={"receipt": received["receipt"]}
    )
    assert acked.status_code == 204, acked.text

    page = ui.open(f"/ui/queues/{queue}")
    expect(page.get_by_role("link", name=message, exact=True)).to_be_visible()
    check_times(page, at_least=3)  # created, updated, the message's publish time
    # A chart's legend names the bucket under the cursor, in UTC too.
    page.locator("figure .u-over").first.hover()
    legend_time = page.locator("figure .u-legend .u-series").first.locator(".u-value")
    expect(legend_time).to_have_text(re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$"))

    page = ui.open(f"/ui/queues/{queue}/messages/{message}")
    expect(page.locator("ol.timeline > li")).to_have_count(3)
    check_times(page, at_least=6)  # published, visible at, three events, the lease's end

    page = ui.open("/ui/events")
    expect(page.locator("table.events tbody tr").first).to_be_visible()
    check_times(page, at_least=3)

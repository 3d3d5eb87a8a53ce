"""/ui/events: the event log, live, with a type filter, pause and resume."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.ui.conftest import LIVE_MS, Dashboard


@pytest.mark.parametrize("size", ["desktop", "phone"], indirect=True)
def test_the_event_log_shows_new_events_live(ui: Dashboard) -> None:
    queue = ui.create()
    page = ui.open("/ui/events")
    rows = page.locator("table.events tbody tr")
    expect(rows.first).to_contain_text("queue.created")  # the recent past, then live
    message_id = ui.publish(queue)
    published = rows.filter(has_text=message_id)
    expect(published).to_have_count(1, timeout=LIVE_MS)
    expect(published).to_contain_text("message.published")
    expect(published.get_by_role("link", name=queue, exact=True)).to_be_visible()


def test_the_type_filter_and_pause_resume(ui: Dashboard) -> None:
    queue = ui.create()
    page = ui.open("/ui/events")
    rows = page.locator("table.events tbody tr")
    page.get_by_label("Type").select_option("message.acked")
    expect(page.get_by_text("Live", exact=True)).to_be_visible()
    ui.publish(queue)
    [message] = ui.receive(queue)
    ack = ui.api.post(
        f"/v1/queues/{queue}/messages/{message['id']}/ack", json={"receipt": message["receipt"]}
    )
    assert ack.status_code == 204
    expect(rows.filter(has_text=message["id"])).to_have_count(1, timeout=LIVE_MS)
    expect(rows.filter(has_text="message.published")).to_have_count(0)

    page.get_by_role("button", name="Pause").click()
    expect(page.get_by_role("button", name="Resume")).to_be_visible()
    ui.publish(queue)
    [second] = ui.receive(queue)
    ui.api.post(
        f"/v1/queues/{queue}/messages/{second['id']}/ack", json={"receipt": second["receipt"]}
    )
    # While paused nothing arrives; on resume the log fills the gap.
    expect(rows.filter(has_text=second["id"])).to_have_count(0)
    page.get_by_role("button", name="Resume").click()
    expect(rows.filter(has_text=second["id"])).to_have_count(1, timeout=LIVE_MS)

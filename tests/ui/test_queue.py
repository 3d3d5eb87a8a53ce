"""/ui/queues/<name>: settings and stats, the message browser, and the buttons that manage."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.ui.conftest import LIVE_MS, Dashboard


def value(page: Page, label: str) -> Locator:
    """The value shown under a stat's or a setting's label."""
    return page.locator(f"dt:text-is('{label}') + dd")


@pytest.mark.parametrize("size", ["desktop", "phone"], indirect=True)
def test_the_queue_page_shows_settings_stats_and_messages(ui: Dashboard) -> None:
    dlq = ui.create()
    queue = ui.create(visibility_timeout_s=45, max_receive_count=3, dead_letter_queue=dlq)
    first = ui.publish(queue, {"order": 1})
    ui.publish(queue, {"order": 2}, attributes={"region": "eu"})
    ui.receive(queue)
    page = ui.open(f"/ui/queues/{queue}")
    expect(page.get_by_role("heading", name=queue, level=1)).to_be_visible()
    expect(page.locator("dd").first).not_to_be_empty()
    resource = ui.get(f"/v1/queues/{queue}")
    expect(value(page, "Available")).to_have_text(str(resource["stats"]["available"]))
    expect(value(page, "In flight")).to_have_text(str(resource["stats"]["in_flight"]))
    expect(value(page, "Visibility timeout")).to_have_text("45 s")
    expect(value(page, "Max receive count")).to_have_text("3")
    expect(page.get_by_role("link", name=dlq, exact=True)).to_have_attribute(
        "href", f"/ui/queues/{dlq}"
    )
    listed = ui.get(f"/v1/queues/{queue}/messages")["messages"]
    for message in listed:
        link = page.get_by_role("link", name=message["id"], exact=True)
        expect(link).to_have_attribute("href", f"/ui/queues/{queue}/messages/{message['id']}")

    page.get_by_label("Status").select_option("in_flight")
    expect(page.get_by_role("link", name=first, exact=True)).to_be_visible()
    expect(page.locator("table.messages tbody tr")).to_have_count(1)
    page.get_by_label("Status").select_option("acked")
    expect(page.get_by_text("No messages.")).to_be_visible()
    # Browsing never consumes: nothing was leased by looking.
    after = ui.get(f"/v1/queues/{queue}")["stats"]
    for key in ("available", "in_flight", "delayed", "acked_total"):
        assert after[key] == resource["stats"][key]


def test_the_message_browser_pages_through_and_follows_changes(ui: Dashboard) -> None:
    queue = ui.create()
    ids = [ui.publish(queue, {"n": n}) for n in range(27)]
    page = ui.open(f"/ui/queues/{queue}")
    expect(page.locator("table.messages tbody tr")).to_have_count(25)
    expect(page.get_by_role("link", name=ids[24], exact=True)).to_be_visible()
    page.get_by_role("button", name="Next page").click()
    expect(page.locator("table.messages tbody tr")).to_have_count(2)
    expect(page.get_by_role("link", name=ids[26], exact=True)).to_be_visible()
    newest = ui.publish(queue)
    expect(page.get_by_role("link", name=newest, exact=True)).to_be_visible(timeout=LIVE_MS)
    page.get_by_role("button", name="Previous page").click()
    expect(page.get_by_role("link", name=ids[0], exact=True)).to_be_visible()
    ui.receive(queue)
    expect(value(page, "In flight")).to_have_text("1", timeout=LIVE_MS)


def test_purge_asks_first_and_can_be_undone(ui: Dashboard) -> None:
    queue = ui.create()
    for n in range(3):
        ui.publish(queue, {"n": n})
    page = ui.open(f"/ui/queues/{queue}")
    page.get_by_role("button", name="Purge", exact=True).click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("3 now")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_have_count(0)
    assert ui.get(f"/v1/queues/{queue}")["stats"]["available"] == 3

    page.get_by_role("button", name="Purge", exact=True).click()
    page.get_by_role("dialog").get_by_role("button", name="Purge").click()
    expect(page.get_by_role("status").filter(has_text="Purged 3 messages.")).to_be_visible()
    assert ui.get(f"/v1/queues/{queue}")["stats"]["available"] == 0
    expect(value(page, "Available")).to_have_text("0")
    page.get_by_role("button", name="Undo").click()
    expect(page.get_by_role("status").filter(has_text="restored 3 messages")).to_be_visible()
    assert ui.get(f"/v1/queues/{queue}")["stats"]["available"] == 3
    expect(value(page, "Available")).to_have_text("3")


def test_redrive_moves_dead_letters_back(ui: Dashboard) -> None:
    dlq = ui.create()
    queue = ui.create(max_receive_count=1, dead_letter_queue=dlq)
    ui.publish(queue)
    [message] = ui.receive(queue)
    nack = ui.api.post(
        f"/v1/queues/{queue}/messages/{message['id']}/nack",
        json={"receipt": message["receipt"], "reason": "boom"},
    )
    assert nack.status_code == 204
    assert ui.receive(queue) == []  # the second delivery is a move to the dead-letter queue
    assert ui.get(f"/v1/queues/{dlq}")["stats"]["available"] == 1
    # The message's timeline says where it went, and links to its copy there.
    page = ui.open(f"/ui/queues/{queue}/messages/{message['id']}")
    moved = page.locator("ol.timeline > li").last
    expect(moved.locator("code.type")).to_have_text("message.dead_lettered")
    expect(moved).to_contain_text("reason: boom")
    moved.get_by_role("link", name=dlq, exact=True).click()
    expect(page.get_by_role("heading", name=dlq, level=1)).to_be_visible()
    page.get_by_role("button", name="Redrive").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("1 messages would go back")
    dialog.get_by_role("button", name="Redrive").click()
    expect(page.get_by_role("status").filter(has_text="Redrove 1 messages.")).to_be_visible()
    assert ui.get(f"/v1/queues/{queue}")["stats"]["available"] == 1
    assert ui.get(f"/v1/queues/{dlq}")["stats"]["available"] == 0


def test_delete_queue_asks_first_and_offers_a_restore(ui: Dashboard) -> None:
    queue = ui.create()
    ui.publish(queue)
    page = ui.open(f"/ui/queues/{queue}")
    page.get_by_role("button", name="Delete queue").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("button", name="Delete queue").click()
    expect(page).to_have_url(f"{ui.server.url}/ui/")
    expect(page.get_by_role("status").filter(has_text=f"Queue {queue} deleted.")).to_be_visible()
    expect(page.get_by_role("link", name=queue, exact=True)).to_have_count(0)
    assert ui.api.get(f"/v1/queues/{queue}").status_code == 404
    page.get_by_role("button", name="Restore").click()
    expect(page).to_have_url(f"{ui.server.url}/ui/queues/{queue}")
    expect(value(page, "Available")).to_have_text("1")


def test_a_queue_deleted_elsewhere_says_so_on_its_page(ui: Dashboard) -> None:
    queue = ui.create()
    page = ui.open(f"/ui/queues/{queue}")
    expect(page.get_by_text("Live", exact=True)).to_be_visible()
    assert ui.api.delete(f"/v1/queues/{queue}").status_code == 204
    expect(page.get_by_role("alert")).to_have_text("This queue has been deleted.", timeout=LIVE_MS)
    expect(page.get_by_role("button", name="Purge")).to_have_count(0)


def _seconds(value: float) -> str:
    """A dwell time as the dashboard writes it: three significant digits, then " s"."""
    rounded = float(f"{value:.3g}")
    return f"{int(rounded) if rounded.is_integer() else rounded} s"


def _nack(ui: Dashboard, queue: str, message: dict[str, Any], reason: str) -> None:
    answer = ui.api.post(
        f"/v1/queues/{queue}/messages/{message['id']}/nack",
        json={"receipt": message["receipt"], "reason": reason},
    )
    assert answer.status_code == 204, answer.text


@pytest.mark.parametrize("size", ["desktop", "phone"], indirect=True)
def test_the_queue_page_charts_its_analytics_live(ui: Dashboard) -> None:
    queue = ui.create()
    for n in range(6):
        ui.publish(queue, {"n": n})
    received = ui.receive(queue, 6)
    for message in received[:2]:
        ack = ui.api.post(
            f"/v1/queues/{queue}/messages/{message['id']}/ack",
            json={"receipt": message["receipt"]},
        )
        assert ack.status_code == 204
    reasons = ["card declined", "timeout", "timeout", "timeout"]
    for message, reason in zip(received[2:], reasons, strict=True):
        _nack(ui, queue, message, reason)

    buckets = ui.get(f"/v1/queues/{queue}/analytics")["buckets"]
    totals = {key: sum(b[key] for b in buckets) for key in ("published", "acked", "nacked")}
    assert totals == {"published": 6, "acked": 2, "nacked": 4}
    page = ui.open(f"/ui/queues/{queue}")
    expect(page.get_by_label("Window")).to_have_value("1h")
    expect(page.get_by_text("In this window:")).to_contain_text(
        "6 published, 2 acked, 4 nacked, 0 dead-lettered (60 s buckets)"
    )
    expect(page.locator("figure .uplot")).to_have_count(1)  # the counts
    # Two acks, in one bucket: too few for a dwell chart, so their numbers are shown instead.
    [acked] = [b for b in buckets if b["dwell_s"]]
    dwell = page.locator("figure table.dwell tbody tr")
    expect(dwell).to_have_count(1)
    percentiles = [_seconds(acked["dwell_s"][key]) for key in ("p50", "p95", "p99", "max")]
    expect(dwell.locator("td")).to_have_text(["2", *percentiles])
    top = page.locator("table.reasons tbody tr")
    expect(top).to_have_count(2)
    expect(top.nth(0)).to_have_text("timeout3")  # most frequent first
    expect(top.nth(1)).to_have_text("card declined1")

    ui.publish(queue)
    expect(page.get_by_text("In this window:")).to_contain_text(
        "7 published", timeout=1000 + LIVE_MS
    )
    page.get_by_label("Window").select_option("15m")
    expect(page.get_by_text("In this window:")).to_contain_text("(10 s buckets)")
    expect(page.get_by_text("In this window:")).to_contain_text("7 published")


DWELL_FIGURE = """async (acked) => {
  const charts = await import("/ui/assets/charts.js");
  const start = Date.parse("2026-12-07T10:00:00Z");
  const buckets = Array.from({ length: 30 }, (_, i) => ({
    start: new Date(start + i * 60_000).toISOString(), published: 1, acked: 0,
    dwell_s: null, nack_reasons: [],
  }));
  for (const i of acked) {
    buckets[i].acked = 1;
    buckets[i].dwell_s = { p50: 0.5 + i, p95: 0.75 + i, p99: 0.9 + i, max: 1 + i };
  }
  const el = document.createElement("div");
  el.className = "chart";
  document.querySelector("main").append(el);
  const figure = charts.dwell(el, buckets);
  const drawn = {
    chart: el.querySelectorAll(".uplot").length,
    rows: el.querySelectorAll("table.dwell tbody tr").length,
    text: el.innerText,
  };
  figure.destroy();
  el.remove();
  return drawn;
}"""


@pytest.mark.parametrize("size", ["desktop", "phone"], indirect=True)
def test_the_dwell_figure_is_a_table_until_there_are_enough_acks_for_a_chart(
    ui: Dashboard,
) -> None:
    """With one to three buckets holding acks a dwell chart is a dot or two at the edge of an
    empty frame, its percentiles over each other: those buckets are a table of numbers instead;
    from four on, a chart. (The page's own charts module, fed buckets of known shape.)"""
    page = ui.open("/ui/")
    expect(page.get_by_role("heading", name="Queues", level=1)).to_be_visible()
    none = page.evaluate(DWELL_FIGURE, [])
    assert none == {"chart": 0, "rows": 0, "text": "No message was acked in this window."}
    for acked in ([29], [3, 17], [0, 1, 29]):
        drawn = page.evaluate(DWELL_FIGURE, acked)
        assert (drawn["chart"], drawn["rows"]) == (0, len(acked)), drawn
        for i in acked:  # each bucket's start, in UTC, and its p50
            assert f"2026-12-07 10:{i:02d}:00 UTC" in drawn["text"]
            assert f"{0.5 + i} s" in drawn["text"]
    drawn = page.evaluate(DWELL_FIGURE, [0, 10, 20, 29])
    assert (drawn["chart"], drawn["rows"]) == (1, 0), drawn

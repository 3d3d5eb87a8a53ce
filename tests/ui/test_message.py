"""/ui/queues/<name>/messages/<id>: body, attributes, status and the history, live; and the
lookup by id that every page has."""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import expect

from tests.ui.conftest import LIVE_MS, Dashboard


@pytest.mark.parametrize("size", ["desktop", "phone"], indirect=True)
def test_the_message_page_shows_what_the_api_says_and_new_history_live(ui: Dashboard) -> None:
    dlq = ui.create()
    queue = ui.create(max_receive_count=2, dead_letter_queue=dlq)
    body = {"order": 42, "lines": [{"sku": "A-1", "qty": 2}], "note": "ring twice"}
    message_id = ui.publish(queue, body, attributes={"region": "eu", "tenant": "acme"})
    [leased] = ui.receive(queue)
    nack = ui.api.post(
        f"/v1/queues/{queue}/messages/{message_id}/nack",
        json={"receipt": leased["receipt"], "reason": "timeout calling payments"},
    )
    assert nack.status_code == 204

    page = ui.open(f"/ui/queues/{queue}/messages/{message_id}")
    expect(page.get_by_role("heading", level=1)).to_contain_text(message_id)
    expect(page.locator("pre.body")).to_have_text(json.dumps(body, indent=2))
    expect(page.get_by_role("row", name="region eu")).to_be_visible()
    expect(page.get_by_role("row", name="tenant acme")).to_be_visible()
    expect(page.locator("dt:text-is('Status') + dd")).to_have_text("available")
    history = ui.get(f"/v1/queues/{queue}/messages/{message_id}")["history"]
    entries = page.locator("ol.timeline > li")
    expect(entries).to_have_count(len(history))
    for entry, item in zip(entries.all(), history, strict=True):
        expect(entry.locator("code.type")).to_have_text(item["type"])
        expect(entry.locator(".when time")).to_have_attribute("datetime", item["at"])
    expect(entries.nth(2)).to_contain_text("timeout calling payments")
    expect(page.get_by_text("Live", exact=True)).to_be_visible()

    ui.receive(queue)  # the second delivery: a new lease, live
    expect(entries).to_have_count(len(history) + 1, timeout=LIVE_MS)
    expect(entries.last.locator("code.type")).to_have_text("message.leased")
    expect(page.locator("dt:text-is('Status') + dd")).to_have_text("in flight", timeout=LIVE_MS)


def test_a_json_string_body_is_shown_parsed(ui: Dashboard) -> None:
    queue = ui.create()
    message_id = ui.publish(queue, '{"a": [1, 2]}')
    page = ui.open(f"/ui/queues/{queue}/messages/{message_id}")
    expect(page.locator("pre.body")).to_have_text(json.dumps({"a": [1, 2]}, indent=2))
    expect(page.get_by_text("A JSON string holding JSON, shown parsed.")).to_be_visible()


@pytest.mark.parametrize("start", ["/ui/", "/ui/events"])
def test_a_message_can_be_found_by_id_from_any_page(ui: Dashboard, start: str) -> None:
    queue = ui.create()
    message_id = ui.publish(queue, {"find": "me"})
    page = ui.open(start)
    expect(page.get_by_role("heading", level=1)).to_be_visible()
    page.get_by_label("Message id").fill(message_id)
    page.get_by_role("button", name="Find").click()
    expect(page).to_have_url(f"{ui.server.url}/ui/queues/{queue}/messages/{message_id}")
    expect(page.locator("pre.body")).to_contain_text('"find": "me"')


def test_an_unknown_message_id_says_so(ui: Dashboard) -> None:
    ui.allow(r"status of 404")  # the lookup's own answer: there is no such message
    page = ui.open("/ui/")
    page.get_by_label("Message id").fill("01900000-0000-7000-8000-000000000000")
    page.get_by_role("button", name="Find").click()
    expect(page.get_by_role("alert")).to_contain_text("No message")

// /ui/queues/<name>/messages/<id>: body, attributes, status, and the message's whole history
// as a timeline; new events of this message appear as they happen (the queue's feed,
// filtered to this message here).

import * as api from "../api.js";
import { count, debounce, fill, h, liveBadge, messagePath, queuePath, time } from "../dom.js";
import { follow } from "../feed.js";

export async function render(main, { name, id }, { scope, isCurrent }) {
  document.title = `Message ${id} · Cairn`;
  const base = `/v1/queues/${api.q(name)}/messages/${api.q(id)}`;
  if (!scope.canRead(name)) {
    fill(main, h("h1", {}, "Message"), h("p", {}, "This token may not read this queue."));
    return null;
  }
  let start;
  let message;
  try {
    start = await api.head();
    message = await api.get(`${base}${api.query({ min_position: start })}`);
  } catch (error) {
    if (error.status !== 401 && isCurrent()) {
      fill(
        main,
        h("h1", {}, "Message"),
        h("p", { class: "error", role: "alert" }, error.status === 404 ? `No message ${id} in queue ${name}.` : `Could not load the message: ${error.message}`),
        h("p", {}, h("a", { href: queuePath(name) }, `Queue ${name}`)),
      );
    }
    return null;
  }
  if (!isCurrent()) return null;

  const badge = liveBadge();
  const facts = h("dl", { class: "facts" });
  const bodyEl = h("pre", { class: "body", tabindex: "0" });
  const bodyNote = h("p", { class: "hint", hidden: true });
  const attributesEl = h("div");
  const timeline = h("ol", { class: "timeline", "aria-live": "polite" });
  const shown = new Set();

  function showMessage(m) {
    message = m;
    const item = (label, value) => h("div", {}, h("dt", {}, label), h("dd", {}, value));
    facts.replaceChildren(
      item("Status", h("span", { class: `status s-${m.status}` }, m.status.replace("_", " "))),
      item("Queue", h("a", { href: queuePath(m.queue) }, m.queue)),
      item("Receive count", count(m.receive_count)),
      item("Published", time(m.published_at)),
      item("Visible at", time(m.visible_at)),
      item("Priority", m.priority ?? "—"),
      item("Group", m.group_id ?? "—"),
    );
    const [text, note] = pretty(m.body);
    bodyEl.textContent = text;
    bodyNote.hidden = !note;
    bodyNote.textContent = note || "";
    const plain = Object.entries(m.attributes || {});
    const typed = Object.entries(m.typed_attributes || {});
    fill(
      attributesEl,
      plain.length || typed.length
        ? h(
            "table",
            { class: "attributes" },
            h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Name"), h("th", { scope: "col" }, "Value"), h("th", { scope: "col" }, "Type"))),
            h(
              "tbody",
              {},
              plain.map(([k, v]) => h("tr", {}, h("th", { scope: "row" }, k), h("td", {}, v), h("td", {}, "—"))),
              typed.map(([k, v]) => h("tr", {}, h("th", { scope: "row" }, k), h("td", {}, typedValue(v)), h("td", {}, v.data_type || "—"))),
            ),
          )
        : h("p", { class: "empty" }, "No attributes."),
    );
    for (const entry of m.history) addEntry(entry);
  }

  function addEntry(entry) {
    if (shown.has(entry.position)) return;
    shown.add(entry.position);
    const li = h(
      "li",
      { dataset: { position: entry.position } },
      h("div", { class: "when" }, time(entry.at), h("span", { class: "pos" }, `#${entry.position}`)),
      h("div", {}, h("code", { class: "type" }, entry.type), details(entry.type, entry.data || {}, message)),
    );
    // Keep the timeline in position order whatever order entries arrive in.
    const later = [...timeline.children].find((el) => Number(el.dataset.position) > entry.position);
    timeline.insertBefore(li, later || null);
  }

  fill(
    main,
    h(
      "nav",
      { class: "crumbs", "aria-label": "Breadcrumb" },
      h("a", { href: "/ui/" }, "Queues"),
      " / ",
      h("a", { href: queuePath(name) }, name),
      " / ",
      h("span", { "aria-current": "page" }, "message"),
    ),
    h("div", { class: "title" }, h("h1", {}, "Message ", h("code", { class: "id" }, id)), badge),
    facts,
    h("section", { "aria-labelledby": "body-heading" }, h("h2", { id: "body-heading" }, "Body"), bodyNote, bodyEl),
    h("section", { "aria-labelledby": "attributes-heading" }, h("h2", { id: "attributes-heading" }, "Attributes"), attributesEl),
    h("section", { "aria-labelledby": "history-heading" }, h("h2", { id: "history-heading" }, "History"), timeline),
  );
  showMessage(message);

  let upTo = start;
  let closed = false;
  const refresh = debounce(async () => {
    try {
      const m = await api.get(`${base}${api.query({ min_position: upTo })}`);
      if (!closed) showMessage(m);
    } catch {
      // the queue went away: the feed says so
    }
  }, 120, 500);

  const feed = follow(`/v1/queues/${api.q(name)}/events/stream`, {
    after: start,
    onState: (state) => badge.set(state),
    onEvent: (event) => {
      if (event.message_id !== id) return;
      upTo = Math.max(upTo, event.position);
      addEntry(event);
      refresh();
    },
  });

  return () => {
    closed = true;
    feed.close();
    refresh.cancel();
  };
}

/** The body as text: JSON pretty-printed; a string that holds JSON, parsed and noted. */
function pretty(body) {
  if (typeof body === "string") {
    const trimmed = body.trim();
    if (trimmed.startsWith("{") || trimmed.startsWith("[")) {
      try {
        return [JSON.stringify(JSON.parse(trimmed), null, 2), "A JSON string holding JSON, shown parsed."];
      } catch {
        // not JSON after all
      }
    }
    return [body, "A JSON string, shown as its text."];
  }
  return [JSON.stringify(body, null, 2), null];
}

function typedValue(v) {
  if (v.string_value !== undefined && v.string_value !== null) return v.string_value;
  if (v.binary_value !== undefined && v.binary_value !== null) return `(binary, base64) ${v.binary_value}`;
  return JSON.stringify(v);
}

/** What an event says about the message, in words. */
function details(type, data, message) {
  const parts = [];
  const at = (iso) => time(iso);
  switch (type) {
    case "message.published":
      parts.push(`priority ${data.priority ?? 4}`);
      if (data.delay_s) parts.push(`delayed ${data.delay_s} s`);
      if (data.group_id) parts.push(`group ${data.group_id}`);
      if (data.dedup_id) parts.push(`dedup id ${data.dedup_id}`);
      if (data.reason) parts.push(`dead-lettered because: ${data.reason}`);
      break;
    case "message.leased":
      parts.push(`receive #${data.receive_count}`);
      if (data.lease) parts.push(`lease ${data.lease}`);
      if (data.visible_at) parts.push(["lease ends ", at(data.visible_at)]);
      break;
    case "message.nacked":
      parts.push(data.reason ? `reason: ${data.reason}` : "no reason given");
      if (data.visible_at) parts.push(["available again ", at(data.visible_at)]);
      break;
    case "message.lease_extended":
      if (data.visible_at) parts.push(["lease now ends ", at(data.visible_at)]);
      break;
    case "message.lease_expired":
      parts.push("the lease ended without an ack");
      break;
    case "message.acked":
      if (data.lease) parts.push(`lease ${data.lease}`);
      break;
    case "message.dead_lettered":
      parts.push([
        "moved to ",
        h("a", { href: queuePath(data.dead_letter_queue) }, data.dead_letter_queue),
        " as ",
        h("a", { href: messagePath(data.dead_letter_queue, data.dead_letter_message_id) }, h("code", {}, data.dead_letter_message_id)),
      ]);
      if (data.reason) parts.push(`reason: ${data.reason}`);
      break;
    case "message.redriven":
      parts.push([
        "moved to ",
        h("a", { href: queuePath(data.to_queue) }, data.to_queue),
        " as ",
        h("a", { href: messagePath(data.to_queue, data.new_message_id) }, h("code", {}, data.new_message_id)),
      ]);
      break;
    case "message.restored":
      parts.push(`an undone purge (purge ${data.purge}) made it available again`);
      break;
    case "message.expired":
      parts.push("past the queue's retention: never delivered");
      break;
    default:
      for (const [key, value] of Object.entries(data)) {
        if (value !== null && typeof value !== "object") parts.push(`${key} ${value}`);
      }
  }
  if (!parts.length) return null;
  return h("p", { class: "detail" }, parts.flatMap((part, i) => (i ? ["; ", part] : [part])));
}

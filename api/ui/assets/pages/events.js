// /ui/events: the event log as it happens, newest first, with a type filter. Pause closes the
// feed; Resume reopens it after the last event shown, so the log's catch-up fills the gap:
// nothing is missed while paused.

import * as api from "../api.js";
import { fill, h, liveBadge, messagePath, queuePath, time } from "../dom.js";
import { follow } from "../feed.js";

const TYPES = [
  "queue.created",
  "queue.updated",
  "queue.deleted",
  "queue.restored",
  "queue.purged",
  "queue.purge_undone",
  "queue.move_task_started",
  "queue.move_task_ended",
  "message.published",
  "message.leased",
  "message.acked",
  "message.nacked",
  "message.lease_extended",
  "message.lease_expired",
  "message.dead_lettered",
  "message.expired",
  "message.redriven",
  "message.restored",
];
const BACKLOG = 100; // events before "now" shown when the page opens
const KEEP = 500; // rows kept on the page

export async function render(main, params, { scope, isCurrent }) {
  document.title = "Event log · Cairn";
  if (!scope.readsSome) {
    fill(main, h("h1", {}, "Event log"), h("p", {}, "This token may not read the event log."));
    return null;
  }
  let start;
  try {
    start = await api.head();
  } catch {
    return null;
  }
  if (!isCurrent()) return null;

  const badge = liveBadge();
  const typeSelect = h(
    "select",
    { id: "type", name: "type" },
    h("option", { value: "" }, "All events"),
    h("option", { value: "queue.*" }, "queue.*"),
    h("option", { value: "message.*" }, "message.*"),
    TYPES.map((t) => h("option", { value: t }, t)),
  );
  const pause = h("button", { type: "button" }, "Pause");
  let paused = false;
  const tbody = h("tbody");
  const position = h("span", { class: "hint" });
  const empty = h("p", { class: "empty" }, "No events yet.");

  fill(
    main,
    h("div", { class: "title" }, h("h1", {}, "Event log"), badge),
    h(
      "div",
      { class: "toolbar" },
      h("div", { class: "control" }, h("label", { for: "type" }, "Type"), typeSelect),
      pause,
      position,
    ),
    h(
      "div",
      { class: "scroll" },
      h(
        "table",
        { class: "events" },
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            h("th", { scope: "col", class: "num" }, "Position"),
            h("th", { scope: "col" }, "Type"),
            h("th", { scope: "col" }, "Time"),
            h("th", { scope: "col" }, "Queue"),
            h("th", { scope: "col" }, "Message"),
          ),
        ),
        tbody,
      ),
    ),
    empty,
  );

  let feed = null;
  let last = Math.max(0, start - BACKLOG);

  function row(event) {
    return h(
      "tr",
      { dataset: { position: event.position } },
      h("td", { class: "num" }, event.position),
      h("td", {}, h("code", {}, event.type)),
      h("td", {}, time(event.at)),
      h("td", {}, event.queue ? h("a", { href: queuePath(event.queue) }, event.queue) : "—"),
      h(
        "td",
        { class: "id" },
        event.message_id && event.queue ? h("a", { href: messagePath(event.queue, event.message_id) }, h("code", {}, event.message_id)) : "—",
      ),
    );
  }

  function open() {
    const types = typeSelect.value;
    feed = follow(`/v1/events/stream${api.query({ types })}`, {
      after: last,
      onState: (state) => badge.set(state),
      onEvent: (event) => {
        last = Math.max(last, event.position);
        tbody.prepend(row(event));
        while (tbody.children.length > KEEP) tbody.lastElementChild.remove();
        empty.hidden = true;
        position.textContent = `Last position ${event.position}`;
      },
    });
  }

  function close() {
    if (feed) feed.close();
    feed = null;
  }

  typeSelect.addEventListener("change", () => {
    close();
    tbody.replaceChildren();
    empty.hidden = false;
    last = Math.max(0, last - BACKLOG);
    if (!paused) open();
  });

  pause.addEventListener("click", () => {
    paused = !paused;
    pause.textContent = paused ? "Resume" : "Pause";
    if (paused) {
      close();
      badge.set("paused");
      position.textContent = `Paused after position ${last}`;
    } else {
      open();
    }
  });

  open();
  return () => close();
}

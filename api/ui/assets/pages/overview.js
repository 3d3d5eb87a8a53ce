// /ui/: every live queue the token may read, with its depths, the age of its oldest available
// message and a sparkline of its publish and ack rates; the log head and each projection's
// lag. Live: the whole-log feed says which queues changed, and only those are read again.

import * as api from "../api.js";
import * as charts from "../charts.js";
import { count, debounce, duration, fill, h, liveBadge, queuePath, takeFlash, wakeups } from "../dom.js";
import { follow } from "../feed.js";

const STRUCTURAL = new Set(["queue.created", "queue.deleted", "queue.restored"]);
const SPARK_WINDOW_S = 10 * 60;
const SPARK_BUCKET_S = 10;
const SPARK_EVERY_MS = 10_000;

export async function render(main, params, { scope, isCurrent }) {
  document.title = "Queues · Cairn";
  const flashed = takeFlash();
  if (!scope.readsSome) {
    fill(main, h("h1", {}, "Queues"), flashed, h("p", {}, "This token may not read any queue."));
    return null;
  }
  const badge = liveBadge();
  const tbody = h("tbody");
  const empty = h("p", { class: "empty", hidden: true }, "No queues yet.");
  const headEl = h("strong", {}, "—");
  const projectionsBody = h("tbody");
  fill(
    main,
    h("div", { class: "title" }, h("h1", {}, "Queues"), badge),
    flashed,
    h(
      "div",
      { class: "scroll" },
      h(
        "table",
        { class: "queues" },
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            h("th", { scope: "col" }, "Queue"),
            h("th", { scope: "col", class: "num" }, "Available"),
            h("th", { scope: "col", class: "num" }, "In flight"),
            h("th", { scope: "col", class: "num" }, "Delayed"),
            h("th", { scope: "col", class: "num" }, "Oldest available"),
            h("th", { scope: "col" }, "Published / acked, 10 min"),
          ),
        ),
        tbody,
      ),
    ),
    empty,
    h(
      "section",
      { "aria-labelledby": "log-heading" },
      h("h2", { id: "log-heading" }, "Log and projections"),
      h("p", {}, "Log head: position ", headEl),
      h(
        "div",
        { class: "scroll" },
        h(
          "table",
          { class: "projections" },
          h(
            "thead",
            {},
            h(
              "tr",
              {},
              h("th", { scope: "col" }, "Projection"),
              h("th", { scope: "col", class: "num" }, "Position"),
              h("th", { scope: "col", class: "num" }, "Lag"),
            ),
          ),
          projectionsBody,
        ),
      ),
    ),
  );

  const rows = new Map(); // name -> {tr, cells, queue, fetchedAt, spark, sparkAt}
  let head = 0;
  let closed = false;

  function showHead(position) {
    head = Math.max(head, position);
    headEl.textContent = count(head);
  }

  function ageText(row) {
    const stats = row.queue.stats;
    if (!stats.available) return "—";
    return duration(stats.oldest_available_age_s + (performance.now() - row.fetchedAt) / 1000);
  }

  function fillRow(row, queue) {
    row.queue = queue;
    row.fetchedAt = performance.now();
    const { stats } = queue;
    row.cells.available.textContent = count(stats.available);
    row.cells.inFlight.textContent = count(stats.in_flight);
    row.cells.delayed.textContent = count(stats.delayed);
    row.cells.age.textContent = ageText(row);
  }

  function makeRow(queue) {
    const cells = {
      available: h("td", { class: "num" }),
      inFlight: h("td", { class: "num" }),
      delayed: h("td", { class: "num" }),
      age: h("td", { class: "num" }),
      spark: h("td", { class: "spark" }),
    };
    const tr = h(
      "tr",
      { dataset: { queue: queue.name } },
      h("th", { scope: "row" }, h("a", { href: queuePath(queue.name) }, queue.name)),
      cells.available,
      cells.inFlight,
      cells.delayed,
      cells.age,
      cells.spark,
    );
    const row = { tr, cells, queue, fetchedAt: 0, spark: null, sparkAt: -Infinity };
    fillRow(row, queue);
    return row;
  }

  function showAll(queues) {
    const seen = new Set();
    for (const queue of queues) {
      seen.add(queue.name);
      const row = rows.get(queue.name);
      if (row) fillRow(row, queue);
      else rows.set(queue.name, makeRow(queue));
    }
    for (const [name, row] of rows) {
      if (!seen.has(name)) {
        if (row.spark) row.spark.destroy();
        rows.delete(name);
      }
    }
    tbody.replaceChildren(...queues.map((q) => rows.get(q.name).tr));
    empty.hidden = queues.length > 0;
    sparkAll(queues.map((q) => q.name));
  }

  async function spark(name) {
    const row = rows.get(name);
    if (!row || performance.now() - row.sparkAt < SPARK_EVERY_MS) return;
    row.sparkAt = performance.now();
    const to = new Date();
    const from = new Date(to.getTime() - SPARK_WINDOW_S * 1000);
    let answer;
    try {
      answer = await api.get(
        `/v1/queues/${api.q(name)}/analytics${api.query({ from: from.toISOString(), to: to.toISOString(), bucket_s: SPARK_BUCKET_S })}`,
      );
    } catch {
      return; // a queue deleted meanwhile: its row goes with the next refresh
    }
    if (closed || rows.get(name) !== row) return;
    if (row.spark) row.spark.update(answer.buckets);
    else {
      row.cells.spark.setAttribute("aria-label", "messages published and acked per 10 seconds, last 10 minutes");
      row.spark = charts.sparkline(row.cells.spark, answer.buckets);
    }
  }

  async function sparkAll(names) {
    for (const name of names) {
      if (closed) return;
      await spark(name);
    }
  }

  async function loadProjections() {
    const answer = await api.get("/v1/projections");
    showHead(answer.head);
    projectionsBody.replaceChildren(
      ...answer.projections.map((p) =>
        h(
          "tr",
          {},
          h("th", { scope: "row" }, p.name),
          h("td", { class: "num" }, count(p.position)),
          h("td", { class: "num" }, count(p.lag)),
        ),
      ),
    );
    return answer.head;
  }

  // Where the feed starts and what the first reads must reflect: the head as of now.
  let start;
  try {
    start = await loadProjections();
    if (!isCurrent()) return null;
    const answer = await api.get(`/v1/queues${api.query({ min_position: start })}`);
    if (!isCurrent()) return null;
    showAll(answer.queues);
  } catch (error) {
    if (error.status !== 401 && isCurrent()) main.append(h("p", { class: "error", role: "alert" }, `Could not load the queues: ${error.message}`));
    return null;
  }

  const dirty = new Set();
  let structural = false;
  let upTo = start;

  const refresh = debounce(async () => {
    const names = [...dirty];
    const all = structural || names.some((n) => !rows.has(n)) || names.length > 8;
    const position = upTo;
    dirty.clear();
    structural = false;
    try {
      if (all) {
        const answer = await api.get(`/v1/queues${api.query({ min_position: position })}`);
        if (!closed) showAll(answer.queues);
        return;
      }
      await Promise.all(
        names.map(async (name) => {
          const queue = await api.get(`/v1/queues/${api.q(name)}${api.query({ min_position: position })}`);
          const row = rows.get(name);
          if (row && !closed) fillRow(row, queue);
        }),
      );
      sparkAll(names);
    } catch (error) {
      if (error.status === 404) {
        structural = true;
        refresh();
      }
    }
  }, 120, 500);

  const refreshProjections = debounce(() => loadProjections().catch(() => {}), 500, 2000);
  const due = wakeups((name) => {
    dirty.add(name);
    refresh();
  });

  const feed = follow("/v1/events/stream", {
    after: start,
    onState: (state) => badge.set(state),
    onEvent: (event) => {
      showHead(event.position);
      upTo = Math.max(upTo, event.position);
      if (STRUCTURAL.has(event.type)) structural = true;
      if (event.queue) dirty.add(event.queue);
      due.note(event);
      refresh();
      refreshProjections();
    },
  });

  // The age of the oldest message grows by itself between events: advance it locally.
  const ticker = setInterval(() => {
    for (const row of rows.values()) row.cells.age.textContent = ageText(row);
  }, 1000);

  return () => {
    closed = true;
    feed.close();
    refresh.cancel();
    refreshProjections.cancel();
    due.clear();
    clearInterval(ticker);
    for (const row of rows.values()) if (row.spark) row.spark.destroy();
  };
}

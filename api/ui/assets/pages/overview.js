// /ui/: the live queues the token may read, a page at a time and searchable by name prefix,
// with their depths, the age of their oldest available message and a sparkline of their publish
// and ack rates; the log head and each projection's lag. Live: the whole-log feed says which
// queues changed, and only those on the page shown are read again (a broker may hold 100,000
// queues: the page never reads more than one page of them).

import * as api from "../api.js";
import * as charts from "../charts.js";
import { count, debounce, duration, fill, h, liveBadge, queuePath, takeFlash, wakeups } from "../dom.js";
import { follow } from "../feed.js";

const STRUCTURAL = new Set(["queue.created", "queue.deleted", "queue.restored"]);
const SPARK_WINDOW_S = 10 * 60;
const SPARK_BUCKET_S = 10;
const SPARK_EVERY_MS = 10_000;
const PAGE = 100; // queues a page shows (`GET /v1/queues?limit=`)
const SEARCH_WAIT_MS = 250; // typing pauses this long before the search runs

export async function render(main, params, { scope, isCurrent }) {
  document.title = "Queues · Cairn";
  const flashed = takeFlash();
  if (!scope.readsSome) {
    fill(main, h("h1", {}, "Queues"), flashed, h("p", {}, "This token may not read any queue."));
    return null;
  }
  const badge = liveBadge();
  const tbody = h("tbody");
  const empty = h("p", { class: "empty", hidden: true });
  const search = h("input", { id: "queue-search", name: "prefix", type: "search", autocomplete: "off", spellcheck: "false", placeholder: "name starts with…" });
  const searchForm = h(
    "form",
    { class: "control", role: "search", "aria-label": "Queues" },
    h("label", { for: "queue-search" }, "Search queues"),
    search,
  );
  const previous = h("button", { type: "button", disabled: true }, "Previous page");
  const next = h("button", { type: "button", disabled: true }, "Next page");
  const pageInfo = h("span", { class: "page-info" });
  const pager = h("div", { class: "pager", hidden: true }, previous, pageInfo, next);
  const table = h(
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
  );
  // On a phone the last columns are off to the right: say so, until the table is scrolled there.
  const more = h("p", { class: "hint more", hidden: true }, "Scroll the table sideways for Oldest available and Published / acked →");
  const headEl = h("strong", {}, "—");
  const projectionsBody = h("tbody");
  fill(
    main,
    h("div", { class: "title" }, h("h1", {}, "Queues"), badge, searchForm),
    flashed,
    more,
    table,
    empty,
    pager,
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

  const rows = new Map(); // name -> {tr, cells, queue, fetchedAt, spark, sparkAt}: this page's
  let head = 0;
  let closed = false;
  let prefix = "";
  let cursors = [null]; // the `after` of each page seen so far; the last is this page's
  let nextAfter = null; // where the next page starts, null when this is the last
  let asked = 0; // the latest read of a page: an older answer that arrives late is dropped

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

  /** Whether a queue of that name belongs on the page shown (names in byte order; they are
   * ASCII, so JavaScript's comparison is the same). */
  function onThisPage(name) {
    const after = cursors[cursors.length - 1];
    return name.startsWith(prefix) && (after === null || name > after) && (nextAfter === null || name <= nextAfter);
  }

  function showMore() {
    const hidden = table.scrollWidth - table.clientWidth;
    more.hidden = !(hidden > 1 && table.scrollLeft < hidden - 1);
  }

  function showPage(answer) {
    nextAfter = answer.next_after ?? null;
    showAll(answer.queues);
    previous.disabled = cursors.length === 1;
    next.disabled = nextAfter === null;
    pageInfo.textContent = `Page ${cursors.length}`;
    pager.hidden = cursors.length === 1 && nextAfter === null; // one page: nothing to turn
    empty.textContent = prefix ? `No queue's name starts with “${prefix}”.` : cursors.length > 1 ? "No more queues." : "No queues yet.";
    showMore();
  }

  /** The page shown, read again as of `position` (at least). */
  async function readPage(position) {
    const mine = ++asked;
    const after = cursors[cursors.length - 1];
    const answer = await api.get(`/v1/queues${api.query({ limit: PAGE, after, prefix, min_position: position })}`);
    if (mine === asked && !closed) showPage(answer);
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
    table.hidden = queues.length === 0;
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
    await readPage(start);
    if (!isCurrent()) return null;
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
      if (all) return await readPage(position);
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
    if (!rows.has(name)) return;
    dirty.add(name);
    refresh();
  });

  const feed = follow("/v1/events/stream", {
    after: start,
    onState: (state) => badge.set(state),
    onEvent: (event) => {
      showHead(event.position);
      upTo = Math.max(upTo, event.position);
      refreshProjections();
      // Only what the page shows is read again: a change to a queue on another page, or one
      // the search leaves out, costs nothing here.
      const name = event.queue;
      if (!name || !(rows.has(name) || (STRUCTURAL.has(event.type) && onThisPage(name)))) return;
      if (STRUCTURAL.has(event.type)) structural = true;
      dirty.add(name);
      due.note(event);
      refresh();
    },
  });

  // Searching and paging: a user's move reads the page at once, as of the events seen so far.
  function turn() {
    refresh.cancel();
    dirty.clear();
    structural = false;
    readPage(upTo).catch((error) => {
      if (error.status === 401 || closed) return;
      empty.textContent = `Could not load the queues: ${error.message}`;
      empty.hidden = false;
    });
  }
  const searchSoon = debounce(() => {
    if (search.value.trim() === prefix) return;
    prefix = search.value.trim();
    cursors = [null];
    turn();
  }, SEARCH_WAIT_MS);
  search.addEventListener("input", searchSoon);
  searchForm.addEventListener("submit", (event) => {
    event.preventDefault();
    searchSoon.cancel();
    prefix = search.value.trim();
    cursors = [null];
    turn();
  });
  next.addEventListener("click", () => {
    if (nextAfter === null) return;
    cursors.push(nextAfter);
    turn();
  });
  previous.addEventListener("click", () => {
    if (cursors.length > 1) cursors.pop();
    turn();
  });
  table.addEventListener("scroll", showMore, { passive: true });
  const resized = new ResizeObserver(showMore);
  resized.observe(table);

  // The age of the oldest message grows by itself between events: advance it locally.
  const ticker = setInterval(() => {
    for (const row of rows.values()) row.cells.age.textContent = ageText(row);
  }, 1000);

  return () => {
    closed = true;
    feed.close();
    refresh.cancel();
    refreshProjections.cancel();
    searchSoon.cancel();
    resized.disconnect();
    due.clear();
    clearInterval(ticker);
    for (const row of rows.values()) if (row.spark) row.spark.destroy();
  };
}

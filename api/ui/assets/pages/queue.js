// /ui/queues/<name>: settings and stats, charts of the analytics, a message browser that never
// consumes (it lists, it does not receive), and purge / redrive / delete for tokens that may
// manage queues. Live over the queue's own feed.

import * as api from "../api.js";
import * as charts from "../charts.js";
import {
  confirmDialog,
  count,
  debounce,
  duration,
  fill,
  flash,
  h,
  liveBadge,
  messagePath,
  notice,
  queuePath,
  time,
  wakeups,
} from "../dom.js";
import { follow } from "../feed.js";

const STATUSES = ["available", "delayed", "in_flight", "acked", "dead_lettered", "expired", "purged", "redriven"];
const WINDOWS = [
  ["15m", "Last 15 minutes", 15 * 60, 10],
  ["1h", "Last hour", 3600, 60],
  ["24h", "Last 24 hours", 86400, 300],
  ["7d", "Last 7 days", 7 * 86400, 3600],
];
const PAGE = 25;

export async function render(main, { name }, { scope, isCurrent, navigate }) {
  document.title = `${name} · Cairn`;
  const base = `/v1/queues/${api.q(name)}`;
  if (!scope.canRead(name)) {
    fill(main, h("h1", {}, name), h("p", {}, "This token may not read this queue."));
    return null;
  }

  let start;
  let queue;
  try {
    start = await api.head();
    queue = await api.get(`${base}${api.query({ min_position: start })}`);
  } catch (error) {
    if (error.status !== 401 && isCurrent()) {
      fill(
        main,
        h("h1", {}, name),
        h("p", { class: "error", role: "alert" }, error.status === 404 ? `There is no queue ${name} (it may have been deleted).` : `Could not load the queue: ${error.message}`),
        h("p", {}, h("a", { href: "/ui/" }, "All queues")),
      );
    }
    return null;
  }
  if (!isCurrent()) return null;

  let closed = false;
  const badge = liveBadge();
  const notices = h("div", { class: "notices" });
  const statsEl = h("dl", { class: "stats" });
  const settingsEl = h("dl", { class: "settings" });
  const actions = h("div", { class: "actions" });

  function say(element) {
    notices.replaceChildren(element);
  }

  function failed(what, error) {
    if (error.status === 401) return;
    say(h("p", { class: "error", role: "alert" }, `${what} failed: ${error.message}`));
  }

  // --- stats and settings -------------------------------------------------------------------
  function showQueue(q) {
    queue = q;
    const s = q.stats;
    const item = (label, value) => [h("div", {}, h("dt", {}, label), h("dd", {}, value))];
    statsEl.replaceChildren(
      ...item("Available", count(s.available)),
      ...item("In flight", count(s.in_flight)),
      ...item("Delayed", count(s.delayed)),
      ...item("Oldest available", s.available ? duration(s.oldest_available_age_s) : "—"),
      ...item("Published", count(s.published_total)),
      ...item("Acked", count(s.acked_total)),
      ...item("Dead-lettered", count(s.dead_lettered_total)),
      ...item("Expired", count(s.expired_total)),
    );
    const seconds = (v) => (v === null || v === undefined ? "—" : `${v} s${v >= 60 ? ` (${duration(v)})` : ""}`);
    const tags = Object.entries(q.tags || {});
    settingsEl.replaceChildren(
      ...item("Visibility timeout", seconds(q.visibility_timeout_s)),
      ...item("Delay", seconds(q.delay_s)),
      ...item("Retention", seconds(q.retention_s)),
      ...item("Max receive count", q.max_receive_count ?? "—"),
      ...item("Dead-letter queue", q.dead_letter_queue ? h("a", { href: queuePath(q.dead_letter_queue) }, q.dead_letter_queue) : "—"),
      ...item("Max message size", q.max_message_bytes !== undefined ? `${count(q.max_message_bytes)} bytes` : "—"),
      ...item("Receive wait", seconds(q.receive_wait_s)),
      ...item("FIFO", q.fifo ? "yes" : "no"),
      ...item("Content-based dedup", q.content_based_dedup ? "yes" : "no"),
      ...item("Redrive allow policy", q.redrive_allow_policy || "—"),
      ...item("Tags", tags.length ? tags.map(([k, v]) => h("code", { class: "tag" }, `${k}=${v}`)) : "—"),
      ...item("Created", time(q.created_at)),
      ...item("Updated", time(q.updated_at)),
    );
  }

  // --- actions ------------------------------------------------------------------------------
  async function purge() {
    const n = queue.stats.available + queue.stats.delayed + queue.stats.in_flight;
    const ok = await confirmDialog({
      title: `Purge ${name}?`,
      body: h("p", {}, `Every available, delayed and in-flight message (${count(n)} now) will be removed. The purge can be undone right after.`),
      confirm: "Purge",
      danger: true,
    });
    if (!ok) return;
    try {
      const answer = await api.post(`${base}/purge`, {});
      const undo = answer.purge_id
        ? h("button", { type: "button", onclick: () => undoPurge(answer.purge_id) }, "Undo")
        : null;
      say(notice(`Purged ${count(answer.purged)} messages.`, undo));
      if (undo) undo.focus();
    } catch (error) {
      failed("Purge", error);
    }
  }

  async function undoPurge(purgeId) {
    try {
      const answer = await api.post(`${base}/purges/${api.q(purgeId)}/undo`, {});
      const skipped = answer.skipped ? ` (${count(answer.skipped)} skipped: past their retention)` : "";
      say(notice(`Undone: restored ${count(answer.restored)} messages${skipped}.`));
    } catch (error) {
      failed("Undo", error);
    }
  }

  async function redrive() {
    const estimate = h("p", {}, "Counting the messages that would move…");
    const to = h("input", { id: "redrive-to", name: "to", autocomplete: "off", placeholder: "the queue each came from" });
    const max = h("input", { id: "redrive-max", name: "max", type: "number", min: "1", max: "1000", value: "100", required: true });
    const fields = h(
      "div",
      { class: "fields" },
      h("label", { for: "redrive-to" }, "Destination queue"),
      to,
      h("label", { for: "redrive-max" }, "At most"),
      max,
    );
    const ok = await confirmDialog({
      title: `Redrive ${name}?`,
      body: [h("p", {}, "Moves available messages of this queue to another queue: by default, back to the queue each was dead-lettered from."), estimate],
      fields,
      confirm: "Redrive",
      onOpen: async () => {
        try {
          const dry = await api.post(`${base}/redrive`, { dry_run: true, max: 1000 });
          estimate.textContent = `${count(dry.would_move)}${dry.would_move === 1000 ? " or more" : ""} messages would go back to their source queue.`;
        } catch {
          estimate.textContent = "";
        }
      },
    });
    if (!ok) return;
    const body = { max: Number(max.value) || 100 };
    if (to.value.trim()) body.to = to.value.trim();
    try {
      const answer = await api.post(`${base}/redrive`, body);
      say(notice(`Redrove ${count(answer.moved)} messages.`));
    } catch (error) {
      failed("Redrive", error);
    }
  }

  async function remove() {
    const ok = await confirmDialog({
      title: `Delete queue ${name}?`,
      body: h("p", {}, "The queue disappears from reads and commands. Its events stay in the log, and it can be restored with its messages."),
      confirm: "Delete queue",
      danger: true,
    });
    if (!ok) return;
    try {
      await api.del(base);
    } catch (error) {
      failed("Delete", error);
      return;
    }
    const restore = h(
      "button",
      {
        type: "button",
        onclick: async () => {
          try {
            await api.post(`${base}/restore`, {});
            navigate(queuePath(name));
          } catch (error) {
            restore.replaceWith(h("span", { class: "error", role: "alert" }, `Restore failed: ${error.message}`));
          }
        },
      },
      "Restore",
    );
    flash(notice(`Queue ${name} deleted.`, restore));
    navigate("/ui/");
  }

  if (scope.manage) {
    actions.append(
      h("button", { type: "button", onclick: purge }, "Purge"),
      h("button", { type: "button", onclick: redrive }, "Redrive"),
      h("button", { type: "button", class: "danger", onclick: remove }, "Delete queue"),
    );
  }

  // --- analytics ----------------------------------------------------------------------------
  const chartsMade = [];
  const windowSelect = h(
    "select",
    { id: "window", name: "window" },
    WINDOWS.map(([value, label]) => h("option", { value, selected: value === "1h" }, label)),
  );
  const countsEl = h("div", { class: "chart" });
  const dwellEl = h("div", { class: "chart" });
  const reasonsEl = h("div", { class: "reasons" });
  const totalsEl = h("p", { class: "totals" });
  let countsChart = null;
  let dwellChart = null;
  const analyticsSection = h(
    "section",
    { "aria-labelledby": "activity-heading" },
    h("div", { class: "title" }, h("h2", { id: "activity-heading" }, "Activity"), h("div", { class: "control" }, h("label", { for: "window" }, "Window"), windowSelect)),
    totalsEl,
    h("div", { class: "charts" },
      h("figure", {}, h("figcaption", {}, "Messages per bucket"), countsEl),
      h("figure", {}, h("figcaption", {}, "Dwell time, publish to ack (p50, p95, p99)"), dwellEl),
    ),
    h("h3", {}, "Top nack reasons"),
    reasonsEl,
  );
  async function loadAnalytics(position = null) {
    const [, , span, bucket] = WINDOWS.find(([value]) => value === windowSelect.value);
    const to = new Date();
    const from = new Date(to.getTime() - span * 1000);
    const params = { from: from.toISOString(), to: to.toISOString(), bucket_s: bucket, min_position: position };
    let answer;
    try {
      answer = await api.get(`${base}/analytics${api.query(params)}`);
    } catch (error) {
      failed("Loading the analytics", error);
      return;
    }
    if (closed) return;
    const b = answer.buckets;
    const sum = (key) => b.reduce((total, x) => total + (x[key] || 0), 0);
    totalsEl.textContent = `In this window: ${count(sum("published"))} published, ${count(sum("acked"))} acked, ${count(sum("nacked"))} nacked, ${count(sum("dead_lettered"))} dead-lettered (${bucket} s buckets).`;
    if (countsChart) countsChart.update(b);
    else chartsMade.push((countsChart = charts.counts(countsEl, b)));
    if (dwellChart) dwellChart.update(b);
    else chartsMade.push((dwellChart = charts.dwell(dwellEl, b)));
    const reasons = charts.topReasons(b);
    const top = reasons.length ? reasons[0][1] : 0;
    fill(
      reasonsEl,
      reasons.length
        ? h(
            "table",
            { class: "reasons" },
            h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Reason"), h("th", { scope: "col", class: "num" }, "Count"))),
            h(
              "tbody",
              {},
              reasons.map(([reason, n]) =>
                h(
                  "tr",
                  {},
                  h("td", {}, h("span", { class: "bar", style: `--share:${Math.round((100 * n) / top)}%` }), reason),
                  h("td", { class: "num" }, count(n)),
                ),
              ),
            ),
          )
        : h("p", { class: "empty" }, "No nacks in this window."),
    );
  }
  windowSelect.addEventListener("change", () => loadAnalytics());

  // --- messages -----------------------------------------------------------------------------
  const statusSelect = h(
    "select",
    { id: "status", name: "status" },
    h("option", { value: "" }, "All"),
    STATUSES.map((s) => h("option", { value: s }, s.replace("_", " "))),
  );
  const messagesBody = h("tbody");
  const pageInfo = h("span", { class: "page-info" });
  const previous = h("button", { type: "button", disabled: true }, "Previous page");
  const next = h("button", { type: "button", disabled: true }, "Next page");
  const noMessages = h("p", { class: "empty", hidden: true }, "No messages.");
  let cursors = [null]; // the `after` of each page seen so far
  let nextCursor = null;

  async function loadMessages(position = null) {
    const after = cursors[cursors.length - 1];
    let answer;
    try {
      answer = await api.get(
        `${base}/messages${api.query({ status: statusSelect.value, after, limit: PAGE, min_position: position })}`,
      );
    } catch (error) {
      failed("Listing the messages", error);
      return;
    }
    if (closed) return;
    nextCursor = answer.next;
    messagesBody.replaceChildren(
      ...answer.messages.map((m) =>
        h(
          "tr",
          {},
          h("td", { class: "id" }, h("a", { href: messagePath(name, m.id) }, h("code", {}, m.id))),
          h("td", {}, h("span", { class: `status s-${m.status}` }, m.status.replace("_", " "))),
          h("td", {}, time(m.published_at)),
          h("td", { class: "num" }, count(m.receive_count)),
          h("td", { class: "num" }, m.priority ?? "—"),
          h("td", { class: "body-preview" }, preview(m.body)),
        ),
      ),
    );
    noMessages.hidden = answer.messages.length > 0;
    previous.disabled = cursors.length === 1;
    next.disabled = !nextCursor;
    pageInfo.textContent = `Page ${cursors.length}`;
  }

  statusSelect.addEventListener("change", () => {
    cursors = [null];
    loadMessages();
  });
  next.addEventListener("click", () => {
    if (!nextCursor) return;
    cursors.push(nextCursor);
    loadMessages();
  });
  previous.addEventListener("click", () => {
    if (cursors.length > 1) cursors.pop();
    loadMessages();
  });

  // --- the page -----------------------------------------------------------------------------
  fill(
    main,
    h("nav", { class: "crumbs", "aria-label": "Breadcrumb" }, h("a", { href: "/ui/" }, "Queues"), " / ", h("span", { "aria-current": "page" }, name)),
    h("div", { class: "title" }, h("h1", {}, name), badge, actions),
    notices,
    h("section", { "aria-labelledby": "stats-heading" }, h("h2", { id: "stats-heading" }, "Stats"), statsEl),
    analyticsSection,
    h(
      "section",
      { "aria-labelledby": "messages-heading" },
      h("div", { class: "title" }, h("h2", { id: "messages-heading" }, "Messages"), h("div", { class: "control" }, h("label", { for: "status" }, "Status"), statusSelect)),
      h("p", { class: "hint" }, "Listing never receives: nothing here changes a message."),
      h(
        "div",
        { class: "scroll" },
        h(
          "table",
          { class: "messages" },
          h(
            "thead",
            {},
            h(
              "tr",
              {},
              h("th", { scope: "col" }, "Message id"),
              h("th", { scope: "col" }, "Status"),
              h("th", { scope: "col" }, "Published"),
              h("th", { scope: "col", class: "num" }, "Receives"),
              h("th", { scope: "col", class: "num" }, "Priority"),
              h("th", { scope: "col" }, "Body"),
            ),
          ),
          messagesBody,
        ),
      ),
      noMessages,
      h("div", { class: "pager" }, previous, pageInfo, next),
    ),
    h("section", { "aria-labelledby": "settings-heading" }, h("h2", { id: "settings-heading" }, "Settings"), settingsEl),
  );
  showQueue(queue);
  await Promise.all([loadMessages(start), loadAnalytics(start)]);
  if (!isCurrent()) return null;

  // --- live ---------------------------------------------------------------------------------
  let upTo = start;
  const refresh = debounce(async () => {
    const position = upTo;
    try {
      showQueue(await api.get(`${base}${api.query({ min_position: position })}`));
    } catch (error) {
      if (error.status === 404) gone();
      return;
    }
    if (!closed) loadMessages(position);
  }, 120, 500);
  const refreshAnalytics = debounce(() => loadAnalytics(upTo), 1000, 5000);
  const due = wakeups(() => refresh());

  function gone() {
    if (closed) return;
    feed.close();
    refresh.cancel();
    due.clear();
    badge.set("refused");
    actions.replaceChildren();
    say(h("p", { class: "error", role: "alert" }, "This queue has been deleted."));
  }

  const feed = follow(`${base}/events/stream`, {
    after: start,
    onState: (state) => (state === "refused" ? gone() : badge.set(state)),
    onEvent: (event) => {
      upTo = Math.max(upTo, event.position);
      if (event.type === "queue.deleted") return gone();
      due.note(event);
      refresh();
      refreshAnalytics();
    },
  });

  return () => {
    closed = true;
    feed.close();
    refresh.cancel();
    refreshAnalytics.cancel();
    due.clear();
    for (const chart of chartsMade) chart.destroy();
  };
}

function preview(body) {
  const text = typeof body === "string" ? body : JSON.stringify(body);
  return text.length > 80 ? `${text.slice(0, 79)}…` : text;
}

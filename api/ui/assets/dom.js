// Small DOM and formatting helpers: no framework, no innerHTML with data.

/** An element: h("a", {href: "/ui/"}, "Queues"). Attributes starting with "on" are listeners. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (key === "class") {
      el.className = value;
    } else if (key === "dataset") {
      Object.assign(el.dataset, value);
    } else if (key in el && typeof value !== "string") {
      el[key] = value;
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A link to a dashboard page, routed in the page (see router.js). */
export function link(href, ...children) {
  return h("a", { href }, ...children);
}

export function queuePath(name) {
  return `/ui/queues/${encodeURIComponent(name)}`;
}

export function messagePath(queue, id) {
  return `${queuePath(queue)}/messages/${encodeURIComponent(id)}`;
}

/** A <time> with the full timestamp as its title, shown in UTC and saying so. */
export function time(iso) {
  if (!iso) return h("span", {}, "—");
  return h("time", { datetime: iso, title: iso }, formatTime(new Date(iso)));
}

/**
 * A moment as "2026-12-07 15:10:07.855 UTC". Every time the dashboard shows is in UTC, named:
 * the API's times are UTC, so what a page shows matches what the API, the logs and a colleague
 * in another zone see. `ms: false` leaves out the milliseconds (a bucket's start).
 */
export function formatTime(date, { ms = true } = {}) {
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  const day = `${date.getUTCFullYear()}-${pad(date.getUTCMonth() + 1)}-${pad(date.getUTCDate())}`;
  const clock = `${pad(date.getUTCHours())}:${pad(date.getUTCMinutes())}:${pad(date.getUTCSeconds())}`;
  return `${day} ${clock}${ms ? `.${pad(date.getUTCMilliseconds(), 3)}` : ""} UTC`;
}

/** Seconds as "0.4 s", "12 s", "3 min 4 s", "2 h 5 min", "3 d 4 h". */
export function duration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  if (seconds < 10) return `${seconds.toFixed(1)} s`;
  if (seconds < 60) return `${Math.round(seconds)} s`;
  const units = [
    ["d", 86400],
    ["h", 3600],
    ["min", 60],
    ["s", 1],
  ];
  const parts = [];
  let rest = Math.round(seconds);
  for (const [unit, size] of units) {
    if (rest >= size) {
      parts.push(`${Math.floor(rest / size)} ${unit}`);
      rest %= size;
    }
    if (parts.length === 2) break;
  }
  return parts.join(" ");
}

export function count(n) {
  return typeof n === "number" ? n.toLocaleString("en") : "—";
}

/**
 * Call fn at most once per `wait` ms after the last call, and at least once per `maxWait` ms
 * while calls keep coming (so a steady stream of events still refreshes the page).
 */
export function debounce(fn, wait, maxWait = wait * 4) {
  let timer = null;
  let first = 0;
  const run = () => {
    timer = null;
    first = 0;
    fn();
  };
  const call = () => {
    const now = performance.now();
    if (!first) first = now;
    clearTimeout(timer);
    timer = setTimeout(run, Math.max(0, Math.min(wait, first + maxWait - now)));
  };
  call.cancel = () => {
    clearTimeout(timer);
    timer = null;
    first = 0;
  };
  return call;
}

/** A confirmation dialog; resolves true when the user confirms. */
export function confirmDialog({ title, body, confirm, danger = false, fields = null, onOpen }) {
  return new Promise((resolve) => {
    const form = h(
      "form",
      { method: "dialog" },
      h("h2", {}, title),
      body ? h("div", { class: "dialog-body" }, body) : null,
      fields,
      h(
        "div",
        { class: "actions" },
        h("button", { value: "cancel", type: "submit", formnovalidate: true }, "Cancel"),
        h("button", { value: "confirm", type: "submit", class: danger ? "danger" : "primary" }, confirm),
      ),
    );
    const dialog = h("dialog", { "aria-label": title }, form);
    dialog.addEventListener("close", () => {
      dialog.remove();
      resolve(dialog.returnValue === "confirm");
    });
    document.body.append(dialog);
    dialog.showModal();
    if (onOpen) onOpen(dialog);
  });
}

/** A status line that announces itself to screen readers. */
export function notice(text, ...actions) {
  return h("div", { class: "notice", role: "status" }, h("span", {}, text), ...actions);
}

let pendingFlash = null;

/** A notice for the next page drawn (e.g. "Queue deleted" after leaving its page). */
export function flash(element) {
  pendingFlash = element;
}

export function takeFlash() {
  const element = pendingFlash;
  pendingFlash = null;
  return element;
}

/** A feed's connection state, for the corner of a page. */
export function liveBadge() {
  const badge = h("span", { class: "live", dataset: { state: "connecting" } }, "Connecting…");
  badge.set = (state) => {
    badge.dataset.state = state;
    badge.textContent = { live: "Live", reconnecting: "Reconnecting…", paused: "Paused", refused: "Not live" }[state] || state;
  };
  return badge;
}

/**
 * Delayed messages become available when their time comes, and that appends no event: a page
 * that follows the feed would not know. `wakeups(fn)` notes, from the events it is shown, when
 * a message becomes visible (a publish's `delay_s`, a nack's `visible_at`) and calls fn(queue)
 * then, once per queue and moment.
 */
export function wakeups(fn) {
  const timers = new Map(); // "queue@ms" -> timer
  return {
    note(event) {
      let due = null;
      if (event.type === "message.published" && event.data && event.data.delay_s > 0) {
        due = Date.parse(event.at) + event.data.delay_s * 1000;
      } else if (event.type === "message.nacked" && event.data && event.data.visible_at) {
        due = Date.parse(event.data.visible_at);
      }
      if (due === null || Number.isNaN(due) || due <= Date.now()) return;
      const second = Math.ceil(due / 1000) * 1000; // one wake-up per queue and second
      const key = `${event.queue}@${second}`;
      if (timers.has(key)) return;
      timers.set(
        key,
        setTimeout(() => {
          timers.delete(key);
          fn(event.queue);
        }, second - Date.now() + 250),
      );
    },
    clear() {
      for (const timer of timers.values()) clearTimeout(timer);
      timers.clear();
    },
  };
}

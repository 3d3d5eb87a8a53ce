// Charts of a queue's analytics, drawn with the vendored uPlot (api/ui/vendor/uplot). Times on
// the axes and in the legends are UTC, as everywhere in the dashboard (dom.js, formatTime).

import { formatTime, h } from "./dom.js";

const COUNT_SERIES = [
  ["published", "Published", "#2563eb"],
  ["received", "Received", "#7c3aed"],
  ["acked", "Acked", "#16a34a"],
  ["nacked", "Nacked", "#d97706"],
  ["dead_lettered", "Dead-lettered", "#dc2626"],
  ["expired", "Expired", "#6b7280"],
  ["purged", "Purged", "#0f766e"],
];

const DWELL_SERIES = [
  ["p50", "p50", "#16a34a"],
  ["p95", "p95", "#d97706"],
  ["p99", "p99", "#dc2626"],
];

/**
 * Up to this many buckets with acks, the dwell times are a table, not a chart: a chart of one to
 * three points is a dot or two at the edge of an empty frame, its percentiles drawn over each
 * other, its values only on hover.
 */
const FEW_DWELL_BUCKETS = 3;

function times(buckets) {
  return buckets.map((b) => Date.parse(b.start) / 1000);
}

function countsData(buckets) {
  return [times(buckets), ...COUNT_SERIES.map(([key]) => buckets.map((b) => b[key] ?? 0))];
}

function dwellData(buckets) {
  return [times(buckets), ...DWELL_SERIES.map(([key]) => buckets.map((b) => (b.dwell_s ? b.dwell_s[key] : null)))];
}

function series(defs) {
  const time = { label: "Time", value: (u, ts) => (ts == null ? "—" : formatTime(new Date(ts * 1000), { ms: false })) };
  return [time, ...defs.map(([, label, stroke]) => ({ label, stroke, width: 1.5, spanGaps: false }))];
}

const pad = (n) => String(n).padStart(2, "0");

/** The time axis's labels, in UTC: dates when the ticks are days apart, else the clock. */
function timeLabels(u, splits, axis, space, increment) {
  return splits.map((ts) => {
    const d = new Date(ts * 1000);
    if (increment >= 86400) return `${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`;
    const clock = `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}`;
    return increment < 60 ? `${clock}:${pad(d.getUTCSeconds())}` : clock;
  });
}

/** What every analytics chart shares: UTC, and half a bucket of room at each end so the first
 * and last points are not cut in half by the frame. */
function timeOptions() {
  return {
    tzDate: (ts) => window.uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
    scales: {
      x: {
        time: true,
        range: (u, min, max) => {
          const xs = u.data[0];
          const half = xs.length > 1 ? (xs[1] - xs[0]) / 2 : 30;
          return [min - half, max + half];
        },
      },
    },
    axes: [{ values: timeLabels, label: "UTC", labelSize: 20, labelFont: "12px system-ui, sans-serif" }],
  };
}

function sized(el, make) {
  const width = () => Math.max(200, Math.floor(el.clientWidth || el.getBoundingClientRect().width));
  const chart = make(width());
  const observer = new ResizeObserver(() => {
    const w = width();
    if (w !== chart.width) chart.setSize({ width: w, height: chart.height });
  });
  observer.observe(el);
  return {
    update: (data) => chart.setData(data),
    destroy: () => {
      observer.disconnect();
      chart.destroy();
    },
  };
}

/** A chart of the counts per bucket. */
export function counts(el, buckets) {
  const base = timeOptions();
  const chart = sized(el, (width) =>
    new window.uPlot(
      { ...base, width, height: 220, series: series(COUNT_SERIES), axes: [...base.axes, { size: 50 }] },
      countsData(buckets),
      el,
    ),
  );
  return { update: (b) => chart.update(countsData(b)), destroy: chart.destroy };
}

const seconds = (v) => (v == null ? "—" : `${+v.toPrecision(3)} s`);

function dwellChart(el, buckets) {
  const base = timeOptions();
  return sized(el, (width) =>
    new window.uPlot(
      {
        ...base,
        width,
        height: 220,
        // Points as well as lines: a bucket with acks between two without is a lone point.
        series: series(DWELL_SERIES).map((s, i) =>
          i ? { ...s, points: { show: true, size: 6, fill: s.stroke }, value: (u, v) => seconds(v) } : s,
        ),
        // From zero, so that the height of a point says how long, not how far from the others.
        scales: { ...base.scales, y: { range: (u, min, max) => window.uPlot.rangeNum(0, max > 0 ? max : 1, 0.1, true) } },
        axes: [...base.axes, { size: 60, values: (u, vals) => vals.map(seconds) }],
      },
      dwellData(buckets),
      el,
    ),
  );
}

function dwellTable(acked) {
  return h(
    "div",
    { class: "scroll" },
    h(
      "table",
      { class: "dwell" },
      h("caption", {}, "Buckets with acks (too few for a chart)"),
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          h("th", { scope: "col" }, "Bucket"),
          ["Acked", "p50", "p95", "p99", "Max"].map((label) => h("th", { scope: "col", class: "num" }, label)),
        ),
      ),
      h(
        "tbody",
        {},
        acked.map((b) =>
          h(
            "tr",
            {},
            h("th", { scope: "row", class: "when" }, h("time", { datetime: b.start }, formatTime(new Date(b.start), { ms: false }))),
            h("td", { class: "num" }, String(b.acked ?? 0)),
            ["p50", "p95", "p99", "max"].map((key) => h("td", { class: "num" }, seconds(b.dwell_s[key]))),
          ),
        ),
      ),
    ),
  );
}

/**
 * The dwell-time percentiles per bucket (gaps where nothing was acked): a chart when there are
 * enough buckets with acks to draw one, else a table of those few, else a line saying none.
 */
export function dwell(el, buckets) {
  let chart = null;
  function show(b) {
    const acked = b.filter((x) => x.dwell_s);
    if (acked.length > FEW_DWELL_BUCKETS) {
      if (chart) return chart.update(dwellData(b));
      el.classList.remove("few");
      el.replaceChildren();
      chart = dwellChart(el, b);
      return;
    }
    if (chart) chart.destroy();
    chart = null;
    el.classList.add("few");
    el.replaceChildren(acked.length ? dwellTable(acked) : h("p", { class: "empty" }, "No message was acked in this window."));
  }
  show(buckets);
  return { update: show, destroy: () => chart && chart.destroy() };
}

/** A tiny line chart of published (blue) and acked (green) per bucket, no axes. */
export function sparkline(el, buckets) {
  const data = (b) => [times(b), b.map((x) => x.published), b.map((x) => x.acked)];
  const chart = new window.uPlot(
    {
      width: 120,
      height: 28,
      pxAlign: false,
      cursor: { show: false },
      legend: { show: false },
      select: { show: false },
      scales: { x: { time: false } },
      axes: [{ show: false }, { show: false }],
      series: [{}, { stroke: "#2563eb", width: 1.25 }, { stroke: "#16a34a", width: 1.25 }],
    },
    data(buckets),
    el,
  );
  return { update: (b) => chart.setData(data(b)), destroy: () => chart.destroy() };
}

/** The nack reasons of a window, merged across buckets, most frequent first. */
export function topReasons(buckets, limit = 10) {
  const totals = new Map();
  for (const bucket of buckets) {
    for (const { reason, count } of bucket.nack_reasons || []) {
      totals.set(reason, (totals.get(reason) || 0) + count);
    }
  }
  return [...totals.entries()].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])).slice(0, limit);
}

// Charts of a queue's analytics, drawn with the vendored uPlot (api/ui/vendor/uplot).

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
  return [{}, ...defs.map(([, label, stroke]) => ({ label, stroke, width: 1.5, spanGaps: false }))];
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
  const chart = sized(el, (width) =>
    new window.uPlot(
      { width, height: 220, series: series(COUNT_SERIES), scales: { x: { time: true } }, axes: [{}, { size: 50 }] },
      countsData(buckets),
      el,
    ),
  );
  return { update: (b) => chart.update(countsData(b)), destroy: chart.destroy };
}

/** A chart of the dwell-time percentiles per bucket (gaps where nothing was acked). */
export function dwell(el, buckets) {
  const chart = sized(el, (width) =>
    new window.uPlot(
      {
        width,
        height: 220,
        // Points as well as lines: a bucket with acks between two without is a lone point.
        series: series(DWELL_SERIES).map((s, i) =>
          i ? { ...s, points: { show: true, size: 5, fill: s.stroke }, value: (u, v) => (v == null ? "—" : `${v.toFixed(3)} s`) } : s,
        ),
        scales: { x: { time: true } },
        axes: [{}, { size: 60, values: (u, vals) => vals.map((v) => `${+v.toPrecision(3)} s`) }],
      },
      dwellData(buckets),
      el,
    ),
  );
  return { update: (b) => chart.update(dwellData(b)), destroy: chart.destroy };
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

// SVG charts (no library): stacked bars for series over time buckets, plain bars for a
// histogram, each with its axes named; and the guessing that turns analytics JSON of unknown
// shape into series. Times are labelled in the report's zone (the service's IVR_TIMEZONE,
// never the browser's) on a 24-hour clock, so 01:00 and 13:00 cannot be confused.

import { fmtNumber, h } from "./dom.js";

const NS = "http://www.w3.org/2000/svg";
export const PALETTE = ["#2563eb", "#16a34a", "#d97706", "#dc2626", "#7c3aed", "#0891b2", "#db2777", "#65a30d", "#475569", "#ea580c"];
const TIME_KEYS = ["bucket", "time", "start", "period", "hour", "day", "date", "at", "t", "ts"];
const NAME_KEYS = ["intent", "name", "label", "series", "key", "node"];
const VALUE_KEYS = ["count", "calls", "n", "value", "total", "volume", "hits"];

function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) el.setAttribute(k, String(v));
  for (const c of children.flat()) if (c !== null && c !== undefined) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
const isDate = (v) => typeof v === "string" && /^\d{4}-\d\d-\d\d/.test(v);

// The list of row objects in a response: the response itself, or its items/rows/… array.
export function rowsOf(data) {
  if (Array.isArray(data)) return data.filter(isObject);
  if (!isObject(data)) return [];
  for (const key of ["items", "rows", "buckets", "data", "nodes", "intents", "utterances"]) {
    if (Array.isArray(data[key]) && data[key].some(isObject)) return data[key].filter(isObject);
  }
  const first = Object.values(data).find((v) => Array.isArray(v) && v.some(isObject));
  return first ? first.filter(isObject) : [];
}

function pick(row, keys) {
  return keys.find((k) => k in row);
}

function timeKey(rows) {
  const named = pick(rows[0], TIME_KEYS);
  if (named) return named;
  return Object.keys(rows[0]).find((k) => rows.every((r) => isDate(r[k])));
}

// A zone this browser knows, else UTC (the API's times carry their offsets either way).
export function knownZone(name) {
  try {
    new Intl.DateTimeFormat("en-US", { timeZone: name || "UTC" });
    return name || "UTC";
  } catch {
    return "UTC";
  }
}

// A bucket's start → its label ("14:00", or "Mon 3 Dec" for a day) and, where the day
// changes, the date under it.
function timeLabels(values, zone, byDay) {
  const tz = knownZone(zone);
  const clock = new Intl.DateTimeFormat("en-GB", { timeZone: tz, hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
  const date = new Intl.DateTimeFormat("en-GB", { timeZone: tz, weekday: "short", day: "numeric", month: "short" });
  let lastDay = null;
  const labels = [];
  const dates = [];
  for (const value of values) {
    const d = new Date(value);
    if (!isDate(value) || Number.isNaN(d.getTime())) {
      labels.push(String(value));
      dates.push(null);
      continue;
    }
    const day = date.format(d);
    labels.push(byDay ? day : clock.format(d));
    dates.push(!byDay && day !== lastDay ? day : null);
    lastDay = day;
  }
  return { labels, dates };
}

function label(value) {
  return timeLabels([value], "UTC", false).labels[0];
}

// Series over buckets from rows in long form ({bucket, intent, count}), wide form ({bucket,
// balance: 3, bill: 1}), {series: [{name, points: [...]}]}, or {name: [points]}. Null when
// nothing in `data` looks like a series.
export function toSeries(data) {
  if (isObject(data) && Array.isArray(data.buckets) && Array.isArray(data.series)) {
    // parallel form: {buckets: [t0, t1…], series: [{intent, counts: [n0, n1…]}]}
    const n = data.buckets.length;
    const series = data.series.filter(isObject).map((s) => {
      const values = Object.values(s).find((v) => Array.isArray(v) && v.length === n && v.every((x) => typeof x === "number"));
      return values ? { name: String(s[pick(s, NAME_KEYS)] ?? "series"), values } : null;
    });
    if (series.every(Boolean)) {
      const byDay = data.bucket === "day";
      const { labels, dates } = timeLabels(data.buckets, data.timezone, byDay);
      const zone = knownZone(data.timezone);
      return { labels, dates, series, xTitle: `${byDay ? "Day" : "Hour"} (${zone})` };
    }
  }
  if (isObject(data)) {
    const nested = Array.isArray(data.series) ? data.series : null;
    if (nested && nested.every(isObject)) {
      const rows = nested.flatMap((s) => {
        const name = s[pick(s, NAME_KEYS)] ?? "series";
        const points = s.points || s.data || s.values || s.buckets || [];
        return points.filter(isObject).map((p) => ({ ...p, __series: name }));
      });
      return fromRows(rows, "__series");
    }
    const byName = Object.entries(data).filter(([, v]) => Array.isArray(v) && v.length && v.every(isObject));
    if (byName.length > 1) {
      return fromRows(byName.flatMap(([name, points]) => points.map((p) => ({ ...p, __series: name }))), "__series");
    }
  }
  return fromRows(rowsOf(data));
}

function fromRows(rows, nameKey = null) {
  if (!rows.length) return null;
  const time = timeKey(rows);
  const name = nameKey || pick(rows[0], NAME_KEYS.filter((k) => k !== time));
  const numeric = Object.keys(rows[0]).filter((k) => k !== time && k !== name && typeof rows[0][k] === "number");
  const value = pick(rows[0], VALUE_KEYS.filter((k) => numeric.includes(k))) || (name ? numeric[0] : null);
  if (!time) {
    // totals per name ({intent, count}): one bar each
    if (!name || !value) return null;
    return { labels: rows.map((r) => String(r[name] ?? "none")), series: [{ name: value, values: rows.map((r) => Number(r[value]) || 0) }] };
  }
  const buckets = [...new Set(rows.map((r) => r[time]))].sort();
  const index = new Map(buckets.map((b, i) => [b, i]));
  const series = new Map();
  const add = (sName, bucket, v) => {
    if (!series.has(sName)) series.set(sName, new Array(buckets.length).fill(0));
    series.get(sName)[index.get(bucket)] += Number(v) || 0;
  };
  if (name && value) {
    for (const r of rows) add(String(r[name] ?? "none"), r[time], r[value]);
  } else if (numeric.length) {
    for (const r of rows) for (const k of numeric) add(k, r[time], r[k]);
  } else {
    return null;
  }
  return { labels: buckets.map(label), series: [...series].map(([n, values]) => ({ name: n, values })) };
}

// A confidence histogram anywhere in the analytics responses: a property named *histogram*
// (or confidence*) holding bins ({from, to, count} or similar) or plain counts over 0..1.
export function findHistogram(...responses) {
  for (const r of responses) {
    const summed = sumRows(rowsOf(r));
    if (summed) return summed;
  }
  const seen = new Set();
  const walk = (value, key = "") => {
    if (value === null || typeof value !== "object" || seen.has(value)) return null;
    seen.add(value);
    if (Array.isArray(value) && /hist|confidence/i.test(key)) {
      const bins = toBins(value);
      if (bins) return bins;
    }
    if (isObject(value) && /hist/i.test(key)) {
      const bins = toBins(value.bins || value.buckets || value.counts || rowsOf(value));
      if (bins) return bins;
    }
    for (const [k, v] of Object.entries(value)) {
      const found = walk(v, k);
      if (found) return found;
    }
    return null;
  };
  for (const r of responses) {
    const found = walk(r);
    if (found) return found;
  }
  return null;
}

// Rows that each carry a histogram (per node: `confidence: [n0 … n9]`): their sum.
function sumRows(rows) {
  const key = rows.length && Object.keys(rows[0]).find((k) => /hist|confidence/i.test(k) && Array.isArray(rows[0][k]));
  if (!key) return null;
  const n = rows[0][key].length;
  if (!n || !rows.every((r) => Array.isArray(r[key]) && r[key].length === n && r[key].every((x) => typeof x === "number"))) return null;
  return toBins(rows.reduce((sum, r) => sum.map((v, i) => v + r[key][i]), new Array(n).fill(0)));
}

// A tiny bar chart for a table cell holding a list of counts.
export function sparkline(values) {
  const max = Math.max(1, ...values);
  const w = 4;
  return svg("svg", { class: "spark", viewBox: `0 0 ${values.length * w} 16`, width: values.length * w, height: 16, role: "img", "aria-label": values.join(", ") },
    svg("title", {}, values.join(", ")),
    svg("line", { x1: 0, x2: values.length * w, y1: 15.5, y2: 15.5, class: "base" }),
    values.map((v, i) => svg("rect", { x: i * w, width: w - 1, y: 16 - (16 * v) / max, height: (16 * v) / max })));
}

function toBins(list) {
  if (!Array.isArray(list) || !list.length) return null;
  if (list.every((v) => typeof v === "number")) {
    const w = 1 / list.length;
    return list.map((v, i) => ({ label: `${(i * w).toFixed(1)}–${((i + 1) * w).toFixed(1)}`, value: v }));
  }
  if (!list.every(isObject)) return null;
  const value = pick(list[0], VALUE_KEYS);
  if (!value) return null;
  const lo = pick(list[0], ["from", "lo", "low", "min", "start", "ge", "gte"]);
  const hi = pick(list[0], ["to", "hi", "high", "max", "end", "lt", "le"]);
  const one = pick(list[0], ["bin", "bucket", "label", "range", "confidence"]);
  return list.map((b) => ({
    label: lo && hi ? `${fmtNumber(b[lo])}–${fmtNumber(b[hi])}` : String(b[one ?? lo ?? hi] ?? ""),
    value: Number(b[value]) || 0,
  }));
}

function niceMax(max) {
  if (max <= 0) return 1;
  if (max <= 4 && Number.isInteger(max)) return max;
  const p = 10 ** Math.floor(Math.log10(max));
  return [1, 2, 2.5, 5, 10].map((m) => m * p).find((m) => m >= max);
}

// Counts get whole-number ticks (no "0.25 calls"); anything else quarters of the scale.
function ticks(max, series) {
  const whole = series.every((s) => s.values.every(Number.isInteger));
  if (whole && max <= 4) return Array.from({ length: max + 1 }, (_, i) => i);
  return [0, 0.25, 0.5, 0.75, 1].map((f) => max * f);
}

// Stacked bars: one column per label, one colour per series, with a legend; both axes named
// (xTitle, yTitle), and the date under the first hour of each day (`dates`).
export function barChart({ labels, series, dates = [], xTitle = "", yTitle = "" }, { height = 240, id, legend = true } = {}) {
  const left = yTitle ? 54 : 40;
  const bottom = 34 + (dates.some(Boolean) ? 12 : 0) + (xTitle ? 16 : 0);
  const top = 10;
  const plot = 600; // the plot's width: few columns are wide, many narrow, the chart one size
  const col = plot / Math.max(1, labels.length);
  const gap = col > 10 ? Math.min(col * 0.2, 12) : col > 3 ? 1 : 0;
  const width = left + plot + 10;
  const totals = labels.map((_, i) => series.reduce((n, s) => n + s.values[i], 0));
  const max = niceMax(Math.max(0, ...totals));
  const y = (v) => top + (height - top - bottom) * (1 - v / max);
  const base = height - bottom;
  const every = Math.ceil(labels.length / 12);
  const chart = svg(
    "svg",
    { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img", id, "aria-label": [yTitle, xTitle].filter(Boolean).join(" by ") || "bar chart", preserveAspectRatio: "xMinYMin meet" },
    ticks(max, series).map((t) =>
      svg("g", { class: "tick" },
        svg("line", { x1: left, x2: width - 5, y1: y(t), y2: y(t) }),
        svg("text", { x: left - 4, y: y(t) + 4, "text-anchor": "end" }, fmtNumber(t))),
    ),
    svg("line", { class: "axis", x1: left, x2: left, y1: top, y2: base }),
    svg("line", { class: "axis", x1: left, x2: width - 5, y1: base, y2: base }),
    labels.map((l, i) => {
      let acc = 0;
      const x = left + i * col + gap / 2;
      const mid = left + i * col + col / 2;
      return svg("g", { class: "bar" },
        series.map((s, k) => {
          const v = s.values[i];
          const rect = svg("rect", { x, width: Math.max(0.5, col - gap), y: y(acc + v), height: Math.max(0, y(acc) - y(acc + v)), fill: PALETTE[k % PALETTE.length] },
            svg("title", {}, `${dates[i] ? `${dates[i]} ` : ""}${l} · ${s.name}: ${fmtNumber(v)}`));
          acc += v;
          return rect;
        }),
        i % every === 0 ? svg("line", { class: "tick-mark", x1: mid, x2: mid, y1: base, y2: base + 4 }) : null,
        i % every === 0 ? svg("text", { x: mid, y: base + 15, "text-anchor": "middle", class: "label" }, l.length > 12 ? `${l.slice(0, 11)}…` : l) : null,
        dates[i] ? svg("text", { x: left + i * col, y: base + 27, "text-anchor": "start", class: "label date" }, dates[i]) : null,
      );
    }),
    xTitle ? svg("text", { class: "axis-title x", x: left + plot / 2, y: height - 4, "text-anchor": "middle" }, xTitle) : null,
    yTitle ? svg("text", { class: "axis-title y", x: 0, y: 0, "text-anchor": "middle", transform: `translate(12 ${(top + base) / 2}) rotate(-90)` }, yTitle) : null,
  );
  const key = legend
    ? h("ul", { class: "legend" }, series.map((s, k) => h("li", {}, h("span", { class: "swatch", style: `background:${PALETTE[k % PALETTE.length]}` }), s.name)))
    : null;
  return h("figure", { class: "chart-box" }, chart, key);
}

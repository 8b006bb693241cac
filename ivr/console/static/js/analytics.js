// Analytics: summary cards, the per-node table, intent volume over time, the recognizer's
// confidence histogram, and the top unrecognized utterances (play one; add it as a phrase).
// One time range for every section (today, 24 h, 7 days or custom dates, all in the service's
// zone) and one channel (every channel, or voice, web chat, SMS...: the server's list), and
// each section's report downloadable as CSV: the server's `<report>.csv`, so a
// spreadsheet gets the very figures the API and this page show.
// Responses are rendered by their shape, not field by field: scalars become cards, lists of
// rows become tables, anything that looks like a series over time becomes a chart, so a new
// figure on the server shows up without a console change.

import { ApiError, blob, get, has, openapi, post } from "./api.js";
import { barChart, findHistogram, knownZone, rowsOf, sparkline, toSeries } from "./charts.js";
import { clear, fmtTime, fmtValue, fromZoneInput, h, humanize, notice, serviceZone, toZoneInput } from "./dom.js";

const PATHS = {
  summary: "/v1/analytics/summary",
  nodes: "/v1/analytics/nodes",
  intents: "/v1/analytics/intents",
  unrecognized: "/v1/analytics/unrecognized",
  adopt: "/v1/analytics/unrecognized/adopt",
};
const TEXT_KEYS = ["text", "utterance", "phrase", "transcript", "words"];
const HIDDEN = /base64|audio|^examples$/; // long, binary or nested fields: not table columns
const WINDOW = ["since", "until"];
const NOT_FIGURES = [...WINDOW, "timezone", "channel"]; // the report's head: the toolbar shows them
const SECONDS_BEFORE = 4; // a whole-call recording is played from this long before the turn
const RANGES = [
  ["today", "Today"],
  ["24h", "Last 24 hours"],
  ["7d", "Last 7 days"],
  ["custom", "Custom…"],
];
const DAY_MS = 24 * 3600 * 1000;
const CHANNEL_NAMES = { voice: "Voice (calls)", web: "Web chat", app: "App chat", api: "API chat", sms: "SMS" };

// The channels the server's analytics tell apart (the summary's `channel` query enum).
async function channelsOffered() {
  try {
    const params = (await openapi()).paths?.[PATHS.summary]?.get?.parameters || [];
    return params.find((p) => p.name === "channel")?.schema?.enum || [];
  } catch {
    return [];
  }
}

const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
const isRows = (v) => Array.isArray(v) && v.length > 0 && v.every(isObject);
const isCounts = (v) => Array.isArray(v) && v.length > 1 && v.every((x) => typeof x === "number");
const isRate = (key, v) => typeof v === "number" && v >= 0 && v <= 1 && /rate|ratio|share|containment|percent/i.test(key);

function unavailable(path) {
  return h("p", { class: "notice warn unavailable" }, `Not available on this server (${path}).`);
}

function failed(err) {
  return h("p", { class: "notice error" }, err instanceof ApiError ? err.describe() : String(err));
}

function cell(key, value) {
  if (value === null) return "–"; // no figure (an average of nothing)
  if (isRate(key, value)) return `${(value * 100).toFixed(1)}%`;
  if (isCounts(value)) return sparkline(value);
  return fmtValue(value);
}

function windowLine(data) {
  if (!isObject(data) || !WINDOW.every((k) => typeof data[k] === "string")) return null;
  const on = data.channel ? ` · ${CHANNEL_NAMES[data.channel] || data.channel} only` : "";
  return h("p", { class: "muted window" }, `${fmtTime(data.since)} – ${fmtTime(data.until)}${on}`);
}

// A CSV download: the blob through the API (the token goes in a header, which a plain link
// cannot send), saved under the report's and window's name.
async function download(path, query, name, status) {
  const params = new URLSearchParams(Object.entries(query).filter(([, v]) => v));
  try {
    const data = await blob(`${path}.csv?${params}`);
    const link = h("a", { href: URL.createObjectURL(data), download: name, hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
    notice(status, `Downloaded ${name}.`, "ok");
  } catch (err) {
    notice(status, err instanceof ApiError ? `CSV: ${err.describe()}` : String(err), "error");
  }
}

const stamp = (at) => String(at || "").slice(0, 16).replace(/:/g, "");

// Scalars as cards; an object of scalars as a card with lines; lists are left to tables.
function cards(summary) {
  const out = [];
  for (const [key, value] of Object.entries(summary || {})) {
    if (Array.isArray(value) || NOT_FIGURES.includes(key)) continue;
    if (isObject(value)) {
      const inner = Object.entries(value).filter(([, v]) => !isObject(v) && !isRows(v));
      if (!inner.length) continue;
      out.push(h("div", { class: "card", dataset: { key } }, h("h3", {}, humanize(key)),
        h("dl", {}, inner.map(([k, v]) => [h("dt", {}, humanize(k)), h("dd", {}, cell(k, v))]))));
    } else {
      out.push(h("div", { class: "card", dataset: { key } }, h("div", { class: "value" }, cell(key, value)), h("div", { class: "name" }, humanize(key))));
    }
  }
  return h("div", { class: "cards-grid", id: "an-cards" }, out.length ? out : h("p", { class: "empty" }, "No figures yet."));
}

// Every list of rows in an object, each as a titled table (e.g. the summary's escalations).
function tablesOf(data, skip = []) {
  if (!isObject(data)) return isRows(data) ? table(data) : null;
  return Object.entries(data)
    .filter(([k, v]) => isRows(v) && !skip.includes(k))
    .map(([k, v]) => h("div", { class: "subtable", dataset: { key: k } }, h("h3", {}, humanize(k)), table(v)));
}

export function table(rows, { id, extra = null, extraTitle = "" } = {}) {
  if (!rows.length) return h("p", { class: "empty" }, "No data yet.");
  const columns = [...new Set(rows.slice(0, 50).flatMap(Object.keys))].filter((k) => !HIDDEN.test(k) && !rows.some((r) => isRows(r[k])));
  const numeric = new Set(columns.filter((c) => rows.every((r) => r[c] === null || r[c] === undefined || typeof r[c] === "number")));
  return h(
    "table",
    { class: "grid", id },
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { class: numeric.has(c) ? "num" : "" }, humanize(c))), extra ? h("th", {}, extraTitle) : null)),
    h("tbody", {}, rows.map((r, i) => h("tr", { dataset: { row: i } },
      columns.map((c) => h("td", { class: numeric.has(c) ? "num" : "" }, cell(c, r[c]))),
      extra ? h("td", { class: "actions" }, h("div", { class: "acts" }, extra(r))) : null))),
  );
}

// Rows that each hold a list of rows (per node: its utterances) → the inner rows, each with
// its parent's plain fields (the node), most frequent first.
function flatten(rows) {
  const inner = rows.length && Object.keys(rows[0]).find((k) => rows.some((r) => isRows(r[k]) && r[k].some((x) => TEXT_KEYS.some((t) => t in x))));
  if (!inner) return rows;
  const out = rows.flatMap((r) => {
    const parent = Object.fromEntries(Object.entries(r).filter(([k, v]) => k !== inner && !Array.isArray(v) && !isObject(v)));
    return (r[inner] || []).filter(isObject).map((child) => ({ ...parent, ...child }));
  });
  const count = out.length && ["count", "n", "times"].find((k) => typeof out[0][k] === "number");
  return count ? out.sort((a, b) => b[count] - a[count]) : out;
}

// The recordings one row can be played from: its own audio, or its examples'.
function sources(row) {
  const examples = Object.values(row).find((v) => isRows(v)) || [];
  return [row, ...examples].map(source).filter(Boolean).slice(0, 5);
}

function source(item) {
  const url = Object.entries(item).find(([k, v]) => /audio|url/.test(k) && typeof v === "string" && v.startsWith("/v1/"));
  if (url) return { path: url[1], label: item.text || "", at: item.at };
  const b64 = Object.entries(item).find(([k, v]) => /base64/.test(k) && typeof v === "string");
  if (b64) return { base64: b64[1], label: item.text || "" };
  if (typeof item.call_id === "string" && typeof item.at === "string") {
    return { call: item.call_id, at: item.at, label: item.text || "" }; // a moment of the call
  }
  return null;
}

export function analyticsView() {
  const summaryBox = h("section", { class: "panel", id: "an-summary" }, h("h2", {}, "Summary"));
  const intentsBox = h("section", { class: "panel", id: "an-intents" }, h("h2", {}, "Intent volume"));
  const histogramBox = h("section", { class: "panel", id: "an-histogram" }, h("h2", {}, "Recognizer confidence"));
  const nodesBox = h("section", { class: "panel", id: "an-nodes" }, h("h2", {}, "Nodes"));
  const unrecognizedBox = h("section", { class: "panel", id: "an-unrecognized" }, h("h2", {}, "Top unrecognized utterances"));
  const bucket = h("select", { id: "an-bucket", "aria-label": "bucket" }, h("option", { value: "hour" }, "by hour"), h("option", { value: "day" }, "by day"));
  const player = h("audio", { controls: true, id: "an-player", hidden: true });
  let playerUrl = null;
  let knownIntents = [];
  bucket.onchange = async () => renderIntents(await fetchSection("intents", { bucket: bucket.value }));

  // --- the time range: a named period the server resolves in its zone, or custom dates
  // typed as wall times in that zone (not the browser's)
  const range = h("select", { id: "an-range", "aria-label": "time range" }, RANGES.map(([v, text]) => h("option", { value: v, selected: v === "24h" }, text)));
  const since = h("input", { type: "datetime-local", id: "an-since", "aria-label": "from" });
  const until = h("input", { type: "datetime-local", id: "an-until", "aria-label": "until" });
  const zoneNote = h("span", { class: "muted", id: "an-zone" });
  const rangeStatus = h("div", { class: "status", id: "an-range-status", role: "status" });
  const custom = h("form", { class: "inline", id: "an-custom", hidden: true, onsubmit: (e) => { e.preventDefault(); applyRange(); } },
    h("label", {}, "From ", since), h("label", {}, "until ", until), h("button", { type: "submit", id: "an-apply" }, "Apply"));
  let query = { period: "24h" };
  // --- the channel: every channel (calls and conversations together), or one of them
  const channel = h("select", { id: "an-channel", "aria-label": "channel", hidden: true }, h("option", { value: "" }, "All channels"));
  const channelLabel = h("label", { hidden: true }, "Channel ", channel);
  channel.onchange = () => load();
  channelsOffered().then((names) => {
    for (const name of names) channel.append(h("option", { value: name }, CHANNEL_NAMES[name] || name));
    channel.hidden = channelLabel.hidden = !names.length;
  });
  const scope = () => (channel.value ? { ...query, channel: channel.value } : query);
  range.onchange = () => {
    custom.hidden = range.value !== "custom";
    if (range.value === "custom") {
      // start from the window on show, so only what changes needs typing
      since.value ||= toZoneInput(new Date(Date.now() - DAY_MS));
      until.value ||= toZoneInput(new Date());
      since.focus();
    } else {
      applyRange();
    }
  };

  function applyRange() {
    if (range.value !== "custom") {
      query = { period: range.value };
      bucket.value = range.value === "7d" ? "day" : "hour";
    } else {
      const from = fromZoneInput(since.value);
      const to = fromZoneInput(until.value);
      if (!from || !to || from >= to) {
        notice(rangeStatus, "Give a start before the end.", "error");
        return;
      }
      query = { since: from, until: to };
      bucket.value = new Date(to) - new Date(from) > 3 * DAY_MS ? "day" : "hour"; // hours: up to 72 bars
    }
    notice(rangeStatus, "");
    load();
  }

  const el = h(
    "div",
    { class: "view analytics" },
    h("div", { class: "row toolbar", id: "an-toolbar" },
      h("label", {}, "Time range ", range), custom, channelLabel, zoneNote,
      h("span", { class: "grow" }),
      h("button", { type: "button", id: "an-refresh", onclick: () => load() }, "Refresh")),
    rangeStatus,
    summaryBox,
    h("div", { class: "columns even" }, intentsBox, histogramBox),
    nodesBox,
    unrecognizedBox,
  );

  async function fetchSection(key, extra) {
    if (!(await has("GET", PATHS[key]))) return { missing: true, path: PATHS[key] };
    try {
      return { data: await get(PATHS[key], { ...scope(), ...extra }) };
    } catch (err) {
      return { error: err };
    }
  }

  // The section's CSV button, where the server has its report as CSV.
  async function csvButton(key, result, extra) {
    const path = PATHS[key];
    if (!result.data || !(await has("GET", `${path}.csv`))) return null;
    const status = h("span", { class: "status csv-status" });
    const name = `ivr-${key}${channel.value ? `-${channel.value}` : ""}-${stamp(result.data.since)}-${stamp(result.data.until)}.csv`;
    return h("span", { class: "csv" },
      h("button", { type: "button", class: "csv-export", id: `an-${key}-csv`, title: `Download the ${key} report as CSV`, onclick: () => download(path, { ...scope(), ...extra }, name, status) }, "Export CSV"),
      status);
  }

  async function section(box, key, title, result, render, tools = null) {
    const extra = key === "intents" ? { bucket: bucket.value } : {};
    const csv = await csvButton(key, result, extra);
    clear(box, h("div", { class: "panel-head" }, h("h2", {}, title, tools), csv));
    if (result.missing) box.append(unavailable(result.path));
    else if (result.error) box.append(failed(result.error));
    else box.append(render(result.data));
  }

  let loads = 0; // a range changed during a load: only the newest load is drawn

  async function load() {
    const mine = ++loads;
    const [summary, nodes, intents, unrecognized, canAdopt] = await Promise.all([
      fetchSection("summary"),
      fetchSection("nodes"),
      fetchSection("intents", { bucket: bucket.value }),
      fetchSection("unrecognized"),
      has("POST", PATHS.adopt),
    ]);
    if (mine !== loads) return;
    unrecognized.canAdopt = canAdopt;
    const zone = [summary, nodes, intents].map((r) => r.data?.timezone).find(Boolean) || serviceZone();
    zoneNote.textContent = `Times in ${knownZone(zone)}`;
    await section(summaryBox, "summary", "Summary", summary, (d) => h("div", {}, windowLine(d), cards(d), tablesOf(d)));
    await section(nodesBox, "nodes", "Nodes", nodes, (d) => h("div", {}, windowLine(d), table(rowsOf(d), { id: "an-nodes-table" })));
    await renderIntents(intents);
    const histogram = findHistogram(nodes.data, summary.data, intents.data);
    clear(histogramBox, h("h2", {}, "Recognizer confidence"),
      histogram
        ? barChart({ labels: histogram.map((b) => b.label), series: [{ name: "utterances", values: histogram.map((b) => b.value) }], xTitle: "Recognizer confidence", yTitle: "Utterances" }, { id: "an-histogram-chart", legend: false })
        : h("p", { class: "empty" }, nodes.missing && summary.missing ? "Not available on this server." : "No confidence distribution in this server's analytics."));
    await renderUnrecognized(unrecognized);
  }

  async function renderIntents(result) {
    await section(intentsBox, "intents", "Intent volume ", result, (d) => {
      const series = toSeries(d);
      knownIntents = series ? series.series.map((s) => s.name) : [];
      const hasCounts = series && series.series.some((s) => s.values.some((v) => v > 0));
      return h("div", {},
        windowLine(d),
        hasCounts ? barChart({ ...series, yTitle: channel.value === "voice" ? "Calls" : "Contacts" }, { id: "an-intents-chart" }) : h("p", { class: "empty" }, "No intents in this window."),
        tablesOf(d, ["series"]));
    }, bucket);
  }

  // --- unrecognized utterances -----------------------------------------------------------

  async function play(src, status) {
    try {
      let data;
      let offset = 0;
      if (src.base64) {
        data = new Blob([Uint8Array.from(atob(src.base64), (c) => c.charCodeAt(0))], { type: "audio/wav" });
      } else if (src.path) {
        data = await blob(src.path);
      } else {
        // No recording of the utterance itself: the call's, from just before that turn.
        const call = await get(`/v1/calls/${encodeURIComponent(src.call)}`);
        offset = Math.max(0, (new Date(src.at) - new Date(call.started_at)) / 1000 - SECONDS_BEFORE);
        data = await blob(`/v1/calls/${encodeURIComponent(src.call)}/audio`);
      }
      if (playerUrl) URL.revokeObjectURL(playerUrl);
      playerUrl = URL.createObjectURL(data);
      player.hidden = false;
      player.src = playerUrl;
      if (offset) await new Promise((ok) => player.addEventListener("loadedmetadata", ok, { once: true }));
      player.currentTime = offset;
      await player.play();
      notice(status, src.label ? `Playing “${src.label}”.` : "Playing.");
    } catch (err) {
      notice(status, err.status === 404 ? "No recording of that utterance." : `Cannot play: ${err.message}`, "error");
    }
  }

  async function renderUnrecognized(result) {
    const status = h("div", { class: "status", id: "an-adopt-status", role: "status" });
    const intentList = h("datalist", { id: "an-intent-names" }, knownIntents.map((i) => h("option", { value: i })));
    await section(unrecognizedBox, "unrecognized", "Top unrecognized utterances", result, (d) => {
      const rows = flatten(rowsOf(d));
      return h("div", {}, windowLine(d), player, status, intentList, table(rows, {
        id: "an-unrecognized-table",
        extra: (row) => {
          const playable = sources(row);
          const textKey = TEXT_KEYS.find((k) => typeof row[k] === "string");
          return [
            playable.length
              ? playable.map((src, i) => h("button", { type: "button", class: "play", title: `Play ${src.label || ""} ${src.at ? fmtTime(src.at) : ""}`.trim(), onclick: () => play(src, status) }, playable.length > 1 ? `▶${i + 1}` : "▶"))
              : h("button", { type: "button", class: "play", disabled: true, title: "No recording" }, "▶"),
            result.canAdopt && textKey ? adoptForm(row, row[textKey], status) : null,
          ];
        },
      }));
    });
  }

  function adoptForm(row, phrase, status) {
    const node = h("input", { name: "node", value: row.node || "", placeholder: "node", "aria-label": "node", size: 10 });
    const intent = h("input", { name: "intent", list: "an-intent-names", value: row.intent || "", placeholder: "intent", "aria-label": "intent", size: 10 });
    const text = h("input", { name: "phrase", value: phrase, "aria-label": "phrase", size: 16 });
    const form = h("form", { class: "inline adopt", hidden: true, onsubmit: async (e) => {
      e.preventDefault();
      const body = { node: node.value.trim(), intent: intent.value.trim(), phrase: text.value.trim() };
      // Adding a phrase saves the served flow: what the next call hears. Ask first.
      if (!window.confirm(`Add “${body.phrase}” to ${body.intent} at ${body.node}? The flow is saved and new calls get it at once.`)) {
        return notice(status, "Not added: cancelled.", "info");
      }
      try {
        await post(PATHS.adopt, body);
        const fresh = await fetchSection("unrecognized");
        await renderUnrecognized({ ...fresh, canAdopt: true });
        notice(unrecognizedBox.querySelector("#an-adopt-status"), `Added “${body.phrase}” to ${body.intent} at ${body.node}.`, "ok");
      } catch (err) {
        notice(status, err instanceof ApiError ? err.describe() : String(err), "error");
      }
    } }, node, intent, text, h("button", { type: "submit" }, "Add"));
    const open = h("button", { type: "button", class: "adopt-open", onclick: () => { form.hidden = !form.hidden; } }, "Add phrase…");
    return [open, form];
  }

  return {
    id: "analytics",
    title: "Analytics",
    el,
    show: load,
    hide() {
      player.pause();
    },
  };
}

// Small DOM helpers: the console builds its pages with h() instead of HTML strings, so text
// from the server (callers' words, flow YAML) is never parsed as markup.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "style") {
      el.style.cssText = value; // through the CSSOM: the page's CSP refuses style attributes
    } else if (key === "class") {
      el.className = value;
    } else if (key === "dataset") {
      Object.assign(el.dataset, value);
    } else if (key in el && typeof value !== "string") {
      el[key] = value; // properties such as value, checked, disabled
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

export function clear(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

// --- times: all in the service's zone (IVR_TIMEZONE, named by /healthz), never the browser's:
// an agent abroad and the callers see the same clock, and every time says which zone it is.

let zone = "UTC";

export function setZone(name) {
  try {
    new Intl.DateTimeFormat("en-US", { timeZone: name }); // a zone this browser does not know throws
    zone = name;
  } catch {
    zone = "UTC"; // the API's times carry their offset: UTC shown as UTC is still right
  }
}

export const serviceZone = () => zone;

function toDate(value) {
  if (value === null || value === undefined || value === "") return null;
  const date = typeof value === "number" ? new Date(value * 1000) : new Date(value);
  return Number.isNaN(date.getTime()) ? null : date;
}

// "Dec 3, 14:05:09 UTC": 24-hour, so 01:00 and 13:00 cannot be confused.
export function fmtTime(value) {
  const date = toDate(value);
  if (!date) return value === null || value === undefined ? "" : String(value);
  return date.toLocaleString(undefined, {
    timeZone: zone,
    month: "short",
    day: "numeric",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
    hourCycle: "h23",
    timeZoneName: "short",
  });
}

// "14:05:09 UTC": a time of day within a call.
export function fmtClock(value) {
  const date = toDate(value);
  if (!date) return "";
  return date.toLocaleTimeString(undefined, { timeZone: zone, hourCycle: "h23", timeZoneName: "short" });
}

function wallParts(date) {
  const parts = new Intl.DateTimeFormat("en-US", {
    timeZone: zone, hourCycle: "h23", year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit",
  }).formatToParts(date);
  const get = (type) => Number(parts.find((p) => p.type === type).value);
  return [get("year"), get("month"), get("day"), get("hour") % 24, get("minute"), get("second")];
}

// How far the service's zone is ahead of UTC at `date`, in ms.
function zoneOffset(date) {
  const [y, mo, d, h, mi, s] = wallParts(date);
  return Date.UTC(y, mo - 1, d, h, mi, s) - Math.floor(date.getTime() / 1000) * 1000;
}

// An <input type="datetime-local"> value read as a wall time in the service's zone → RFC
// 3339 (UTC); null when empty or not a time.
export function fromZoneInput(value) {
  const m = /^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d)(?::(\d\d))?/.exec(value || "");
  if (!m) return null;
  const wall = Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +(m[6] || 0));
  let instant = wall - zoneOffset(new Date(wall));
  instant = wall - zoneOffset(new Date(instant)); // the offset at the instant itself (DST)
  return new Date(instant).toISOString();
}

// An instant as a datetime-local value in the service's zone.
export function toZoneInput(value) {
  const date = toDate(value) || new Date();
  const [y, mo, d, h, mi] = wallParts(date);
  const pad = (n) => String(n).padStart(2, "0");
  return `${y}-${pad(mo)}-${pad(d)}T${pad(h)}:${pad(mi)}`;
}

export function fmtDuration(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return "";
  const s = Math.round(seconds);
  const m = Math.floor(s / 60);
  return m ? `${m} min ${String(s % 60).padStart(2, "0")} s` : `${s} s`;
}

export function fmtNumber(value) {
  if (typeof value !== "number") return value;
  if (Number.isInteger(value)) return value.toLocaleString();
  return Math.abs(value) < 1 ? value.toFixed(2) : value.toLocaleString(undefined, { maximumFractionDigits: 2 });
}

// Any JSON value as short display text (tables of rows whose shape the page does not know).
export function fmtValue(value) {
  if (value === null || value === undefined) return "";
  if (typeof value === "number") return fmtNumber(value);
  if (typeof value === "boolean") return value ? "yes" : "no";
  if (typeof value === "string") {
    return /^\d{4}-\d\d-\d\dT\d\d:\d\d/.test(value) ? fmtTime(value) : value;
  }
  return JSON.stringify(value);
}

export function humanize(key) {
  const text = String(key).replace(/_/g, " ");
  return text.charAt(0).toUpperCase() + text.slice(1);
}

// A status line: what just happened, or what went wrong.
export function notice(el, message, kind = "info") {
  clear(el, message ? h("span", { class: `notice ${kind}` }, message) : null);
}

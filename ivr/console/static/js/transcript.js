// A call's events (from the live feed) or its stored turns as transcript lines.

import { fmtTime, h } from "./dom.js";

function pct(confidence) {
  return typeof confidence === "number" ? `${Math.round(confidence * 100)}%` : "";
}

function line(kind, who, body, extra = [], at = null) {
  return h(
    "li",
    { class: `turn ${kind}`, dataset: { kind } },
    h("span", { class: "who" }, who),
    h("span", { class: "what" }, body),
    extra.length ? h("span", { class: "tags" }, extra) : null,
    at ? h("time", { class: "at" }, fmtTime(at)) : null,
  );
}

const tag = (text, cls = "") => h("span", { class: `tag ${cls}` }, text);

// One feed event as a transcript line; null for events that are not worth a line.
export function eventLine(e) {
  switch (e.event) {
    case "call_started":
      return line("info", "call", `from ${e.caller || "an unknown number"}`, [
        tag(e.transport || "?"),
        tag(`${e.flow || "?"} ${e.flow_version || ""}`.trim()),
      ], e.at);
    case "prompt":
      return line("prompt", "bot", e.text || "", e.node ? [tag(e.node, "node")] : [], e.at);
    case "recognized":
    case "no_match":
      return line(
        e.event,
        "caller",
        e.text ? `“${e.text}”` : "(nothing recognized)",
        [
          e.intent ? tag(e.intent, "intent") : tag("no match", "miss"),
          e.confidence !== undefined && e.confidence !== null ? tag(pct(e.confidence), "conf") : null,
        ],
        e.at,
      );
    case "dtmf":
      return line("dtmf", "keys", e.digits || "", [e.intent ? tag(e.intent, "intent") : tag("no match", "miss")], e.at);
    case "no_input":
      return line("no_input", "caller", "(no input)", [], e.at);
    case "barge_in":
      return line("barge_in", "caller", "(barged in)", [], e.at);
    case "callback_booked":
      return line("info", "callback", `booked for ${e.number} at ${fmtTime(e.due_at)}`, [tag(e.reason || "")], e.at);
    case "hangup":
      return line("hangup", "end", e.reason || "", [], e.at);
    default:
      return null;
  }
}

// A stored turn (GET /v1/calls/{id}) as a line: the same look as the live one.
export function turnLine(t) {
  const e = { event: t.kind, node: t.node, text: t.text, intent: t.intent, confidence: t.confidence, at: t.at };
  if (t.kind === "dtmf") e.digits = t.text;
  return eventLine(e);
}

export function transcript(events, { live = false } = {}) {
  return h("ol", { class: `transcript${live ? " live" : ""}` }, events.map(eventLine));
}

// A call's events (from the live feed) or its stored turns as transcript lines. What the
// caller said is shown as words; what the recognizer and the flow report about it (nothing
// heard, sounds no grammar word matched, no match and why) as diagnostics: muted, italic,
// never in quotes as if the caller had said it.

import { fmtClock, fmtTime, h } from "./dom.js";

const UNKNOWN = "[unk]"; // pocketsphinx's garbage word: a sound no grammar word matched

function pct(confidence) {
  return typeof confidence === "number" ? `${Math.round(confidence * 100)}%` : "";
}

function line(kind, who, body, extra = [], at = null, diagnostic = false) {
  return h(
    "li",
    { class: `turn ${kind}${diagnostic ? " diag" : ""}`, dataset: { kind, at: at || undefined } },
    h("span", { class: "who" }, who),
    h("span", { class: "what" }, body),
    extra.length ? h("span", { class: "tags" }, extra) : null,
    at ? h("time", { class: "at", datetime: at, title: fmtTime(at) }, fmtClock(at)) : null,
  );
}

const tag = (text, cls = "") => h("span", { class: `tag ${cls}` }, text);
const note = (text) => h("em", { class: "diag-text" }, text);

function confidenceTag(e) {
  return e.confidence !== undefined && e.confidence !== null ? tag(pct(e.confidence), "conf") : null;
}

// The recognizer's text: words in quotes, its [unk] markers as a muted "(?)" among them;
// nothing but markers (or nothing at all) is a diagnostic line instead.
function heard(text) {
  const words = (text || "").trim().split(/\s+/).filter(Boolean);
  if (!words.length) return { diagnostic: true, body: note("(silence: nothing recognized)") };
  if (words.every((w) => w === UNKNOWN)) {
    return { diagnostic: true, body: note("(unintelligible: no grammar word matched)") };
  }
  const parts = words.map((w, i) => [i ? " " : "", w === UNKNOWN ? h("span", { class: "unk", title: "not recognized" }, "(?)") : w]);
  return { diagnostic: false, body: ["“", parts, "”"] };
}

const REASONS = {
  words: "what the customer said",
  no_matches: "three no-matches",
  agent_twice: "asked for a person twice",
  repeat_contact: "the same topic again within a day",
};

// Why a contact is a complaint, in words: its reasons, and what was said or asked again.
export function complaintText(c) {
  const why = (c.reasons || []).map((r) => REASONS[r] || r).join(", ");
  const said = c.text ? `: “${c.text}”` : c.topic ? `: ${c.topic}` : "";
  return `Complaint (${why})${said}`;
}

// A red "complaint" tag for a call, conversation or callback marked one; null otherwise.
export function complaintTag(c) {
  return c ? h("span", { class: "tag complaint", title: complaintText(c) }, "complaint") : null;
}

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
    case "recognized": {
      const { diagnostic, body } = heard(e.text);
      const tags = [e.intent ? tag(e.intent, "intent") : tag("no match", "miss"), confidenceTag(e)];
      return line("recognized", diagnostic ? "asr" : "caller", body, tags, e.at, diagnostic);
    }
    case "no_match":
      // The flow's verdict on what was heard; its text is the reason, not speech.
      return line("no_match", "flow", note(e.text ? `no match: ${e.text}` : "no match"), [tag("no match", "miss"), confidenceTag(e)], e.at, true);
    case "dtmf":
      return line("dtmf", "keys", e.digits || "", [e.intent ? tag(e.intent, "intent") : tag("no match", "miss")], e.at);
    case "no_input":
      return line("no_input", "asr", note(e.text ? `(silence: ${e.text})` : "(silence: no input)"), [], e.at, true);
    case "barge_in":
      return line("barge_in", "asr", note("(spoke over the prompt)"), [], e.at, true);
    case "complaint": // the complaint early warning (ivr/nlu/complaint.py)
      return line("complaint", "warning", complaintText(e), [tag("complaint", "complaint")], e.at);
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

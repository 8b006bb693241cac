// The callback queue: filter, then claim, complete (with an outcome), reschedule or cancel.
// A callback's detail shows the customer's contacts on every channel (calls, chats, SMS:
// GET /v1/customers/{number}), each with its transcript.

import { ApiError, bodyEnum, get, has, post } from "./api.js";
import { clear, fmtTime, fromZoneInput, h, notice, serviceZone, toZoneInput } from "./dom.js";
import { complaintTag, complaintText } from "./transcript.js";

const STATUSES = ["scheduled", "claimed", "completed", "cancelled", "expired"];
const OPEN = new Set(["scheduled", "claimed"]);
const FALLBACK_OUTCOMES = ["resolved", "unresolved", "wrong_number", "declined", "no_answer", "busy", "voicemail", "failed"];
const REFRESH_MS = 15000;
const CHANNEL_NAMES = { voice: "Call", web: "Web chat", app: "App chat", api: "API chat", sms: "SMS" };

// One line of a contact's transcript: the customer's words quoted, the bot's, or what the
// dialog noted (no input, no match) as a muted note.
function line(x) {
  const note = x.sender === "system";
  const kind = note ? "diag" : x.sender === "bot" ? "prompt" : x.kind === "dtmf" ? "dtmf" : "recognized";
  return h("li", { class: `turn ${kind}` },
    h("span", { class: "who" }, note ? "" : x.sender === "bot" ? "bot" : "customer"),
    h("span", { class: "what" }, note ? `(${(x.kind || "").replace("_", " ")})` : x.text || ""),
    x.intent && !note ? h("span", { class: "tag intent" }, x.intent) : null,
    x.kind === "no_match" && !note ? h("span", { class: "tag miss" }, "no match") : null);
}

// The customer's calls and conversations, newest first; the one this callback was booked
// from is marked and open.
function contactsOf(customer, cb) {
  const from = cb.transcript && typeof cb.transcript === "object" ? cb.transcript.call_id || cb.transcript.conversation_id : null;
  if (!customer.contacts.length) return h("p", { class: "muted" }, "No calls or chats from this number.");
  return h("ul", { class: "contacts", id: "cb-contacts" }, customer.contacts.map((c) => {
    const mine = c.id === from;
    const ended = c.ended_at ? (c.end_reason || "ended") : "in progress";
    return h("li", { class: `contact channel-${c.channel}`, dataset: { contactId: c.id, channel: c.channel } },
      h("details", { open: mine },
        h("summary", {},
          h("span", { class: "tag channel" }, CHANNEL_NAMES[c.channel] || c.channel), " ",
          fmtTime(c.started_at), ` · ${ended} · ${c.transcript.length} lines`,
          mine ? h("span", { class: "tag booked-from" }, "this callback's") : null),
        c.transcript.length ? h("ol", { class: "transcript" }, c.transcript.map(line)) : h("p", { class: "muted" }, "Nothing said yet.")));
  }));
}

// <input type="datetime-local"> values are wall times in the service's zone (IVR_TIMEZONE),
// not the browser's: the agent types the time the caller was promised.
const instant = fromZoneInput;
const zoneInput = (iso) => toZoneInput(iso || Date.now() + 3600e3);

export function callbacksView() {
  let outcomes = FALLBACK_OUTCOMES;
  let cursor = null;
  let timer = null;
  const statusBoxes = STATUSES.map((s) =>
    h("label", { class: "check" }, h("input", { type: "checkbox", name: "status", value: s, checked: OPEN.has(s) }), s),
  );
  const number = h("input", { type: "search", name: "number", placeholder: "number", id: "cb-number" });
  const dueAfter = h("input", { type: "datetime-local", name: "due_after", id: "cb-due-after" });
  const dueBefore = h("input", { type: "datetime-local", name: "due_before", id: "cb-due-before" });
  const body = h("tbody");
  const status = h("div", { class: "status", id: "cb-status", role: "status" });
  const more = h("button", { type: "button", hidden: true, onclick: () => load(true) }, "More");
  const detail = h("section", { class: "panel detail", hidden: true, id: "cb-detail" });

  const el = h(
    "div",
    { class: "view callbacks" },
    h(
      "div",
      { class: "columns" },
      h(
        "section",
        { class: "panel" },
        h("h2", {}, "Callback queue ", h("small", { class: "muted zone" }, `times in ${serviceZone()}`)),
        h(
          "form",
          { class: "filters", id: "cb-filters", onsubmit: (e) => (e.preventDefault(), load(false)) },
          h("fieldset", {}, h("legend", {}, "Status"), statusBoxes),
          h("label", {}, "Number ", number),
          h("label", {}, `Due after (${serviceZone()}) `, dueAfter),
          h("label", {}, `Due before (${serviceZone()}) `, dueBefore),
          h("button", { type: "submit" }, "Apply"),
          h("button", { type: "button", onclick: () => load(false) }, "Refresh"),
        ),
        status,
        h(
          "div",
          { class: "table-scroll" },
          h(
            "table",
            { class: "grid", id: "cb-table" },
            h("thead", {}, h("tr", {}, ["Due", "Number", "Status", "Reason", "Attempts", "Agent", "Outcome", "Actions"].map((t) => h("th", {}, t)))),
            body,
          ),
        ),
        more,
      ),
      detail,
    ),
  );

  function query(append) {
    return {
      status: statusBoxes.map((l) => l.firstChild).filter((c) => c.checked).map((c) => c.value),
      number: number.value.trim(),
      due_after: instant(dueAfter.value),
      due_before: instant(dueBefore.value),
      limit: 50,
      cursor: append ? cursor : null,
    };
  }

  async function load(append) {
    try {
      const page = await get("/v1/callbacks", query(append));
      if (!append) clear(body);
      for (const cb of page.items) body.append(row(cb));
      if (!body.children.length) body.append(h("tr", {}, h("td", { colspan: 8, class: "empty" }, "No callbacks match.")));
      cursor = page.next;
      more.hidden = !cursor;
    } catch (err) {
      notice(status, err instanceof ApiError ? err.describe() : String(err), "error");
    }
  }

  async function act(cb, verb, payload, done) {
    try {
      const updated = await post(`/v1/callbacks/${cb.id}/${verb}`, payload);
      notice(status, `${cb.number}: ${done} (now ${updated.status}${updated.outcome ? `, ${updated.outcome}` : ""}).`, "ok");
    } catch (err) {
      notice(status, `${cb.number}: ${err instanceof ApiError ? err.describe() : err}`, "error");
    }
    // The row and the open detail show the callback as it is now (or as another agent left it).
    const reload = load(false);
    if (!detail.hidden && detail.dataset.callbackId === cb.id) await show(cb.id, false);
    await reload;
  }

  // The buttons for what can be done to `cb` now: in its table row and in its detail panel.
  function actions(cb) {
    const open = OPEN.has(cb.status);
    const outcome = h("select", { name: "outcome", "aria-label": "outcome" }, outcomes.map((o) => h("option", { value: o }, o)));
    const when = h("input", { type: "datetime-local", name: "due_at", "aria-label": `new due time (${serviceZone()})`, title: `in ${serviceZone()}`, value: zoneInput(cb.due_at) });
    const box = h("div", { class: "acts" });
    if (cb.status === "scheduled" || (cb.status === "claimed" && !cb.agent)) {
      box.append(h("button", { type: "button", dataset: { action: "claim" }, onclick: () => act(cb, "claim", {}, "claimed") }, "Claim"));
    }
    if (cb.status === "claimed") {
      box.append(
        h("span", { class: "inline" }, outcome, h("button", { type: "button", dataset: { action: "complete" }, onclick: () => act(cb, "complete", { outcome: outcome.value }, `completed: ${outcome.value}`) }, "Complete")),
      );
    }
    if (open) {
      box.append(
        h("span", { class: "inline" }, when, h("button", { type: "button", dataset: { action: "reschedule" }, onclick: () => {
          const due = instant(when.value);
          if (!due) return notice(status, "Pick a date and time to reschedule to.", "error");
          return act(cb, "reschedule", { due_at: due }, `rescheduled to ${fmtTime(due)}`);
        } }, "Reschedule")),
        h("button", { type: "button", class: "danger", dataset: { action: "cancel" }, onclick: () => {
          // Cancelling cannot be undone: the caller is not called back.
          if (!window.confirm(`Cancel the callback for ${cb.number}? The caller will not be called back.`)) {
            return notice(status, `${cb.number}: not cancelled.`, "info");
          }
          return act(cb, "cancel", {}, "cancelled");
        } }, "Cancel"),
      );
    }
    return box;
  }

  function row(cb) {
    return h(
      "tr",
      { dataset: { callbackId: cb.id, status: cb.status } },
      h("td", { title: cb.due_at }, fmtTime(cb.due_at)),
      h("td", {}, h("a", { href: "#", onclick: (e) => (e.preventDefault(), show(cb.id)) }, cb.number), " ", complaintTag(cb.complaint)),
      h("td", {}, h("span", { class: `tag status-${cb.status}` }, cb.status)),
      h("td", {}, cb.reason || ""),
      h("td", {}, `${cb.attempts} / ${cb.max_attempts}`),
      h("td", {}, cb.agent || ""),
      h("td", {}, cb.outcome || ""),
      h("td", { class: "actions" }, actions(cb)),
    );
  }

  async function show(id, loading = true) {
    detail.hidden = false;
    detail.dataset.callbackId = id;
    if (loading) {
      clear(detail, h("p", {}, "Loading…"));
      detail.scrollIntoView({ block: "nearest" }); // below the queue on a narrow screen
    }
    try {
      const cb = await get(`/v1/callbacks/${id}`);
      let contacts = null;
      if (await has("GET", "/v1/customers/{number}")) {
        try {
          contacts = contactsOf(await get(`/v1/customers/${encodeURIComponent(cb.number)}`), cb);
        } catch (err) {
          contacts = h("p", { class: "notice error" }, err instanceof ApiError ? err.describe() : String(err));
        }
      }
      const turns = Array.isArray(cb.transcript?.turns) ? cb.transcript.turns : null;
      clear(
        detail,
        h("button", { type: "button", class: "close", onclick: () => (detail.hidden = true), title: "Close" }, "×"),
        h("h2", {}, `Callback for ${cb.number}`),
        h("dl", { class: "facts" }, [
          ["Due", fmtTime(cb.due_at)],
          ["Status", h("span", { class: `tag status-${cb.status}`, id: "cb-detail-status" }, cb.status)],
          ["Outcome", cb.outcome || "—"], ["Agent", cb.agent || "—"], ["Reason", cb.reason || ""],
          ["Priority", String(cb.priority)], ["Created", fmtTime(cb.created_at)],
          ...(cb.complaint ? [["Complaint", h("span", { class: "complaint-why" }, complaintTag(cb.complaint), " ", complaintText(cb.complaint), " (priority raised by 5)")]] : []),
        ].map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
        OPEN.has(cb.status) ? [h("h3", {}, "Actions"), h("div", { class: "detail-actions", id: "cb-detail-actions" }, actions(cb))] : null,
        h("h3", {}, "What the caller said"),
        cb.transcript === null || cb.transcript === undefined
          ? h("p", { class: "muted" }, "Not booked from a call (no transcript).")
          : turns
          ? h("ol", { class: "transcript" }, turns.map((t) => h("li", { class: `turn ${t.kind}` }, h("span", { class: "who" }, t.kind === "prompt" ? "bot" : "caller"), h("span", { class: "what" }, t.text || ""), t.intent ? h("span", { class: "tag intent" }, t.intent) : null)))
          : h("pre", { class: "json" }, JSON.stringify(cb.transcript, null, 2)),
        contacts ? [h("h3", {}, "Contacts on every channel"), contacts] : null,
        h("h3", {}, "Attempts"),
        cb.attempt_log.length
          ? h("div", { class: "table-scroll" }, h("table", { class: "grid" }, h("tr", {}, ["#", "By", "Agent", "Started", "Ended", "Outcome"].map((t) => h("th", {}, t))),
              cb.attempt_log.map((a) => h("tr", {}, [a.attempt, a.taken_by, a.agent || "", fmtTime(a.started_at), fmtTime(a.ended_at), a.outcome || ""].map((v) => h("td", {}, String(v)))))))
          : h("p", { class: "muted" }, "None yet."),
      );
    } catch (err) {
      clear(detail, h("p", { class: "notice error" }, err.describe ? err.describe() : String(err)));
    }
  }

  return {
    id: "callbacks",
    title: "Callbacks",
    el,
    async show() {
      outcomes = (await bodyEnum("POST", "/v1/callbacks/{id}/complete", "outcome")) || FALLBACK_OUTCOMES;
      await load(false);
      clearInterval(timer);
      // Not while the page is hidden, nor under an agent picking an outcome or a time.
      timer = setInterval(() => {
        if (document.visibilityState === "visible" && !body.contains(document.activeElement)) load(false);
      }, REFRESH_MS);
    },
    hide() {
      clearInterval(timer);
    },
  };
}

// The webhook delivery log: events newest first by state, each one's data and every POST to
// every endpoint; replay one event, or every parked one after a receiver's outage.

import { ApiError, get, has, post } from "./api.js";
import { clear, fmtTime, h, notice } from "./dom.js";

const STATES = ["", "pending", "delivered", "parked"];

function describe(err) {
  return err instanceof ApiError ? err.describe() : String(err);
}

export function webhooksView() {
  let cursor = null;
  const state = h("select", { name: "state", id: "wh-state", "aria-label": "state" }, STATES.map((s) => h("option", { value: s }, s || "any state")));
  const body = h("tbody");
  const status = h("div", { class: "status", id: "wh-status", role: "status" });
  const more = h("button", { type: "button", hidden: true, onclick: () => load(true) }, "More");
  const detail = h("section", { class: "panel detail", hidden: true, id: "wh-detail" });
  const replayAll = h("button", { type: "button", id: "wh-replay-parked", onclick: () => replayParked() }, "Replay all parked");

  const el = h(
    "div",
    { class: "view webhooks" },
    h(
      "div",
      { class: "columns" },
      h(
        "section",
        { class: "panel" },
        h("h2", {}, "Webhook deliveries"),
        h(
          "form",
          { class: "filters", id: "wh-filters", onsubmit: (e) => (e.preventDefault(), load(false)) },
          h("label", {}, "State ", state),
          h("button", { type: "submit" }, "Apply"),
          h("button", { type: "button", onclick: () => load(false) }, "Refresh"),
          replayAll,
        ),
        status,
        h(
          "table",
          { class: "grid", id: "wh-table" },
          h("thead", {}, h("tr", {}, ["Created", "Type", "State", "Attempts", "Last error", "Actions"].map((t) => h("th", {}, t)))),
          body,
        ),
        more,
      ),
      detail,
    ),
  );

  async function load(append) {
    try {
      const page = await get("/v1/webhooks/events", { state: state.value, limit: 50, cursor: append ? cursor : null });
      if (!append) clear(body);
      for (const event of page.items) body.append(row(event));
      if (!body.children.length) body.append(h("tr", {}, h("td", { colspan: 6, class: "empty" }, "No events match.")));
      cursor = page.next;
      more.hidden = !cursor;
    } catch (err) {
      notice(status, describe(err), "error");
    }
  }

  async function replay(event) {
    if (!window.confirm(`Send ${event.type} ${event.id} again now, with the same id?`)) return;
    try {
      await post(`/v1/webhooks/events/${event.id}/replay`);
      notice(status, `${event.type} ${event.id.slice(0, 8)}: replayed.`, "ok");
    } catch (err) {
      notice(status, describe(err), "error");
    }
    await load(false);
    if (!detail.hidden && detail.dataset.eventId === event.id) await show(event.id);
  }

  async function replayParked() {
    if (!window.confirm("Send every parked event again now?")) return;
    try {
      const { replayed } = await post("/v1/webhooks/parked/replay");
      notice(status, `${replayed} parked event${replayed === 1 ? "" : "s"} replayed.`, "ok");
    } catch (err) {
      notice(status, describe(err), "error");
    }
    await load(false);
  }

  function row(event) {
    return h(
      "tr",
      { dataset: { eventId: event.id, state: event.state } },
      h("td", { title: event.created_at }, fmtTime(event.created_at)),
      h("td", {}, h("a", { href: "#", onclick: (e) => (e.preventDefault(), show(event.id)) }, event.type)),
      h("td", {}, h("span", { class: `tag state-${event.state}` }, event.state)),
      h("td", { class: "num" }, String(event.attempts)),
      h("td", { class: "error-text" }, event.last_error || ""),
      h("td", { class: "actions" }, h("button", { type: "button", dataset: { action: "replay" }, onclick: () => replay(event) }, "Replay")),
    );
  }

  async function show(id) {
    detail.hidden = false;
    detail.dataset.eventId = id;
    clear(detail, h("p", {}, "Loading…"));
    try {
      const event = await get(`/v1/webhooks/events/${id}`);
      clear(
        detail,
        h("button", { type: "button", class: "close", onclick: () => (detail.hidden = true), title: "Close" }, "×"),
        h("h2", {}, event.type),
        h("dl", { class: "facts" }, [
          ["Id", event.id], ["State", event.state], ["Created", fmtTime(event.created_at)],
          ["Next attempt", fmtTime(event.next_attempt_at) || "—"], ["Delivered", fmtTime(event.delivered_at) || "—"],
        ].map(([k, v]) => [h("dt", {}, k), h("dd", {}, String(v))])),
        h("h3", {}, "Deliveries"),
        event.deliveries.length
          ? h("table", { class: "grid", id: "wh-deliveries" }, h("tr", {}, ["At", "Endpoint", "Status", "Error", "Time"].map((t) => h("th", {}, t))),
              event.deliveries.map((d) => h("tr", { dataset: { ok: String(d.error === null) } }, [fmtTime(d.at), d.url, d.status ?? "no answer", d.error || "accepted", `${d.duration_ms} ms`].map((v) => h("td", {}, String(v))))))
          : h("p", { class: "muted" }, "Not sent yet."),
        h("h3", {}, "Data"),
        h("pre", { class: "json" }, JSON.stringify(event.data, null, 2)),
      );
    } catch (err) {
      clear(detail, h("p", { class: "notice error" }, describe(err)));
    }
  }

  return {
    id: "webhooks",
    title: "Webhooks",
    el,
    async show() {
      if (!(await has("GET", "/v1/webhooks/events"))) {
        clear(el, h("p", { class: "unavailable" }, "This server has no webhook delivery log."));
        return;
      }
      await load(false);
    },
    hide() {},
  };
}

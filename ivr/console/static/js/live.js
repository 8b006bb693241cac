// Live calls: the calls in progress with their running transcripts (from the live feed), the
// ones that ended while watching, and the call history; a call's timeline and recording.
// Beside the calls, the text conversations (web chat, SMS, REST) open and ended lately, with
// their last message (polled from /v1/live/conversations); a click shows the history.

import { ApiError, blob, get } from "./api.js";
import { clear, fmtDuration, fmtTime, h, notice, serviceZone } from "./dom.js";
import { complaintTag, complaintText, eventLine, transcript, turnLine } from "./transcript.js";

// Seconds into a call as m:ss.
function fmtOffset(seconds) {
  const s = Math.floor(seconds);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

export function liveView({ feed }) {
  const activeList = h("div", { class: "cards", id: "live-active" });
  const endedList = h("div", { class: "cards compact", id: "live-ended" });
  const historyBody = h("tbody");
  const historyStatus = h("div", { class: "status" });
  const callerFilter = h("input", { type: "search", placeholder: "caller number", id: "history-caller" });
  const more = h("button", { type: "button", hidden: true, onclick: () => loadHistory(true) }, "More");
  const detail = h("section", { class: "panel detail", id: "call-detail", hidden: true });
  let cursor = null;
  let audioUrl = null;
  let refreshTimer = null;
  const awaitingEnd = new Set(); // calls that hung up whose end the history does not show yet
  const chatList = h("div", { class: "cards compact", id: "live-conversations" });
  const chatStatus = h("div", { class: "status" });
  let chatTimer = null;

  const el = h(
    "div",
    { class: "view live" },
    h(
      "div",
      { class: "columns" },
      h(
        "div",
        {},
        h("section", { class: "panel" }, h("h2", {}, "In progress ", h("span", { class: "count", id: "live-count" }, "0")), activeList),
        h("section", { class: "panel" }, h("h2", {}, "Ended while watching"), endedList),
        h(
          "section",
          { class: "panel" },
          h("h2", {}, "Conversations ", h("span", { class: "count", id: "chat-count" }, "0"), h("small", { class: "muted" }, "open, and ended in the last hour")),
          chatList,
          chatStatus,
        ),
        h(
          "section",
          { class: "panel" },
          h("h2", {}, "Call history ", h("small", { class: "muted zone" }, `times in ${serviceZone()}`)),
          h(
            "form",
            { class: "filters", onsubmit: (e) => (e.preventDefault(), loadHistory(false)) },
            callerFilter,
            h("button", { type: "submit" }, "Search"),
          ),
          h(
            "div",
            { class: "table-scroll" },
            h(
              "table",
              { class: "grid clickable", id: "history" },
              h("thead", {}, h("tr", {}, ["Started", "Caller", "Transport", "Flow", "Duration", "End"].map((t) => h("th", {}, t)))),
              historyBody,
            ),
          ),
          more,
          historyStatus,
        ),
      ),
      detail,
    ),
  );

  // --- calls in progress (the feed) --------------------------------------------------------

  function card(call) {
    const info = call.info || {};
    const header = h(
      "header",
      {},
      h("strong", {}, info.caller || "unknown caller"),
      h("span", { class: "tag" }, info.transport || "?"),
      h("span", { class: "tag node", dataset: { role: "node" } }, call.node || ""),
      h("time", {}, call.startedAt ? fmtTime(call.startedAt) : ""),
      call.ended ? h("span", { class: "tag end" }, call.endReason || "ended") : null,
      complaintTag(call.events.find((e) => e.event === "complaint")),
    );
    return h(
      "article",
      {
        class: `call${call.ended ? " ended" : ""}`,
        dataset: { callId: call.id },
        onclick: call.ended ? () => openCall(call.id) : null,
        title: call.ended ? "Show the timeline and recording" : call.id,
      },
      header,
      transcript(call.events, { live: !call.ended }),
    );
  }

  function renderFeed() {
    const active = feed.active();
    clear(activeList, active.length ? active.map(card) : h("p", { class: "empty" }, "No calls in progress."));
    const ended = feed.ended();
    clear(endedList, ended.length ? ended.map(card) : h("p", { class: "empty" }, "None yet."));
    el.querySelector("#live-count").textContent = String(active.length);
  }

  function onEvent({ detail: { call, event } }) {
    const existing = activeList.querySelector(`article[data-call-id="${CSS.escape(call.id)}"]`);
    if (!existing || ["call_started", "hangup", "complaint"].includes(event.event)) {
      renderFeed();
      if (event.event === "hangup") {
        awaitingEnd.add(call.id);
        scheduleHistory(500);
      }
      return;
    }
    const lineEl = eventLine(event);
    if (lineEl) existing.querySelector(".transcript").append(lineEl);
    existing.querySelector('[data-role="node"]').textContent = call.node || "";
  }

  feed.addEventListener("event", onEvent);
  feed.addEventListener("reset", renderFeed);

  // --- text conversations (the API, every few seconds while the page shows) ---------------

  const CHAT_POLL_MS = 4000;

  function conversationCard(c) {
    const last = c.last_message;
    const open = c.status === "open";
    return h(
      "article",
      {
        class: `call conversation${open ? "" : " ended"}`,
        dataset: { conversationId: c.id, status: c.status },
        onclick: () => openConversation(c.id),
        title: "Show the conversation",
      },
      h(
        "header",
        {},
        h("strong", {}, c.number || "no number"),
        h("span", { class: "tag", dataset: { role: "channel" } }, c.channel),
        h("span", { class: `tag${open ? " node" : " end"}`, dataset: { role: "status" } }, open ? "open" : c.end_reason || "ended"),
        h("time", {}, fmtTime(c.last_message_at)),
        complaintTag(c.complaint),
      ),
      h(
        "p",
        { class: "last", dataset: { role: "last" } },
        last ? [h("span", { class: "muted" }, last.sender === "bot" ? "Bot: " : "Customer: "), last.text] : h("span", { class: "muted" }, "no message yet"),
      ),
    );
  }

  async function loadConversations() {
    clearTimeout(chatTimer);
    if (!el.isConnected) return;
    try {
      const { items } = await get("/v1/live/conversations", { ended_within: 60, limit: 30 });
      const open = items.filter((c) => c.status === "open");
      const ended = items.filter((c) => c.status !== "open");
      const cards = [...open, ...ended].map(conversationCard);
      clear(chatList, cards.length ? cards : h("p", { class: "empty" }, "No conversations."));
      el.querySelector("#chat-count").textContent = String(open.length);
      notice(chatStatus, "");
    } catch (err) {
      notice(chatStatus, err instanceof ApiError ? err.describe() : String(err), "error");
    }
    chatTimer = setTimeout(loadConversations, CHAT_POLL_MS);
  }

  async function openConversation(id) {
    detail.hidden = false;
    if (audioUrl) URL.revokeObjectURL(audioUrl);
    audioUrl = null;
    const title = h("h2", {}, "Conversation ", h("code", {}, id));
    clear(detail, title, h("p", {}, "Loading…"));
    detail.scrollIntoView({ block: "nearest" });
    let c;
    try {
      c = await get(`/v1/conversations/${encodeURIComponent(id)}`);
    } catch (err) {
      clear(detail, title, h("p", { class: "notice error" }, err.describe ? err.describe() : String(err)));
      return;
    }
    // A turn line as the call timeline's: who, what (the quick replies offered under it), when.
    const lines = c.messages.map((m) =>
      h(
        "li",
        { class: `turn ${m.sender === "bot" ? "prompt" : "recognized"}`, dataset: { sender: m.sender } },
        h("span", { class: "who" }, m.sender === "bot" ? "bot" : "customer"),
        h("span", { class: "what" }, m.text),
        h("time", { class: "at" }, fmtTime(m.at)),
        m.quick_replies.length ? h("span", { class: "tags" }, m.quick_replies.map((r) => h("span", { class: "tag" }, r))) : null,
      ),
    );
    clear(
      detail,
      h("button", { type: "button", class: "close", onclick: () => (detail.hidden = true), title: "Close" }, "×"),
      title,
      h(
        "dl",
        { class: "facts" },
        [
          ["Number", c.number || "none given"],
          ["Channel", c.channel],
          ["Started", fmtTime(c.started_at)],
          ["Ended", c.ended_at ? fmtTime(c.ended_at) : "open"],
          ["End reason", c.end_reason || ""],
          ...(c.complaint ? [["Complaint", h("span", { class: "complaint-why" }, complaintTag(c.complaint), " ", complaintText(c.complaint))]] : []),
        ].map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]),
      ),
      h("h3", {}, "Messages"),
      h("ol", { class: "transcript timeline", id: "conversation-timeline" }, lines),
    );
  }

  // --- history (the API) -------------------------------------------------------------------

  // The feed's hangup says a call ended; its record's end is written a moment later, by the
  // store's writer: ask then, and again (a little later each time) until the history shows
  // the call ended, for up to about 20 s.
  function scheduleHistory(delay, tries = 0) {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(async () => {
      if (!el.isConnected) return; // another page: show() loads it afresh
      const page = await loadHistory(false);
      for (const call of page?.items || []) if (call.ended_at) awaitingEnd.delete(call.id);
      if (page && awaitingEnd.size && tries < 8) scheduleHistory(Math.min(delay * 2, 4000), tries + 1);
      else awaitingEnd.clear();
    }, delay);
  }

  async function loadHistory(append) {
    try {
      const page = await get("/v1/calls", {
        limit: 20,
        caller: callerFilter.value.trim(),
        cursor: append ? cursor : null,
      });
      if (!append) clear(historyBody);
      for (const call of page.items) historyBody.append(historyRow(call));
      if (!historyBody.children.length) historyBody.append(h("tr", {}, h("td", { colspan: 6, class: "empty" }, "No calls.")));
      cursor = page.next;
      more.hidden = !cursor;
      notice(historyStatus, "");
      return page;
    } catch (err) {
      notice(historyStatus, err instanceof ApiError ? err.describe() : String(err), "error");
      return null;
    }
  }

  function historyRow(call) {
    const seconds = call.ended_at ? (new Date(call.ended_at) - new Date(call.started_at)) / 1000 : NaN;
    return h(
      "tr",
      { dataset: { callId: call.id, ended: String(Boolean(call.ended_at)) }, onclick: () => openCall(call.id), tabindex: 0 },
      h("td", {}, fmtTime(call.started_at)),
      h("td", {}, call.caller || "", " ", complaintTag(call.complaint)),
      h("td", {}, call.transport),
      h("td", {}, `${call.flow || ""} ${call.flow_version || ""}`),
      h("td", {}, call.ended_at ? fmtDuration(seconds) : "in progress"),
      h("td", {}, call.end_reason || ""),
    );
  }

  // --- one call ----------------------------------------------------------------------------

  async function openCall(id) {
    detail.hidden = false;
    if (audioUrl) URL.revokeObjectURL(audioUrl);
    audioUrl = null;
    const audioBox = h("div", { class: "recording" }, "Loading the recording…");
    clear(detail, h("h2", {}, "Call ", h("code", {}, id)), h("p", {}, "Loading…"));
    detail.scrollIntoView({ block: "nearest" });
    let call;
    try {
      call = await get(`/v1/calls/${encodeURIComponent(id)}`);
    } catch (err) {
      clear(detail, h("h2", {}, "Call ", h("code", {}, id)), h("p", { class: "notice error" }, err.describe ? err.describe() : String(err)));
      return;
    }
    const seconds = call.ended_at ? (new Date(call.ended_at) - new Date(call.started_at)) / 1000 : NaN;
    const timeline = h("ol", { class: "transcript timeline", id: "call-timeline" }, call.turns.map((t) => seekable(turnLine(t), call)));
    clear(
      detail,
      h("button", { type: "button", class: "close", onclick: () => (detail.hidden = true), title: "Close" }, "×"),
      h("h2", {}, "Call ", h("code", {}, call.id)),
      h(
        "dl",
        { class: "facts" },
        [
          ["Caller", call.caller || "unknown"],
          ["Transport", call.transport],
          ["Flow", `${call.flow || ""} ${call.flow_version || ""}`],
          ["Started", fmtTime(call.started_at)],
          ["Ended", call.ended_at ? `${fmtTime(call.ended_at)} (${fmtDuration(seconds)})` : "in progress"],
          ["End reason", call.end_reason || ""],
          ...(call.complaint ? [["Complaint", h("span", { class: "complaint-why" }, complaintTag(call.complaint), " ", complaintText(call.complaint))]] : []),
        ].map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]),
      ),
      audioBox,
      h("h3", {}, "Timeline ", h("small", { class: "muted" }, "(click a turn to play the recording from it)")),
      timeline,
    );
    try {
      audioUrl = URL.createObjectURL(await blob(`/v1/calls/${encodeURIComponent(id)}/audio`));
      clear(audioBox, h("audio", { controls: true, src: audioUrl, preload: "metadata", id: "call-audio" }), h("small", {}, "Left: caller · right: bot"));
      timeline.classList.add("playable");
    } catch (err) {
      clear(audioBox, h("span", { class: "muted" }, err.status === 404 ? "No recording of this call." : `Recording: ${err.message}`));
    }
  }

  // A timeline line that plays the call's recording from its moment (the recording starts
  // with the call): its offset shown beside its time of day.
  function seekable(li, call) {
    if (!li?.dataset.at) return li;
    const offset = Math.max(0, (new Date(li.dataset.at) - new Date(call.started_at)) / 1000);
    li.dataset.offset = offset.toFixed(2);
    li.tabIndex = 0;
    li.querySelector("time.at")?.prepend(h("span", { class: "offset" }, `+${fmtOffset(offset)} · `));
    const seek = () => {
      const audio = detail.querySelector("#call-audio");
      if (!audio) return;
      for (const other of li.parentElement.querySelectorAll(".turn.current")) other.classList.remove("current");
      li.classList.add("current");
      const go = () => {
        audio.currentTime = Math.min(offset, Number.isFinite(audio.duration) ? audio.duration : offset);
        audio.play().catch(() => {}); // a browser refusing autoplay still moved the position
      };
      if (audio.readyState >= 1) go();
      else audio.addEventListener("loadedmetadata", go, { once: true });
    };
    li.addEventListener("click", seek);
    li.addEventListener("keydown", (e) => {
      if (e.key === "Enter" || e.key === " ") (e.preventDefault(), seek());
    });
    return li;
  }

  return {
    id: "live",
    title: "Live calls",
    el,
    show() {
      renderFeed();
      loadHistory(false);
      loadConversations();
    },
    hide() {
      clearTimeout(chatTimer);
    },
    openCall,
  };
}

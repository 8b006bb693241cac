// Every call's events from the /v1/live WebSocket, kept per call for the pages that show
// them (Live calls, the softphone's transcript). One socket for the whole console; it
// reconnects by itself.

import { socket } from "./api.js";

const KEEP_ENDED = 30; // calls that ended while the console watched, newest kept
const MAX_EVENTS = 2000; // per call: a stuck call must not grow the page without bound

export class LiveFeed extends EventTarget {
  constructor() {
    super();
    this.calls = new Map(); // call_id → {id, info, node, events, ended, endReason}
    this.state = "idle";
    this.ws = null;
    this.retry = 1000;
    this.stopped = true;
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close();
  }

  setState(state, detail = "") {
    this.state = state;
    this.dispatchEvent(new CustomEvent("state", { detail: { state, detail } }));
  }

  connect() {
    this.setState("connecting");
    let ws;
    try {
      ws = this.ws = socket("/v1/live");
    } catch (err) {
      this.setState("closed", err.message);
      return;
    }
    ws.onopen = () => {
      this.retry = 1000;
      // The server replays the calls in progress from their start: forget what we had of
      // them, or their transcripts would show twice.
      for (const [id, call] of this.calls) if (!call.ended) this.calls.delete(id);
      this.setState("open");
      this.dispatchEvent(new CustomEvent("reset"));
    };
    ws.onmessage = (message) => {
      let event;
      try {
        event = JSON.parse(message.data);
      } catch {
        return;
      }
      this.add(event);
    };
    ws.onclose = (close) => {
      if (this.ws !== ws) return;
      this.ws = null;
      // 1006 before opening: refused (an unknown token is a 401) or the server is down.
      this.setState("closed", close.reason || (close.code === 1006 ? "connection failed" : ""));
      if (this.stopped) return;
      this.timer = setTimeout(() => this.connect(), this.retry);
      this.retry = Math.min(this.retry * 2, 15000);
    };
  }

  add(event) {
    const id = event.call_id;
    if (!id) return;
    let call = this.calls.get(id);
    if (!call) {
      call = { id, info: {}, node: null, events: [], ended: false, endReason: null, startedAt: null };
      this.calls.set(id, call);
    }
    if (call.events.length < MAX_EVENTS) call.events.push(event);
    if (event.event === "call_started") {
      call.info = event;
      call.startedAt = event.at;
    }
    if (event.node) call.node = event.node;
    if (event.event === "hangup") {
      call.ended = true;
      call.endReason = event.reason;
      call.endedAt = event.at;
      this.trim();
    }
    this.dispatchEvent(new CustomEvent("event", { detail: { call, event } }));
  }

  trim() {
    const ended = [...this.calls.values()].filter((c) => c.ended);
    for (const call of ended.slice(0, Math.max(0, ended.length - KEEP_ENDED))) {
      this.calls.delete(call.id);
    }
  }

  active() {
    return [...this.calls.values()].filter((c) => !c.ended);
  }

  ended() {
    return [...this.calls.values()].filter((c) => c.ended).reverse();
  }
}

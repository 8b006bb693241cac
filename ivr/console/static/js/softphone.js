// Softphone: call the IVR from the browser (microphone → /v1/softphone → the bot's voice
// through Web Audio), a keypad for DTMF, and the call's running transcript.

import { socket } from "./api.js";
import { PcmPlayer, micError, openMic, toInt16 } from "./audio.js";
import { clear, h, notice } from "./dom.js";
import { eventLine } from "./transcript.js";

const KEYS = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "0", "#"];

export function softphoneView({ feed }) {
  const caller = h("input", { type: "tel", id: "sp-caller", value: "+15551230001", "aria-label": "calling number" });
  const rate = h("select", { id: "sp-rate", "aria-label": "audio rate" }, h("option", { value: "16000" }, "16 kHz"), h("option", { value: "8000" }, "8 kHz (telephone)"));
  const dial = h("button", { type: "button", id: "sp-dial", class: "primary", onclick: () => start() }, "Dial");
  const hangup = h("button", { type: "button", id: "sp-hangup", class: "danger", disabled: true, onclick: () => stop("Call ended: you hung up.") }, "Hang up");
  const status = h("div", { class: "status", id: "sp-status", role: "status" });
  const meter = h("meter", { id: "sp-level", min: 0, max: 1, value: 0, title: "microphone level" });
  const lines = h("ol", { class: "transcript live", id: "sp-transcript" });
  const keypad = h(
    "div",
    { class: "keypad", id: "sp-keypad" },
    KEYS.map((k) => h("button", { type: "button", disabled: true, dataset: { key: k }, onclick: () => key(k) }, k)),
  );
  let call = null; // {ws, context, player, stopMic, id, pending}
  let shown = null; // the call whose transcript is shown (it stays after the call ends)

  const el = h(
    "div",
    { class: "view softphone" },
    h(
      "section",
      { class: "panel phone" },
      h("h2", {}, "Softphone"),
      h("div", { class: "row" }, h("label", {}, "Calling as ", caller), h("label", {}, "Audio ", rate)),
      h("div", { class: "row" }, dial, hangup, meter),
      status,
      keypad,
    ),
    h("section", { class: "panel" }, h("h2", {}, "Transcript ", h("code", { id: "sp-call-id" })), lines),
  );

  function setActive(active) {
    dial.disabled = active;
    hangup.disabled = !active;
    caller.disabled = rate.disabled = active;
    keypad.querySelectorAll("button").forEach((b) => (b.disabled = !active));
  }

  async function start() {
    if (call) return;
    const wanted = Number(rate.value);
    setActive(true);
    clear(lines);
    el.querySelector("#sp-call-id").textContent = "";
    notice(status, "Starting the microphone…");
    const context = new AudioContext();
    const here = (call = { context, player: new PcmPlayer(context, wanted), pending: [], id: null });
    try {
      await context.resume();
      here.stopMic = await openMic(context, wanted, (samples) => send(here, samples));
    } catch (err) {
      return stop(micError(err), "error");
    }
    if (call !== here) return; // hung up meanwhile
    notice(status, "Dialling…");
    let ws;
    try {
      ws = here.ws = socket("/v1/softphone");
    } catch (err) {
      return stop(`Cannot connect: ${err.message}`, "error");
    }
    ws.binaryType = "arraybuffer";
    ws.onopen = () => ws.send(JSON.stringify({ type: "start", caller: caller.value.trim() || null, rate: wanted }));
    ws.onmessage = (m) => receive(here, m.data);
    ws.onclose = (close) => {
      if (call !== here) return;
      const reason = here.endReason || close.reason || (here.id ? "the call ended" : "the server refused the call (check the token)");
      stop(`Call ended: ${reason}.`, here.id ? "info" : "error");
    };
  }

  // Microphone samples → 20 ms binary frames of 16-bit PCM (after the server said "started").
  function send(here, samples) {
    let peak = 0;
    for (const s of samples) peak = Math.max(peak, Math.abs(s));
    meter.value = peak;
    if (!here.ws || here.ws.readyState !== WebSocket.OPEN || !here.id) return;
    here.pending.push(...toInt16(samples));
    const frame = here.player.rate / 50;
    while (here.pending.length >= frame) {
      here.ws.send(Int16Array.from(here.pending.splice(0, frame)).buffer);
    }
  }

  function receive(here, data) {
    if (data instanceof ArrayBuffer) {
      here.player.play(new Int16Array(data));
      return;
    }
    const msg = JSON.parse(data);
    if (msg.type === "started") {
      here.id = shown = msg.call_id;
      el.querySelector("#sp-call-id").textContent = msg.call_id;
      notice(status, "Connected: speak, or use the keypad.", "ok");
      const known = feed.calls.get(msg.call_id);
      if (known) clear(lines, known.events.map(eventLine));
    } else if (msg.type === "clear") {
      here.player.clear();
    } else if (msg.type === "end") {
      here.endReason = msg.reason;
    }
  }

  function key(k) {
    if (!call?.ws || call.ws.readyState !== WebSocket.OPEN) return;
    call.ws.send(JSON.stringify({ type: "dtmf", digit: k }));
    notice(status, `Sent key ${k}.`);
  }

  function stop(message, kind = "info") {
    const here = call;
    call = null;
    setActive(false);
    meter.value = 0;
    notice(status, message, kind);
    if (!here) return;
    if (here.ws) {
      if (here.ws.readyState === WebSocket.OPEN) here.ws.send(JSON.stringify({ type: "stop" }));
      here.ws.onclose = null;
      here.ws.close();
    }
    if (here.stopMic) here.stopMic();
    here.player.clear();
    here.context.close();
  }

  feed.addEventListener("event", ({ detail: { call: c, event } }) => {
    if (c.id !== shown) return;
    const lineEl = eventLine(event);
    if (lineEl) {
      lines.append(lineEl);
      lines.scrollTop = lines.scrollHeight;
    }
  });

  return { id: "softphone", title: "Softphone", el, show() {}, hide() {} };
}

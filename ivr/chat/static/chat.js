// The web chat widget: one conversation with the hotline's bot over the WebSocket
// /v1/chat (protocol: ivr/transports/chat.py). Plain JS, nothing loaded from elsewhere.
// Opened by itself (/chat) or framed by the embed script (/chat/embed.js), which passes
// a logged-in customer's number and its signed identity in the fragment:
//   /chat#number=%2B15551230001&identity=1767225600.5c1f…&embedded=1

const $ = (id) => document.getElementById(id);
const messages = $("messages");
const replies = $("replies");
const input = $("text");
const send = $("send");
const state = $("chat-state");
const params = new URLSearchParams(location.hash.slice(1));
let ws = null;
let open = false;

function line(kind, text) {
  const li = document.createElement("li");
  li.className = kind;
  li.textContent = text;
  messages.append(li);
  toBottom();
  return li;
}

// The latest message in view (the page itself never scrolls: the list does).
function toBottom() {
  messages.scrollTop = messages.scrollHeight;
}

function offer(choices) {
  replies.replaceChildren(
    ...choices.map((choice) => {
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = choice;
      b.addEventListener("click", () => say(choice, true));
      return b;
    }),
  );
  toBottom();
}

function setOpen(value, label) {
  open = value;
  input.disabled = send.disabled = !value;
  state.textContent = label;
  $("chat").dataset.state = label;
  const over = !value && label !== "connecting…";
  $("restart-box").hidden = !over;
  $("composer").hidden = over; // ended: a new chat, not a message to nobody
  toBottom();
  if (value) input.focus();
}

function say(text, choice = false) {
  if (!open || !text.trim()) return;
  line("customer", text);
  offer([]);
  ws.send(JSON.stringify({ type: choice ? "choice" : "message", text }));
}

function onMessage(event) {
  let msg;
  try {
    msg = JSON.parse(event.data);
  } catch {
    return;
  }
  if (msg.type === "started") {
    $("chat").dataset.conversationId = msg.conversation_id;
    setOpen(true, "online");
  } else if (msg.type === "bot") {
    line("bot", msg.text);
    offer(msg.quick_replies || []);
  } else if (msg.type === "ended") {
    offer([]);
    line("note", "The chat has ended.");
    setOpen(false, "ended");
  } else if (msg.type === "error") {
    line("note error", `Sorry, something went wrong: ${msg.message}`);
    setOpen(false, "error");
  }
}

function connect() {
  messages.replaceChildren();
  offer([]);
  setOpen(false, "connecting…");
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/v1/chat`;
  ws = new WebSocket(url);
  ws.addEventListener("open", () => {
    const start = { type: "start" };
    if (params.get("number")) start.number = params.get("number");
    if (params.get("identity")) start.identity = params.get("identity");
    ws.send(JSON.stringify(start));
  });
  ws.addEventListener("message", onMessage);
  ws.addEventListener("close", () => {
    if (open) {
      line("note", "The connection was lost.");
      setOpen(false, "disconnected");
    } else if (state.textContent === "connecting…") {
      line("note error", "The chat is not available right now.");
      setOpen(false, "unavailable");
    }
  });
}

$("composer").addEventListener("submit", (event) => {
  event.preventDefault();
  say(input.value);
  input.value = "";
});
$("restart").addEventListener("click", connect);
if (params.get("embedded") && window.parent !== window) {
  const close = $("chat-close");
  close.hidden = false;
  close.addEventListener("click", () => {
    if (ws && open) ws.send(JSON.stringify({ type: "end" }));
    window.parent.postMessage({ ivrChat: "close" }, "*");
  });
}
connect();

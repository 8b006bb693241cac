// The web chat's embed script: a site includes
//   <script src="https://ivr.example.com/chat/embed.js" async
//           data-number="+15551230001" data-identity="1767225600.5c1f…"></script>
// (data-number and data-identity only for a logged-in customer, the identity signed on the
// site's server: see the README) and gets a "Chat with us" button that opens the widget,
// /chat from the same server, in a frame in the page's corner. The site's origin must be in
// IVR_CHAT_ORIGINS (the widget's page may be framed only there).
(() => {
  const script = document.currentScript;
  if (!script || window.__ivrChat) return;
  window.__ivrChat = true;
  const base = new URL(script.src);
  const fragment = new URLSearchParams({ embedded: "1" });
  for (const key of ["number", "identity"]) {
    const value = script.dataset[key];
    if (value) fragment.set(key, value);
  }
  const label = script.dataset.label || "Chat with us";

  const button = document.createElement("button");
  button.type = "button";
  button.id = "ivr-chat-launcher";
  button.textContent = label;
  button.setAttribute("aria-expanded", "false");
  Object.assign(button.style, {
    position: "fixed", right: "16px", bottom: "16px", zIndex: "2147483000",
    padding: "10px 18px", border: "none", borderRadius: "22px", background: "#2563eb",
    color: "#fff", font: "15px system-ui, sans-serif", cursor: "pointer",
    boxShadow: "0 2px 8px rgba(0,0,0,.25)",
  });

  let frame = null;
  function place() {
    const narrow = window.innerWidth < 480;
    Object.assign(frame.style, narrow
      ? { left: "0", right: "0", bottom: "0", width: "100%", height: "100%", borderRadius: "0", border: "none" }
      : { left: "auto", right: "16px", bottom: "16px", width: "380px", height: "min(600px, calc(100% - 32px))",
          borderRadius: "12px", border: "1px solid #e3e5ea" });
  }
  function openChat() {
    if (!frame) {
      frame = document.createElement("iframe");
      frame.id = "ivr-chat-frame";
      frame.title = label;
      frame.src = `${base.origin}/chat#${fragment}`;
      Object.assign(frame.style, {
        position: "fixed", zIndex: "2147483001", boxSizing: "border-box", background: "#fff",
        boxShadow: "0 4px 24px rgba(0,0,0,.25)",
      });
      place();
      document.body.append(frame);
    }
    frame.hidden = false;
    button.hidden = true;
    button.setAttribute("aria-expanded", "true");
  }
  function closeChat() {
    if (frame) frame.remove(); // a new chat next time
    frame = null;
    button.hidden = false;
    button.setAttribute("aria-expanded", "false");
  }
  button.addEventListener("click", openChat);
  window.addEventListener("resize", () => frame && place());
  window.addEventListener("message", (event) => {
    if (event.origin === base.origin && event.data && event.data.ivrChat === "close") closeChat();
  });
  const add = () => document.body.append(button);
  if (document.body) add();
  else document.addEventListener("DOMContentLoaded", add);
})();

// The console's shell: asks for the API token once (kept in localStorage), then tabs for the
// pages, chosen by the URL's #fragment so each page can be linked and reloaded.

import { ApiError, get, token } from "./api.js";
import { analyticsView } from "./analytics.js";
import { callbacksView } from "./callbacks.js";
import { clear, h, notice, setZone } from "./dom.js";
import { LiveFeed } from "./feed.js";
import { grammarView } from "./grammar.js";
import { liveView } from "./live.js";
import { softphoneView } from "./softphone.js";
import { webhooksView } from "./webhooks.js";

const nav = document.getElementById("tabs");
const main = document.getElementById("main");
const feedState = document.getElementById("feed-state");
const feed = new LiveFeed();
let views = null;
let current = null;

function login(message = "") {
  feed.stop();
  const input = h("input", { type: "password", id: "token", autocomplete: "off", placeholder: "API token", required: true, size: 48 });
  const status = h("div", { class: "status", role: "status" });
  notice(status, message, message ? "error" : "info");
  clear(nav);
  clear(
    main,
    h(
      "form",
      {
        class: "panel login",
        id: "login",
        onsubmit: async (e) => {
          e.preventDefault();
          token.set(input.value);
          const problem = await check();
          if (problem) {
            token.clear();
            notice(status, problem, "error");
          } else {
            start();
          }
        },
      },
      h("h2", {}, "Sign in"),
      h("p", {}, "Enter an API token (", h("code", {}, "ivr token new console --scopes '*'"), "). It is kept in this browser only."),
      input,
      h("button", { type: "submit", class: "primary" }, "Continue"),
      status,
    ),
  );
  input.focus();
}

// null when the token works; a token without calls.read still opens the console (its other
// pages may be allowed), an unknown one does not.
async function check() {
  try {
    await get("/v1/live/calls");
    return null;
  } catch (err) {
    if (err instanceof ApiError && err.status === 403) return null;
    return err instanceof ApiError ? err.describe() : String(err);
  }
}

// The service's time zone (IVR_TIMEZONE): /healthz names it, without a token.
async function loadZone() {
  try {
    const response = await fetch("/healthz");
    if (response.ok) setZone((await response.json()).timezone || "UTC");
  } catch {
    // unreachable: the first API call says so; times stay in UTC meanwhile
  }
}

async function start() {
  await loadZone();
  views ??= [liveView({ feed }), callbacksView(), grammarView(), analyticsView(), webhooksView(), softphoneView({ feed })];
  clear(
    nav,
    views.map((v) => h("a", { href: `#${v.id}`, id: `tab-${v.id}`, dataset: { tab: v.id } }, v.title)),
    h("button", { type: "button", class: "link", id: "sign-out", onclick: () => (token.clear(), login()) }, "Change token"),
  );
  feed.start();
  route();
}

async function route() {
  if (!views || !token.get()) return;
  const view = views.find((v) => `#${v.id}` === location.hash) || views[0];
  if (current && current !== view) current.hide();
  current = view;
  for (const a of nav.querySelectorAll("a")) a.classList.toggle("active", a.dataset.tab === view.id);
  clear(main, view.el);
  document.title = `${view.title} · ivr console`;
  try {
    await view.show();
  } catch (err) {
    main.append(h("p", { class: "notice error" }, String(err)));
  }
  main.dataset.ready = view.id; // tests wait for this
}

feed.addEventListener("state", ({ detail: { state, detail } }) => {
  feedState.textContent = state === "open" ? "live" : detail ? `${state}: ${detail}` : state;
  feedState.className = `feed ${state}`;
});

window.addEventListener("hashchange", route);
window.addEventListener("ivr:unauthorized", () => {
  if (views && token.get()) {
    token.clear();
    login("The server refused the token: enter another one.");
  }
});

if (token.get()) start();
else login();

// Grammar: the served flow's YAML in an editor with line numbers, validated on demand (the
// problems marked on their lines), saved back; and a tester for an utterance, typed or spoken.

import { ApiError, get, has, post, put } from "./api.js";
import { base64, micError, openMic, toInt16, wav } from "./audio.js";
import { clear, fmtValue, h, humanize, notice } from "./dom.js";

const TEST_RATE = 16000;
const MAX_RECORD_S = 6;

function unavailable(what) {
  return h("p", { class: "notice warn unavailable" }, `${what} is not available on this server.`);
}

// Node names of a flow, for the tester's suggestions: the keys under `nodes:` (best effort,
// without a YAML parser; the server checks what is sent).
function nodeNames(text) {
  const names = [];
  let indent = null;
  let inNodes = false;
  for (const raw of text.split("\n")) {
    if (/^nodes:\s*(#.*)?$/.test(raw)) {
      inNodes = true;
      continue;
    }
    if (!inNodes || !raw.trim() || raw.trim().startsWith("#")) continue;
    const m = /^(\s*)([A-Za-z0-9_.-]+):/.exec(raw);
    const lead = /^\s*/.exec(raw)[0].length;
    if (lead === 0) break; // the next top-level key
    if (m && (indent === null || lead === indent)) {
      indent = lead;
      names.push(m[2]);
    }
  }
  return names;
}

function editor() {
  const gutter = h("pre", { class: "gutter", "aria-hidden": "true" });
  const marks = h("div", { class: "marks", "aria-hidden": "true" });
  const area = h("textarea", { id: "flow-text", spellcheck: false, wrap: "off", "aria-label": "flow YAML" });
  const box = h("div", { class: "editor" }, gutter, h("div", { class: "code" }, marks, area));
  let bad = new Map(); // line → messages

  function paint() {
    const count = area.value.split("\n").length;
    clear(gutter, Array.from({ length: count }, (_, i) => {
      const n = i + 1;
      return h("span", { class: bad.has(n) ? "bad" : "", title: bad.get(n)?.join("\n"), dataset: { line: n } }, `${n}\n`);
    }));
    clear(marks, [...bad.keys()].map((n) => h("div", { class: "mark", style: `top: calc(${n - 1} * var(--line))`, dataset: { line: n } })));
    sync();
  }

  function sync() {
    gutter.style.transform = `translateY(${-area.scrollTop}px)`;
    marks.style.transform = `translate(${-area.scrollLeft}px, ${-area.scrollTop}px)`;
  }

  area.addEventListener("scroll", sync);
  area.addEventListener("input", () => {
    if (bad.size) bad = new Map(); // the text changed: old line numbers mean nothing now
    paint();
  });

  return {
    el: box,
    area,
    get text() {
      return area.value;
    },
    set text(value) {
      area.value = value;
      bad = new Map();
      paint();
    },
    mark(problems) {
      bad = new Map();
      for (const p of problems) {
        if (!p.line) continue;
        bad.set(p.line, [...(bad.get(p.line) || []), p.message]);
      }
      paint();
    },
    goTo(line) {
      const lines = area.value.split("\n");
      const start = lines.slice(0, line - 1).reduce((n, l) => n + l.length + 1, 0);
      area.focus();
      area.setSelectionRange(start, start + (lines[line - 1] || "").length);
      const lineHeight = parseFloat(getComputedStyle(area).lineHeight) || 20;
      area.scrollTop = Math.max(0, (line - 3) * lineHeight);
      sync();
    },
  };
}

export function grammarView() {
  const ed = editor();
  const flowName = h("select", { id: "flow-name", "aria-label": "flow" }, h("option", { value: "hotline" }, "hotline"));
  const version = h("span", { class: "tag", id: "flow-version" });
  const status = h("div", { class: "status", id: "flow-status", role: "status" });
  const problems = h("ul", { class: "problems", id: "flow-problems" });
  const nodes = h("datalist", { id: "flow-nodes" });
  const flowPanel = h("section", { class: "panel" });
  const testPanel = h("section", { class: "panel tester" });
  let loadedText = "";
  let mounted = false;

  const el = h("div", { class: "view grammar" }, h("div", { class: "columns wide-left" }, flowPanel, testPanel));

  // --- the flow ----------------------------------------------------------------------------

  async function mountFlow() {
    const [canGet, canPut, canValidate, canList] = await Promise.all([
      has("GET", "/v1/flows/{name}"),
      has("PUT", "/v1/flows/{name}"),
      has("POST", "/v1/grammar/validate"),
      has("GET", "/v1/flows"),
    ]);
    if (!canGet) {
      clear(flowPanel, h("h2", {}, "Flow"), unavailable("Editing flows (GET /v1/flows/{name})"));
      return;
    }
    const validate = h("button", { type: "button", id: "flow-validate", disabled: !canValidate, onclick: runValidate }, "Validate");
    const save = h("button", { type: "button", id: "flow-save", class: "primary", disabled: !canPut, onclick: runSave }, "Save");
    clear(
      flowPanel,
      h("h2", {}, "Flow ", flowName, " ", version),
      h("div", { class: "row" },
        h("button", { type: "button", onclick: () => loadFlow() }, "Reload"),
        validate,
        save,
        canValidate ? null : h("small", { class: "muted" }, "validation is not available on this server"),
      ),
      status,
      ed.el,
      problems,
    );
    flowName.onchange = () => loadFlow();
    if (canList) {
      try {
        const list = await get("/v1/flows");
        const names = (list.items || []).map((f) => f.name);
        if (names.length) clear(flowName, names.map((n) => h("option", { value: n, selected: n === "hotline" }, n)));
      } catch {
        // the list needs the same scope as the flow itself: loadFlow() reports it
      }
    }
    await loadFlow();
  }

  async function loadFlow() {
    try {
      const flow = await get(`/v1/flows/${encodeURIComponent(flowName.value)}`);
      ed.text = loadedText = flow.text;
      version.textContent = `version ${flow.version}`;
      clear(problems);
      clear(nodes, nodeNames(flow.text).map((n) => h("option", { value: n })));
      notice(status, "");
    } catch (err) {
      notice(status, `Cannot load the flow: ${err instanceof ApiError ? err.describe() : err}`, "error");
    }
  }

  function showProblems(list, okText) {
    ed.mark(list);
    clear(
      problems,
      list.map((p) =>
        h(
          "li",
          { class: "problem", dataset: { line: p.line || "" } },
          p.line ? h("a", { href: "#", onclick: (e) => (e.preventDefault(), ed.goTo(p.line)) }, `line ${p.line}`) : null,
          p.where ? h("code", {}, p.where) : null,
          h("span", {}, p.message),
        ),
      ),
    );
    if (!list.length && okText) notice(status, okText, "ok");
  }

  async function runValidate() {
    try {
      const result = await post("/v1/grammar/validate", { text: ed.text });
      const list = result.problems || [];
      showProblems(list, "No problems found.");
      if (list.length) notice(status, `${list.length} problem${list.length > 1 ? "s" : ""}.`, "error");
      const first = list.find((p) => p.line);
      if (first) ed.goTo(first.line);
    } catch (err) {
      notice(status, `Validation failed: ${err instanceof ApiError ? err.describe() : err}`, "error");
    }
  }

  async function runSave() {
    if (ed.text === loadedText) return notice(status, "Nothing changed.");
    // A saved flow is what the next call hears: ask first (an edit may be half done).
    if (!window.confirm(`Save the ${flowName.value} flow? New calls get it at once.`)) {
      return notice(status, "Not saved: the save was cancelled.", "info");
    }
    try {
      const saved = await put(`/v1/flows/${encodeURIComponent(flowName.value)}`, { text: ed.text });
      loadedText = ed.text;
      version.textContent = `version ${saved.version}`;
      showProblems([]);
      notice(status, `Saved: new calls get version ${saved.version}.`, "ok");
    } catch (err) {
      if (err.status === 422 && err.fields.length) {
        // "…: line 12: …" in a message places it; the others are listed without a line
        showProblems(err.fields.map((f) => ({ line: Number(/\bline (\d+)/.exec(f.message)?.[1]) || null, message: f.message })));
        notice(status, `Not saved: ${err.message}`, "error");
      } else {
        notice(status, `Not saved: ${err instanceof ApiError ? err.describe() : err}`, "error");
      }
    }
  }

  // --- the tester --------------------------------------------------------------------------

  async function mountTester() {
    if (!(await has("POST", "/v1/grammar/test"))) {
      clear(testPanel, h("h2", {}, "Test an utterance"), unavailable("The grammar tester (POST /v1/grammar/test)"));
      return;
    }
    const node = h("input", { id: "test-node", list: "flow-nodes", placeholder: "node (optional)", "aria-label": "node" });
    const utterance = h("input", { id: "test-text", placeholder: "what the caller says", "aria-label": "utterance" });
    const record = h("button", { type: "button", id: "test-record" }, "Record");
    const result = h("div", { id: "test-result" });
    const testStatus = h("div", { class: "status" });
    let recording = null;

    async function run(body) {
      if (node.value.trim()) body.node = node.value.trim();
      notice(testStatus, "Testing…");
      try {
        show(await post("/v1/grammar/test", body));
        notice(testStatus, "");
      } catch (err) {
        clear(result);
        notice(testStatus, err instanceof ApiError ? err.describe() : String(err), "error");
      }
    }

    function show(r) {
      const order = ["intent", "score", "phrase", "text", "confidence", "runner_up", "reason"];
      const keys = [...order.filter((k) => k in r), ...Object.keys(r).filter((k) => !order.includes(k))];
      clear(
        result,
        h("div", { class: `verdict ${r.intent ? "hit" : "miss"}` }, r.intent ? r.intent : "no match"),
        h("dl", { class: "facts" }, keys.map((k) => [h("dt", {}, humanize(k)), h("dd", { dataset: { field: k } }, runnerUp(k, r[k]))])),
      );
    }

    function runnerUp(key, value) {
      if (key !== "runner_up" || !value || typeof value !== "object") return fmtValue(value);
      const parts = [value.intent, value.phrase && `“${value.phrase}”`, value.score !== undefined && fmtValue(value.score)];
      return parts.filter(Boolean).join(" · ");
    }

    async function toggleRecord() {
      if (recording) return recording.finish();
      const chunks = [];
      const context = new AudioContext();
      let stopMic;
      try {
        await context.resume();
        stopMic = await openMic(context, TEST_RATE, (s) => chunks.push(toInt16(s)));
      } catch (err) {
        context.close();
        return notice(testStatus, micError(err), "error");
      }
      clear(result); // what is shown next is this recording's
      record.textContent = "Stop";
      record.classList.add("recording");
      notice(testStatus, `Recording… (up to ${MAX_RECORD_S} s)`);
      const limit = setTimeout(() => recording?.finish(), MAX_RECORD_S * 1000);
      recording = {
        finish: async () => {
          clearTimeout(limit);
          recording = null;
          stopMic();
          context.close();
          record.textContent = "Record";
          record.classList.remove("recording");
          const pcm = new Int16Array(chunks.reduce((n, c) => n + c.length, 0));
          chunks.reduce((at, c) => (pcm.set(c, at), at + c.length), 0);
          await run({ audio_wav_base64: base64(wav(pcm, TEST_RATE)) });
        },
      };
    }

    record.onclick = toggleRecord;
    clear(
      testPanel,
      h("h2", {}, "Test an utterance"),
      nodes,
      h(
        "form",
        { class: "stack", onsubmit: (e) => (e.preventDefault(), utterance.value.trim() && run({ text: utterance.value.trim() })) },
        node,
        h("div", { class: "row" }, utterance, h("button", { type: "submit", id: "test-run" }, "Test"), record),
      ),
      testStatus,
      result,
    );
  }

  return {
    id: "grammar",
    title: "Grammar",
    el,
    async show() {
      if (mounted) return;
      mounted = true;
      await Promise.all([mountFlow(), mountTester()]);
    },
    hide() {},
  };
}

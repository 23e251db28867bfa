// The code browser's page: plain JavaScript over the JSON API (docs/serve.md).
"use strict";

const $ = (id) => document.getElementById(id);
let info = null;
let codePage = 0;
let lastRun = null; // the last /api/run answer (tokens and codes)

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

function status(text, isError) {
  const s = $("status");
  s.textContent = text || "";
  s.className = isError ? "error" : "";
}

async function api(path, params, body) {
  let url = "/api/" + path;
  if (params) url += "?" + new URLSearchParams(params).toString();
  const opts = body === undefined ? {} : { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  const res = await fetch(url, opts);
  const j = await res.json();
  if (!res.ok) throw new Error(j.error || res.statusText);
  return j;
}

async function guarded(fn) {
  status("working...");
  try {
    await fn();
    status("");
  } catch (e) {
    status(e.message, true);
  }
}

const pct = (x) => (100 * x).toFixed(1) + "%";

function showTab(name) {
  for (const b of document.querySelectorAll("nav button")) b.classList.toggle("active", b.dataset.tab === name);
  for (const s of document.querySelectorAll(".tab")) s.classList.toggle("active", s.id === "tab-" + name);
}

// Opens a code in the browser tab; `allSlots` counts it in all k slots, as
// search and topic codes do (so the examples they counted show).
function openCode(member, code, allSlots) {
  $("code-site").value = member;
  $("code-code").value = code;
  if (allSlots) {
    const site = info.sites.find((s) => s.members.includes(member));
    if (site) $("code-topk").value = site.k;
  }
  $("code-minacts").value = 0;
  codePage = 0;
  showTab("browser");
  guarded(loadCode);
}

function codeLink(member, code) {
  return el("a", { href: "#", class: "code-link", onclick: (e) => { e.preventDefault(); openCode(member, code); } }, member + " #" + code);
}

async function loadCode() {
  const j = await api("code", {
    site: $("code-site").value, code: $("code-code").value, topk_slots: $("code-topk").value,
    min_acts: $("code-minacts").value, context: $("code-context").value, per_page: $("code-perpage").value, page: codePage,
  });
  $("code-code").value = j.code;
  $("code-header").textContent = `${j.member} code ${j.code} | fires on ${j.activations} tokens for top-k = ${j.topk_slots}`;
  $("code-summary").textContent = `density ${(100 * j.density).toPrecision(3)}% · ${j.documents} documents` +
    (j.code !== j.requested_code ? ` · advanced from code ${j.requested_code} (min. activations)` : "");
  const tt = $("code-toptokens");
  tt.replaceChildren(el("h3", {}, "Fires most on"));
  const tbl = el("table", { class: "small" });
  for (const t of j.top_tokens) tbl.append(el("tr", {}, el("td", { class: "tok" }, t.text), el("td", {}, t.count)));
  tt.append(tbl);
  const h = $("code-hist");
  h.replaceChildren();
  if (j.scores) {
    h.append(el("h3", {}, "Scores"));
    const most = Math.max(...j.scores.counts, 1);
    const w = (j.scores.max - j.scores.min) / 10;
    j.scores.counts.forEach((n, b) => {
      h.append(el("div", { class: "bar-row" }, el("span", { class: "bar-label" }, (j.scores.min + w * b).toFixed(2)),
        el("span", { class: "bar", style: `width:${(120 * n) / most}px` }), el("span", {}, n)));
    });
  }
  const wr = $("code-writes");
  wr.replaceChildren(el("h3", {}, "What it writes"));
  const wj = j.writes || {};
  if (wj.promoted) {
    wr.append(el("div", {}, "promotes: ", ...wj.promoted.map((t) => el("span", { class: "tok up" }, JSON.stringify(t.text), " ", t.logit.toFixed(2)))));
    wr.append(el("div", {}, "suppresses: ", ...wj.suppressed.map((t) => el("span", { class: "tok down" }, JSON.stringify(t.text), " ", t.logit.toFixed(2)))));
  }
  if (wj.not_available) wr.append(el("div", { class: "note" }, "not available: " + wj.not_available));
  if (wj.similar) wr.append(el("div", {}, "similar codes: ", ...wj.similar.map((s) => el("span", {}, codeLink(j.member, s.code), ` (${s.cosine.toFixed(2)}) `))));
  const ex = $("examples");
  ex.replaceChildren(el("h3", {}, `Examples (${j.documents} documents)`));
  for (const e of j.examples) {
    const line = el("div", { class: "example" }, el("span", { class: "doc" }, e.doc + ": "));
    for (const p of e.parts) line.append(p.fired ? el("mark", {}, p.text) : document.createTextNode(p.text));
    ex.append(line);
  }
  const pages = Math.max(1, Math.ceil(j.documents / j.per_page));
  $("code-page").textContent = ` page ${j.page + 1} of ${pages} `;
  $("code-prev").disabled = j.page === 0;
  $("code-next").disabled = j.page + 1 >= pages;
}

function matchRow(m, extra) {
  const tr = el("tr", { class: "clickable", onclick: () => openCode(m.member, m.code, true) },
    el("td", {}, m.member), el("td", {}, m.code), el("td", {}, pct(m.precision)), el("td", {}, pct(m.recall)), el("td", {}, m.activations));
  if (extra) tr.append(extra);
  return tr;
}

async function saveDemo(entry) {
  const description = prompt("Description of the code:", entry.description || "");
  if (description === null) return;
  await api("demo_codes", null, { ...entry, description });
  status("saved to demo_codes.json");
}

async function runSearch() {
  const regex = $("search-regex").value;
  const j = await api("search", { regex, min_precision: $("search-precision").value, sort: $("search-sort").value, parity: $("search-parity").value });
  $("search-summary").textContent = `Found ${j.matches} matches; ${j.total} codes`;
  const body = $("search-results").querySelector("tbody");
  body.replaceChildren();
  for (const m of j.codes) {
    const save = el("td", { class: "writes" }, el("button", { type: "button", onclick: (e) => { e.stopPropagation(); guarded(() => saveDemo({ site: m.member, code: m.code, regex, precision: m.precision, recall: m.recall })); } }, "save"));
    body.append(matchRow(m, save));
  }
}

async function loadTopics(next) {
  const params = { doc: $("topics-doc").value, recall: $("topics-recall").value, max_chars: $("topics-chars").value, sort: $("topics-sort").value };
  if (next) params.next = 1;
  const j = await api("topics", params);
  $("topics-doc").value = j.doc;
  $("topics-text").textContent = `document ${j.doc} of ${j.documents} (${j.tokens} tokens)\n\n` + j.text;
  const body = $("topics-results").querySelector("tbody");
  body.replaceChildren(...j.codes.map((m) => matchRow(m)));
}

async function loadDemos() {
  const j = await api("demo_codes");
  const body = $("demo-results").querySelector("tbody");
  body.replaceChildren();
  for (const d of j.codes || []) {
    const del = el("td", { class: "writes" }, el("button", { type: "button", onclick: (e) => { e.stopPropagation(); guarded(async () => { await api("demo_codes", null, { site: d.member, code: d.code, remove: true }); await loadDemos(); }); } }, "remove"));
    body.append(el("tr", { class: "clickable", onclick: () => openCode(d.member, d.code) }, el("td", {}, d.member), el("td", {}, d.code),
      el("td", {}, d.activations ?? ""), el("td", {}, d.description || ""), el("td", { class: "tok" }, d.regex || ""), del));
  }
}

function nextTable(id, list) {
  const body = $(id).querySelector("tbody");
  body.replaceChildren(...list.map((t) => el("tr", {}, el("td", { class: "tok" }, JSON.stringify(t.text)), el("td", {}, t.p.toPrecision(4)))));
}

// Tokens with their codes on hover; a click on a code opens it.
let pinned = null; // the live token whose codes stay shown
function showTokens(j, codes) {
  pinned = null;
  const box = $("live-tokens");
  box.replaceChildren();
  j.tokens.forEach((t, pos) => {
    const span = el("span", { class: "token", "data-pos": pos }, t.text === "" ? "\u2205" : t.text);
    // Hover shows a token's codes; a click pins it (so the pointer can reach the panel), a second click unpins.
    span.addEventListener("mouseenter", () => { if (pinned === null) showCodesAt(pos, codes, t); });
    span.addEventListener("click", () => {
      pinned = pinned === pos ? null : pos;
      for (const o of box.children) o.classList.toggle("pinned", Number(o.dataset.pos) === pinned);
      showCodesAt(pos, codes, t);
    });
    box.append(span);
  });
}

function showCodesAt(pos, codes, t) {
  const h = $("live-hover");
  h.replaceChildren(el("div", {}, `position ${pos}: token ${t.id} ${JSON.stringify(t.text)}`));
  for (const [site, perPos] of Object.entries(codes)) {
    const row = el("div", {}, el("span", { class: "site" }, site + ": "));
    perPos[pos].forEach((memberCodes, g) => {
      const member = perPos[pos].length > 1 ? `${site}[${g}]` : site;
      if (perPos[pos].length > 1) row.append(`[${g}] `);
      for (const c of memberCodes) {
        if (c < 0) continue;
        // "ablate": adds this code at this position to the ablations.
        const add = el("button", { type: "button", class: "mini", title: `ablate ${member}:${c} at position ${pos}`,
          onclick: () => { const a = $("live-ablate"); a.value = (a.value.trim() ? a.value.trim() + "; " : "") + `${member}:${c}@${pos}`; } }, "\u2298");
        row.append(codeLink(member, c), add, " ");
      }
    });
    h.append(row);
  }
}

function specs(id) {
  return $(id).value.split(";").map((s) => s.trim()).filter((s) => s);
}

async function runPrompt() {
  const j = await api("run", null, { prompt: $("live-prompt").value });
  lastRun = j;
  showTokens(j, j.codes);
  nextTable("live-next", j.next);
  $("live-next-intervened").querySelector("tbody").replaceChildren();
  $("live-jsd").textContent = "";
}

async function intervene() {
  const j = await api("intervene", null, { prompt: $("live-prompt").value, ablate: specs("live-ablate"), force: specs("live-force"), ablate_mode: $("live-mode").value });
  showTokens(j, j.codes);
  nextTable("live-next", j.clean_next);
  nextTable("live-next-intervened", j.next);
  $("live-jsd").textContent = `Jensen-Shannon divergence at the last position: ${j.jsd.toPrecision(4)} bits`;
  $("live-warnings").textContent = (j.warnings || []).join("\n");
}

async function generate() {
  const j = await api("generate", null, { prompt: $("live-prompt").value, ablate: specs("live-ablate"), force: specs("live-force"),
    ablate_mode: $("live-mode").value, max_tokens: Number($("gen-n").value), temperature: Number($("gen-temp").value),
    top_k: Number($("gen-topk").value), top_p: Number($("gen-topp").value), seed: Number($("gen-seed").value) });
  const text = (ts) => ts.map((t) => t.text).join("");
  const out = $("live-generated");
  out.replaceChildren(el("div", {}, el("b", {}, "continuation: "), el("span", { class: "tok", id: "gen-with" }, text(j.continuation))));
  if (j.clean_continuation) out.append(el("div", {}, el("b", {}, "without interventions: "), el("span", { class: "tok" }, text(j.clean_continuation))));
  const why = { context: "the model's context is full", time: "the time limit of a request was reached" }[j.stopped];
  if (why) out.append(el("div", { class: "note", id: "gen-stopped" }, "stopped early: " + why));
}

function showMetrics() {
  const m = info.metrics || {};
  const body = $("metrics-table").querySelector("tbody");
  body.replaceChildren();
  for (const [k, v] of Object.entries(m)) if (typeof v !== "object") body.append(el("tr", {}, el("th", {}, k), el("td", {}, v)));
  const dead = m.dead_code_fraction || {};
  $("sites-table").querySelector("tbody").replaceChildren(...info.sites.map((s) => el("tr", {}, el("td", {}, s.name), el("td", {}, s.groups),
    el("td", {}, s.codes), el("td", {}, s.k), el("td", {}, s.dead_codes), el("td", {}, dead[s.name] !== undefined ? pct(dead[s.name]) : ""))));
}

// One SVG line plot per training-log series (loss, accuracy, dead codes, MSE, learning rate).
function plot(title, points) {
  const W = 320, H = 160, P = 48;
  const xs = points.map((p) => p[0]), ys = points.map((p) => p[1]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
  const sx = (x) => P + ((x - x0) / (x1 - x0 || 1)) * (W - P - 8);
  const sy = (y) => H - 20 - ((y - y0) / (y1 - y0 || 1)) * (H - 30);
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("width", W);
  svg.setAttribute("height", H);
  svg.setAttribute("class", "plot");
  const path = document.createElementNS(ns, "polyline");
  path.setAttribute("points", points.map((p) => `${sx(p[0])},${sy(p[1])}`).join(" "));
  svg.append(path);
  const label = (x, y, text, anchor) => {
    const t = document.createElementNS(ns, "text");
    t.setAttribute("x", x);
    t.setAttribute("y", y);
    if (anchor) t.setAttribute("text-anchor", anchor);
    t.textContent = text;
    svg.append(t);
  };
  label(P, 12, title);
  label(P - 2, sy(y1) + 4, y1.toPrecision(3), "end");
  label(P - 2, sy(y0), y0.toPrecision(3), "end");
  label(P, H - 4, "step " + x0);
  label(W - 8, H - 4, String(x1), "end");
  return el("div", { class: "plot-box" }, svg);
}

async function showCurves() {
  const j = await api("curves");
  const box = $("curves");
  box.replaceChildren(el("h3", {}, "Training curves (" + j.log + ")"));
  const wanted = /^(eval_)?(loss|accuracy|transition_accuracy|dead_code_fraction|MSE|learning_rate)(\/|$)/;
  for (const [key, points] of Object.entries(j.series)) if (wanted.test(key) && points.length > 1) box.append(plot(key, points));
}

async function init() {
  info = await api("info");
  $("cache-name").textContent = `${info.cache}: ${info.tokens} tokens, ${info.documents} documents`;
  const sel = $("code-site");
  for (const s of info.sites) for (const m of s.members) sel.append(el("option", { value: m }, m));
  if (info.read_only) document.body.classList.add("read-only");
  if (!info.model) {
    $("live-none").hidden = false;
    for (const f of ["live-form", "intervene-form", "generate-form"]) $(f).hidden = true;
  }
  if (info.tokfsm_state_digits > 0) $("live-prompt").placeholder = "digits, e.g. 0123";
  showMetrics();
  if (info.curves) showCurves().catch((e) => status(e.message, true));
  for (const b of document.querySelectorAll("nav button")) b.addEventListener("click", () => { showTab(b.dataset.tab); if (b.dataset.tab === "demos") guarded(loadDemos); });
  $("code-form").addEventListener("submit", (e) => { e.preventDefault(); codePage = 0; guarded(loadCode); });
  $("code-prev").addEventListener("click", () => { codePage = Math.max(0, codePage - 1); guarded(loadCode); });
  $("code-next").addEventListener("click", () => { codePage += 1; guarded(loadCode); });
  $("code-save").addEventListener("click", () => guarded(() => saveDemo({ site: $("code-site").value, code: Number($("code-code").value) })));
  $("search-form").addEventListener("submit", (e) => { e.preventDefault(); guarded(runSearch); });
  $("topics-form").addEventListener("submit", (e) => { e.preventDefault(); guarded(() => loadTopics(false)); });
  $("topics-next").addEventListener("click", () => guarded(() => loadTopics(true)));
  $("live-form").addEventListener("submit", (e) => { e.preventDefault(); guarded(runPrompt); });
  $("intervene-form").addEventListener("submit", (e) => { e.preventDefault(); guarded(intervene); });
  $("generate-form").addEventListener("submit", (e) => { e.preventDefault(); guarded(generate); });
  if (info.sites.length) await loadCode();
}

guarded(init);

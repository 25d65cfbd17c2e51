// The glyph atlas: the registry, the 2D map of the scene index, a glyph's nearest scenes and
// a streamed expansion. Plain JavaScript, everything from this server (no CDN, no build step).
"use strict";

const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
  "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#ad494a", "#637939", "#8c6d31", "#843c39", "#7b4173"];
const state = { glyphs: [], colour: {}, selected: null, key: sessionStorage.getItem("glyph-key") || "" };
const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const ns = ["svg", "circle", "path", "text", "g", "line"].includes(tag) ? "http://www.w3.org/2000/svg" : null;
  const node = ns ? document.createElementNS(ns, tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "onclick" || k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

async function api(path, body) {
  const headers = { "Content-Type": "application/json" };
  if (state.key) headers.Authorization = "Bearer " + state.key;
  const res = await fetch(path, body === undefined ? { headers } :
    { method: "POST", headers, body: JSON.stringify(body) });
  if (res.status === 401) { $("key-form").hidden = false; throw new Error("this server needs an API key"); }
  if (!res.ok) {
    let msg = res.statusText;
    try { msg = (await res.json()).error.message; } catch (e) { /* not JSON */ }
    throw new Error(msg);
  }
  return res;
}

async function loadAll() {
  try {
    const models = await (await api("/v1/models")).json();
    const m = models.data[0];
    $("model-info").textContent = `model ${m.id} · base ${m.glyph.base} · ` +
      `${Object.keys(m.glyph.triggers).length} triggers`;
    const reg = await (await api("/v1/glyphs")).json();
    state.glyphs = reg.data;
    state.glyphs.forEach((g, i) => { state.colour[g.symbol] = PALETTE[i % PALETTE.length]; });
    renderRegistry();
    for (const r of reg.registers) {
      $("neighbor-register").append(el("option", { value: r }, r));
      $("expand-register").append(el("option", { value: r }, r));
    }
    renderMap(await (await api("/v1/atlas/map")).json());
  } catch (e) {
    $("model-info").textContent = "error: " + e.message;
    $("model-info").className = "error";
  }
}

function renderRegistry() {
  const body = $("registry").querySelector("tbody");
  body.replaceChildren();
  for (const g of state.glyphs) {
    body.append(el("tr", { "data-symbol": g.symbol, onclick: () => select(g.symbol) },
      el("td", { class: "sym" }, el("span", { class: "swatch", style: `background:${state.colour[g.symbol]}` }), g.symbol),
      el("td", {}, g.name), el("td", {}, g.meaning), el("td", {}, el("code", {}, g.trigger))));
  }
}

function renderMap(data) {
  const box = $("map");
  if (!data.available) { box.textContent = "This run has no scene index (glyph index build RUN)."; return; }
  const W = 640, H = 520, pad = 24;
  const pts = data.scenes.concat(data.glyphs);
  const xs = pts.map((p) => p.x), ys = pts.map((p) => p.y);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const sx = (x) => pad + (x - x0) / ((x1 - x0) || 1) * (W - 2 * pad);
  const sy = (y) => H - pad - (y - y0) / ((y1 - y0) || 1) * (H - 2 * pad);
  const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "map of scenes and glyphs" });
  const tip = $("tooltip");
  for (const s of data.scenes) {
    const c = el("circle", { class: "scene", cx: sx(s.x), cy: sy(s.y), r: 3.2,
      fill: state.colour[s.glyph] || "#999", "data-scene": s.id });
    c.addEventListener("mouseenter", (ev) => {
      tip.textContent = `${s.id} · ${s.glyph} · ${s.register} · ${s.level} · ${s.lang}\n\n${s.text}`;
      tip.hidden = false; moveTip(ev);
    });
    c.addEventListener("mousemove", moveTip);
    c.addEventListener("mouseleave", () => { tip.hidden = true; });
    svg.append(c);
  }
  for (const g of data.glyphs) {
    const x = sx(g.x), y = sy(g.y), r = 9;
    const star = [];
    for (let i = 0; i < 10; i++) {
      const a = Math.PI / 2 + i * Math.PI / 5, rr = i % 2 ? r * 0.45 : r;
      star.push(`${x + rr * Math.cos(a)},${y - rr * Math.sin(a)}`);
    }
    svg.append(el("path", { class: "star", d: "M" + star.join("L") + "Z", fill: state.colour[g.symbol] || "#999",
      "data-symbol": g.symbol, onclick: () => select(g.symbol) }));
    svg.append(el("text", { x: x + 10, y: y - 8 }, `${g.symbol} ${g.name}`));
  }
  box.replaceChildren(svg);
}

function moveTip(ev) {
  const tip = $("tooltip");
  tip.style.left = Math.min(ev.clientX + 14, window.innerWidth - 380) + "px";
  tip.style.top = (ev.clientY + 14) + "px";
}

function select(symbol) {
  const g = state.glyphs.find((x) => x.symbol === symbol);
  if (!g) return;
  state.selected = g;
  for (const tr of document.querySelectorAll("#registry tbody tr"))
    tr.classList.toggle("selected", tr.dataset.symbol === symbol);
  $("pick-hint").hidden = true;
  $("glyph-detail").hidden = false;
  $("detail-symbol").textContent = g.symbol;
  $("detail-name").textContent = g.name;
  $("detail-trigger").textContent = g.trigger;
  $("detail-meaning").textContent = g.meaning;
  $("expansion-text").textContent = "";
  $("expansion-meta").textContent = "";
  loadNeighbors();
}

async function loadNeighbors() {
  const g = state.selected, list = $("neighbors");
  if (!g) return;
  const reg = $("neighbor-register").value;
  list.replaceChildren(el("li", { class: "meta" }, "searching…"));
  try {
    const q = new URLSearchParams({ k: "5" });
    if (reg) q.set("register", reg);
    const res = await (await api(`/v1/glyphs/${encodeURIComponent(g.symbol)}/neighbors?${q}`)).json();
    list.replaceChildren(...res.data.map((h) => el("li", { "data-scene": h.scene_id },
      el("div", { class: "meta" }, `${h.scene_id} · ${h.glyphs} · ${h.register} · ${h.level} · score ${h.score.toFixed(3)}`),
      el("div", {}, h.text.length > 160 ? h.text.slice(0, 160) + "…" : h.text))));
  } catch (e) {
    list.replaceChildren(el("li", { class: "error" }, e.message));
  }
}

async function expand() {
  const g = state.selected;
  if (!g) return;
  const out = $("expansion-text"), meta = $("expansion-meta"), button = $("expand-button");
  out.textContent = ""; meta.textContent = "generating…"; button.disabled = true;
  try {
    const res = await api("/v1/expand", { glyph: g.symbol, register: $("expand-register").value, stream: true });
    const reader = res.body.getReader(), decoder = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        const line = buf.slice(0, cut).trim(); buf = buf.slice(cut + 2);
        if (!line.startsWith("data: ") || line === "data: [DONE]") continue;
        const ev = JSON.parse(line.slice(6));
        if (ev.event === "start" && ev.expansion)
          meta.textContent = `${ev.expansion.glyph} → ${ev.expansion.register} · ${ev.expansion.level} · ` +
            `${ev.expansion.lang} · adapter ${ev.expansion.adapter}`;
        else if (ev.event === "delta") out.textContent += ev.text;
        else if (ev.event === "done") { out.textContent = ev.result.text; out.dataset.finished = "true"; }
        else if (ev.error) throw new Error(ev.error.message);
      }
    }
  } catch (e) {
    meta.textContent = e.message; meta.className = "error";
  } finally {
    button.disabled = false;
  }
}

$("neighbor-register").addEventListener("change", loadNeighbors);
$("expand-button").addEventListener("click", expand);
$("key-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  state.key = $("key-input").value;
  sessionStorage.setItem("glyph-key", state.key);
  $("key-form").hidden = true;
  loadAll();
});
loadAll();

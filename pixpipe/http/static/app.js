// pixpipe dashboard: plain JS, no build step. Talks only to the public API (/v1, /images,
// /metrics); live state comes from one Server-Sent Events stream (GET /v1/events).
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const images = new Map(); // key -> public state
let detailKey = null;

// ---- API key: from #key=… (what `pixpipe up` prints), else remembered, else typed in ----
function apiKey() {
  const fromHash = new URLSearchParams(location.hash.slice(1)).get("key");
  if (fromHash) {
    localStorage.setItem("pixpipe-key", fromHash);
    history.replaceState(null, "", location.pathname);
  }
  return localStorage.getItem("pixpipe-key") || "";
}

function authHeaders() {
  const key = $("#api-key").value.trim();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

const enc = (key) => key.split("/").map(encodeURIComponent).join("/");
const fmtBytes = (n) =>
  n >= 1048576 ? `${(n / 1048576).toFixed(1)} MB` : n >= 1024 ? `${Math.round(n / 1024)} kB` : `${n} B`;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (value !== undefined && value !== null) node.setAttribute(name, value);
  }
  node.append(...children);
  return node;
}

// ---- uploads: drag and drop, one XHR each (XHR reports upload progress, fetch does not) ----
function keyFor(file) {
  return file.name.replace(/[\\\x00-\x1f\x7f]/g, "_").replace(/^\.+/, "_") || "upload";
}

function upload(file) {
  const key = keyFor(file);
  const bar = el("progress", { max: "100", value: "0" });
  const status = el("span", { class: "status", text: "uploading" });
  const row = el("li", { "data-key": key }, el("span", { class: "name", text: key }), bar, status);
  $("#uploads").prepend(row);
  const xhr = new XMLHttpRequest();
  xhr.open("POST", `/v1/images?key=${encodeURIComponent(key)}`);
  for (const [name, value] of Object.entries(authHeaders())) xhr.setRequestHeader(name, value);
  xhr.upload.onprogress = (e) => {
    if (e.lengthComputable) bar.value = Math.round((100 * e.loaded) / e.total);
  };
  xhr.onload = () => {
    let body = {};
    try { body = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
    if (xhr.status === 201) {
      bar.value = 100;
      status.textContent = "uploaded";
      row.classList.add("ok");
      if (!images.has(key)) upsert({ key, state: "pending", variants: {} });
      refreshOne(key);
    } else {
      status.textContent = `${xhr.status}: ${body.detail || xhr.statusText}`;
      row.classList.add("bad");
    }
  };
  xhr.onerror = () => { status.textContent = "network error"; row.classList.add("bad"); };
  xhr.send(file);
}

function setupDrop() {
  const drop = $("#drop");
  for (const type of ["dragenter", "dragover"]) {
    drop.addEventListener(type, (e) => { e.preventDefault(); drop.classList.add("over"); });
  }
  for (const type of ["dragleave", "drop"]) {
    drop.addEventListener(type, () => drop.classList.remove("over"));
  }
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    [...e.dataTransfer.files].forEach(upload);
  });
  $("#files").addEventListener("change", (e) => {
    [...e.target.files].forEach(upload);
    e.target.value = "";
  });
}

// ---- gallery ----
function thumbUrl(state) {
  const v = state.variants || {};
  const pick = v["sq-s"] || v.s || v.m || Object.values(v).sort((a, b) => a.bytes - b.bytes)[0];
  return pick ? pick.url : null;
}

function card(state) {
  const url = thumbUrl(state);
  const picture = url
    ? el("img", { src: url, alt: state.key, loading: "lazy" })
    : el("div", { class: "placeholder", style: state.dominant ? `background:${state.dominant}` : null });
  return el(
    "figure",
    { class: "card", "data-key": state.key, "data-state": state.state, tabindex: "0",
      onclick: () => showDetail(state.key), onkeydown: (e) => e.key === "Enter" && showDetail(state.key) },
    picture,
    el("figcaption", {}, el("span", { class: "name", text: state.key }),
      el("span", { class: `state ${state.state}`, text: state.state })),
  );
}

async function refreshOne(key) {
  const res = await fetch(`/v1/images/${enc(key)}`);
  if (res.ok) upsert(await res.json());
}

function upsert(state) {
  const old = images.get(state.key);
  // Server documents carry `updated`: never let an older one (a slow fetch) replace a newer.
  if (old && old.updated && (!state.updated || state.updated < old.updated)) return;
  images.set(state.key, state);
  const existing = $(`#gallery [data-key="${CSS.escape(state.key)}"]`);
  const fresh = card(state);
  if (existing) existing.replaceWith(fresh);
  else $("#gallery").prepend(fresh);
  $("#empty").hidden = images.size > 0;
  if (detailKey === state.key) renderDetail(state);
}

async function loadGallery() {
  const res = await fetch("/v1/images?limit=60", { headers: authHeaders() });
  if (!res.ok) return;
  const list = await res.json();
  for (const state of list.reverse()) upsert(state);
}

// ---- detail: every variant side by side ----
async function showDetail(key) {
  detailKey = key;
  const res = await fetch(`/v1/images/${enc(key)}`);
  if (res.ok) renderDetail(await res.json());
  $("#detail").hidden = false;
  $("#detail").scrollIntoView({ behavior: "smooth", block: "nearest" });
}

function renderDetail(state) {
  $("#detail-key").textContent = state.key;
  const badge = $("#detail-state");
  badge.textContent = state.state;
  badge.className = `state ${state.state}`;
  const err = $("#detail-error");
  err.hidden = !state.error;
  if (state.error) err.textContent = `${state.error.kind}: ${state.error.message}`;
  const box = $("#variants");
  box.replaceChildren();
  const variants = Object.entries(state.variants || {}).sort((a, b) => b[1].bytes - a[1].bytes);
  for (const [name, v] of variants) {
    box.append(el("figure", { class: "variant", "data-variant": name },
      el("a", { href: v.url, target: "_blank" }, el("img", { src: v.url, alt: name })),
      el("figcaption", {}, el("b", { text: name }),
        el("span", { text: ` ${v.width}×${v.height} · ${fmtBytes(v.bytes)} · ${v.format}` }))));
  }
  if (!variants.length) {
    box.append(el("p", { class: "muted", text: state.state === "failed" ? "No variants." : "Variants on the way…" }));
  }
}

// ---- failures, with retry ----
async function loadFailures() {
  const res = await fetch("/v1/failures", { headers: authHeaders() });
  if (!res.ok) return;
  const rows = (await res.json()).map((f) =>
    el("tr", { "data-key": f.key },
      el("td", { class: "name", text: f.key }), el("td", {}, el("span", { class: "kind", text: f.kind })),
      el("td", { class: "message", text: f.message }), el("td", { text: f.attempts ?? "" }),
      el("td", {}, el("button", { class: "retry", onclick: (e) => retry(f.key, e.target) }, "Retry"))));
  $("#failures tbody").replaceChildren(...rows);
  $("#no-failures").hidden = rows.length > 0;
  $("#failures").hidden = rows.length === 0;
}

async function retry(key, button) {
  button.disabled = true;
  button.textContent = "retrying…";
  const res = await fetch(`/v1/failures/${enc(key)}/retry`, { method: "POST", headers: authHeaders() });
  if (!res.ok) {
    const body = await res.json().catch(() => ({}));
    button.textContent = `${res.status}: ${body.detail || "failed"}`;
    button.disabled = false;
    return;
  }
  button.closest("tr").classList.add("retrying");
}

let failuresTimer = null;
function refreshFailuresSoon() {
  clearTimeout(failuresTimer);
  failuresTimer = setTimeout(loadFailures, 150);
}

// ---- live state: one SSE stream for every image ----
function connectLive() {
  const source = new EventSource("/v1/events");
  source.onopen = () => $("#live").classList.add("on");
  source.onerror = () => $("#live").classList.remove("on"); // EventSource reconnects by itself
  source.addEventListener("state", (e) => {
    const state = JSON.parse(e.data);
    const before = images.get(state.key);
    upsert(state);
    if (state.state === "failed" || (before && before.state === "failed")) refreshFailuresSoon();
  });
}

// ---- throughput and latency, from the Prometheus text at /metrics ----
function parseMetrics(text) {
  const out = {};
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = line.match(/^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)/);
    if (m) out[m[1] + (m[2] || "")] = Number(m[3]);
  }
  return out;
}

const sum = (m, prefix) =>
  Object.entries(m).filter(([k]) => k === prefix || k.startsWith(prefix + "{")).reduce((a, [, v]) => a + v, 0);

function quantile(m, q) {
  const buckets = Object.entries(m)
    .filter(([k]) => k.startsWith("pixpipe_processing_seconds_bucket{"))
    .map(([k, v]) => [k.match(/le="([^"]+)"/)[1], v])
    .map(([le, v]) => [le === "+Inf" ? Infinity : Number(le), v])
    .sort((a, b) => a[0] - b[0]);
  const total = buckets.length ? buckets[buckets.length - 1][1] : 0;
  if (!total) return null;
  const hit = buckets.find(([, v]) => v >= q * total);
  return hit[0];
}

const rates = []; // images/min per poll (not `history`: that would hide window.history)
let last = null;
async function pollMetrics() {
  try {
    const res = await fetch("/metrics");
    const m = parseMetrics(await res.text());
    const now = { t: Date.now(), processed: sum(m, "pixpipe_images_processed_total"),
      secs: m.pixpipe_processing_seconds_sum || 0, count: m.pixpipe_processing_seconds_count || 0 };
    $("#m-processed").textContent = now.processed;
    $("#m-failed").textContent = sum(m, "pixpipe_images_failed_total");
    $("#m-pending").textContent = sum(m, "pixpipe_consumer_pending") + sum(m, "pixpipe_consumer_ack_pending");
    $("#m-hits").textContent = sum(m, "pixpipe_transform_cache_hits_total");
    const p95 = quantile(m, 0.95);
    $("#m-p95").textContent = p95 === null ? "–" : p95 === Infinity ? "> 120" : `≤ ${p95}`;
    if (last) {
      const minutes = (now.t - last.t) / 60000;
      const rate = (now.processed - last.processed) / minutes;
      rates.push(rate);
      if (rates.length > 60) rates.shift();
      $("#m-rate").textContent = rate.toFixed(rate < 10 ? 1 : 0);
      const n = now.count - last.count;
      if (n > 0) $("#m-latency").textContent = ((now.secs - last.secs) / n).toFixed(2);
      drawSpark();
    }
    last = now;
  } catch { /* the next poll will tell */ }
}

function drawSpark() {
  const canvas = $("#spark");
  const ctx = canvas.getContext("2d");
  const max = Math.max(1, ...rates);
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.strokeStyle = "#2f7de1";
  ctx.lineWidth = 2;
  ctx.beginPath();
  rates.forEach((v, i) => {
    const x = (i / 59) * canvas.width;
    const y = canvas.height - 4 - (v / max) * (canvas.height - 8);
    i ? ctx.lineTo(x, y) : ctx.moveTo(x, y);
  });
  ctx.stroke();
}

// ---- start ----
document.addEventListener("DOMContentLoaded", () => {
  const input = $("#api-key");
  input.value = apiKey();
  input.addEventListener("change", () => localStorage.setItem("pixpipe-key", input.value.trim()));
  $("#detail-close").addEventListener("click", () => { $("#detail").hidden = true; detailKey = null; });
  setupDrop();
  connectLive();
  loadGallery();
  loadFailures();
  pollMetrics();
  setInterval(pollMetrics, 2000);
});

// Uploads (drag and drop or the file picker, each a presigned upload with progress, by
// /static/upload.js), the gallery of recent originals, and the detail of one: every variant
// side by side with its versioned URL, and the `srcset` to copy.

import { $, apiKey, authHeaders, copyButton, el, enc, fmtBytes } from "./common.js";
import { upload } from "./upload.js";

const images = new Map(); // key -> public state
let detailKey = null;
let srcsetShown = null; // the key and version the srcset box was filled for

// ---- uploads ----
function keyFor(file) {
  return file.name.replace(/[\\\x00-\x1f\x7f]/g, "_").replace(/^\.+/, "_") || "upload";
}

// upload.js guesses the type from the file, else its extension; Illustrator files have none
// it knows of, and an .ai is a PDF inside.
const EXTRA_TYPES = { ai: "application/illustrator" };

function contentType(file) {
  if (file.type) return undefined;
  return EXTRA_TYPES[(file.name.split(".").pop() || "").toLowerCase()];
}

async function send(file) {
  const key = keyFor(file);
  const bar = el("progress", { max: "100", value: "0" });
  const status = el("span", { class: "status", text: "uploading" });
  const row = el("li", { "data-key": key }, el("span", { class: "name", text: key, title: key }),
    bar, status);
  $("#uploads").prepend(row);
  try {
    await upload(file, {
      key, apiKey: apiKey(), contentType: contentType(file),
      onProgress: (sent, total) => { bar.value = total ? Math.round((100 * sent) / total) : 0; },
    });
  } catch (error) {
    status.textContent = error.status ? `${error.status}: ${error.detail}` : String(error.message || error);
    status.title = status.textContent;
    row.classList.add("bad");
    return;
  }
  bar.value = 100;
  status.textContent = "uploaded";
  row.classList.add("ok");
  if (!images.has(key)) upsert({ key, state: "pending", variants: {} });
  refreshOne(key);
}

export function setupUploads() {
  const drop = $("#drop");
  for (const type of ["dragenter", "dragover"]) {
    drop.addEventListener(type, (e) => { e.preventDefault(); drop.classList.add("over"); });
  }
  for (const type of ["dragleave", "drop"]) {
    drop.addEventListener(type, () => drop.classList.remove("over"));
  }
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    [...e.dataTransfer.files].forEach(send);
  });
  $("#files").addEventListener("change", (e) => {
    [...e.target.files].forEach(send);
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
    el("figcaption", {}, el("span", { class: "name", text: state.key, title: state.key }),
      el("span", { class: `state ${state.state}`, text: state.state })),
  );
}

async function refreshOne(key) {
  const res = await fetch(`/v1/images/${enc(key)}`);
  if (res.ok) upsert(await res.json());
}

/** A state document, from a fetch or the live stream: the card and the detail follow it. */
export function upsert(state) {
  const old = images.get(state.key);
  // Server documents carry `updated`: never let an older one (a slow fetch) replace a newer.
  if (old && old.updated && (!state.updated || state.updated < old.updated)) return old;
  images.set(state.key, state);
  const existing = $(`#gallery [data-key="${CSS.escape(state.key)}"]`);
  const fresh = card(state);
  if (existing) existing.replaceWith(fresh);
  else $("#gallery").prepend(fresh);
  $("#empty").hidden = images.size > 0;
  if (detailKey === state.key) renderDetail(state);
  return old;
}

export async function loadGallery() {
  const res = await fetch("/v1/images?limit=60", { headers: authHeaders() });
  if (!res.ok) return;
  const list = await res.json();
  for (const state of list.reverse()) upsert(state);
}

// ---- detail: every variant side by side, with its versioned URL; the srcset ----
export async function showDetail(key) {
  detailKey = key;
  srcsetShown = null;
  const res = await fetch(`/v1/images/${enc(key)}`);
  if (res.ok) renderDetail(await res.json());
  $("#detail").hidden = false;
  $("#detail").scrollIntoView({ behavior: "smooth", block: "nearest" });
}

export function closeDetail() {
  $("#detail").hidden = true;
  detailKey = null;
}

function variantFigure(name, v) {
  return el("figure", { class: "variant", "data-variant": name },
    el("a", { href: v.url, target: "_blank" }, el("img", { src: v.url, alt: name })),
    el("figcaption", {}, el("b", { text: name }),
      el("span", { text: ` ${v.width}×${v.height} · ${fmtBytes(v.bytes)} · ${v.format}` })),
    el("div", { class: "copyable" },
      el("code", { class: "url", title: v.url, text: v.url }), copyButton(v.url)));
}

function renderDetail(state) {
  $("#detail-key").textContent = state.key;
  $("#detail-key").title = state.key;
  const badge = $("#detail-state");
  badge.textContent = state.state;
  badge.className = `state ${state.state}`;
  const err = $("#detail-error");
  err.hidden = !state.error;
  if (state.error) err.textContent = `${state.error.kind}: ${state.error.message}`;
  const variants = Object.entries(state.variants || {}).sort((a, b) => b[1].bytes - a[1].bytes);
  $("#variants").replaceChildren(...variants.map(([name, v]) => variantFigure(name, v)));
  if (!variants.length) {
    $("#variants").append(el("p", { class: "muted",
      text: state.state === "failed" ? "No variants." : "Variants on the way…" }));
  }
  loadSrcset(state);
}

async function loadSrcset(state) {
  const box = $("#srcset");
  const version = `${state.key}@${state.updated || ""}`;
  if (state.state !== "done") { box.hidden = true; srcsetShown = null; return; }
  if (srcsetShown === version) return;
  srcsetShown = version;
  const res = await fetch(`/v1/images/${enc(state.key)}/srcset`);
  if (detailKey !== state.key) return; // another image's detail meanwhile
  if (!res.ok) { box.hidden = true; return; }
  const { src, srcset, sizes } = await res.json();
  const tag = `<img src="${src}" srcset="${srcset}" sizes="${sizes}" alt="">`;
  $("#srcset-text").textContent = srcset;
  $("#srcset-text").title = srcset;
  $("#srcset-copy").replaceChildren(copyButton(srcset, "Copy srcset"), copyButton(tag, "Copy <img>"));
  box.hidden = false;
}

// ---- live state: one SSE stream for every image ----
export function connectLive(onChange) {
  const source = new EventSource("/v1/events");
  source.onopen = () => $("#live").classList.add("on");
  source.onerror = () => $("#live").classList.remove("on"); // EventSource reconnects by itself
  source.addEventListener("state", (e) => {
    const state = JSON.parse(e.data);
    const before = upsert(state);
    onChange(state, before);
  });
}

// Failures: the list (GET /v1/failures), filtered by kind, each with its retry, and "retry
// all" for every listed failure of the chosen kind (POST /v1/failures/{key}/retry each).

import { $, authHeaders, el, enc } from "./common.js";

const PAGE = 1000; // the API's largest page: the panel lists at most this many
const AT_ONCE = 4; // retries in flight during "retry all"
let listed = []; // the failures as last loaded
let retryingAll = false;

export async function loadFailures() {
  const res = await fetch(`/v1/failures?limit=${PAGE}`, { headers: authHeaders() });
  if (!res.ok) return;
  listed = await res.json();
  $("#failures-more").hidden = !res.headers.get("X-Next-Cursor");
  render();
}

/** Whether a state change from the live stream may change the list. */
export function failuresChanged(state, before) {
  return state.state === "failed" || (before && before.state === "failed");
}

let timer = null;
export function refreshFailuresSoon() {
  clearTimeout(timer);
  timer = setTimeout(loadFailures, 150);
}

const chosenKind = () => $("#failure-kind").value;
const shown = () => listed.filter((f) => !chosenKind() || f.kind === chosenKind());

function kindOptions() {
  const select = $("#failure-kind");
  const chosen = select.value;
  const counts = new Map();
  for (const f of listed) counts.set(f.kind, (counts.get(f.kind) || 0) + 1);
  if (chosen && !counts.has(chosen)) counts.set(chosen, 0); // keep the choice while it empties
  const options = [el("option", { value: "", text: `all kinds (${listed.length})` })];
  for (const [kind, n] of [...counts].sort()) {
    options.push(el("option", { value: kind, text: `${kind} (${n})` }));
  }
  select.replaceChildren(...options);
  select.value = chosen;
}

function row(f) {
  return el("tr", { "data-key": f.key, "data-kind": f.kind },
    el("td", { class: "name", text: f.key, title: f.key }),
    el("td", {}, el("span", { class: "kind", text: f.kind })),
    el("td", { class: "message", text: f.message }), el("td", { text: f.attempts ?? "" }),
    el("td", {}, el("button", { class: "retry", onclick: (e) => retry(f.key, e.target) }, "Retry")));
}

function render() {
  kindOptions();
  const rows = shown().map(row);
  $("#failures tbody").replaceChildren(...rows);
  $("#no-failures").hidden = rows.length > 0;
  $("#no-failures").textContent = listed.length ? "No failures of this kind." : "No failures.";
  $("#failures").hidden = rows.length === 0;
  const all = $("#retry-all");
  all.disabled = retryingAll || rows.length === 0;
  if (!retryingAll) all.textContent = rows.length ? `Retry all ${rows.length}` : "Retry all";
}

/** Retry one failure; its outcome: "retried", "not failed" (409: under way already) or an error. */
async function post(key) {
  try {
    const res = await fetch(`/v1/failures/${enc(key)}/retry`, { method: "POST", headers: authHeaders() });
    if (res.ok) return { outcome: "retried" };
    const body = await res.json().catch(() => ({}));
    return { outcome: res.status === 409 ? "not failed" : "error", status: res.status, detail: body.detail };
  } catch {
    return { outcome: "error", status: 0, detail: "network error" };
  }
}

function rowOf(key) {
  return $(`#failures tr[data-key="${CSS.escape(key)}"]`);
}

async function retry(key, button) {
  button.disabled = true;
  button.textContent = "retrying…";
  const result = await post(key);
  if (result.outcome === "error") {
    button.textContent = `${result.status}: ${result.detail || "failed"}`;
    button.disabled = false;
    return;
  }
  button.closest("tr")?.classList.add("retrying");
}

async function retryAll() {
  const keys = shown().map((f) => f.key);
  const kind = chosenKind() || "every kind";
  if (!keys.length) return;
  retryingAll = true;
  const button = $("#retry-all");
  button.disabled = true;
  const tally = { retried: 0, "not failed": 0, error: 0 };
  let next = 0;
  async function lane() {
    while (next < keys.length) {
      const key = keys[next++];
      rowOf(key)?.classList.add("retrying");
      const result = await post(key);
      tally[result.outcome] += 1;
      button.textContent = `retrying ${tally.retried + tally["not failed"] + tally.error}/${keys.length}…`;
    }
  }
  await Promise.all(Array.from({ length: Math.min(AT_ONCE, keys.length) }, lane));
  retryingAll = false;
  const extra = [tally["not failed"] && `${tally["not failed"]} already under way`,
    tally.error && `${tally.error} refused`].filter(Boolean);
  const result = $("#retry-result");
  result.textContent = `Retried ${tally.retried} of ${keys.length} (${kind})` +
    (extra.length ? `; ${extra.join(", ")}` : "");
  result.dataset.retried = tally.retried;
  result.hidden = false;
  render();
}

export function setupFailures() {
  $("#failure-kind").addEventListener("change", render);
  $("#retry-all").addEventListener("click", retryAll);
}

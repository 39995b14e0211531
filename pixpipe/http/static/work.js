// The work in flight: each consumer's queue (GET /v1/queues), the batches with their
// progress (GET /v1/batches), the backfill runs with progress, rate and ETA (GET /v1/reprocess).

import { $, bar, el, fmtDuration, fmtNumber, getJSON } from "./common.js";

function message(status, what) {
  return status === 401 ? `Enter the API key to see ${what}.` : `Could not load ${what} (${status || "network error"}).`;
}

/** Fill a table's body with `rows`, or say why there are none. */
function fill(table, rows, empty, emptyText) {
  $(`${table} tbody`).replaceChildren(...rows);
  $(table).hidden = rows.length === 0;
  $(empty).hidden = rows.length > 0;
  if (emptyText) $(empty).textContent = emptyText;
}

// ---- queues ----
export async function loadQueues() {
  const { ok, status, body } = await getJSON("/v1/queues");
  if (!ok) return fill("#queues", [], "#no-queues", message(status, "the queues"));
  const depth = (q) => (q.pending ?? 0) + (q.ack_pending ?? 0);
  const most = Math.max(10, ...body.map(depth));
  const rows = body.map((q) => el("tr", { "data-consumer": q.consumer },
    el("td", { class: "name", text: q.consumer, title: `${q.consumer} (stream ${q.stream})` }),
    el("td", { class: "graph" }, bar([[q.ack_pending ?? 0, "flight"], [q.pending ?? 0, "waiting"]], most,
      `${q.pending ?? "?"} waiting, ${q.ack_pending ?? "?"} in flight`)),
    el("td", { class: "num pending", text: q.pending ?? "?" }),
    el("td", { class: "num ack-pending", text: q.ack_pending ?? "?" })));
  fill("#queues", rows, "#no-queues");
}

// ---- batches ----
function batchRow(b) {
  const settled = b.done + b.failed;
  const of = b.state === "open" ? b.expected : b.received;
  return el("tr", { "data-batch": b.id, "data-state": b.state },
    el("td", { class: "name", text: b.id, title: b.id }),
    el("td", {}, el("span", { class: `state ${b.state === "done" ? "done" : b.state === "open" ? "pending" : "processing"}`, text: b.state })),
    el("td", { class: "progress" },
      bar([[b.received, "arrived"]], b.expected, `${b.received} of ${b.expected} received`),
      el("span", { class: "received", text: `${b.received}/${b.expected}` }),
      b.missing ? el("small", { class: "missing", text: ` ${b.missing} missing` }) : ""),
    el("td", { class: "progress" },
      bar([[b.done, "done"], [b.failed, "failed"]], of, `${b.done} done, ${b.failed} failed of ${of}`),
      el("span", { class: "processed", text: `${settled}/${of}` }),
      el("small", { class: "counts", text: ` ${b.done} done · ${b.failed} failed` })));
}

export async function loadBatches() {
  const { ok, status, body } = await getJSON("/v1/batches?limit=20");
  if (!ok) return fill("#batches", [], "#no-batches", message(status, "the batches"));
  fill("#batches", body.map(batchRow), "#no-batches", "No batches yet (POST /v1/batches opens one).");
}

// ---- backfill runs ----
function runName(r) {
  if (!r.started_here) return `run ${r.run}`;
  const what = r.variants && r.variants.length ? r.variants.join(", ") : "all variants";
  return `${what}${r.prefix ? ` under ${r.prefix}` : ""}${r.missing_only ? " (missing only)" : ""}`;
}

function eta(r) {
  if (r.state === "done") return `took ${fmtDuration(r.seconds)}`;
  if (r.eta_s === null || r.eta_s === undefined) return "–";
  return `${r.listing_done ? "" : "≥ "}${fmtDuration(r.eta_s)} left`;
}

function runRow(r) {
  const state = r.state === "done" ? "done" : r.state === "running" ? "processing" : "pending";
  const cells = [
    el("td", { class: "name", text: runName(r),
      title: `run ${r.run}${r.generation ? ` (generation ${r.generation})` : ""}: ${runName(r)}` }),
    el("td", {}, el("span", { class: `state ${state}`, text: r.state })),
  ];
  if (r.started_here) {
    const finished = r.done + r.skipped + r.failed;
    cells.push(
      el("td", { class: "progress" },
        bar([[r.done + r.skipped, "done"], [r.failed, "failed"]], r.listed,
          `${finished} of ${r.listed}${r.listing_done ? "" : "+"} originals`),
        el("span", { class: "finished", text: `${finished}/${r.listed}${r.listing_done ? "" : "+"}` }),
        el("small", { class: "counts", text: ` ${r.done} rendered · ${r.skipped} up to date · ${r.failed} failed` })),
      el("td", { class: "rate", text: `${fmtNumber(r.rate_per_s, 1)}/s` }),
      el("td", { class: "eta", text: eta(r) }));
  } else {
    cells.push(el("td", { class: "muted", colspan: "3", text: "started elsewhere: no progress here" }));
  }
  return el("tr", { "data-run": r.run, "data-state": r.state }, ...cells);
}

export async function loadRuns() {
  const { ok, status, body } = await getJSON("/v1/reprocess");
  if (!ok) return fill("#runs", [], "#no-runs", message(status, "the backfills"));
  fill("#runs", body.map(runRow), "#no-runs", "No backfills yet (POST /v1/reprocess starts one).");
}

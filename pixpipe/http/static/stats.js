// Throughput and latency: the figures since this API process started, from the Prometheus
// text at /metrics, and the charts over the last minutes, from GET /v1/stats.

import { lineChart } from "./charts.js";
import { $, fmtNumber, getJSON } from "./common.js";

export const MINUTES = 15;
export const STEP_S = 30;

// ---- /metrics ----
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

/** The histogram bucket that holds quantile `q` of the processing times (an upper bound). */
function quantile(m, q) {
  const buckets = Object.entries(m)
    .filter(([k]) => k.startsWith("pixpipe_processing_seconds_bucket{"))
    .map(([k, v]) => [k.match(/le="([^"]+)"/)[1], v])
    .map(([le, v]) => [le === "+Inf" ? Infinity : Number(le), v])
    .sort((a, b) => a[0] - b[0]);
  const total = buckets.length ? buckets[buckets.length - 1][1] : 0;
  if (!total) return null;
  return buckets.find(([, v]) => v >= q * total)[0];
}

export async function pollMetrics() {
  try {
    const m = parseMetrics(await (await fetch("/metrics")).text());
    $("#m-processed").textContent = sum(m, "pixpipe_images_processed_total");
    $("#m-failed").textContent = sum(m, "pixpipe_images_failed_total");
    $("#m-pending").textContent = sum(m, "pixpipe_consumer_pending") + sum(m, "pixpipe_consumer_ack_pending");
    $("#m-hits").textContent = sum(m, "pixpipe_transform_cache_hits_total");
    const p95 = quantile(m, 0.95);
    $("#m-p95").textContent = p95 === null ? "–" : p95 === Infinity ? "> 120" : `≤ ${p95}`;
  } catch { /* the next poll will tell */ }
}

// ---- /v1/stats ----
let last = null; // the last stats, to draw again when the page is resized

const color = (name, fallback) =>
  getComputedStyle(document.documentElement).getPropertyValue(name).trim() || fallback;

const axis = (v) => (Number.isInteger(v) ? String(v) : fmtNumber(v));

function draw(stats) {
  const times = stats.points.map((p) => p.t);
  const { window: win } = stats;
  // Intervals that ended before this API process began counting have no data (not zero).
  const counted = (p, value) => (p.t + stats.step_s <= stats.since ? null : value);
  const throughput = $("#chart-throughput");
  const processed = (p) => counted(p, p.per_min);
  const series = [{ values: stats.points.map(processed), color: color("--accent", "#2f7de1") }];
  if (win.failed) {
    const failed = (p) => counted(p, (p.failed * 60) / stats.step_s);
    series.unshift({ values: stats.points.map(failed), color: color("--bad", "#d23c3c") });
  }
  lineChart(throughput, { times, now: stats.now, series, format: axis });
  Object.assign(throughput.dataset, { processed: win.processed, failed: win.failed, points: stats.points.length });
  throughput.setAttribute("aria-label",
    `images per minute: ${win.processed} processed, ${win.failed} failed in the last ${stats.minutes} min`);
  const clock = (t) => new Date(t * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  const since = stats.since > times[0] ? ` (counting since ${clock(stats.since)})` : "";
  $("#legend-throughput").textContent =
    `${win.processed} processed · ${win.failed} failed in ${stats.minutes} min${since}`;

  const latency = $("#chart-latency");
  lineChart(latency, {
    times, now: stats.now, floor: 0.1, format: (v) => `${axis(v)} s`,
    series: [{ values: stats.points.map((p) => p.p95_s), color: color("--warn", "#c98a00") },
      { values: stats.points.map((p) => p.p50_s), color: color("--accent", "#2f7de1") }],
  });
  Object.assign(latency.dataset, { p50: win.p50_s ?? "", p95: win.p95_s ?? "" });
  latency.setAttribute("aria-label", `processing time: p50 ${win.p50_s ?? "–"} s, p95 ${win.p95_s ?? "–"} s`);
  $("#legend-p50").textContent = `p50 ${fmtNumber(win.p50_s)} s`;
  $("#legend-p95").textContent = `p95 ${fmtNumber(win.p95_s)} s`;
}

export async function loadStats() {
  const { ok, status, body } = await getJSON(`/v1/stats?minutes=${MINUTES}&step=${STEP_S}`);
  const note = $("#stats-note");
  note.hidden = ok;
  if (!ok) {
    note.textContent = status === 401
      ? "Enter the API key to see throughput and latency over time."
      : `GET /v1/stats: ${status || "network error"}`;
    return;
  }
  $("#m-rate").textContent = fmtNumber(body.last_minute.per_min, 1);
  $("#m-latency").textContent = fmtNumber(body.window.p50_s);
  last = body;
  draw(body);
}

export function redrawOnResize() {
  let pending = null;
  window.addEventListener("resize", () => {
    cancelAnimationFrame(pending);
    pending = requestAnimationFrame(() => last && draw(last));
  });
}

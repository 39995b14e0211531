// pixpipe dashboard: plain ES modules, no build step. Talks only to the public API (/v1,
// /images, /metrics); image state comes live from one Server-Sent Events stream
// (GET /v1/events), the rest is polled.
//
//   common.js   DOM helpers, the API key, formatting, copy buttons, progress bars
//   gallery.js  uploads (through upload.js), the gallery, one image's variants and srcset
//   stats.js    figures from /metrics; throughput and latency charts from /v1/stats
//   charts.js   the canvas line charts
//   work.js     queues per consumer, batches, backfill runs
//   failures.js failures by kind, retry one or all

import { $, rememberedKey } from "./common.js";
import { failuresChanged, loadFailures, refreshFailuresSoon, setupFailures } from "./failures.js";
import { closeDetail, connectLive, loadGallery, setupUploads } from "./gallery.js";
import { loadStats, pollMetrics, redrawOnResize } from "./stats.js";
import { loadBatches, loadQueues, loadRuns } from "./work.js";

const POLL_MS = 3000;

function pollWork() {
  if (document.hidden) return; // a background tab costs the API nothing
  loadStats();
  loadQueues();
  loadBatches();
  loadRuns();
}

function start() {
  const input = $("#api-key");
  input.value = rememberedKey();
  input.addEventListener("change", () => {
    localStorage.setItem("pixpipe-key", input.value.trim());
    loadGallery();
    loadFailures();
    pollWork();
  });
  $("#detail-close").addEventListener("click", closeDetail);
  setupUploads();
  setupFailures();
  connectLive((state, before) => {
    if (failuresChanged(state, before)) refreshFailuresSoon();
  });
  loadGallery();
  loadFailures();
  pollMetrics();
  setInterval(pollMetrics, 2000);
  pollWork();
  setInterval(pollWork, POLL_MS);
  redrawOnResize();
}

start();

// Line charts on a <canvas>, drawn by hand (no library, no build): a few series over the
// same times, a y axis from zero to a round maximum, the x axis in minutes before now.

const css = (name, fallback) =>
  getComputedStyle(document.documentElement).getPropertyValue(name).trim() || fallback;

/** The smallest of 1, 2, 2.5, 5 × 10^n at or above `value` (at least `floor`). */
function niceMax(value, floor) {
  const top = Math.max(value, floor);
  const power = 10 ** Math.floor(Math.log10(top));
  return [1, 2, 2.5, 5, 10].map((m) => m * power).find((m) => m >= top);
}

function sized(canvas) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || canvas.width;
  const height = canvas.clientHeight || canvas.height;
  if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  return { ctx, width, height };
}

/**
 * Draw `series` ([{values, color}], values null where there is no data) over
 * `times` (Unix seconds, oldest first) up to `now`; `format` labels the y axis.
 */
export function lineChart(canvas, { times, series, now, format = String, floor = 1 }) {
  const { ctx, width, height } = sized(canvas);
  const left = 44, right = 8, top = 8, bottom = 20;
  const plotW = width - left - right, plotH = height - top - bottom;
  const values = series.flatMap((s) => s.values).filter((v) => v !== null && v !== undefined);
  const max = niceMax(values.length ? Math.max(...values) : 0, floor);
  const start = times[0], span = Math.max(now - start, 1);
  const x = (t) => left + ((t - start) / span) * plotW;
  const y = (v) => top + plotH - (v / max) * plotH;
  const muted = css("--muted", "#6b7384");

  ctx.font = "11px system-ui, sans-serif";
  ctx.lineWidth = 1;
  ctx.strokeStyle = css("--line", "#e3e6ec");
  ctx.fillStyle = muted;
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (const v of [0, max / 2, max]) {
    ctx.beginPath();
    ctx.moveTo(left, Math.round(y(v)) + 0.5);
    ctx.lineTo(left + plotW, Math.round(y(v)) + 0.5);
    ctx.stroke();
    ctx.fillText(format(v), left - 6, y(v));
  }
  ctx.textBaseline = "top";
  const minutes = Math.round(span / 60);
  for (const [i, label] of [[0, `−${minutes} min`], [0.5, `−${Math.round(minutes / 2)} min`], [1, "now"]]) {
    ctx.textAlign = i === 0 ? "left" : i === 1 ? "right" : "center";
    ctx.fillText(label, left + i * plotW, top + plotH + 5);
  }

  const step = times.length > 1 ? times[1] - times[0] : 60;
  const mid = (i) => Math.min(times[i] + step / 2, now); // each interval drawn at its middle
  for (const s of series) {
    ctx.strokeStyle = s.color;
    ctx.fillStyle = s.color;
    ctx.lineWidth = 2;
    let open = false;
    ctx.beginPath();
    s.values.forEach((v, i) => {
      if (v === null || v === undefined) { open = false; return; }
      if (open) ctx.lineTo(x(mid(i)), y(v));
      else ctx.moveTo(x(mid(i)), y(v));
      open = true;
    });
    ctx.stroke();
    s.values.forEach((v, i) => { // a dot on each point, so lone points show
      if (v === null || v === undefined) return;
      ctx.beginPath();
      ctx.arc(x(mid(i)), y(v), 2.2, 0, 2 * Math.PI);
      ctx.fill();
    });
  }
}
